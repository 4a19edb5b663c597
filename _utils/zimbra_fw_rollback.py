"""
Commit-confirmed changes: a run with ``zimbra_fw:confirm: SECONDS`` saves the
firewall before it changes anything and arms a rollback that puts the saved
firewall back after SECONDS, unless ``zimbra_fw.confirm`` comes first.

What is saved and how it is put back is each backend's (``save(run,
config)`` and ``restore(saved, run)``); this module keeps the bookkeeping, in
``DIRECTORY``, which only root can enter (0700; files 0600, opened without
following links): ``pending.json`` (the pending rollback: its token, due
time, backend and zone, how it is armed), ``saved.json`` (the saved
firewall) and ``rollback.lock`` (held by whoever arms, reads or ends a
pending rollback, and by a run applying the changes it armed one for).

The rollback itself is this file run as a script::

    PYTHON -I zimbra_fw_rollback.py TOKEN            # by a systemd timer, when due
    PYTHON -I zimbra_fw_rollback.py --detach TOKEN   # no systemd: waits, detached

It rolls back only while ``pending.json`` still holds TOKEN (a later run with
confirm re-arms with a new token; ``zimbra_fw.confirm`` removes the record).
It logs to the minion's log file. If putting the firewall back fails, the
saved copy is kept (``saved-failed-TOKEN.json``) and ``failed.json`` says
where it is and why.
"""

import base64
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import stat
import sys
import time

if __name__ == "__main__":  # run as a script: the core's other modules are beside this one
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import zimbra_fw_backend
from zimbra_fw_commands import private_directory, write_atomic


def __virtual__():
    return (False, "zimbra_fw_rollback is a library of the zimbra_fw module, not a Salt util")


DIRECTORY = "/run/zimbra_fw"
PENDING = os.path.join(DIRECTORY, "pending.json")
SAVED = os.path.join(DIRECTORY, "saved.json")
FAILED = os.path.join(DIRECTORY, "failed.json")
LOCK = os.path.join(DIRECTORY, "rollback.lock")
SCRIPT = os.path.abspath(__file__)
UNIT_PREFIX = "zimbra_fw-rollback-"
TOKEN_RE = re.compile(r"[0-9a-f]{16}")  # secrets.token_hex(8): it names a systemd unit
RECORD_KEYS = ("token", "due", "seconds", "backend", "unit", "log_file")
# The minion's log format (Salt's log_fmt_logfile).
LOG_FORMAT = "%(asctime)s [%(name)-17s:%(lineno)-4d][%(levelname)-8s][%(process)d] %(message)s"
log = logging.getLogger("salt.loaded.ext.utils.zimbra_fw_rollback")


# ---------------------------------------------------------------- files, as backends save them


def save_files(paths):
    """``{path: {"data": base64, "mode": mode} or None (absent)}``: the files'
    exact bytes, for ``restore_files``."""
    saved = {}
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
                mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        except FileNotFoundError:
            saved[path] = None
            continue
        saved[path] = {"data": base64.b64encode(data).decode("ascii"), "mode": mode}
    return saved


def restore_files(saved):
    """Put back each file ``save_files`` saved, byte for byte, each replaced
    atomically; remove those that were absent. Returns the paths changed."""
    changed = []
    for path, kept in saved.items():
        if kept is None:
            if os.path.lexists(path):
                os.unlink(path)
                changed.append(path)
            continue
        data = base64.b64decode(kept["data"])
        if _same_file(path, data, kept["mode"]):
            continue
        write_atomic(path, data, kept["mode"])
        changed.append(path)
    return changed


def _same_file(path, data, mode):
    try:
        with open(path, "rb") as handle:
            return handle.read() == data and stat.S_IMODE(os.fstat(handle.fileno()).st_mode) == mode
    except OSError:
        return False


# ---------------------------------------------------------------- the record (pure parts)


