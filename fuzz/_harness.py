"""Shared runner of the atheris harnesses: ``python fuzz/fuzz_x.py [libFuzzer options]``.

Each harness feeds arbitrary bytes to one parser of outside input and lets only that parser's
own errors pass: any other exception is a crash that libFuzzer reports with the input that
caused it (``fuzz/crashes/``). ``make fuzz FUZZ_SECONDS=60`` runs every harness that long.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(test_one_input: Callable[[bytes], None]) -> None:
    crashes = ROOT / "fuzz" / "crashes"
    crashes.mkdir(exist_ok=True)
    atheris.Setup([*sys.argv, f"-artifact_prefix={crashes}/"], test_one_input)
    atheris.Fuzz()
