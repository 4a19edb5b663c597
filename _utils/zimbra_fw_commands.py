"""
What every firewall backend needs to run things: a command checked for its
exit code, a file written atomically, a directory only root may enter (for
locks and records), the Python a firewall's own program runs with (its
helpers run with that Python, where the firewall's library is), and the
error raised when applying a plan fails half-way. Also the pause of
Python's cycle collector while a run computes (process-wide, so it lives
here, imported once, not in a Salt module the loader may load more than
once).
"""

import contextlib
import contextvars
import gc
import json
import os
import secrets
import stat
import threading

import salt.utils.path
from salt.exceptions import CommandExecutionError


def __virtual__():
    return (False, "zimbra_fw_commands is a library of the zimbra_fw module, not a Salt util")


_PAUSE_LOCK = threading.Lock()
_pause = {"count": 0, "was_enabled": False}  # blocks paused now; was the collector on before the first


@contextlib.contextmanager
def collector_paused():
    """Python's cycle collector off while the block runs. Blocks may overlap
    (threaded Salt jobs): it is back on when the last of them ends, if it was
    on when the first began. For work that makes many small objects and no
    cycles, in a process whose large heap (Salt's) makes one full collection
    cost more than the work."""
    with _PAUSE_LOCK:
        if _pause["count"] == 0:
            _pause["was_enabled"] = gc.isenabled()
            gc.disable()
        _pause["count"] += 1
    try:
        yield
    finally:
        with _PAUSE_LOCK:
            _pause["count"] -= 1
            if _pause["count"] == 0 and _pause["was_enabled"]:
                gc.enable()


@contextlib.contextmanager
def in_background(function, *args):
    """Run ``function(*args)`` in a thread while the block runs; the block
    gets a callable that waits for it and returns its result (or raises its
    error). When both fail, the thread's error is raised (from the block's):
    it is the one a caller running them in turn would have met first. The
    thread runs in a copy of this context, so Salt's dunders stay reachable
    from it. For a command whose wait can overlap work of ours."""
    outcome = {}

    def target():
        try:
            outcome["result"] = function(*args)
        except BaseException as exc:  # pylint: disable=broad-except  # handed to the waiter
            outcome["error"] = exc

    thread = threading.Thread(target=contextvars.copy_context().run, args=(target,), daemon=True)
    thread.start()

    def result():
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    try:
        yield result
    except BaseException as exc:
        thread.join()
        if outcome.get("error") not in (None, exc):
            raise outcome["error"] from exc
        raise
    thread.join()


class ApplyFailed(CommandExecutionError):
    """A step failed; ``info`` has the failed step and the steps applied before it."""

    @classmethod
    def at(cls, failed, error, applied):
        """The error for step ``failed`` (its description), after ``applied``."""
        return cls(
            f"step '{failed}' failed: {error}. Already applied: {'; '.join(applied) or 'nothing'}",
            info={"applied": applied, "failed": failed},
        )


class FirewallStopped(CommandExecutionError):
    """The firewall's daemon does not run: there is nothing to read from it."""


def checked(run, argv, succeeded=(0,)):
    """Run ``argv``; its exit code, or an error naming the command and what it said."""
    return _checked_run(run, argv, succeeded)[0]


def checked_output(run, argv):
    """Run ``argv``; what it printed, or the error ``checked`` raises."""
    return _checked_run(run, argv, (0,))[1]


def _checked_run(run, argv, succeeded):
    retcode, stdout, stderr = run(argv)
    if retcode not in succeeded:
        message = (stderr or stdout or "").strip()
        raise CommandExecutionError(f"'{' '.join(argv)}' failed (exit {retcode}): {message}")
    return retcode, stdout


def private_directory(directory):
    """``directory``, created if missing; refuses one that is not a real
    directory of ours (a symlink, a file, another owner's) and makes ours 0700."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    found = os.lstat(directory)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
        raise RuntimeError(f"{directory} is not a directory owned by uid {os.geteuid()}: remove it")
    if stat.S_IMODE(found.st_mode) != 0o700:
        os.chmod(directory, 0o700)


def write_atomic(path, data, mode=0o644, check=None):
    """Write ``data`` (text or bytes) to ``path`` through a new hidden file
    beside it (ufw's applications.d and nft's include globs skip dot-files),
    checked by ``check(temp path)`` when given, then renamed over ``path``."""
    temp = os.path.join(os.path.dirname(path), f".zimbra_fw-{secrets.token_hex(6)}")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        if check is not None:
            check(temp)
        os.replace(temp, path)
    except BaseException:
        if os.path.lexists(temp):
            os.unlink(temp)
        raise


def program_python(path):
    """The Python that runs the program at ``path`` (its #! line), or None."""
    try:
        with open(path, "rb") as handle:
            first_line = handle.readline(200).decode("utf-8", "replace")
    except (OSError, TypeError):
        return None
    words = first_line[2:].split() if first_line.startswith("#!") else []
    if words and os.path.basename(words[0]) == "env" and len(words) > 1:
        words = [salt.utils.path.which(words[1]) or ""]
    if words and os.path.basename(words[0]).startswith("python") and os.access(words[0], os.X_OK):
        return words[0]
    return None


def helper_outcome(reports, total, retcode, stderr):
    """(number of steps applied, error or None) from what a helper script
    (ufw's batch) reported: ``{"done": i}`` per step,
    ``{"failed": i, "error": ...}`` at the first failure."""
    applied, error = 0, None
    for fields in reports:
        if "done" in fields:
            applied = max(applied, fields["done"] + 1)
        if "failed" in fields:
            applied, error = fields["failed"], fields["error"]
    if applied == total:
        return applied, None
    return applied, error or f"exit {retcode}: {(stderr or '').strip()}"


def json_lines(text):
    """The JSON objects a helper script printed, one a line (others skipped)."""
    found = []
    for line in text.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found
