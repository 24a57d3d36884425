"""CLI start-up: `rotation --help` and `rotation check` of one 3-node simulated cluster, against
`python -c pass` with the same interpreter, in the same run.

    .venv/bin/python benchmarks/cli_start.py [--runs 15] [--tree DIR] [--json]

One simulated cluster (3 nodes, two TLS databases, no artificial delay) runs in a subprocess
(benchmarks/fleet.py, loopback only). Each command is run --runs times, interleaved (pass, help,
check, pass, help, check, ...) so that a burst of load elsewhere hits all three alike; prints the
p50 wall time of each, its ratio to `python -c pass`, and how many modules each command path
imports. Targets: `--help` <= 0.25 s, `check` <= 0.4 s. ``--tree DIR`` runs the `rotation`
console script and Python of another checkout (DIR/.venv, e.g. /work/main for the before figure)
against the same simulated cluster.

Bytecode: an installed package runs from compiled bytecode (pip compiles it). A session that sets
PYTHONDONTWRITEBYTECODE=1 would make every run compile the checkout's own modules from source
(about 60 ms of `check` here), so the commands run with a bytecode cache of their own in the
temporary folder (``benchmarks.localproc.run_from_bytecode``: PYTHONPYCACHEPREFIX, filled by the
warm-up runs; no checkout is written to). ``--compile-each-run`` keeps the environment as it is instead.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.localproc import run_from_bytecode, start_fleet  # noqa: E402

TARGETS = {"help": 0.25, "check": 0.4}

# How many modules a command path has loaded when it is done, in the tree's own interpreter.
_COUNT_MODULES = """
import atexit, sys
atexit.register(lambda: sys.stderr.write(f"\\nMODULES {len(sys.modules)}\\n"))
sys.argv = ["rotation", *sys.argv[1:]]
try:
    from workers.main import main
except ImportError:  # a checkout from before workers.main.main
    from workers.main import app as main
main()
"""


def wall(cmd: list[str], env: dict[str, str], expect: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode not in expect:
        raise SystemExit(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.decode()[-2000:]}")
    return elapsed


def module_count(python: str, args: list[str], env: dict[str, str], tree: Path) -> int | None:
    """Modules in sys.modules at the exit of `rotation ARGS`."""
    result = subprocess.run([python, "-c", _COUNT_MODULES, *args], env=env, cwd=tree, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, check=False)
    counts = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("MODULES ")]
    return int(counts[-1]) if counts else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout whose .venv/bin/rotation is measured")
    parser.add_argument("--compile-each-run", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE as the environment has it (no bytecode cache)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tree = args.tree.resolve()
    python, rotation = str(tree / ".venv/bin/python"), str(tree / ".venv/bin/rotation")

    work = Path(tempfile.mkdtemp(prefix="rotation-cli-start-"))
    env = {**os.environ, "ROTATION_STORE": "local", "ROTATION_STATE_DIR": str(work / "state"),
           "ROTATION_CONFIG": str(work / "rotation.yaml")}
    env.pop("COLUMNS", None)
    if not args.compile_each_run:
        env = run_from_bytecode(env, work / "pycache")
    fleet = start_fleet(work, clusters=1, nodes=3, delay=0, log=work / "fleet.log", timeout=60)
    try:
        commands = {
            "pass": [python, "-c", "pass"],
            "help": [rotation, "--help"],
            "check": [rotation, "check"],
        }
        for _ in range(2):  # warm the page cache and the bytecode cache
            for cmd in commands.values():
                wall(cmd, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                times[name].append(wall(cmd, env))
        modules = {name: module_count(python, argv, env, tree)
                   for name, argv in (("help", ["--help"]), ("check", ["check"]))}
    finally:
        os.killpg(fleet.pid, signal.SIGTERM)
        fleet.wait(30)

    p50 = {name: statistics.median(values) for name, values in times.items()}
    result = {"tree": str(tree), "runs": args.runs, "bytecode_cache": not args.compile_each_run,
              "p50_s": {k: round(v, 4) for k, v in p50.items()},
              "ratio_to_python": {k: round(p50[k] / p50["pass"], 2) for k in ("help", "check")},
              "modules": modules,
              "targets_s": TARGETS,
              "met": {k: p50[k] <= TARGETS[k] for k in TARGETS}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{tree}: {args.runs} runs each, interleaved; one simulated cluster, 3 nodes, no delay; "
          f"{'compiled from source each run' if args.compile_each_run else 'bytecode cached'}")
    print(f"  python -c pass   : p50 {p50['pass'] * 1000:6.0f} ms")
    for name, label in (("help", "rotation --help "), ("check", "rotation check  ")):
        count = modules[name]
        print(f"  {label} : p50 {p50[name] * 1000:6.0f} ms  {p50[name] / p50['pass']:5.1f}x python -c pass  "
              f"{'?' if count is None else count} modules  (target <= {TARGETS[name] * 1000:.0f} ms: "
              f"{'met' if result['met'][name] else 'NOT met'})")


if __name__ == "__main__":
    main()
