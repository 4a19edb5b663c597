"""
The ufw backend: the policy as ufw application profiles and allow rules.

* ``read_snapshot(run, live)`` reads ufw once, as ufw reads itself: its rules
  files, the profile file, the application profiles, /etc/default/ufw and,
  with ``live``, whether its chains are loaded (one ``iptables`` process: a
  run that changes nothing starts no ufw process).
* ``plan(part, policy, snapshot)`` is pure: the changes and the steps that
  make ufw match the policy, for ``profile``, ``rules`` or ``firewall``.
* ``apply(steps, run)`` is the only code that changes anything; runs of
  consecutive ufw commands go to one ufw process (zimbra_fw_ufw_batch).
* ``access_rules(snapshot)`` gives the audit ufw's rules in ufw's order.

``run(argv, stdin=None)`` is the caller's command runner, returning
``(retcode, stdout, stderr)``. Every rule this backend adds carries the
ufw comment ``zimbra_fw``; only those rules are ever removed.
"""

import json
import os
import socket
import tempfile
from collections import namedtuple

import salt.utils.path
import zimbra_fw_policy as policies
import zimbra_fw_ufw_files as files
from salt.exceptions import CommandExecutionError
from zimbra_fw_commands import ApplyFailed, helper_outcome, json_lines
from zimbra_fw_commands import checked as _checked
from zimbra_fw_commands import program_python as ufw_python
from zimbra_fw_config import source_text


def __virtual__():
    return (False, "zimbra_fw_ufw is a library of the zimbra_fw module, not a Salt util")


NAME = "ufw"
PACKAGE = PROGRAM = "ufw"
SERVICE = None  # enabled by ufw itself (ENABLED=yes in ufw.conf), no daemon
RULE_COMMENT = "zimbra_fw"
APPS_DIR = "/etc/ufw/applications.d"
PROFILE_PATH = os.path.join(APPS_DIR, "zimbra")
DEFAULTS_PATH = "/etc/default/ufw"
RULES_FILES = ("/etc/ufw/user.rules", "/etc/ufw/user6.rules")
PROFILE_HEADER = "# Managed by Salt (zimbra_fw formula). Local changes are overwritten.\n"
PARTS = ("profile", "rules", "firewall")
BATCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zimbra_fw_ufw_batch.py")

# rules: (words, comment) in ufw's order. active: None unless read live.
Snapshot = namedtuple("Snapshot", "rules profile_text app_profiles active incoming")
Plan = namedtuple("Plan", "changes steps comment")
Step = namedtuple("Step", "action args describe")  # action: ufw, write, remove or check


# ---------------------------------------------------------------- facts and reading