def parse_record(text):
    """The pending record from ``pending.json``'s text, or None when it is not one."""
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or any(key not in record for key in RECORD_KEYS):
        return None
    token, due = record["token"], record["due"]
    valid = (
        isinstance(token, str)
        and TOKEN_RE.fullmatch(token)
        and isinstance(due, (int, float))
        and not isinstance(due, bool)
        and isinstance(record["backend"], str)
        and record["backend"] in zimbra_fw_backend.REGISTRY
        and record["unit"] in (None, f"{UNIT_PREFIX}{token}")  # handed to systemctl
        and isinstance(record["log_file"], (str, type(None)))
        and isinstance(record.get("scope"), (str, type(None)))
    )
    return record if valid else None


def due_text(due, now):
    """'2026-12-06 10:31:07 UTC (in 120 s)' for a rollback due at ``due`` (epoch seconds)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(due))
    left = round(due - now)
    return f"{when} (in {left} s)" if left >= 0 else f"{when} ({-left} s ago)"


def arm_argv(python, token, seconds, systemd):
    """The command that arms the rollback: a transient systemd timer, or this
    script detached (it waits until the rollback is due)."""
    script = [python, "-I", SCRIPT]
    if not systemd:
        return [*script, "--detach", token]
    return [
        "systemd-run",
        "--quiet",
        f"--unit={UNIT_PREFIX}{token}",
        "--description=zimbra_fw: put the saved firewall back unless zimbra_fw.confirm is called",
        f"--on-active={seconds}s",
        "--timer-property=AccuracySec=100ms",
        "--",
        *script,
        token,
    ]


# ---------------------------------------------------------------- the record (on disk)


def _directory():
    private_directory(DIRECTORY)
    return DIRECTORY


def _read(path):
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with os.fdopen(descriptor, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _write_json(path, value):
    write_atomic(path, json.dumps(value).encode("utf-8"), 0o600)


class _Locked:
    """``rollback.lock``, held: one reader or ender of the pending rollback at a time."""

    def __enter__(self):
        _directory()
        descriptor = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self.handle = os.fdopen(descriptor)
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.handle.close()


def _present():
    """Is there bookkeeping? Only in the root-only directory: a symlink or
    another owner's directory in its place is refused (RuntimeError)."""
    if not os.path.lexists(DIRECTORY):
        return False
    _directory()
    return True


def pending():
    """The pending rollback's record, or None."""
    text = _read(PENDING) if _present() else None
    return None if text is None else parse_record(text)


def failed():
    """What the last rollback that failed left (``{"error", "saved", "due"}``), or None."""
    text = _read(FAILED) if _present() else None
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


class Refused(RuntimeError):
    """The rollback cannot be armed as asked: nothing was written."""


class NoLongerPending(RuntimeError):
    """The rollback a run armed is not pending any more."""


def arm(run, backend, save, seconds, *, systemd, log_file=None, scope=None):
    """Arm a rollback due in ``seconds``, under the lock: with no rollback
    pending, keep what ``save()`` returns (the backend's ``save``); with one
    pending, keep its older copy, which must be of the same ``backend`` and
    ``scope`` (firewalld's zone). Returns the record. If the rollback cannot
    be armed, the files are as they were: a pending rollback stays pending."""
    token = secrets.token_hex(8)
    record = {
        "token": token,
        "due": time.time() + seconds,
        "seconds": seconds,
        "backend": backend,
        "unit": f"{UNIT_PREFIX}{token}" if systemd else None,
        "log_file": log_file if isinstance(log_file, str) and log_file.startswith("/") else None,
        "scope": scope,
    }
    with _Locked():
        previous_text = _read(PENDING)
        previous = None if previous_text is None else parse_record(previous_text)
        if previous is not None and (previous["backend"], previous.get("scope")) != (backend, scope):
            raise Refused(
                f"a rollback of {_what(previous['backend'], previous.get('scope'))} is pending, and this run is "
                f"for {_what(backend, scope)}: confirm the last change first (zimbra_fw.confirm)"
            )
        if previous is None:
            saved = save()
            if saved is None:
                raise Refused(f"the {backend} firewall could not be saved")
            _write_json(SAVED, {"backend": backend, "scope": scope, "firewall": saved})
        _write_json(PENDING, record)
        retcode, stdout, stderr = run(arm_argv(sys.executable, token, seconds, systemd))
        if retcode != 0:  # no rollback will come: the files must say what is pending as before
            if previous is None:
                os.unlink(PENDING)
                os.unlink(SAVED)
            else:
                write_atomic(PENDING, previous_text.encode("utf-8"), 0o600)
            raise RuntimeError(f"arming the rollback failed (exit {retcode}): {(stderr or stdout).strip()}")
        if previous is not None and previous.get("unit"):
            run(["systemctl", "stop", f"{previous['unit']}.timer"])  # the new timer replaces it
    return record


