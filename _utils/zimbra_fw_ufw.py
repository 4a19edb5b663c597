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
* ``save(run, config)`` and ``restore(saved, run)``: ufw as a rollback puts
  it back (zimbra_fw_rollback): the rules files, our application profile,
  /etc/default/ufw, ufw.conf and whether ufw runs.

``run(argv, stdin=None)`` is the caller's command runner, returning
``(retcode, stdout, stderr)``. Every rule this backend adds carries the
ufw comment ``zimbra_fw``; only those rules are ever removed.
"""

import json
import os
import socket
from collections import namedtuple

import salt.utils.path
import zimbra_fw_audit as audit
import zimbra_fw_netlink as netlink
import zimbra_fw_noop as noop
import zimbra_fw_policy as policies
import zimbra_fw_ufw_files as files
from salt.exceptions import CommandExecutionError
from zimbra_fw_backend import PARTS, Plan, Step, count, dispatch, group_changes, said, sentence
from zimbra_fw_commands import ApplyFailed, helper_outcome, in_background, json_lines, write_atomic
from zimbra_fw_commands import checked as _checked
from zimbra_fw_commands import program_python as ufw_python
from zimbra_fw_config import source_text
from zimbra_fw_rollback import restore_files, save_files


def __virtual__():
    return (False, "zimbra_fw_ufw is a library of the zimbra_fw module, not a Salt util")


NAME = "ufw"
PACKAGE = PROGRAM = "ufw"
SERVICE = None  # enabled by ufw itself (ENABLED=yes in ufw.conf), no daemon
RULE_COMMENT = "zimbra_fw"
APPS_DIR = "/etc/ufw/applications.d"
APPS_SKIPPED = (".dpkg-new", ".dpkg-old", ".dpkg-dist", ".rpmnew", ".rpmsave", "~")  # files ufw does not read there
PROFILE_PATH = os.path.join(APPS_DIR, "zimbra")
DEFAULTS_PATH = "/etc/default/ufw"
RULES_FILES = ("/etc/ufw/user.rules", "/etc/ufw/user6.rules")
CONF_PATH = "/etc/ufw/ufw.conf"  # ENABLED=yes|no
USER_CHAIN = "ufw-user-input"  # loaded while ufw runs: ufw status asks iptables for it
NFT_IPTABLES = "xtables-nft-multi"
PROFILE_HEADER = "# Managed by Salt (zimbra_fw formula). Local changes are overwritten.\n"
BATCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zimbra_fw_ufw_batch.py")

# rules: (words, comment) in ufw's order, each once. active: None unless read
# live. copies: {(words, comment): {family: ports}}, the families whose rules
# file holds the rule and the ports its tuples there open
# (zimbra_fw_ufw_files.read_rules), or None: every rule then counts as present
# in each of its families, an application rule as opening its profile's ports.
# ipv6: whether ufw handles IPv6 (user6.rules was read).
# fingerprint: the digest of what the snapshot was parsed from (Texts) and
# of active (zimbra_fw_noop): equal fingerprints, equal snapshots.
Snapshot = namedtuple("Snapshot", "rules profile_text app_profiles active incoming copies ipv6 fingerprint")
Snapshot.__new__.__defaults__ = (None, True, None)
Texts = namedtuple("Texts", "defaults ipv6 rules profile apps")
# Step actions: ufw (a command), write or remove (the profile file), check (management access).


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


def _app_files():
    """The files in applications.d ufw reads, sorted as ufw reads them."""
    try:
        names = sorted(os.listdir(APPS_DIR))
    except FileNotFoundError:
        return []
    return [name for name in names if not name.startswith(".") and not name.endswith(APPS_SKIPPED)]


def name_taken(name):
    """Why ufw cannot use ``name`` for an application profile, or None: a
    service name, or a profile another file in applications.d defines (ufw
    matches a profile name regardless of case when none matches exactly)."""
    try:
        socket.getservbyname(name)  # any protocol
    except OSError:
        pass
    else:
        return "is a service name in /etc/services; ufw would take the service, not the profile"
    own = os.path.basename(PROFILE_PATH)
    for file_name in _app_files():
        if file_name == own:
            continue
        path = os.path.join(APPS_DIR, file_name)
        for other in files.profile_file_ports(_read_file(path)):
            if other.lower() == name.lower():
                return f"is the application profile '{other}' of {path}; ours would shadow it (or it ours)"
    return None


def _ipv6_read(defaults=None):
    """Whether ufw handles IPv6, so that its user6.rules counts."""
    return ipv6_off(defaults) is None and os.path.exists("/proc/sys/net/ipv6")


def _read_texts():
    """What a Snapshot is parsed from, unparsed: /etc/default/ufw, whether
    ufw handles IPv6 (then user6.rules counts), the rules files, our profile
    file and the application profiles ufw reads ((name, text) each)."""
    defaults = _read_file(DEFAULTS_PATH) or ""  # read once: IPv6 and the default policy
    ipv6 = _ipv6_read(defaults)
    rules = tuple(_read_file(path) for path in (RULES_FILES if ipv6 else RULES_FILES[:1]))
    apps = tuple((name, _read_file(os.path.join(APPS_DIR, name))) for name in _app_files())
    return Texts(defaults, ipv6, rules, _read_file(PROFILE_PATH), apps)


def _active(run):
    """Whether ufw is running, decided as ``ufw status`` decides it: its user
    chain is loaded in iptables (exit 0) or not (exit 1). Where iptables
    keeps its chains in nf_tables, the kernel is asked over netlink for the
    chain alone; else (or when it cannot be asked) only its first rule is
    listed (none when it is empty, still exit 0): printing thousands of peer
    rules costs more than the rest of a no-op read."""
    if _iptables_is_nft():
        found = netlink.chain_exists(4, "filter", USER_CHAIN)
        if found is not None:
            return found
    return _checked(run, ["iptables", "-n", "-L", USER_CHAIN, "1"], succeeded=(0, 1)) == 0


def _iptables_is_nft():
    """Is the iptables ufw runs the nf_tables one (xtables-nft-multi)?"""
    program = salt.utils.path.which("iptables")
    return program is not None and os.path.basename(os.path.realpath(program)) == NFT_IPTABLES


def read_snapshot(run, live=True, config=None):  # pylint: disable=unused-argument
    """ufw as it is now, as ufw itself reads it: the rules from its rules
    files, the default incoming policy from /etc/default/ufw and, with ``live``,
    whether it is running from iptables (one iptables process, no ufw one).
    ufw needs nothing from ``config``."""
    reason = unavailable()
    if reason:
        raise CommandExecutionError(reason)
    if not live:
        return _parse_texts(_read_texts(), None)
    # iptables lists the whole user chain (tens of ms at thousands of rules):
    # the files are read and parsed meanwhile.
    with in_background(_active, run) as active:
        return _parse_texts(_read_texts(), active)


def read_fingerprint(run, zone=None):  # pylint: disable=unused-argument
    """The fingerprint read_snapshot(run) would carry, from the same reads,
    unparsed (ufw has no zones)."""
    reason = unavailable()
    if reason:
        raise CommandExecutionError(reason)
    with in_background(_active, run) as active:
        texts = _read_texts()
        return noop.digest((texts, active()))


def _parse_texts(texts, active):
    """The Snapshot of ``texts``; ``active``, a callable, says whether ufw runs (None: not read)."""
    incoming = files.parse_defaults_file(texts.defaults)
    rules, copies = files.read_rules(texts.rules)
    app_profiles = files.parse_app_profiles(text or "" for _, text in texts.apps)
    running = None if active is None else active()
    fingerprint = noop.digest((texts, running))
    return Snapshot(rules, texts.profile, app_profiles, running, incoming, copies, texts.ipv6, fingerprint)


def managed_rules(snapshot):
    return [words for words, comment in snapshot.rules if comment == RULE_COMMENT]


def families(words, ipv6=True):
    """The families a rule of ours belongs to, by its source: IPv4 or IPv6,
    or both for a rule from anyone (IPv6 only while ufw handles it)."""
    source = words[words.index("from") + 1] if "from" in words else "any"
    if source == "any":
        return files.FAMILIES if ipv6 else files.FAMILIES[:1]
    return files.FAMILIES[1:] if ":" in source else files.FAMILIES[:1]


def managed_copies(snapshot):
    """``{words: {family: ports}}`` of the rules marked ``zimbra_fw``, in ufw's order."""
    if snapshot.copies is None:
        return {words: dict.fromkeys(files.FAMILIES) for words in managed_rules(snapshot)}
    return _managed_copies(snapshot.rules, snapshot.copies)