def _read_file(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def unavailable():
    """Why ufw cannot be used on this minion, or None."""
    if salt.utils.path.which("ufw") is None:
        return "ufw is not available on this minion: install the 'ufw' package"
    return None


def ipv6_off(defaults=None):
    """None while ufw handles IPv6; else why IPv6 rules cannot be added.
    ``defaults``: the text of /etc/default/ufw when already read."""
    if files.defaults_ipv6(_read_file(DEFAULTS_PATH) if defaults is None else defaults):
        return None
    return "ufw has IPv6 off (IPV6=no in /etc/default/ufw)"


def name_taken(name):
    """Why ufw cannot use ``name`` for an application profile, or None."""
    try:
        socket.getservbyname(name)  # any protocol
    except OSError:
        return None
    return "is a service name in /etc/services; ufw would take the service, not the profile"


def _rules(defaults=None):
    paths = [RULES_FILES[0]]
    if ipv6_off(defaults) is None and os.path.exists("/proc/sys/net/ipv6"):
        paths.append(RULES_FILES[1])
    return files.rules_from_files(_read_file(path) for path in paths)


def _app_profiles():
    names = sorted(name for name in os.listdir(APPS_DIR) if not name.startswith("."))
    return files.parse_app_profiles(_read_file(os.path.join(APPS_DIR, name)) or "" for name in names)


def _active(run):
    """Whether ufw is running, decided as ``ufw status`` decides it: its user
    chain is loaded in iptables (exit 0) or not (exit 1)."""
    return _checked(run, ["iptables", "-n", "-L", "ufw-user-input"], succeeded=(0, 1)) == 0


def read_snapshot(run, live=True, config=None):  # pylint: disable=unused-argument
    """ufw as it is now, as ufw itself reads it: the rules from its rules
    files, the default incoming policy from /etc/default/ufw and, with ``live``,
    whether it is running from iptables (one iptables process, no ufw one).
    ufw needs nothing from ``config``."""
    reason = unavailable()
    if reason:
        raise CommandExecutionError(reason)
    active = _active(run) if live else None
    defaults = _read_file(DEFAULTS_PATH) or ""  # read once: IPv6 and the default policy
    incoming = files.parse_defaults_file(defaults)
    return Snapshot(_rules(defaults), _read_file(PROFILE_PATH), _app_profiles(), active, incoming)


def managed_rules(snapshot):
    return _managed(snapshot.rules)


def _managed(rules):
    return [words for words, comment in rules if comment == RULE_COMMENT]


def other_rules(snapshot):
    """Rules not marked ``zimbra_fw``, with their comment."""
    return [
        words + (("comment", comment) if comment else ())
        for words, comment in snapshot.rules
        if comment != RULE_COMMENT
    ]


def access_rules(snapshot):
    """ufw's incoming rules in ufw's order, as the audit reads them."""
    rules = (files.access_rule(words, snapshot.app_profiles) for words, _ in snapshot.rules)
    return [rule for rule in rules if rule is not None]


# ---------------------------------------------------------------- the policy in ufw's words


def rule_words(access):
    """One policy access as ufw arguments."""
    if access.kind == policies.ANYONE:
        return ("allow", access.group)
    if access.source_ports:  # the Salt master's replies, from its ports
        ports = ",".join(str(p) for p in access.source_ports)
        return ("allow", "from", source_text(access.source), "port", ports, "proto", "tcp")
    if access.group:
        return ("allow", "from", source_text(access.source), "to", "any", "app", access.group)
    if access.ports is None:
        return ("allow", "from", source_text(access.source))
    (spec,) = access.ports
    action = "limit" if access.limit else "allow"  # limit: 6 connections in 30 s from one address
    if access.source is None:
        return (action, str(spec))
    ports = str(spec).split("/")[0]
    return (action, "from", source_text(access.source), "to", "any", "port", ports, "proto", spec.proto)


def desired_rules(policy):
    """The managed allow rules, in the policy's order."""
    return [rule_words(access) for access in policy.accesses]


def profile_text(policy):
    """The text of the application profile file, or None when no profile is needed."""
    sections = [files.profile_section(*group) for group in policy.groups.values()]
    return PROFILE_HEADER + "\n".join(sections) if sections else None


def profiles(policy):
    """``{profile name: ports text}``, the file path and the file text."""
    return {
        "path": PROFILE_PATH,
        "profiles": {name: "|".join(files.port_groups(group.ports)) for name, group in policy.groups.items()},
        "text": profile_text(policy),
    }


def rule_text(words):
    return " ".join(words)


# ---------------------------------------------------------------- planning (pure)


def _ufw_step(args, describe=None):
    return Step("ufw", tuple(args), describe or "ufw " + " ".join(args))


def plan_profile(policy, snapshot):
    current, wanted = snapshot.profile_text, profile_text(policy)
    if current == wanted:
        return Plan({}, [], None)
    changes = {}
    current_ports, wanted_ports = files.profile_file_ports(current), files.profile_file_ports(wanted)
    retired = [name for name in current_ports if name not in wanted_ports]
    # Rules naming a profile must go before the profile does: ufw can no
    # longer delete them once their profile is unknown.
    stale = [words for words in managed_rules(snapshot) if files.rule_profile(words) in retired]
    steps = [_ufw_step(["delete", *words]) for words in stale]
    if stale:
        changes["rules removed"] = [rule_text(words) for words in stale]
    if wanted is None:
        steps.append(Step("remove", (), f"remove {PROFILE_PATH}"))
    else:
        steps.append(Step("write", (wanted,), f"write {PROFILE_PATH}"))
    for name, new_ports in wanted_ports.items():
        old_ports = current_ports.get(name)
        if old_ports != new_ports:
            changes.setdefault("ports", {})[name] = {"old": old_ports, "new": new_ports}
            if old_ports is not None:
                steps.append(_ufw_step(["app", "update", name]))
    for name in retired:
        changes.setdefault("ports", {})[name] = {"old": current_ports[name], "new": None}
    if not changes.get("ports"):
        changes["file"] = {"old": current, "new": wanted}
    return Plan(changes, steps, None)


def plan_rules(policy, snapshot):
    desired, managed = desired_rules(policy), managed_rules(snapshot)
    add = [words for words in desired if words not in managed]
    remove = [words for words in managed if words not in desired]
    steps = [_ufw_step([*words, "comment", RULE_COMMENT], "ufw " + rule_text(words)) for words in add]
    # Stale rules go only after the new ones are in place.
    steps += [_ufw_step(["delete", *words]) for words in remove]
    changes = {}
    if add:
        changes["added"] = [rule_text(words) for words in add]
    if remove:
        changes["removed"] = [rule_text(words) for words in remove]
    return Plan(changes, steps, None)


def plan_firewall(policy, snapshot):
    if not policy.config.enabled:
        return Plan({}, [], "zimbra_fw:enabled is false: ufw's state is left alone")
    changes, steps = {}, []
    if snapshot.incoming != "deny":
        changes["default incoming"] = {"old": snapshot.incoming, "new": "deny"}
        steps.append(_ufw_step(["default", "deny", "incoming"]))
    if not snapshot.active:
        changes["active"] = {"old": False, "new": True}
        steps.append(_ufw_step(["--force", "enable"]))
    if steps and not policy.config.allow_no_management:
        required = tuple(rule_words(access) for access in policies.management(policy))
        steps.insert(0, Step("check", required, "check that management access is allowed"))
    return Plan(changes, steps, None)


PLANNERS = {"profile": plan_profile, "rules": plan_rules, "firewall": plan_firewall}
LIVE_PARTS = ("firewall",)  # the parts whose plan needs ufw's live state


def plan(part, policy, snapshot):
    return PLANNERS[part](policy, snapshot)


# ---------------------------------------------------------------- applying


def batch_outcome(commands, report, retcode, stderr=""):
    """What a run of zimbra_fw_ufw_batch did, from its JSON-lines ``report``:
    (number of commands applied, error or None), or None when ufw's library
    could not be loaded (the caller then runs the commands one by one)."""
    reports = json_lines(report)
    if any("unavailable" in fields for fields in reports):
        return None
    applied, error = helper_outcome(reports, len(commands), retcode, stderr)
    if error is None:
        return applied, None
    return applied, f"'ufw {' '.join(commands[applied])}' failed: {error}"


def _run_batch(commands, run):
    """Run ufw commands in order in one ufw process: (number applied, error or
    None), or None when ufw's library cannot be loaded that way."""
    program = salt.utils.path.which("ufw")
    python = ufw_python(program)
    if python is None or not os.path.exists(BATCH_SCRIPT):
        return None
    retcode, stdout, stderr = run([python, "-I", BATCH_SCRIPT, program], stdin=json.dumps(commands))
    return batch_outcome(commands, stdout, retcode, stderr)


def _run_ufw_commands(commands, run):
    """Run ufw commands in order, batched when possible, one process each
    otherwise: (number applied, error or None)."""
    batched = _run_batch(commands, run)
    if batched is not None:
        return batched
    for applied, args in enumerate(commands):
        try:
            _checked(run, ["ufw", *args])
        except CommandExecutionError as exc:
            return applied, str(exc)
    return len(commands), None


def _write_atomic(path, text):
    # A dot-file: ufw skips hidden files in applications.d while it is written.
    fd, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".zimbra_fw-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _apply_step(step):
    if step.action == "write":
        _write_atomic(PROFILE_PATH, step.args[0])
    elif step.action == "remove":
        if os.path.exists(PROFILE_PATH):
            os.unlink(PROFILE_PATH)
    elif step.action == "check":
        managed = _managed(_rules())  # as they are now, not as planned
        missing = [rule_text(words) for words in step.args if tuple(words) not in managed]
        if missing:
            raise CommandExecutionError(
                "refusing to enable default-deny: management access is not allowed yet "
                f"(missing: {', '.join(missing)}); apply the zimbra_fw rules first"
            )
    else:
        raise CommandExecutionError(f"unknown plan step {step!r}")


def step_batches(steps):
    """The steps in order, consecutive ufw commands grouped into one list."""
    batches = []
    for step in steps:
        if step.action == "ufw" and batches and batches[-1][0].action == "ufw":
            batches[-1].append(step)
        else:
            batches.append([step])
    return batches


def _apply_batch(batch, run):
    """Apply a group of steps: (number applied, error or None)."""
    try:
        if batch[0].action == "ufw":
            return _run_ufw_commands([list(step.args) for step in batch], run)
        _apply_step(batch[0])
    except (CommandExecutionError, OSError) as exc:
        return 0, str(exc)
    return 1, None


def apply(steps, run):
    """Carry out planned steps in order; returns what was applied. On failure
    raises ApplyFailed naming the failed step and the steps already applied."""
    applied = []
    for batch in step_batches(steps):
        count, error = _apply_batch(batch, run)
        applied += [step.describe for step in batch[:count]]
        if error is not None:
            raise ApplyFailed.at(batch[count].describe, error, applied)
    return applied


def status(snapshot):
    return {
        "backend": NAME,
        "active": snapshot.active,
        "default_incoming": snapshot.incoming,
        "managed_rules": [rule_text(words) for words in managed_rules(snapshot)],
        "other_rules": [rule_text(words) for words in other_rules(snapshot)],
    }
