"""The ``rotation`` console script: the domain commands plus the service processes
(``worker``, ``beat``, ``metrics``, ``webhook``). Each is a thin shell around Celery, uvicorn or
prometheus_client, imported when its command runs: ``rotation --help`` loads none of them.

:func:`main` is the entry point: short commands run without the cyclic garbage collector (see there).
"""

from __future__ import annotations

import atexit
import gc
import importlib.machinery
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Annotated, Any

import typer

from rotation.cli import rotate as rotate_command
from rotation.cli.main import app
from rotation.cli.options import ConfigOption
from rotation.cli.render import fail


def configure_logging(*args: Any, **kwargs: Any) -> None:
    from rotation.adapters.logs import configure  # logging: for the services, not for `rotation --help`

    configure(*args, **kwargs)


def _one_of(*allowed: str) -> Any:
    """An option callback refusing (exit 2, naming the option) a value not in ALLOWED, case aside; the value
    in ALLOWED's spelling otherwise."""

    def check(value: str) -> str:
        for spelling in allowed:
            if value.upper() == spelling.upper():
                return spelling  # as the code compares it ("json", "DEBUG")
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}")

    return check


LogFormat = Annotated[str, typer.Option("--log-format", help="plain or json (one object per line).",
                                        callback=_one_of("plain", "json"))]
LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR, CRITICAL.",
                                       callback=_one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))]


def _queue_factory(ctx):  # noqa: ANN001, ANN202 - ServiceContext -> CeleryRotationQueue
    from workers.queue import CeleryRotationQueue

    return CeleryRotationQueue(ctx)


rotate_command.queue_factory = _queue_factory


def _preflight(config: Path | None) -> None:
    """Refuse to start (exit 2, one line) without a loadable inventory, Redis, or a valid ROTATION_SECRET_KEY:
    a process that takes tasks it cannot do leaves their records stuck. ``-c`` becomes ROTATION_CONFIG,
    which the Celery processes (and a restarted worker child) read."""

    from rotation.config import CONFIG_ENV
    from rotation.core.errors import RotationError
    from rotation.usecases.context import ServiceContext, preflight

    if config is not None:
        os.environ[CONFIG_ENV] = str(config.resolve())

    try:
        ctx = ServiceContext()
        preflight(ctx)
    except RotationError as exc:
        raise fail(exc.message) from None
    logging.getLogger("rotation.service").info("queue and state: %s", ctx.settings.describe_store())


def _serve_metrics(port: int, address: str) -> None:
    from rotation.adapters.metrics import registry_for, serve_metrics
    from rotation.core.errors import RotationError
    from rotation.usecases.context import ServiceContext

    ctx = ServiceContext()
    state = ctx.state
    try:
        state.ping()  # metrics are read from the service's state: without it, one line and exit 2
    except RotationError as exc:
        raise fail(exc.message) from None
    try:
        serve_metrics(port, address, registry_for(state, ctx.clock))
    except OSError as exc:  # taken, or an address this host does not have: one line, exit 2
        raise fail(f"cannot listen on {address}:{port} for metrics: {exc.strerror or exc}") from None