def _managed_copies(rules, copies):
    return {words: copies[(words, comment)] for words, comment in rules if comment == RULE_COMMENT}


def missing_copies(wanted, present, ipv6):
    """``[(words, text)]`` of the rules in ``wanted`` that are missing from a
    family they belong to, given ``present`` (``{words: families}``); the
    text names the families when the rule is in some of them only."""
    missing = []
    for words in wanted:
        belongs = families(words, ipv6)
        have = present.get(words, ())
        absent = [family for family in belongs if family not in have]
        if absent:  # all of them, or the one of two
            partial = len(absent) < len(belongs)
            missing.append((words, rule_text(words) + (f" ({absent[0]})" if partial else "")))
    return missing


def other_rules(snapshot):
    """Rules not marked ``zimbra_fw``, with their comment."""
    return [
        words + (("comment", comment) if comment else ())
        for words, comment in snapshot.rules
        if comment != RULE_COMMENT
    ]


def access_rules(snapshot):
    """ufw's incoming rules in ufw's order, as the audit reads them."""
    rules = (files.access_rule(rule[0], snapshot.app_profiles, _live_ports(snapshot, rule)) for rule in snapshot.rules)
    return [rule for rule in rules if rule is not None]


def own_rules(snapshot):
    """The rules marked ``zimbra_fw``, as the audit reads them."""
    rules = (files.access_rule(words, snapshot.app_profiles) for words in managed_rules(snapshot))
    return [rule for rule in rules if rule is not None]


