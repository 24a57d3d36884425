"""``rotation simulator``: run a simulated RS cluster in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .versions import DEFAULT_VERSION

# The server, its certificates and yaml load when the command runs: `rotation --help` and
# `rotation simulator --help` only need the signature below.
if TYPE_CHECKING:
    from .nodes import Database
    from .server import ClusterSimulator

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` or combinations such as ``1d12h``."""
    text = text.strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)([dhmsw])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}: use e.g. 90d, 12h, 30m, 45s")
    return dt.timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def parse_databases(text: str | None) -> list[Database]:
    """None -> the defaults; ``"2"`` -> 2 TLS all-nodes databases from port 12000;
    ``"12000,12001:single,12002:plain"`` -> one database per port, flags ``single``/``plain``."""
    from .nodes import DEFAULT_DATABASES, Database

    if text is None:
        return list(DEFAULT_DATABASES)
    text = text.strip()
    if text.isdigit() and int(text) < 1000:
        return [Database(i + 1, f"db{i + 1}", 12000 + i) for i in range(int(text))]
    databases = []
    for uid, item in enumerate(filter(None, (p.strip() for p in text.split(","))), start=1):
        port, *flags = item.split(":")
        unknown = set(flags) - {"single", "plain", "tls", "all-nodes"}
        if not port.isdigit() or unknown:
            raise ValueError(f"invalid database {item!r}: PORT[:single][:plain]")
        databases.append(Database(uid, f"db{uid}", int(port), tls="plain" not in flags,
                                  proxy_policy="single" if "single" in flags else "all-nodes"))
    return databases


def parse_uids(text: str | None, databases: list[Database]) -> list[int]:
    """``"1,2"`` -> [1, 2], each the uid of one of ``databases``."""
    uids = [part.strip() for part in (text or "").split(",") if part.strip()]
    known = {db.uid for db in databases}
    if not all(uid.isdigit() and int(uid) in known for uid in uids):
        raise ValueError(f"--database-certs takes database uids among {sorted(known)}, not {text!r}")
    return [int(uid) for uid in uids]


def _login_kind(cert_login: bool, basic_off: bool) -> str:
    return "certificate" if basic_off else "both" if cert_login else "basic"


def _summary(sim: ClusterSimulator, name: str, login: str = "basic") -> str:
    import yaml

    cfg = sim.config
    lines = [f"Simulated RS cluster {cfg.fqdn} (version {cfg.version}), {cfg.nodes} node(s)",
             f"  admin: {sim.admin_username} (password in {sim.password_path})",
             f"  viewer: {sim.viewer_username} (password in {cfg.state_dir / 'viewer-password'})",
             f"  CA: {sim.ca_path}"]
    for uid, addr in enumerate(sim.node_addresses, start=1):
        lines.append(f"  node {uid} {addr}: api {cfg.api_port}, cm {cfg.cm_port}, "
                     f"metrics {cfg.metrics_port}" + (f", discovery {cfg.sentinel_port}" if cfg.sentinel_port else ""))
    client = sim.cert_login.client
    if client is not None:
        basic = "on" if sim.cluster_settings().get("control_plane_basic_authentication", True) else "off"
        lines.append(f"  certificate login: {client.subject} (cert {client.cert_path}, key {client.key_path}); "
                     f"Basic {basic}")
    for db in cfg.database_list:
        served = sim.database_certs.served_fingerprint(1, db.uid)  # every database binds node 1
        own = f", own certificate {served}" if db.tls and served != sim.served_fingerprint(1, "proxy") else ""
        lines.append(f"  db {db.uid} {db.name}: port {db.port}, tls={db.tls}, {db.proxy_policy}{own}")
    lines.append("  fingerprints (SHA-256):")
    for cert_name in ("api", "cm", "proxy", "syncer", "metrics_exporter"):
        lines.append(f"    {cert_name}: {sim.served_fingerprint(1, cert_name)}")
    lines.append("Inventory entry (--write-config F writes it with an internal CA and its issuer, ready to rotate):")
    lines.append(yaml.safe_dump({"clusters": {name: sim.inventory_entry(name, login)}}, sort_keys=False).rstrip())
    lines.append("Serving; Ctrl-C to stop.")
    return "\n".join(lines)


