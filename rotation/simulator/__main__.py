"""``python -m rotation.simulator``: the ``rotation simulator`` command on its own."""

import typer

from .command import simulator

if __name__ == "__main__":
    typer.run(simulator)