def _live_ports(snapshot, rule):
    """The ports an application rule's tuples open, in every family (sorted
    PortSpecs), or None for another rule or when the copies were not read."""
    if snapshot.copies is None or files.rule_profile(rule[0]) is None:
        return None
    return sorted(frozenset().union(*snapshot.copies[rule].values()))


# ---------------------------------------------------------------- the policy in ufw's words


def rule_words(access):
    """One policy access as ufw arguments."""
    if access.kind == policies.ANYONE:
        return ("allow", access.group)
    if access.source_ports:  # the Salt master's replies, from its ports (to the minion's, when given)
        ports = ",".join(str(p) for p in access.source_ports)
        to = ("to", "any", "port", _port_list(access.ports)) if access.ports else ()
        return ("allow", "from", source_text(access.source), "port", ports, *to, "proto", "tcp")
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


def _port_list(specs):
    """PortSpecs as one ufw port list: ``32768:60999``, ``80,443``."""
    return ",".join(str(spec).split("/")[0] for spec in specs)


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


def stale_app_rules(policy, snapshot):
    """``{profile name: {rule text: {"old": ports, "new": ports}}}``: our rules
    naming a profile of the policy whose tuples open other ports than the
    profile has (``ufw app update`` failed after the file was written, or
    the rule was made from an older profile)."""
    stale = {}
    wanted_by_name = {name: frozenset(group.ports) for name, group in policy.groups.items()}
    for words, copies in managed_copies(snapshot).items():
        name = files.rule_profile(words)
        wanted = wanted_by_name.get(name)
        if wanted is None:
            continue
        for family, ports in copies.items():
            if ports is not None and ports != wanted:
                text = f"{rule_text(words)} ({family})"
                old = "|".join(files.port_groups(ports))
                stale.setdefault(name, {})[text] = {"old": old, "new": "|".join(files.port_groups(wanted))}
    return stale


