"""Files written whole or not at all, and whether a process still lives: what the run folder, the image
cache and the model files all need, kept on the ground floor because `data/` may not import `runs/`.

Vocabulary: the standard library only, so every layer can read it."""
import contextlib
import getpass
import os
import socket
import tempfile
from pathlib import Path


def _read_umask():
    """The process umask, read without changing it where Linux allows (/proc), since os.umask can only
    be read by setting it, and another thread creating a file meanwhile would get the wrong mode."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


FILE_MODE = 0o666 & ~_read_umask()  # what open() would give; mkstemp alone gives 0600


@contextlib.contextmanager
def replacing(path, tmp):
    """Write `tmp` in the with-block; it is renamed over `path` when the block ends, and removed when
    anything (Ctrl-C, a full disk) ends it early, so `path` holds the old file or the whole new one."""
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_dir():
    """Where fastmask keeps what it derives from the images (the input cache, face boxes): FASTMASK_CACHE,
    else ~/.cache/fastmask."""
    return Path(os.environ.get("FASTMASK_CACHE", Path.home() / ".cache" / "fastmask"))


def atomic_write(path, data, mode="w"):
    """Write to a temp file beside `path` and rename, so a crash never leaves half a file under its name.
    The file gets the mode open() would give it, so teammates can read a shared runs folder."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with replacing(path, tmp):
        if hasattr(os, "fchmod"):
            os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode) as f:
            f.write(data)


def pid_alive(pid):
    """True/False when this host can tell whether process `pid` lives; None when it cannot."""
    if os.name != "posix" or isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None  # on Windows os.kill(pid, 0) would terminate the process, not probe it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return None
    return not _zombie(pid)


def _zombie(pid):
    # A killed process whose parent has not reaped it still answers kill(pid, 0).
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] == "Z"
    except (OSError, ValueError, IndexError):
        return False


def signature():
    """Who and where, for a record a team shares: the user (as the OS knows them, else $USER) and the host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        user = os.environ.get("USER") or "unknown"
    return {"user": user, "host": socket.gethostname()}
