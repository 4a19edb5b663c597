"""
The contract every firewall backend keeps, and the one registry of them.

A backend is one module in ``_utils/`` (helpers and file formats may live in
modules of their own) registered in ``REGISTRY`` by name; the pillar's
``backend`` key, the config check and the Salt face all read the registry,
so a new firewall is its module plus one line here.

A backend module provides:

Facts, read before the pillar is parsed:

* ``NAME``, ``PACKAGE``, ``PROGRAM`` (what is installed and run),
  ``SERVICE`` (the daemon to run and enable at boot, or None).
* ``unavailable()``: why the firewall cannot be used here, or None.
* ``ipv6_off()``: why IPv6 rules are not made here, or None.
* ``name_taken(name)``: why a port-group name would clash with something
  of the firewall's own, or None.

Reading (the only reads a run makes):

* ``read_snapshot(run, live=True, config=None)``: the firewall read once,
  as an immutable snapshot. It carries at least ``active`` (bool, or None
  when not read live) and ``incoming`` ("allow" or "deny": what happens to
  what no rule allows). ``live`` asks for the running firewall's state too,
  which the parts in ``LIVE_PARTS`` need. It also carries ``fingerprint``:
  the digest (zimbra_fw_noop.digest) of everything it was parsed from.
* ``read_fingerprint(run, zone=None)``: that fingerprint of a live read
  (``zone``: ``config.zone``), from the same reads, not parsed: equal
  fingerprints mean equal snapshots (the verified no-op, zimbra_fw_noop).
* ``RULE_PARTS``: the parts whose steps may add or remove rules; the
  session check of a run of any of them reads the whole policy.

Planning, pure: no reads, no writes, no commands:

* ``plan(part, policy, snapshot)`` for each of ``PARTS``: a ``Plan`` whose
  ``changes`` is a Salt changes dict (empty when the firewall already holds
  the policy) and whose ``steps`` make it so; ``comment`` explains a plan
  that deliberately changes nothing (None otherwise). A plan never leaves
  the firewall without its management access: it refuses (raising
  CommandExecutionError naming the pillar key) or checks it first. A plan
  whose changes another part's steps carry names that part in
  ``waits_for``; a converge without that part is refused.
* ``describe(changes, test)``: the changes in words, for a state comment
  ("Added 3 rules; enabled the firewall"; with ``test``, what would be).
* ``DONE``: ``{part: sentence}`` for a part that needs no change.
* ``profiles(policy)``: the port groups as the firewall names and holds them.

Applying and reporting:

* ``apply(steps, run)``: carry out a plan's steps in order; returns the
  descriptions of the steps applied, or raises ``ApplyFailed``
  (zimbra_fw_commands) naming the failed step and those already applied.
* ``prepare_stopped(policy, run, test=False)``: before a stopped firewall
  starts, put the management rules in (returns them); [] if not needed.
* ``status(snapshot)``: the firewall as it is, as plain data.
* ``access_rules(snapshot)``: the live rules as ``zimbra_fw_audit.Rule``
  in evaluation order; ``audit_findings(snapshot)``: findings only this
  firewall can see (zone settings and such); ``own_rules(snapshot)``: the
  live rules this formula made, as ``Rule`` (the session check reads
  which ports its rules admit admins to now).

Commit-confirmed changes (zimbra_fw_rollback keeps the bookkeeping):

* ``save(run, config)``: everything a run can change in this firewall, as
  JSON-able data (files byte for byte: ``zimbra_fw_rollback.save_files``),
  read before the first change.
* ``restore(saved, run)``: put back what ``save`` returned, as one swap as
  far as the firewall allows; raises on failure (the rollback then keeps
  the saved copy). It runs in a process of its own (a systemd timer, or a
  detached process), not in the minion: it may import only the core.

``run(argv, stdin=None)`` is always the caller's command runner, returning
``(retcode, stdout, stderr)``: backends never spawn processes themselves.
"""

import importlib
import os
import sys
import threading
from collections import namedtuple

import zimbra_fw_noop


def __virtual__():
    return (False, "zimbra_fw_backend is a library of the zimbra_fw module, not a Salt util")


# name in the pillar's ``backend`` -> module in _utils
REGISTRY = {
    "ufw": "zimbra_fw_ufw",
    "firewalld": "zimbra_fw_firewalld",
    "nftables": "zimbra_fw_nftables",
}
NAMES = tuple(REGISTRY)
PARTS = ("profile", "rules", "firewall")  # converged in this order
CONTRACT = (
    "NAME PACKAGE PROGRAM SERVICE PARTS LIVE_PARTS RULE_PARTS DONE unavailable ipv6_off name_taken read_snapshot "
    "read_fingerprint plan "
    "describe profiles apply prepare_stopped status access_rules own_rules audit_findings save restore"
).split()

Plan = namedtuple("Plan", "changes steps comment waits_for", defaults=(None,))
Step = namedtuple("Step", "action args describe")  # action: what apply does; describe: in words


# Where the backends are: a salt-minion daemon runs a job after its loader
# has taken this folder off sys.path again.
HERE = os.path.dirname(os.path.abspath(__file__))
# One import at a time: a thread must not see a backend another is still
# importing, nor lose this folder from sys.path while it imports.
_LOADING = threading.RLock()


def load(name):
    """The backend module registered as ``name``, imported when first asked
    for: a run compiles and imports only the firewall it uses."""
    with _LOADING:
        loaded = sys.modules.get(REGISTRY[name])  # whole: every import of a backend is made here
        if loaded is not None:
            return loaded
        added = HERE not in sys.path
        if added:
            sys.path.append(HERE)
        try:
            module = importlib.import_module(REGISTRY[name])
        finally:
            if added:
                sys.path.remove(HERE)
        zimbra_fw_noop.imported_later()  # the core it came with, or no verified no-op in this process
        return module


def dispatch(planners, part, policy, snapshot):
    """A backend's ``plan``: ``planners[part](policy, snapshot)``."""
    return planners[part](policy, snapshot)


# ---------------------------------------------------------------- words for describe()


def count(items, noun, plural=None):
    """'1 rule', '3 rules'."""
    return f"{len(items)} {noun if len(items) == 1 else plural or noun + 's'}"


def said(test, done, pending):
    """``done`` ("added 3 rules") or, under test, ``pending`` ("3 rules would be added")."""
    return pending if test else done


def group_changes(changes, key, noun, test):
    """Words for ``changes[key]``: ``{name: {"old", "new"}}`` of port groups."""
    words = []
    for name, values in changes.get(key, {}).items():
        state = "added" if values["old"] is None else "removed" if values["new"] is None else "updated"
        words.append(said(test, f"{state} {noun} {name}", f"{noun} {name} would be {state}"))
    return words


def sentence(words):
    """The words of describe() as one comment, capitalised."""
    text = "; ".join(words)
    return text[:1].upper() + text[1:]
