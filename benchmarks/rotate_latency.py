"""A rotation request to exit: how long `rotation rotate` takes, next to baselines run in the same process.

    .venv/bin/python benchmarks/rotate_latency.py [--samples 15] [--cli-samples 7] [--nodes 3] [--json]
                                                  [--against TREE]

One simulated 3-node cluster (loopback only), a redis-server and one `rotation worker` run as the
service does. Measured, each as a median (p50) of --samples / --cli-samples runs:

- pipeline          ``rotate_and_record`` in this process (what a rotation itself costs)
- submit+follow     ``CeleryRotationQueue.submit`` then ``follow`` until the record ended, in this process,
                    next to a bare Celery round trip (``celery.accumulate``, send + result) of the same worker
- CLI --inline      ``rotation rotate c00 cm --inline`` as a new process, next to ``python -c pass`` and
                    ``rotation --help`` (the CLI's start-up alone)
- CLI queued        ``rotation rotate c00 cm`` as a new process (submit, follow, print)

Targets: --inline p50 <= 0.35 s, queued p50 <= 0.5 s.

--against TREE (another checkout, e.g. ``git worktree add /tmp/main main``): afterwards, ``rotate --inline``
from this checkout and from TREE, alternating run by run against the same cluster and worker (a shared
machine's load falls on both alike): p50 wall time and CPU time (user + system) of each.

Bytecode: the CLI runs from a bytecode cache of its own in the temporary folder (see
``benchmarks.localproc.run_from_bytecode``: PYTHONDONTWRITEBYTECODE=1 would recompile the checkout
on every run, which an installed package never does); ``--compile-each-run`` keeps the environment
as it is instead.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.localproc import run_from_bytecode, start_redis, wait_for  # noqa: E402
from benchmarks.mass_rotation import start_fleet  # noqa: E402
from rotation.adapters.secrets import SecretBox  # noqa: E402

CERTS = ("cm", "metrics_exporter")  # alternated: each rotation finds the previous one finished


def p50(run: Callable[[int], None], samples: int) -> float:
    times = []
    for number in range(samples):
        start = time.perf_counter()
        run(number)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(argv: list[str], trees: dict[str, Path], env: dict[str, str], samples: int) -> dict[str, float]:
    """ARGV run from each tree in turn (the order swapped every round): p50 wall and CPU seconds of each."""
    import resource

    wall: dict[str, list[float]] = {name: [] for name in trees}
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    for number in range(samples):
        order = list(trees) if number % 2 == 0 else list(reversed(trees))
        for name in order:
            args = [a.replace("{cert}", CERTS[number % 2]) for a in argv]
            before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            done = subprocess.run(args, cwd=trees[name], env=env, capture_output=True, timeout=120)
            wall[name].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if done.returncode:
                raise SystemExit(f"{name}: {' '.join(args)} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return {**{f"{name}_wall_p50_s": statistics.median(wall[name]) for name in trees},
            **{f"{name}_cpu_p50_s": statistics.median(cpu[name]) for name in trees}}


def command(argv: list[str], env: dict[str, str], expect: int = 0) -> Callable[[int], None]:
    def run(number: int) -> None:
        args = [a.replace("{cert}", CERTS[number % 2]) for a in argv]
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=120)
        if done.returncode != expect:
            raise SystemExit(f"{' '.join(args)} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--cli-samples", type=int, default=7)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--compile-each-run", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE as the environment has it (no bytecode cache)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--against", type=Path, help="another checkout: rotate --inline from both, alternating")
    args = parser.parse_args()
    # `rotation` as `python -m workers.main` (what the console script runs): this checkout's code, whichever
    # the virtualenv's editable install points at
    rotation_cli = [sys.executable, "-m", "workers.main"]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        redis_server = start_redis(directory)
        redis_port, redis_proc = redis_server.port, redis_server.process
        fleet = worker = None
        try:
            fleet, inventory_path = start_fleet(argparse.Namespace(clusters=1, nodes=args.nodes, delay=0.0),
                                                directory / "fleet")
            env = {"ROTATION_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "ROTATION_STORE": "redis",
                   "ROTATION_SECRET_KEY": SecretBox.generate_key(), "ROTATION_CONFIG": str(inventory_path),
                   "ROTATION_STATE_DIR": str(directory / "state")}
            os.environ.update(env)
            log = open(directory / "worker.log", "wb")  # noqa: SIM115
            worker = subprocess.Popen([sys.executable, "-m", "workers.main", "worker", "--no-supervise",
                                       "--concurrency", "2", "--log-level", "WARNING"],
                                      cwd=ROOT, env=dict(os.environ), stdout=log, stderr=log)
            from rotation.core.model import Outcome, new_rotation_id
            from rotation.usecases.context import ServiceContext
            from rotation.usecases.queue import follow
            from rotation.usecases.rotate.record import rotate_and_record
            from rotation.usecases.rotate.run import RotationOptions
            from workers.celery_app import app_for
            from workers.queue import CeleryRotationQueue

            ctx = ServiceContext()
            app = app_for(ctx.settings)
            wait_for(lambda: app.control.ping(timeout=0.5), 60, what="the worker")
            queue = CeleryRotationQueue(ctx)

            def celery_round_trip(_: int) -> None:
                app.send_task("celery.accumulate", args=(1,)).get(timeout=30)

            def submit_and_follow(number: int) -> None:
                (record,) = follow(ctx.state, queue, [queue.submit("c00", CERTS[number % 2])])
                assert record.outcome is Outcome.VERIFIED, record.error

            def pipeline(number: int) -> None:
                options = RotationOptions(rotation_id=new_rotation_id())
                record = rotate_and_record(ctx, "c00", CERTS[number % 2], options).record
                assert record.outcome is Outcome.VERIFIED, record.error

            for warm in (celery_round_trip, submit_and_follow, pipeline):
                warm(0)
                warm(1)
            cli_env = dict(os.environ)
            if not args.compile_each_run:
                cli_env = run_from_bytecode(cli_env, directory / "pycache")
            for argv in ([*rotation_cli, "--help"], [*rotation_cli, "rotate", "c00", "{cert}", "--inline"],
                         [*rotation_cli, "rotate", "c00", "{cert}"]):
                command(argv, cli_env)(0)  # warm: fills the bytecode cache (and the page cache)
            result = {
                "pipeline_p50_s": p50(pipeline, args.samples),
                "celery_round_trip_p50_s": p50(celery_round_trip, args.samples),
                "submit_follow_p50_s": p50(submit_and_follow, args.samples),
                "python_c_pass_p50_s": p50(command([sys.executable, "-c", "pass"], cli_env), args.cli_samples),
                "cli_help_p50_s": p50(command([*rotation_cli, "--help"], cli_env), args.cli_samples),
                "cli_inline_p50_s": p50(command([*rotation_cli, "rotate", "c00", "{cert}", "--inline"], cli_env),
                                        args.cli_samples),
                "cli_queued_p50_s": p50(command([*rotation_cli, "rotate", "c00", "{cert}"], cli_env),
                                        args.cli_samples),
            }
            if args.against:
                inline = [*rotation_cli, "rotate", "c00", "{cert}", "--inline"]
                trees = {"this": ROOT, "against": args.against.resolve()}
                interleaved(inline, trees, cli_env, 2)  # warm: the other tree's bytecode cache
                result.update({f"ab_{k}": v for k, v in interleaved(inline, trees, cli_env, args.cli_samples).items()})
        finally:
            for proc in (worker, fleet, redis_proc):
                if proc is not None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (worker, fleet, redis_proc):
                if proc is not None:
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    result = {k: round(v, 3) for k, v in result.items()}
    result["submit_follow_vs_celery_round_trip"] = round(result["submit_follow_p50_s"]
                                                         / result["celery_round_trip_p50_s"], 2)
    result["cli_inline_vs_python_c_pass"] = round(result["cli_inline_p50_s"] / result["python_c_pass_p50_s"], 1)
    result["cli_queued_vs_python_c_pass"] = round(result["cli_queued_p50_s"] / result["python_c_pass_p50_s"], 1)
    if args.against:
        for key in ("wall", "cpu"):
            result[f"ab_{key}_this_vs_against"] = round(result[f"ab_this_{key}_p50_s"]
                                                        / result[f"ab_against_{key}_p50_s"], 3)
    bytecode = "compiled from source each run" if args.compile_each_run else "bytecode cached"
    if args.json:
        print(json.dumps({**result, "cpus": os.cpu_count(), "bytecode_cache": not args.compile_each_run}, indent=2))
        return
    print(f"rotation request to exit ({args.nodes}-node simulated cluster, one worker, {os.cpu_count()} CPU(s)); "
          f"p50 of {args.samples} (in process) / {args.cli_samples} (CLI) runs; CLI {bytecode}")
    print(f"  pipeline alone (in process)    {result['pipeline_p50_s']:.3f} s")
    print(f"  submit + follow (in process)   {result['submit_follow_p50_s']:.3f} s   bare Celery round trip "
          f"{result['celery_round_trip_p50_s']:.3f} s  ratio {result['submit_follow_vs_celery_round_trip']}x")
    print(f"  python -c pass                 {result['python_c_pass_p50_s']:.3f} s   rotation --help "
          f"{result['cli_help_p50_s']:.3f} s (start-up alone)")
    for name, target in (("inline", 0.35), ("queued", 0.5)):
        value = result[f"cli_{name}_p50_s"]
        print(f"  rotation rotate ({name:6})       {value:.3f} s   {result[f'cli_{name}_vs_python_c_pass']}x "
              f"python -c pass; {value - result['cli_help_p50_s']:+.3f} s over --help; target <= {target} s "
              f"{'met' if value <= target else 'NOT met'}")
    if args.against:
        print(f"  rotate --inline, alternating with {args.against} ({args.cli_samples} runs each):")
        for key, label in (("wall", "wall"), ("cpu", "CPU (user + system)")):
            print(f"    {label:20} this {result[f'ab_this_{key}_p50_s']:.3f} s   against "
                  f"{result[f'ab_against_{key}_p50_s']:.3f} s   ratio {result[f'ab_{key}_this_vs_against']}")


if __name__ == "__main__":
    main()
