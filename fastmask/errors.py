"""Bad input ends in exit status 2 and one line naming the file or field; nothing else does."""
import argparse
import errno
import functools
import os
import sys


class FastmaskError(Exception):
    """Bad input a user can fix: the message names the file or field at fault."""


class StopNow(KeyboardInterrupt):
    """A second Ctrl-C or SIGTERM: the user will not wait for the first one's cleanup. Whatever is in flight
    is dropped; only the run's status is still written (it is a KeyboardInterrupt, so every handler of one
    that writes the status sees it)."""


class Parser(argparse.ArgumentParser):
    """argparse for the commands: a usage error is a FastmaskError naming the command, so `cli` prints it as
    one line and exits 2 (argparse would print the whole usage above it)."""
    def error(self, message):
        raise FastmaskError(f"{self.prog}: {message}")


def cli(main):
    """Wrap a `python -m` entry point: FastmaskError -> one line on stderr and exit 2.

    `--debug` on the command line (or FASTMASK_DEBUG=1) lets the traceback through."""
    @functools.wraps(main)
    def wrapper(argv=None):
        argv = sys.argv[1:] if argv is None else list(argv)
        debug = "--debug" in argv or os.environ.get("FASTMASK_DEBUG") == "1"
        argv = [a for a in argv if a != "--debug"]
        if not debug:
            quiet_warnings()
        try:
            return main(argv)
        except FastmaskError as e:
            if debug:
                raise
            print(f"fastmask: error: {e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:
            # A full or read-only disk is the user's to fix too; anything else stays a real bug.
            if debug or e.errno not in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EISDIR):
                raise
            print(f"fastmask: error: {e.filename or 'writing'}: {e.strerror}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            if debug:
                raise
            print("fastmask: interrupted", file=sys.stderr)
            sys.exit(130)
    return wrapper


def quiet_warnings():
    """Library deprecation chatter off; our own warnings as one 'fastmask: warning:' line each."""
    import warnings
    for cat in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=cat)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"fastmask: warning: {msg}\n"
