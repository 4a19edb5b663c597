"""
The record of the last verified no-op: a state run that computed the policy,
read the firewall and planned every part, and found nothing to change.

The policy is a pure function of the zimbra_fw code, the pillar and the facts
(zimbra_fw_config.Facts), and a backend's plan a pure function of the policy
and its snapshot, itself parsed from what the backend read. So a later run
whose code, pillar, facts and firewall reads are the same would plan nothing
again, and may say so without parsing and planning: the record holds digests
of those, never a rule.

* ``inputs_digest(code, pillar, facts)``: the code, the pillar and the facts
  (JSON with sorted keys); None when JSON cannot hold them, or holds them
  ambiguously (a key that is not a string).
* ``digest(value)``: what a backend read (str, bytes, int, bool, None, and
  tuples or lists of them), framed so that different reads never meet.
* ``load(directory)`` and ``save(directory, record)``: the record in a
  root-only directory (a record that is missing, malformed or not ours is no
  record: the run then computes everything).
"""

import hashlib
import json
import os

from zimbra_fw_commands import write_atomic
from zimbra_fw_firewalld_client import _lock_dir  # the same root-only directory


def __virtual__():
    return (False, "zimbra_fw_noop is a library of the zimbra_fw module, not a Salt util")


VERSION = 1
FILE_NAME = "noop.json"
RECORD_KEYS = ("version", "inputs", "asked", "backend", "zone", "firewall", "open_ports", "comments")


def _hasher():
    return hashlib.blake2b(digest_size=32)


def _frame(hasher, value):
    """Feed ``value`` to ``hasher`` as tag, length and bytes: no two values share a framing."""
    if isinstance(value, (tuple, list)):
        hasher.update(b"L" + len(value).to_bytes(8, "big"))
        for item in value:
            _frame(hasher, item)
        return
    if value is None or isinstance(value, bool):
        data, tag = repr(value).encode(), b"C"
    elif isinstance(value, int):
        data, tag = str(value).encode(), b"I"
    elif isinstance(value, str):
        data, tag = value.encode("utf-8", "surrogatepass"), b"S"
    elif isinstance(value, bytes):
        data, tag = value, b"B"
    else:
        raise TypeError(f"cannot digest a {type(value).__name__}")
    hasher.update(tag + len(data).to_bytes(8, "big"))
    hasher.update(data)


def digest(value):
    """The hex digest of ``value``: str, bytes, int, bool, None, tuples and lists of them."""
    hasher = _hasher()
    _frame(hasher, value)
    return hasher.hexdigest()


def file_digest(paths):
    """The digest of the files at ``paths`` (their names and bytes): the code."""
    found = []
    for path in sorted(paths):
        with open(path, "rb") as handle:
            found.append((os.path.basename(path), handle.read()))
    return digest(found)


def _string_keys_only(value):
    """Are all mapping keys within ``value`` strings? JSON would make 1 and '1' one key."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
            pending.extend(item.values())
        elif kind is list or kind is tuple:
            pending.extend(item)
        elif isinstance(item, (dict, list, tuple)):  # a subclass: Salt's own, or not plain data at all
            return False
    return True


def _refuse(value):
    raise TypeError(f"a {type(value).__name__} is not JSON")


def inputs_digest(code, pillar, facts):
    """The digest of the code digest, the pillar and ``facts`` (a mapping of
    plain values), or None when they cannot be told apart as JSON."""
    value = {"code": code, "pillar": pillar, "facts": facts}
    if not _string_keys_only(value):
        return None
    try:
        text = json.dumps(value, sort_keys=True, default=_refuse, allow_nan=False)
    except (TypeError, ValueError):  # a value JSON cannot hold
        return None
    return digest(text)


def load(directory):
    """The record in ``directory``, or None (missing, malformed, another version, not ours)."""
    path = os.path.join(directory, FILE_NAME)
    try:
        _lock_dir(directory)
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (OSError, RuntimeError):
        return None
    try:
        with os.fdopen(descriptor, "rb") as handle:
            found = os.fstat(handle.fileno())
            if found.st_uid != os.geteuid() or found.st_mode & 0o077:
                return None
            record = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    return record if _whole(record) else None


def _whole(record):
    """Is ``record`` a record of this version, every key of it of its type?"""
    return (
        isinstance(record, dict)
        and sorted(record) == sorted(RECORD_KEYS)
        and record["version"] == VERSION
        and isinstance(record["comments"], dict)
        and isinstance(record["asked"], list)
        and (record["zone"] is None or isinstance(record["zone"], str))
    )


def save(directory, record):
    """Write ``record`` (RECORD_KEYS but version) as the record in ``directory``, atomically, 0600."""
    _lock_dir(directory)
    data = json.dumps({"version": VERSION, **record}, sort_keys=True, allow_nan=False)
    write_atomic(os.path.join(directory, FILE_NAME), data, 0o600)
