"""
The record of the last verified no-op: a state run that computed the policy,
read the firewall and planned every part, and found nothing to change.

The policy is a pure function of the zimbra_fw code, the pillar and the facts
(zimbra_fw_config.Facts), and a backend's plan a pure function of the policy
and its snapshot, itself parsed from what the backend read. So a later run
whose code, pillar, facts and firewall reads are the same would plan nothing
again, and may say so without parsing and planning: the record holds digests
of those, never a rule.

* ``code_digest(face_file, face_at_import)``: the code this process runs
  (the face's file, the core's, Python's and Salt's versions); None when the
  files on disk are not those it imported (a minion that kept the old core
  after ``saltutil.sync_all``, until it restarts).
* ``inputs_digest(code, pillar, facts)``: the code, the pillar and the facts
  (JSON with sorted keys, non-ASCII as such); None when JSON cannot hold
  them, or holds them ambiguously (a key that is not a string).
* ``digest(value)``: what a backend read (str, bytes, int, bool, None, and
  tuples or lists of them), framed so that different reads never meet.
* ``load(directory)`` and ``save(directory, record)``: the record in a
  root-only directory (a record that is missing, malformed or not ours is no
  record: the run then computes everything).
"""

import hashlib
import json
import os
import sys

import salt.version
from zimbra_fw_commands import private_directory, write_atomic


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


def files_digest(paths):
    """The digest of the files at ``paths`` (their names and bytes): the code;
    None when one cannot be read (it went while listed)."""
    found = []
    try:
        for path in sorted(paths):
            with open(path, "rb") as handle:
                found.append((os.path.basename(path), handle.read()))
    except OSError:
        return None
    return digest(found)


HERE = os.path.dirname(os.path.abspath(__file__))


def core_files():
    """The core's files: zimbra_fw_*.py beside this one."""
    return [
        os.path.join(HERE, name) for name in os.listdir(HERE) if name.startswith("zimbra_fw_") and name.endswith(".py")
    ]


# The core as this process imported it: the face imports it whole, this
# module with it, and a backend later (imported_later). Python keeps an
# imported module: after saltutil.sync_all a long-lived minion process runs
# the old core from memory, not the new files.
CORE_AT_IMPORT = files_digest(core_files())
_MIXED = []  # once not empty, this process runs a core of more than one version


def imported_later():
    """After a core module was imported later than this one: was it the
    same core? If not, no digest of the code running exists (code_digest)."""
    if files_digest(core_files()) != CORE_AT_IMPORT:
        _MIXED.append(True)


def code_digest(face_file, face_at_import):
    """The digest of the code this process runs, or None when the files on
    disk (the face's, ``face_file``, and the core's) are not those it imported."""
    face, core = files_digest([face_file]), files_digest(core_files())
    if _MIXED or None in (face, core) or face != face_at_import or core != CORE_AT_IMPORT:
        return None
    return digest((sys.version, salt.version.__version__, face, core))


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
        # Non-ASCII as such: escaped, a character beyond the BMP and the two
        # surrogates that stand for it would read the same.
        text = json.dumps(value, sort_keys=True, default=_refuse, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError):  # a value JSON cannot hold
        return None
    return digest(text)


def load(directory):
    """The record in ``directory``, or None (missing, malformed, another version, not ours)."""
    path = os.path.join(directory, FILE_NAME)
    try:
        private_directory(directory)
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (OSError, RuntimeError):
        return None
    try:
        with os.fdopen(descriptor, "rb") as handle:
            found = os.fstat(handle.fileno())
            if found.st_uid != os.geteuid() or found.st_mode & 0o077:
                return None
            record = json.loads(handle.read())
    except (OSError, ValueError, RecursionError):
        return None
    return record if _whole(record) else None


def _whole(record):
    """Is ``record`` a record of this version, every key of it of its shape?"""
    if not isinstance(record, dict) or sorted(record) != sorted(RECORD_KEYS) or type(record["version"]) is not int:
        return False
    if record["version"] != VERSION:
        return False
    comments, asked = record["comments"], record["asked"]
    if not isinstance(comments, dict) or not isinstance(asked, list) or not isinstance(record["open_ports"], dict):
        return False
    texts = (record["inputs"], record["backend"], record["firewall"], *comments.values())
    return (
        all(isinstance(text, str) for text in texts)
        and all(_asked_pair(pair) for pair in asked)
        and _text_or_none(record["zone"])
    )


def _asked_pair(pair):
    return isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and _text_or_none(pair[1])


def _text_or_none(value):
    return value is None or isinstance(value, str)


def save(directory, record):
    """Write ``record`` (RECORD_KEYS but version) as the record in ``directory``, atomically, 0600."""
    private_directory(directory)
    data = json.dumps({"version": VERSION, **record}, sort_keys=True, allow_nan=False)
    write_atomic(os.path.join(directory, FILE_NAME), data, 0o600)
