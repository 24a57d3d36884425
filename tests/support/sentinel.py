"""A real Redis Sentinel deployment on loopback: a master, a replica and sentinels watching them
(``redis-server --sentinel``), each on a free port, and a forced failover."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from support.processes import free_port, wait_for

SERVICE = "rotation"


class SentinelSet:
    def __init__(self, directory: Path, sentinels: int = 2) -> None:
        self.directory = directory
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.processes: list[subprocess.Popen] = []
        self._clients: dict[int, redis.Redis] = {}  # one per port, closed by stop(): no socket left to the GC

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> SentinelSet:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._server(self.master_port)
        self._server(self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        wait_for(lambda: self.node(self.replica_port).info("replication")["master_link_status"] == "up", 20,
                 what="the replica to sync")
        for port in self.sentinel_ports:
            conf = self.directory / f"sentinel-{port}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 1\n"
                            f"sentinel down-after-milliseconds {SERVICE} 2000\n"
                            f"sentinel failover-timeout {SERVICE} 10000\n")
            self._spawn(["redis-server", str(conf), "--sentinel"], f"sentinel-{port}.log")
        for port in self.sentinel_ports:  # each knows the replica: a failover has somewhere to go
            wait_for(lambda p=port: self.node(p).sentinel_slaves(SERVICE), 20, what="sentinels to see the replica")
        return self

    def node(self, port: int) -> redis.Redis:
        if port not in self._clients:
            self._clients[port] = redis.Redis(port=port, decode_responses=True, socket_timeout=5)
        return self._clients[port]

    def master(self, sentinel_port: int | None = None) -> int:
        """The master's port as one sentinel (the first unless named) names it."""
        asked = self.sentinel_ports[0] if sentinel_port is None else sentinel_port
        _host, port = self.node(asked).sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def failover(self) -> int:
        """SENTINEL FAILOVER: the replica becomes the master, the old master its replica. Returns the new port."""
        old = self.master()
        replica = self.replica_port if old == self.master_port else self.master_port
        # What the master took is on the replica first (replication is asynchronous: a write just before the
        # failover may not have reached it, and a promoted replica without it loses it, as Sentinel allows)
        taken = int(self.node(old).info("replication")["master_repl_offset"])
        wait_for(lambda: int(self.node(replica).info("replication").get("slave_repl_offset", -1)) >= taken, 30,
                 what="the replica to hold every write the master took")
        # NOGOODSLAVE until the sentinel has read the replica's own INFO (it polls): ask again until it accepts.
        wait_for(lambda: self.node(self.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", SERVICE), 30,
                 0.2, what="the sentinel to accept a failover")
        wait_for(lambda: self.master() != old, 30, what="the sentinels to name a new master")
        new = self.master()
        wait_for(lambda: all(self.master(port) == new for port in self.sentinel_ports), 30,
                 what="every sentinel to name the new master")
        wait_for(lambda: self.node(new).info("replication")["role"] == "master", 30, what="the new master")
        # Until the sentinels turn the old master into a replica it still takes writes, which its resync
        # then drops (asynchronous replication: what Sentinel does not cover). The failover ends here.
        # The sentinels reconfigure it themselves, but only ~10 s later (a fixed wait in Sentinel,
        # SENTINEL_PUBLISH_PERIOD*4 after it saw the role it disagrees with): sent now, the same transaction
        # they send (sentinelSendSlaveOf: REPLICAOF, then its clients dropped so that they ask again).
        demote = self.node(old).pipeline(transaction=True)
        demote.replicaof("127.0.0.1", new)
        demote.execute_command("CLIENT", "KILL", "TYPE", "normal")
        demote.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        try:
            demote.execute()
        except redis.ConnectionError:
            pass  # our own connection is one of those it dropped
        wait_for(lambda: self.node(old).info("replication")["role"] == "slave", 30, what="the old master to follow")
        return new

    def stop(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            process.wait(10)

    def _server(self, port: int, *args: str) -> None:
        self._spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", str(self.directory),
                     # a replica's first sync starts at once, not after the default 5 s wait for more replicas
                     "--repl-diskless-sync-delay", "0", *args], f"redis-{port}.log")
        wait_for(lambda: self.node(port).ping(), 10, what="redis-server")

    def _spawn(self, argv: list[str], log: str) -> None:
        with open(self.directory / log, "wb") as handle:
            self.processes.append(subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT))
