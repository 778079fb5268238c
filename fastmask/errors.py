"""Bad input ends in exit status 2 and one line naming the file or field; nothing else does."""
import argparse
import errno
import functools
import os
import sys


class FastmaskError(Exception):
    """Bad input a user can fix: the message names the file or field at fault."""


def one_line(exc, named=True, limit=None):
    """What `exc` says, as one line of a message: the first line of its text, after its type's name when
    `named` ("OSError: ..."; the type tells what a bare library message means). Unnamed, an exception that
    says nothing gives its type's name instead. Cut at `limit` characters when given."""
    text = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {text}" if named else text or type(exc).__name__
    return text[:limit] if limit else text


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
        hook = sys.unraisablehook
        if hook is not _unraisable:  # (a command the `fastmask` command dispatches is wrapped twice)
            _fallback[:] = [hook]
            sys.unraisablehook = _unraisable
        try:
            return main(argv)
        except FastmaskError as e:
            if debug:
                raise
            say(f"fastmask: error: {e}")
            sys.exit(2)
        except OSError as e:
            # A full or read-only disk is the user's to fix too; anything else stays a real bug.
            if debug or e.errno not in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EISDIR,
                                        errno.EFBIG):  # EFBIG: past the file-size limit (ulimit -f)
                raise
            say(f"fastmask: error: {e.filename or 'writing'}: {e.strerror}")
            sys.exit(2)
        except KeyboardInterrupt:
            if debug:
                raise
            say("fastmask: interrupted")
            sys.exit(130)
        finally:
            sys.unraisablehook = hook
            for t in _timers:  # the command ended before the interrupt came back: nothing left to stop
                t.cancel()
            _timers.clear()
            _lost.clear()
    return wrapper


def say(line):
    """The command's last line on stderr, said once: under torchrun or accelerate launch every rank (RANK) meets
    the same bad value or Ctrl-C; rank 0 alone says it (each still exits with the status). The others wait a
    moment first: the launcher stops every rank as soon as one exits, and rank 0 must have said it by then."""
    if (os.environ.get("RANK") or "0").strip() in ("", "0"):
        print(line, file=sys.stderr, flush=True)
    else:
        import time
        time.sleep(RANK_WAIT_S)


RANK_WAIT_S = 2.0


_lost = []  # the KeyboardInterrupt a finalizer swallowed, until its re-delivery raises it again
_fallback = [sys.unraisablehook]  # the hook for everything else
_timers = []  # the re-deliveries not sent yet


def _unraisable(u):
    """sys.unraisablehook while a command runs. A signal handler's KeyboardInterrupt (Ctrl-C, SIGTERM) that
    lands while a finalizer runs (a weakref callback, a __del__, a generator closed by the garbage collector)
    is dropped by Python with "Exception ignored in ... KeyboardInterrupt" on stderr, and the interrupt is
    lost. Instead it is kept and its signal sent again a moment later (from a timer thread), which ends the
    command as the signal meant to; `redelivered` hands the handler the one that was lost."""
    import signal
    import threading
    if isinstance(u.exc_value, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
        # to a signal Python handles: SIGTERM's handler where a command set one (SIGINT is ignored in a
        # process a shell started in the background)
        to = next((s for s in (signal.SIGTERM, signal.SIGINT) if callable(signal.getsignal(s))), None)
        if to is not None:
            _lost.append(u.exc_value)
            # from another thread, a moment later: sent from here, the handler would run inside this hook (or the
            # finalizer) again; a real signal also wakes a main thread that sleeps
            timer = threading.Timer(REDELIVER_S, os.kill, (os.getpid(), to))
            _timers.append(timer)
            timer.start()
            return
    _fallback[0](u)


REDELIVER_S = 0.02  # long enough for the finalizer to return: one landing in another finalizer is sent again


def redelivered():
    """In a SIGINT or SIGTERM handler: the KeyboardInterrupt a finalizer swallowed, when this call is its
    re-delivery (not a new signal from the user), else None."""
    return _lost.pop() if _lost else None


def quiet_warnings():
    """Library deprecation chatter off; our own warnings as one 'fastmask: warning:' line each."""
    import warnings
    for cat in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=cat)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"fastmask: warning: {msg}\n"