def _profile_file_changes(current, wanted, snapshot):
    """(changes, steps, profiles to ``app update``) that take the profile file
    from ``current`` text to ``wanted`` (None: no file)."""
    changes, updates = {}, []
    current_ports, wanted_ports = files.profile_file_ports(current), files.profile_file_ports(wanted)
    retired = {name for name in current_ports if name not in wanted_ports}
    # Rules naming a profile must go before the profile does: ufw can no
    # longer delete them once their profile is unknown.
    gone = [words for words in managed_rules(snapshot) if files.rule_profile(words) in retired]
    steps = [_ufw_step(["delete", *words]) for words in gone]
    if gone:
        changes["rules removed"] = [rule_text(words) for words in gone]
    if wanted is None:
        steps.append(Step("remove", (), f"remove {PROFILE_PATH}"))
    else:
        steps.append(Step("write", (wanted,), f"write {PROFILE_PATH}"))
    for name, new_ports in wanted_ports.items():
        old_ports = current_ports.get(name)
        if old_ports != new_ports:
            changes.setdefault("ports", {})[name] = {"old": old_ports, "new": new_ports}
            if old_ports is not None:
                updates.append(name)
    for name in current_ports:
        if name in retired:
            changes.setdefault("ports", {})[name] = {"old": current_ports[name], "new": None}
    if not changes.get("ports"):
        changes["file"] = {"old": current, "new": wanted}
    return changes, steps, updates


def plan_profile(policy, snapshot):
    current, wanted = snapshot.profile_text, profile_text(policy)
    stale = stale_app_rules(policy, snapshot)
    if current == wanted and not stale:
        return Plan({}, [], None)
    changes, steps, updates = _profile_file_changes(current, wanted, snapshot) if current != wanted else ({}, [], [])
    # Rules that open other ports than their profile, whose ports did not
    # change: ufw remakes them from the profile as it reads it now.
    for name, rules in stale.items():
        if name not in updates:
            updates.append(name)
            changes.setdefault("rules updated", {}).update(rules)
    steps += [_ufw_step(["app", "update", name]) for name in updates]
    return Plan(changes, steps, None)


def foreign_openings(policy, snapshot):
    """The rules without the ``zimbra_fw`` mark that widen access
    (zimbra_fw_audit.widens), in ufw's order."""
    found = []
    for rule in snapshot.rules:
        if rule[1] != RULE_COMMENT:
            access = files.access_rule(rule[0], snapshot.app_profiles, _live_ports(snapshot, rule))
            if access is not None and audit.widens(access, policy):
                found.append(rule[0])
    return found


def plan_rules(policy, snapshot):
    desired = dict.fromkeys(desired_rules(policy))  # a dict: planning stays linear in the rules
    present = managed_copies(snapshot)
    add = missing_copies(desired, present, snapshot.ipv6)
    remove = [words for words in present if words not in desired]
    if policy.config.close_foreign:
        remove += foreign_openings(policy, snapshot)
    # ufw adds a rule's missing family copy and skips the one it has.
    steps = [_ufw_step([*words, "comment", RULE_COMMENT], "ufw " + rule_text(words)) for words, _ in add]
    # Stale rules go only after the new ones are in place.
    steps += [_ufw_step(["delete", *words]) for words in remove]
    changes = {}
    if add:
        changes["added"] = [text for _, text in add]
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


PLANNERS = dict(zip(PARTS, (plan_profile, plan_rules, plan_firewall), strict=True))
LIVE_PARTS = ("firewall",)  # the parts whose plan needs ufw's live state
RULE_PARTS = ("profile", "rules")  # the profile part deletes rules of a retired profile, and changes apps' ports