def _supervise(argv: list[str]) -> None:
    """Run the Celery worker as a child and restart it if it dies on its own.

    Celery's consumer can die with "Unrecoverable error" when the Redis broker vanishes while
    tasks run (a kombu bug on reconnect). Unacked tasks are redelivered and resumed, so a fresh
    worker process is the reliable recovery; SIGTERM/SIGINT are passed on and end the loop.
    """
    import logging

    log = logging.getLogger("rotation.worker")
    stopping = False
    child: subprocess.Popen | None = None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    delay = 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "workers.main", *argv])
        code = child.wait()
        if stopping:
            raise typer.Exit(code)
        delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 30.0)
        log.error("celery worker exited with code %s; starting a new one in %.0fs", code, delay)
        time.sleep(delay)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker threads (rotations run at the same time).", min=1)] = 4,
    metrics_port: Annotated[int | None, typer.Option(help="Also serve Prometheus metrics on this port.", min=0,
                                                     max=65535)] = None,
    metrics_address: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "127.0.0.1",
    log_format: LogFormat = "plain",
    log_level: LogLevel = "INFO",
    hostname: Annotated[str | None, typer.Option(
        help="Celery node name, e.g. rotation@%h (%h: this host's name; default: Celery's, celery@<host>).")] = None,
    supervise: Annotated[bool, typer.Option(help="Restart the Celery worker if it dies on its own.")] = True,
    config: ConfigOption = None,
) -> None:
    """Run a Celery worker that scans clusters and rotates certificates (scale it out freely)."""
    configure_logging(log_level, log_format)
    _preflight(config)
    if metrics_port:
        _serve_metrics(metrics_port, metrics_address)
    if supervise:
        argv = ["worker", "--no-supervise", "--concurrency", str(concurrency), "--log-format", log_format,
                "--log-level", log_level]
        _supervise(argv + (["--hostname", hostname] if hostname else []))
        return
    from workers.celery_app import celery_app

    argv = ["worker", "--loglevel", log_level, "--pool", "threads", "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "-Q", "rotation"]
    if hostname:
        argv += ["--hostname", hostname]
    celery_app.worker_main(argv)


@app.command()
def beat(
    schedule_file: Annotated[Path | None, typer.Option(
        help="Where beat keeps its last-run times (default: celerybeat-schedule in the state folder).")] = None,
    log_format: LogFormat = "plain",
    log_level: LogLevel = "INFO",
    config: ConfigOption = None,
) -> None:
    """Run Celery beat: scans at start, then every ROTATION_SCAN_INTERVAL, and audits TLS policies nightly.
    Run one or more: one holds the schedule, the others stand by and take over."""
    configure_logging(log_level, log_format)
    _preflight(config)
    from rotation.config import local_state_dir
    from workers.celery_app import celery_app

    schedule_file = schedule_file or local_state_dir() / "celerybeat-schedule"

    try:
        schedule_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a folder should be, no permission: one line, exit 2
        raise fail(f"--schedule-file {schedule_file}: cannot create its folder ({exc.strerror})") from None
    import tempfile

    try:  # a folder that exists but takes no files: Celery's shelve would fail with a traceback
        tempfile.TemporaryFile(dir=schedule_file.parent).close()
    except OSError as exc:
        raise fail(f"--schedule-file {schedule_file}: its folder cannot be written ({exc.strerror})") from None
    celery_app.start(["beat", "--loglevel", log_level, "--schedule", str(schedule_file),
                      "--scheduler", "workers.beat:LeasedScheduler"])


@app.command()
def metrics(
    port: Annotated[int, typer.Option(help="Port for /metrics.", min=0, max=65535)] = 9464,
    address: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
) -> None:
    """Serve the Prometheus metrics on their own (read from the service's Redis)."""
    configure_logging()
    _serve_metrics(port, address)
    typer.echo(f"metrics on http://{address}:{port}/metrics")
    threading.Event().wait()


@app.command()
def webhook(
    host: Annotated[str, typer.Option(help="Listen address (put TLS in front: a proxy or load balancer).")] = (
        "127.0.0.1"),
    port: Annotated[int, typer.Option(help="Listen port.", min=0, max=65535)] = 8088,
    config: ConfigOption = None,
    access_log: Annotated[bool, typer.Option(help="Log every request line.")] = False,
    threads: Annotated[int, typer.Option(help="Threads per process for blocking calls (Celery's publish, "
                                                "history, a status read past its cache).", min=1)] = 8,
    status_cache: Annotated[float, typer.Option(help="Seconds a `status` answer may be reused (0: never).")] = 1.0,
    processes: Annotated[int, typer.Option(help="Processes sharing the port (SO_REUSEPORT; the kernel spreads "
                                                  "connections across them).", min=1)] = 1,
    header_timeout: Annotated[float, typer.Option(help="Seconds a client has to send a request's headers.",
                                                  min=0.1)] = 5.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds a client has to send a request's body.", min=0.1)] = 5.0,
    max_connections: Annotated[int, typer.Option(help="Open connections per process; more are closed at once.",
                                                 min=1)] = 1000,
    log_format: LogFormat = "plain",
    log_level: LogLevel = "INFO",
) -> None:
    """Serve the chat-ops webhook (Slack, Mattermost, generic HMAC): status, check and rotations from chat."""
    configure_logging(log_level, log_format)
    from rotation.core.errors import RotationError
    from workers.webhook.protocol import Limits
    from workers.webhook.server import serve

    try:
        serve(host, port, config_path=config, log_level=log_level, log_format=log_format, access_log=access_log,
              threads=threads, status_cache=status_cache, processes=processes,
              limits=Limits(header_timeout, body_timeout, max_connections))
    except RotationError as exc:
        raise fail(exc.message) from None


# Processes that run until stopped: they keep the garbage collector, whatever they allocate over days.
SERVICES = frozenset({"worker", "beat", "metrics", "webhook", "simulator"})


def _no_httpx_command_line() -> None:
    raise SystemExit("httpx's own command line is not loaded by `rotation`")


class _HttpxCommandLineStandIn:
    """Finder and loader (on ``sys.meta_path``) of a stand-in for ``httpx._main``, used only if httpx is imported."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name != "httpx._main":
            return None
        return importlib.machinery.ModuleSpec(name, _HttpxCommandLineStandIn)  # type: ignore[arg-type]

    @staticmethod
    def create_module(spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module

    @staticmethod
    def exec_module(module: types.ModuleType) -> None:
        module.main = _no_httpx_command_line  # type: ignore[attr-defined]


def _skip_unused_imports() -> None:
    """What a short command would load and never use (measured: benchmarks/rotate_latency.py).

    - ``httpx._main``, httpx's own console script, which ``import httpx`` loads whenever click and
      rich are installed: click, pygments and half of rich, 20-40 ms of `rotate --inline` and `check`.
      A stand-in module takes its place (its ``main`` says so); nothing of ours uses it.
    - pydantic's plugin scan (the entry points of every installed distribution, ~10 ms, when the
      first model is built): the service has no pydantic plugins. A value set by the user is kept.
    """
    if "httpx" not in sys.modules:
        sys.meta_path.insert(0, _HttpxCommandLineStandIn)  # type: ignore[arg-type]
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def main() -> None:
    """The console script. A short command (``--help``, ``check``, ``status``, ...) runs with the
    cyclic garbage collector off and freezes what it allocated before the interpreter exits:
    importing the CLI creates a few hundred thousand objects, which the collector would otherwise
    walk again and again while they load and once more at exit, for no garbage (measured:
    benchmarks/cli_start.py). Its output is flushed and its exit code kept as usual. Work that can
    last (`rotate` running or following rotations) turns the collector back on when it starts."""
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    if command in SERVICES:
        app()
        return
    gc.disable()
    _skip_unused_imports()
    try:
        app()
    except SystemExit as done:
        _exit_now(done)
        raise
    finally:
        gc.freeze()  # the collection at interpreter exit then has nothing left to walk


def _waited_threads() -> bool:
    """Whether a thread the interpreter would wait for at exit still runs (daemon threads, such as the
    lock's lease renewer, are not waited for: they end with the process either way)."""
    main_thread = threading.main_thread()
    return any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate())


def _exit_now(done: SystemExit) -> None:
    """End a short command as the interpreter would, less tearing down the ~700 modules it loaded
    (30-40 ms of `rotate --inline`, measured: benchmarks/rotate_latency.py): the exit functions run,
    stdout and stderr are flushed, the exit code is the same. Left to the interpreter (returns) when
    another thread still runs (it would be waited for), a profiler or tracer watches (it writes at
    the end: ``python -m cProfile``, coverage), the code is not a number, or a flush fails (the
    interpreter reports that itself)."""
    code = 0 if done.code is None else done.code
    if not isinstance(code, int) or not -(2**31) <= code < 2**31 or _waited_threads() \
            or sys.getprofile() is not None or sys.gettrace() is not None:
        return
    atexit._run_exitfuncs()  # logging.shutdown and the like, in their order
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):  # a closed pipe, a closed stream
        return
    os._exit(code)  # the low 8 bits, as for sys.exit


__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