def _what(backend, scope):
    return backend if scope is None else f"{backend} zone {scope!r}"


@contextlib.contextmanager
def held(token):
    """Hold the lock while a run that armed the rollback ``token`` applies
    its changes: the rollback waits for them to end rather than put the
    firewall back in between. Raises RuntimeError when ``token`` is no longer
    the pending rollback (it came due, or was confirmed, between two parts of
    the run). ``token`` None: nothing is held."""
    if token is None:
        yield
        return
    with _Locked():
        record = pending()
        if record is None or record["token"] != token:
            raise NoLongerPending(
                "the rollback this run armed is no longer pending (it came due and put the saved firewall back, "
                "or zimbra_fw.confirm was called): the rest of this run is not applied"
            )
        yield


def confirm(run):
    """End the pending rollback: (record ended or None)."""
    with _Locked():
        record = pending()
        if record is None:
            return None
        os.unlink(PENDING)
        if os.path.exists(SAVED):
            os.unlink(SAVED)
        if record.get("unit"):
            run(["systemctl", "stop", f"{record['unit']}.timer"])
    return record


# ---------------------------------------------------------------- the rollback (the script)


def _command(argv, stdin=None):
    """The script's command runner: (retcode, stdout, stderr), as the face's ``_run``."""
    import subprocess  # pylint: disable=import-outside-toplevel

    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, check=False)
    return done.returncode, done.stdout, done.stderr


def roll_back(token, run=_command):
    """Put the saved firewall back if the rollback ``token`` is still pending
    and due. Returns what happened, in words (also logged)."""
    with _Locked():
        record = pending()
        if record is None or record["token"] != token:
            return "nothing to roll back: confirmed, or re-armed by a later run"
        text = _read(SAVED)
        try:
            saved = json.loads(text) if text else None
            if (
                not isinstance(saved, dict)
                or saved.get("backend") != record["backend"]
                or saved.get("scope") != record.get("scope")
                or not isinstance(saved.get("firewall"), dict)
            ):
                raise ValueError(
                    f"{SAVED} is missing or not the {_what(record['backend'], record.get('scope'))} firewall"
                )
            backend = zimbra_fw_backend.load(record["backend"])
            backend.restore(saved["firewall"], run)
        except Exception as exc:  # pylint: disable=broad-except  # whatever failed, keep the copy and say so
            kept = os.path.join(DIRECTORY, f"saved-failed-{token}.json")
            if os.path.exists(SAVED):
                os.replace(SAVED, kept)
            _write_json(FAILED, {"error": str(exc), "saved": kept, "due": record["due"]})
            os.unlink(PENDING)
            message = f"zimbra_fw: putting the saved firewall back failed: {exc}; the saved copy is kept in {kept}"
            log.error(message)
            return message
        os.unlink(PENDING)
        os.unlink(SAVED)
    message = (
        f"zimbra_fw: the firewall was put back as it was before the change, which was not confirmed within "
        f"{record['seconds']} s (zimbra_fw.confirm)"
    )
    log.warning(message)
    return message


def _log_to(path):
    """Log as the minion does, to its log file (else to stderr: the journal under systemd)."""
    handler = logging.FileHandler(path) if path else logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def _detach():
    """Go on as a daemon (double fork, new session, no terminal): the caller's
    command returns at once. The caller's process returns True."""
    if os.fork():
        return True
    os.setsid()
    if os.fork():
        os._exit(0)  # pylint: disable=protected-access
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(null, descriptor)
    return False


def main(argv):
    detach = argv[:1] == ["--detach"]
    token = argv[-1] if argv else ""
    record = pending()
    if record is None or record["token"] != token:
        return 0
    if detach:
        if _detach():
            os.wait()
            return 0
        time.sleep(max(0.0, record["due"] - time.time()))
    try:
        _log_to(record["log_file"])
    except OSError:
        _log_to(None)
    roll_back(token)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