def plan(part, policy, snapshot):
    return dispatch(PLANNERS, part, policy, snapshot)


DONE = {
    "profile": "The ufw application profiles are as configured",
    "rules": "The zimbra_fw allow rules are as configured",
    "firewall": "ufw is active and denies incoming by default",
}


def describe(changes, test):
    """A plan's changes in words: 'Added 3 rules; enabled the firewall'."""
    words = group_changes(changes, "ports", "profile", test)
    if "file" in changes:
        words.append(said(test, "rewrote the profile file", "the profile file would be rewritten"))
    if "rules updated" in changes:
        updated = count(changes["rules updated"], "rule")
        words.append(said(test, f"updated {updated} to their profile's ports", f"{updated} would be updated"))
    for key, noun in (("rules removed", "rule of a retired profile"), ("added", "rule"), ("removed", "rule")):
        if key in changes:
            verb = "added" if key == "added" else "removed"
            counted = count(changes[key], noun)
            words.append(said(test, f"{verb} {counted}", f"{counted} would be {verb}"))
    if "default incoming" in changes:
        words.append(said(test, "set default incoming to deny", "default incoming would be set to deny"))
    if "active" in changes:
        words.append(said(test, "enabled the firewall", "the firewall would be enabled"))
    return sentence(words)


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


def _apply_step(step):
    if step.action == "write":
        write_atomic(PROFILE_PATH, step.args[0])
    elif step.action == "remove":
        if os.path.exists(PROFILE_PATH):
            os.unlink(PROFILE_PATH)
    elif step.action == "check":
        texts = _read_texts()  # the rules as they are now, not as planned
        rules, copies = files.read_rules(texts.rules)
        present = _managed_copies(rules, copies)
        missing = [text for _, text in missing_copies([tuple(words) for words in step.args], present, texts.ipv6)]
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


def audit_findings(snapshot):  # pylint: disable=unused-argument
    """ufw holds no setting beyond its rules and default policy that the audit reads."""
    return []


def prepare_stopped(policy, run, test=False):  # pylint: disable=unused-argument
    """Nothing to prepare: ufw is enabled only after its rules are in (the firewall part)."""
    return []


# ---------------------------------------------------------------- rollback


def saved_paths():
    """The files a rollback puts back: everything a run can change in ufw."""
    return (*RULES_FILES, PROFILE_PATH, DEFAULTS_PATH, CONF_PATH)


def save(run, config=None):  # pylint: disable=unused-argument
    """ufw as it is now, for ``restore``: its files byte for byte and whether it runs."""
    return {"files": save_files(saved_paths()), "active": _active(run)}


def restore(saved, run):
    """Put back what ``save`` returned: the files first (each replaced
    atomically), then the running ufw. When only rules changed, ufw's rule
    chains are reloaded from the rules files in one ``iptables-restore
    --noflush`` per family, as ufw loads them when it starts (one atomic swap:
    ``ufw reload`` stops the firewall first); else ufw is reloaded, enabled or
    disabled as it was, and ufw.conf, which that rewrites, is put back after.
    Only the paths of ``saved_paths`` are written."""
    kept = {path: saved["files"][path] for path in saved_paths() if path in saved["files"]}
    changed = restore_files(kept)
    active = _active(run)
    if saved["active"] and active and not {DEFAULTS_PATH, CONF_PATH} & set(changed):
        families = (("iptables-restore", RULES_FILES[0]), ("ip6tables-restore", RULES_FILES[1]))
        for program, path in families[: 2 if _ipv6_read() else 1]:
            _checked(run, [program, "--noflush", path])
        return
    if saved["active"]:
        _checked(run, ["ufw", "reload"] if active else ["ufw", "--force", "enable"])
    elif active:
        _checked(run, ["ufw", "--force", "disable"])
    restore_files(kept)
