"""``python -m narrowgate.grid CONFIG --output DIR``: the grid without the ``narrowgate`` entry point, for
``torchrun --nproc_per_node N -m narrowgate.grid ...``."""

import argparse
import sys

from narrowgate.core.interrupt import run_command
from narrowgate.grid.cli import configure, run

parser = argparse.ArgumentParser(prog="python -m narrowgate.grid", description=__doc__)
configure(parser)
sys.exit(run_command("narrowgate grid", run, parser.parse_args()))
