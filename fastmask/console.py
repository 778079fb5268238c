"""How the commands talk on the console. Progress: fastai's bars in a terminal or a notebook ("bars"), one
plain line per epoch when stdout is a pipe or a file ("lines": `fastmask run ... | tee log` stays readable),
or nothing but warnings, errors and the final headline ("quiet": `--quiet`, or FASTMASK_QUIET=1). Figures
are printed to 4 decimals. A command's usage line names it as it was called: `fastmask run` under the
`fastmask` command, `python -m fastmask.run` otherwise.

Vocabulary: the standard library only, so every layer can read it."""
import contextlib
import numbers
import os
import shlex
import sys

BARS, LINES, QUIET = "bars", "lines", "quiet"
MODES = (BARS, LINES, QUIET)
ENV_QUIET = "FASTMASK_QUIET"
PLACES = 4
_ON = ("1", "true", "yes", "on")

_mode = None  # set by a command for its duration (using); None: from FASTMASK_QUIET and stdout
_via = None   # "fastmask" while the `fastmask` command runs one of its commands (dispatched)


def mode():
    """"bars", "lines" or "quiet": what a command asked for, else FASTMASK_QUIET, else bars on a terminal
    (or in a notebook) and lines anywhere else."""
    if _mode is not None:
        return _mode
    if os.environ.get(ENV_QUIET, "").strip().lower() in _ON:
        return QUIET
    return BARS if interactive() else LINES


def interactive(stream=None):
    """A terminal or a notebook: where progress bars redraw in place (a notebook's stdout is no tty)."""
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextlib.contextmanager
def using(new):
    """Console mode `new` for the with-block (None: leave it as it is); yields the mode in force."""
    global _mode
    if new is not None and new not in MODES:
        raise ValueError(f"console mode {new!r}: expected one of {', '.join(MODES)}")
    old = _mode
    _mode = new if new is not None else old
    try:
        yield mode()
    finally:
        _mode = old


def quiet():
    return mode() == QUIET


def figure(x, places=PLACES):
    """A logged value as printed: a float to `places` decimals; an int, a time or any text as it is."""
    if isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral):
        return f"{float(x):.{places}f}"
    return str(x)


def line_buffered(stream=None):
    """Each printed line out at once, also into a pipe (`| tee log` follows the run as it goes)."""
    stream = sys.stdout if stream is None else stream
    try:
        stream.reconfigure(line_buffering=True)
    except (AttributeError, ValueError, OSError):
        pass


@contextlib.contextmanager
def dispatched(via="fastmask"):
    """Commands run under the `fastmask` command (`via`) name themselves `fastmask COMMAND` in --help."""
    global _via
    old, _via = _via, via
    try:
        yield
    finally:
        _via = old


def prog(command):
    """argparse's prog for `command` ("run", "mlflow-sync"): as the user called it."""
    if _via:
        return f"{_via} {command}"
    return f"python -m fastmask.{command.replace('-', '_')}"


def command_line(*args, module="fastmask"):
    """A command for a user to paste, as one shell line: the interpreter running now (`python -m fastmask ...`
    by its full path, so it runs with the venv not activated), then `args`, each quoted for the shell. Paths
    in `args` should be absolute, so the line does the same from any folder."""
    return shlex.join([sys.executable, "-m", module, *map(str, args)])
