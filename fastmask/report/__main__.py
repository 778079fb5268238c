"""`python -m fastmask.report`: the `fastmask report` command (fastmask/study.py), as every command also runs
as `python -m fastmask.<command>`; the package itself is the report layer, so its entry point lives there."""
import sys

from fastmask.errors import cli
from fastmask.study import main

if __name__ == "__main__":
    sys.exit(cli(main)())