def simulator(
    nodes: int = typer.Option(3, "--nodes", min=1, help="Number of nodes."),
    fqdn: str = typer.Option("cluster.sim.local", "--fqdn", help="Cluster FQDN (certificate names)."),
    first_address: str = typer.Option("127.0.10.1", "--first-address", envvar="RS_SIM_FIRST_ADDRESS",
                                      help="Node 1's loopback address; the others follow it."),
    cm_port: int = typer.Option(8443, "--cm-port", help="Every node's UI (cm) port."),
    api_port: int = typer.Option(9443, "--api-port", help="Every node's REST API port."),
    metrics_port: int = typer.Option(8070, "--metrics-port", help="Every node's metrics_exporter port."),
    databases: str | None = typer.Option(
        None, "--databases", help="Count, or ports like 12000,12001:single,12002:plain."
    ),
    expires_in: str = typer.Option("365d", "--expires-in", help="Initial validity, e.g. 5d, 12h."),
    version: str = typer.Option(DEFAULT_VERSION, "--version",
                                 help="The simulated RS version (this tool's own: `rotation --version`)."),
    password: str | None = typer.Option(
        None, "--password", envvar="RS_SIM_PASSWORD", help="Admin password (default random)."
    ),
    state_dir: Path = typer.Option(Path(".rotation/sim"), "--state-dir",  # noqa: B008
                                   help="Where the cluster CA, the passwords and the certificate login files go."),
    connect_delay: float = typer.Option(0.0, "--connect-delay", help="Seconds before each handshake."),
    api_latency: float = typer.Option(0.0, "--api-latency", help="Seconds added to each REST answer."),
    no_resync: bool = typer.Option(False, "--no-resync", help="Nodes coming back up stay stale."),
    write_config: Path | None = typer.Option(  # noqa: B008
        None, "--write-config", help="Write/merge an inventory YAML with this cluster, ready to rotate: "
        "an internal CA beside it (pki/), its issuer, the cluster's password_env or password_file."
    ),
    name: str = typer.Option("sim", "--name", help="The cluster's name in the inventory."),
    cert_profile: str = typer.Option("none", "--cert-profile", help="Upload rules: none | as-documented."),
    internode_certs: bool = typer.Option(False, "--internode-certs", help="Hold RS's own INE certificates."),
    ine_fallback: bool = typer.Option(False, "--ine-fallback", help="Swap customer INE certs 5 days before expiry."),
    extra_cert: list[str] = typer.Option(  # noqa: B008
        [], "--extra-cert", help="Also hold a certificate under this name (repeatable)."
    ),
    ocsp_without_url: str = typer.Option(
        "fail", "--ocsp-without-url", help="Stapling on, proxy cert without OCSP URL: fail | accept."
    ),
    proxy_ocsp_url: str | None = typer.Option(None, "--proxy-ocsp-url", help="OCSP URL of the initial proxy cert."),
    cert_login: bool = typer.Option(
        False, "--cert-login", help="Certificate login to the REST API (RS 7.8.4+): client CA, user, cert files."
    ),
    cert_subject: str = typer.Option(
        "CN=rotation,OU=ops,O=rotation", "--cert-subject", help="The certificate user's subject (RFC 2253)."
    ),
    basic_off: bool = typer.Option(
        False, "--basic-off", help="Turn Basic authentication off (RS 8.2.0+; implies --cert-login)."
    ),
    database_certs: str | None = typer.Option(
        None, "--database-certs", help="Database uids that start with a certificate of their own, e.g. 1,2."
    ),
) -> None:
    """Run a simulated Redis Enterprise cluster (real TLS listeners + REST API) until Ctrl-C."""
    import asyncio

    from .cluster import SimulatorConfig
    from .inventory import ReadyInventory
    from .server import ClusterSimulator, SimulatorError, new_event_loop
    from .tls import utcnow

    try:
        config = SimulatorConfig(
            fqdn=fqdn, nodes=nodes, first_address=first_address, cm_port=cm_port, api_port=api_port,
            metrics_port=metrics_port, databases=parse_databases(databases),
            expires_in=parse_duration(expires_in), version=version, admin_password=password or None,
            state_dir=state_dir, connect_delay=connect_delay, api_latency=api_latency,
            resync_on_return=not no_resync, cert_profile=cert_profile, internode_certs=internode_certs,
            ine_fallback=ine_fallback, extra_certificates=tuple(extra_cert), ocsp_without_url=ocsp_without_url,
            proxy_ocsp_url=proxy_ocsp_url,
        )
        own_certs = parse_uids(database_certs, config.database_list)
        inventory = ReadyInventory.prepare(write_config, utcnow()) if write_config is not None else None
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    sim = ClusterSimulator(config)
    login = _login_kind(cert_login, basic_off)
    try:
        if login != "basic":
            sim.cert_login.enable(cert_subject, basic=not basic_off)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    for uid in own_certs:
        sim.database_certs.install(uid)

    def ready() -> None:
        if inventory is not None:  # once listening: whoever waits for the file finds the cluster up
            typer.echo(inventory.write(name, sim.inventory_entry(name, login), sim.admin_password))
        typer.echo(_summary(sim, name, login), nl=True)

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(sim.serve_forever(ready))
    except SimulatorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass
    typer.echo("Simulator stopped.")


def __getattr__(name: str) -> Any:
    if name == "write_inventory":  # kept importable from here
        from .inventory import write_inventory

        return write_inventory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["parse_databases", "parse_duration", "parse_uids", "simulator"]  # and write_inventory, above
