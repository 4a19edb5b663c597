"""
The nftables backend: the policy as one table of ours, ``table inet
zimbra_fw``, replaced whole in one transaction. Other tables (Docker's,
fail2ban's, firewalld's, the admin's) are never read on a run, flushed or
changed.

* The table holds one chain, ``input``, hooked at filter priority. Its
  rules: management access (ssh, the Salt master) first, then loopback,
  ``ct state established,related``, invalid packets dropped, the ICMP and
  ICMPv6 that IPv4 and IPv6 need, then the policy's accesses in order.
* Each port group that only some sources reach (peers of a role, the admin
  subnets) has two named sets, ``GROUP-v4`` and ``GROUP-v6`` (``flags
  interval``), and one rule per set and protocol: N peers are N elements.
* ``read_snapshot`` runs one ``nft -j list table inet zimbra_fw`` and reads
  the persisted file; ``plan`` is pure; ``apply`` feeds one file to
  ``nft -f`` after ``nft -c -f`` checked it: the empty declaration, the
  delete and the whole new table, which the kernel commits at once.
* Parts: ``profile`` persists the table (the file, the main configuration's
  include, nftables.service enabled at boot), ``rules`` loads it (the
  chain keeps its policy; a new chain comes with drop, its management
  rules in the same transaction), ``firewall`` sets the policy to drop once
  the management rules are loaded.
"""

import difflib
import fnmatch
import glob
import os
import re
from collections import namedtuple

import salt.utils.path
import zimbra_fw_nftables_files as files
import zimbra_fw_noop as noop
import zimbra_fw_policy as policies
from salt.exceptions import CommandExecutionError
from zimbra_fw_audit import Rule, address_sources
from zimbra_fw_backend import PARTS, Plan, Step, count, dispatch, said, sentence
from zimbra_fw_catalogue import PortSpec
from zimbra_fw_commands import ApplyFailed, checked, write_atomic
from zimbra_fw_config import network_order, source_text
from zimbra_fw_nftables_files import CHAIN, FAMILY, TABLE, NftSet
from zimbra_fw_rollback import restore_files, save_files


def __virtual__():
    return (False, "zimbra_fw_nftables is a library of the zimbra_fw module, not a Salt util")


NAME = PACKAGE = "nftables"
PROGRAM = "nft"
# Enabled at boot by the profile part, never started: starting nftables.service
# runs the distribution's main configuration, which on Debian flushes every table.
SERVICE = None
UNIT = "nftables.service"
LIVE_PARTS = PARTS  # every part reads the table
RULE_PARTS = ("rules",)
TABLE_NAME = f"{FAMILY} {TABLE}"
SYSTEMD_RUNNING = "/run/systemd/system"  # present when systemd is the init system
UNIT_LINKS = "/etc/systemd/system/*.wants/" + UNIT

# Where the distribution's nftables.service reads its configuration, and the
# directory for our file: Debian and Ubuntu, or the RedHat family.
Layout = namedtuple("Layout", "main directory")
DEBIAN = Layout("/etc/nftables.conf", "/etc/nftables.d")
REDHAT = Layout("/etc/sysconfig/nftables.conf", "/etc/nftables")
FILE_NAME = "zimbra_fw.nft"

ICMP_TYPES = ("destination-unreachable", "echo-request", "parameter-problem", "time-exceeded")
ICMPV6_TYPES = (
    *ICMP_TYPES,
    "packet-too-big",
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "mld-listener-query",
)
ACCEPT = {"accept": None}
BASE_RULES = tuple(
    files.rule_text(exprs)
    for exprs in (
        [files.match({"meta": {"key": "iif"}}, "lo"), ACCEPT],
        [files.match({"ct": {"key": "state"}}, ["established", "related"], "in"), ACCEPT],
        [files.match({"ct": {"key": "state"}}, "invalid", "in"), {"drop": None}],
        [files.match(files.payload("icmp", "type"), {"set": list(ICMP_TYPES)}), ACCEPT],
        [files.match(files.payload("icmpv6", "type"), {"set": list(ICMPV6_TYPES)}), ACCEPT],
    )
)

# table: whether our table exists; chain: its input Chain (None: absent);
# rules: the input chain's rule texts in order; exprs: their JSON expressions;
# chains: every chain name of the table; sets: {name: NftSet}; persisted: the
# persisted file's text (None: absent); included: whether the main
# configuration includes it; boot: whether nftables.service starts at boot
# (None: no systemd here); layout: the distribution's paths; flags: the
# table's flags (any is drift: "dormant" unhooks every chain of the table);
# fingerprint: the digest of what it was parsed from (zimbra_fw_noop).
_FIELDS = "table chain rules exprs chains sets persisted included boot layout flags fingerprint"


class Snapshot(namedtuple("Snapshot", _FIELDS, defaults=((), None))):
    __slots__ = ()

    @property
    def hooked(self):
        return self.chain is not None and self.chain.hook == "input"

    @property
    def active(self):
        """Is our chain filtering: the table is loaded, not dormant, with its chain hooked at input."""
        return self.hooked and "dormant" not in self.flags

    @property
    def incoming(self):
        return "deny" if self.chain is not None and self.chain.policy == "drop" else "allow"


# Step actions: load and policy (an nft file), check (management access),
# write (the persisted file), include (the main configuration), enable (at boot).


def unavailable():
    """Why nftables cannot be used on this minion, or None."""
    if salt.utils.path.which(PROGRAM) is None:
        return "nftables is not available on this minion: install the 'nftables' package"
    return None


def ipv6_off():
    """An inet table filters IPv4 and IPv6 alike."""
    return None


def name_taken(name):  # pylint: disable=unused-argument
    """Our sets live in our own table: no other table's name can clash."""
    return None


def layout():
    return REDHAT if os.path.exists(REDHAT.main) else DEBIAN


def persisted_path(where=None):
    return os.path.join((where or layout()).directory, FILE_NAME)


def include_line(where=None):
    return f'include "{persisted_path(where)}"'


# ---------------------------------------------------------------- reading


def _read_file(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


INCLUDE_RE = re.compile(r'^\s*include\s+"([^"]+)"', re.MULTILINE)


def includes(main_text, path):
    """Does the main configuration include ``path`` (by name or by a glob)?"""
    return any(_glob_matches(found, path) for found in INCLUDE_RE.findall(main_text or ""))


def _glob_matches(pattern, path):
    """glob(3) as nft expands an include: a wildcard never matches a '/'."""
    patterns, names = pattern.split("/"), path.split("/")
    return len(patterns) == len(names) and all(map(fnmatch.fnmatchcase, names, patterns))


def _boot():
    """Whether nftables.service starts at boot; None where systemd does not run."""
    if not os.path.isdir(SYSTEMD_RUNNING):
        return None
    return bool(glob.glob(UNIT_LINKS))


def _read_table(run):
    """Our table as nft lists it, or None when it does not exist."""
    return _parse_listed(_list_table(run))


def _list_table(run):
    """What ``nft -j list table`` printed of our table, or None when it does not exist."""
    retcode, stdout, stderr = run([PROGRAM, "-j", "list", "table", FAMILY, TABLE])
    if retcode != 0:
        if "No such file or directory" in stderr:
            return None
        raise CommandExecutionError(f"'nft -j list table {TABLE_NAME}' failed (exit {retcode}): {stderr.strip()}")
    return stdout


def _parse_listed(listed):
    if listed is None:
        return None
    try:
        return files.parse_table(listed)
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandExecutionError(f"'nft -j list table {TABLE_NAME}' printed no table nft's JSON: {exc}") from exc


def snapshot_of(table, persisted=None, included=False, boot=None, where=DEBIAN):
    """A Snapshot from a parsed Table (None: absent) and the persistence facts."""
    if table is None:
        return Snapshot(False, None, (), (), (), {}, persisted, included, boot, where)
    rules = table.rules.get(CHAIN, ())
    return Snapshot(
        True,
        table.chains.get(CHAIN),
        tuple(text for text, _ in rules),
        tuple(exprs for _, exprs in rules),
        tuple(sorted(table.chains)),
        table.sets,
        persisted,
        included,
        boot,
        where,
        table.flags,
    )


def read_snapshot(run, live=True, config=None):  # pylint: disable=unused-argument
    """Our table as it runs (one ``nft`` process) and as it is persisted (files)."""
    reads = _read(run)
    listed, persisted, main, path, boot, where = reads
    snapshot = snapshot_of(_parse_listed(listed), persisted, includes(main, path), boot, where)
    return snapshot._replace(fingerprint=noop.digest(reads))


def read_fingerprint(run, zone=None):  # pylint: disable=unused-argument
    """The fingerprint read_snapshot(run) would carry, from the same reads,
    unparsed (nftables has no zones)."""
    return noop.digest(_read(run))


def _read(run):
    """What a snapshot is parsed from: the table as listed, the persisted
    file, the main configuration, the persisted file's path, boot, the layout."""
    reason = unavailable()
    if reason:
        raise CommandExecutionError(reason)
    where = layout()
    path = persisted_path(where)
    return _list_table(run), _read_file(path), _read_file(where.main), path, _boot(), where


# ---------------------------------------------------------------- the policy in nftables' words


def set_name(group_name, version):
    return f"{group_name.lower()}-v{version}"


def _through_sets(access):
    """Is this access a source of a group (a peer, an admin subnet)? Those are set elements."""
    return access.group is not None and access.source is not None


def _by_proto(specs):
    found = {}
    for spec in sorted(specs):
        found.setdefault(spec.proto, []).append(spec)
    return found


def _source(network):
    protocol = files.ADDRESS_PROTOCOLS[network.version]
    return files.match(files.payload(protocol, "saddr"), files.address(network))


def _rules_of(access):
    """One policy access as rule texts (a group's set rules come from _set_rules)."""
    if access.limit:
        raise CommandExecutionError(
            "zimbra_fw:ssh:limit cannot be applied with nftables yet: set ssh:limit to false "
            "(or use the ufw backend, whose limit counts each address apart)"
        )
    head = [_source(access.source)] if access.source is not None else []
    if access.source_ports:  # the Salt master's replies, from its ports
        head.append(files.match(files.payload("tcp", "sport"), files.ports_value(_master_ports(access))))
        if not access.ports:
            return [files.rule_text([*head, ACCEPT])]
    if access.ports is None:
        return [files.rule_text([*head, ACCEPT])]
    return [
        files.rule_text([*head, files.match(files.payload(proto, "dport"), files.ports_value(specs)), ACCEPT])
        for proto, specs in _by_proto(access.ports).items()
    ]


def _master_ports(access):
    return [PortSpec(port, port, "tcp") for port in sorted(access.source_ports)]


def _set_rules(group, version):
    source = files.match(files.payload(files.ADDRESS_PROTOCOLS[version], "saddr"), "@" + set_name(group.name, version))
    return [
        files.rule_text([source, files.match(files.payload(proto, "dport"), files.ports_value(specs)), ACCEPT])
        for proto, specs in _by_proto(group.ports).items()
    ]


Desired = namedtuple("Desired", "sets rules")


_LAST = [None, None]  # (policy, Desired): the three parts of a run plan from one policy


def desired(policy):
    """The sets ({name: NftSet}) and the input chain's rules (texts, in order)."""
    if _LAST[0] is not policy:
        _LAST[:] = [policy, _desired(policy)]
    return _LAST[1]


def _desired(policy):
    rules = [rule for access in policies.management(policy) for rule in _rules_of(access)]
    rules += BASE_RULES
    sources = {}
    for access in policy.accesses:
        if access.kind in policies.MANAGEMENT_KINDS:
            continue
        if _through_sets(access):  # a group's sources share its rules
            if access.group not in sources:
                sources[access.group] = {4: set(), 6: set()}
                group = policy.groups[access.group]
                rules += [rule for version in (4, 6) for rule in _set_rules(group, version)]
            sources[access.group][access.source.version].add(access.source)
            continue
        rules += _rules_of(access)
    sets = {
        set_name(group, version): NftSet(files.SET_TYPES[version], files.SET_FLAGS, _elements(networks))
        for group, by_version in sources.items()
        for version, networks in by_version.items()
    }
    return Desired(sets, tuple(dict.fromkeys(rules)))  # each rule once, where it first comes


def _elements(networks):
    """A set's elements, sorted as they are read back. A network inside
    another is left out: an interval set refuses overlapping elements, and
    the wider one admits it."""
    wider = [net for net in networks if net.prefixlen < net.max_prefixlen]  # only these can hold others
    kept = [net for net in networks if not any(net != other and net.subnet_of(other) for other in wider)]
    return tuple(source_text(net) for net in sorted(kept, key=network_order))  # as value_text prints files.address(net)


def management_rules(policy):
    return [rule for access in policies.management(policy) for rule in _rules_of(access)]


CHAIN_POLICIES = ("accept", "drop")  # all nft lists; anything else is never rendered


def _live_policy(snapshot):
    """The input chain's policy, when it is one nft can have; else None."""
    found = snapshot.chain.policy if snapshot.chain is not None else None
    return found if found in CHAIN_POLICIES else None


def _final_policy(policy, snapshot):
    """The chain policy a converge ends with: drop, or as it is while
    zimbra_fw:enabled is false (accept when absent or unreadable)."""
    if policy.config.enabled:
        return "drop"
    return _live_policy(snapshot) or "accept"


def table_text(policy, chain_policy):
    wanted = desired(policy)
    return files.table_text(wanted.sets, wanted.rules, chain_policy)


def persisted_text(policy, chain_policy):
    return files.replacing(table_text(policy, chain_policy))


def _ports_text(specs):
    return ",".join(str(spec) for spec in sorted(specs))


def profiles(policy):
    """``{port group: ports text}``, the persisted file and its text."""
    return {
        "path": persisted_path(),
        "profiles": {name.lower(): _ports_text(group.ports) for name, group in policy.groups.items()},
        "text": persisted_text(policy, "drop" if policy.config.enabled else "accept"),
    }


# ---------------------------------------------------------------- planning (pure)


def _set_kind(nft_set):
    return f"{nft_set.type} {','.join(nft_set.flags)}" if nft_set is not None else None


def _table_changes(wanted, snapshot):
    """What loading ``wanted`` changes in the running table (empty: nothing)."""
    changes = {}
    if not snapshot.table:
        changes["table"] = {"old": None, "new": TABLE_NAME}
    if snapshot.flags:  # the reload creates the table anew, without flags
        changes["table flags"] = {"old": list(snapshot.flags), "new": []}
    have, want = set(snapshot.rules), set(wanted.rules)
    added = [rule for rule in wanted.rules if rule not in have]
    removed = [rule for rule in snapshot.rules if rule not in want]
    if not added and not removed and tuple(snapshot.rules) != tuple(wanted.rules):
        changes["order"] = {"old": list(snapshot.rules), "new": list(wanted.rules)}
    for name, nft_set in wanted.sets.items():
        current = snapshot.sets.get(name)
        elements = set(current.elements) if current is not None else set()
        wanted_elements = set(nft_set.elements)
        added += [f"{element} in set {name}" for element in nft_set.elements if element not in elements]
        if current is not None:
            removed += [f"{element} in set {name}" for element in current.elements if element not in wanted_elements]
        if _set_kind(current) != _set_kind(nft_set) and snapshot.table:
            changes.setdefault("sets", {})[name] = {"old": _set_kind(current), "new": _set_kind(nft_set)}
    for name in sorted(set(snapshot.sets) - set(wanted.sets)):
        changes.setdefault("sets", {})[name] = {"old": _set_kind(snapshot.sets[name]), "new": None}
        removed += [f"{element} in set {name}" for element in snapshot.sets[name].elements]
    spec = snapshot.chain[:3] if snapshot.chain is not None else None
    if snapshot.table and spec != files.CHAIN_SPEC:
        changes["chain"] = {"old": _chain_words(spec), "new": _chain_words(files.CHAIN_SPEC)}
    others = [name for name in snapshot.chains if name != CHAIN]
    if others:
        changes["chains removed"] = others
    if added:
        changes["added"] = added
    if removed:
        changes["removed"] = removed
    return changes


def _chain_words(spec):
    return "absent" if spec is None else f"type {spec[0]} hook {spec[1]} priority {spec[2]}"


def plan_rules(policy, snapshot):
    wanted = desired(policy)
    changes = _table_changes(wanted, snapshot)
    chain_policy = _live_policy(snapshot)
    if snapshot.active and chain_policy is None:  # never rendered: the policy the run ends with
        chain_policy = _final_policy(policy, snapshot)
        changes["chain policy"] = {"old": "unreadable", "new": chain_policy}
    if not changes:
        return Plan({}, [], None)
    if not snapshot.active:
        # A chain that filters nothing yet (none, unhooked, in a dormant
        # table) is loaded with the policy the run ends with: with drop, the
        # management rules come first in the same transaction, so default
        # deny never shuts them out and no second load is needed.
        old, chain_policy = chain_policy, _new_chain_policy(policy)
        if old != chain_policy and (old is not None or chain_policy == "drop"):  # None: no chain of ours
            changes["policy"] = {"old": old, "new": chain_policy}
    text = files.replacing(files.table_text(wanted.sets, wanted.rules, chain_policy))
    step = Step("load", (text,), f"replace table {TABLE_NAME} in one transaction (policy {chain_policy})")
    return Plan(changes, [step], None)


def _new_chain_policy(policy):
    return "drop" if policy.config.enabled else "accept"


def _management_check(policy):
    if policy.config.allow_no_management:
        return []
    return [Step("check", tuple(management_rules(policy)), "check that management access is allowed")]


def plan_firewall(policy, snapshot):
    if not policy.config.enabled:
        return Plan({}, [], f"zimbra_fw:enabled is false: the policy of table {TABLE_NAME}'s input chain is left alone")
    if snapshot.active and snapshot.incoming == "deny":
        return Plan({}, [], None)
    live = _live_policy(snapshot)
    if not snapshot.active or live is None:
        # The rules part loads this chain with policy drop. Run alone, this
        # part only checks, and so refuses where there is no table yet.
        comment = f"The rules part loads table {TABLE_NAME} with its input chain's policy drop"
        return Plan({}, _management_check(policy), comment)
    steps = [*_management_check(policy)]
    steps.append(Step("policy", (files.policy_text("drop"),), f"set the policy of {TABLE_NAME} input to drop"))
    return Plan({"policy": {"old": live, "new": "drop"}}, steps, None)


DIFF_LINES = 100  # a longer diff is summed up: thousands of set elements would fill the state output


def _file_diff(old, new, path):
    lines = list(difflib.unified_diff((old or "").splitlines(), new.splitlines(), path, path, lineterm="", n=0))
    changed = [line for line in lines[2:] if line[:1] in "+-"]
    if len(changed) > DIFF_LINES:
        added = sum(line.startswith("+") for line in changed)
        return f"{added} lines added, {len(changed) - added} removed"
    return "\n".join(lines)


def plan_profile(policy, snapshot):
    where = snapshot.layout
    path = persisted_path(where)
    text = persisted_text(policy, _final_policy(policy, snapshot))
    changes, steps = {}, []
    no_init = f"no init system here: nothing loads {where.main} at boot" if snapshot.boot is None else None
    if snapshot.persisted != text:
        changes["file"] = {"path": path, "diff": _file_diff(snapshot.persisted, text, path)}
        if no_init:
            changes["file"]["at boot"] = no_init
        steps.append(Step("write", (path, text), f"write {path} (checked by nft -c -f)"))
    if not snapshot.included:
        changes["include"] = {"path": where.main, "line": include_line(where)}
        steps.append(Step("include", (where.main, include_line(where)), f"add {include_line(where)} to {where.main}"))
    comment = f"{DONE['profile']}; {no_init}" if no_init else None
    if snapshot.boot is False:
        changes["boot"] = {"old": "disabled", "new": "enabled"}
        steps.append(Step("enable", (), f"systemctl enable {UNIT}"))
    return Plan(changes, steps, comment)


PLANNERS = {"profile": plan_profile, "rules": plan_rules, "firewall": plan_firewall}


def plan(part, policy, snapshot):
    return dispatch(PLANNERS, part, policy, snapshot)


DONE = {
    "profile": f"Table {TABLE_NAME} is persisted as configured",
    "rules": f"Table {TABLE_NAME} is as configured",
    "firewall": f"Table {TABLE_NAME} drops what its rules do not accept",
}


def _count_items(items):
    """'3 rules', '200 set elements' or '3 rules and 200 set elements'."""
    elements = [item for item in items if " in set " in item]
    rules = [item for item in items if " in set " not in item]
    counts = [count(rules, "rule")] if rules or not elements else []
    return " and ".join(counts + ([count(elements, "set element")] if elements else []))


def _table_words(changes, test):
    words = []
    if "table" in changes:
        words.append(said(test, f"created table {TABLE_NAME}", f"table {TABLE_NAME} would be created"))
    if "table flags" in changes:
        flags = ", ".join(changes["table flags"]["old"])
        words.append(
            said(test, f"cleared the table's flags ({flags})", f"the table's flags ({flags}) would be cleared")
        )
    return words


def describe(changes, test):
    """What the changes are, in words: 'Added 3 rules and 200 set elements'."""
    words = []
    if "file" in changes:
        path = changes["file"]["path"]
        words.append(said(test, f"wrote {path}", f"{path} would be written"))
    if "include" in changes:
        main = changes["include"]["path"]
        words.append(said(test, f"included it from {main}", f"it would be included from {main}"))
    if "boot" in changes:
        words.append(said(test, f"enabled {UNIT} at boot", f"{UNIT} would be enabled at boot"))
    if changes.get("file", {}).get("at boot"):
        words.append(changes["file"]["at boot"])
    words += _table_words(changes, test)
    for key in ("added", "removed"):
        if key in changes:
            counted = _count_items(changes[key])
            words.append(said(test, f"{key} {counted}", f"{counted} would be {key}"))
    for name, kinds in changes.get("sets", {}).items():
        state = "added" if kinds["old"] is None else "removed" if kinds["new"] is None else "retyped"
        words.append(said(test, f"{state} set {name}", f"set {name} would be {state}"))
    if "chain" in changes:
        words.append(said(test, "hooked the input chain at filter priority", "the input chain would be hooked"))
    if "chains removed" in changes:
        chains = ", ".join(changes["chains removed"])
        words.append(said(test, f"removed chains {chains}", f"chains {chains} would be removed"))
    if "order" in changes:
        words.append(said(test, "put the rules back in order", "the rules would be put back in order"))
    if "chain policy" in changes:
        new = changes["chain policy"]["new"]
        words.append(said(test, f"replaced an unreadable chain policy by {new}", f"the chain policy would be {new}"))
    if "policy" in changes:
        new = changes["policy"]["new"]
        words.append(said(test, f"set the input chain's policy to {new}", f"the input chain's policy would be {new}"))
    return sentence(words)


# ---------------------------------------------------------------- applying


def _load(run, text):
    """Check ``text`` with ``nft -c -f``, then load it with ``nft -f``: one transaction."""
    checked(run_with_stdin(run, text), [PROGRAM, "-c", "-f", "/dev/stdin"])
    checked(run_with_stdin(run, text), [PROGRAM, "-f", "/dev/stdin"])


def run_with_stdin(run, text):
    return lambda argv: run(argv, stdin=text)


def _check_management(run, required):
    found = _read_table(run)
    rules = found.rules.get(CHAIN, ()) if found is not None else ()
    present = {text for text, _ in rules}
    missing = [rule for rule in required if rule not in present]
    if missing:
        raise CommandExecutionError(
            "refusing to set policy drop: management access is not allowed yet "
            f"(missing from {TABLE_NAME}: {', '.join(missing)}); apply the zimbra_fw rules first"
        )


def _add_include(main, line):
    current = _read_file(main)
    if current is not None and includes(current, line.split('"')[1]):
        return
    mode = os.stat(main).st_mode & 0o7777 if current is not None else 0o755
    head = current if current is not None else f"#!/usr/sbin/{PROGRAM} -f\n"
    if head and not head.endswith("\n"):
        head += "\n"
    write_atomic(main, f"{head}# zimbra_fw's table (Salt)\n{line}\n", mode)


def _apply_step(step, run):
    if step.action in {"load", "policy"}:
        _load(run, step.args[0])
    elif step.action == "check":
        _check_management(run, step.args)
    elif step.action == "write":
        path, text = step.args
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        write_atomic(path, text, check=lambda temp: checked(run, [PROGRAM, "-c", "-f", temp]))
    elif step.action == "include":
        _add_include(*step.args)
    elif step.action == "enable":
        checked(run, ["systemctl", "enable", UNIT])
    else:
        raise CommandExecutionError(f"unknown plan step {step!r}")


def apply(steps, run):
    """Carry out planned steps in order; returns what was applied. On failure
    raises ApplyFailed naming the failed step and the steps already applied."""
    applied = []
    for step in steps:
        try:
            _apply_step(step, run)
        except (CommandExecutionError, OSError) as exc:
            raise ApplyFailed.at(step.describe, str(exc), applied) from exc
        applied.append(step.describe)
    return applied


# ---------------------------------------------------------------- status and audit


def status(snapshot):
    path = persisted_path(snapshot.layout)
    return {
        "backend": NAME,
        "active": snapshot.active,
        "default_incoming": snapshot.incoming,
        "table": TABLE_NAME if snapshot.table else None,
        "managed_rules": list(snapshot.rules),
        "other_rules": [],  # other tables are not ours to read on a run
        "sets": {name: sorted(found.elements, key=files.sort_key) for name, found in sorted(snapshot.sets.items())},
        "persisted": path if snapshot.persisted is not None else None,
        "included": snapshot.included,
        "boot": snapshot.boot,
    }


def _port_specs(proto, value):
    """PortSpecs of a dport match's JSON value (None when unreadable)."""
    values = value["set"] if isinstance(value, dict) and "set" in value else [value]
    specs = []
    for item in values:
        if isinstance(item, int) and not isinstance(item, bool):
            specs.append(PortSpec(item, item, proto))
        elif isinstance(item, dict) and isinstance(item.get("range"), list) and len(item["range"]) == 2:
            specs.append(PortSpec(*item["range"], proto))
        else:
            return None
    return specs


def _source_texts(value, sets):
    """A saddr match's sources: an address, a prefix, or a named set's elements."""
    if isinstance(value, str) and value.startswith("@"):
        found = sets.get(value[1:])
        return [text for element in (found.elements if found else ()) for text in _element_sources(element)]
    return _element_sources(files.value_text(value))


def _element_sources(text):
    return address_sources(text) or ["any"]  # a source the audit cannot read counts as anyone


# Statements that neither decide nor hide a verdict: they count, log or narrow.
PASSIVE = ("counter", "log", "limit")
ANYONE = Rule("allow", "any", None)  # what an accept the audit cannot read exactly counts as


def _statement_kinds(exprs):
    """Each expression's kind ("match", "accept", ...); None for one that is no single-key dict."""
    return [next(iter(expr)) if isinstance(expr, dict) and len(expr) == 1 else None for expr in exprs]


def _rule_access(exprs, sets):
    """[Rule] of one rule of our chain, as the audit reads it: [] for the rules
    it judges apart (loopback, replies, invalid packets dropped, ICMP) and for
    a deny it cannot read exactly (it keeps no one out); an accept it cannot
    read exactly, or a rule whose verdict it cannot see, is from anyone to
    every port."""
    kinds = _statement_kinds(exprs)
    verdicts = [kind for kind in kinds if kind in files.VERDICTS]
    if not verdicts or any(kind not in ("match", *files.VERDICTS, *PASSIVE) for kind in kinds):
        return [ANYONE]  # a jump, goto, vmap or unknown statement may accept anything
    action = ("allow", "deny", "reject")[files.VERDICTS.index(verdicts[0])]
    sources, ports, exact = ["any"], None, True
    for expr in exprs:
        inner = expr.get("match")
        if inner is None:
            continue
        left, op, right = _match_parts(inner)
        if left in ("icmp type", "icmpv6 type") and op in files.OPS:
            return []  # ICMP packets only
        if left == "ct state" and _judged_apart(op, right, action):
            return []
        if left in ("iif", "iifname") and op == "==":
            if right == "lo":
                return []  # loopback: the audit judges listeners on it apart
        elif left in ("ip saddr", "ip6 saddr") and op == "==":
            sources = _source_texts(right, sets)
        elif left in ("tcp dport", "udp dport") and op == "==":
            ports = _port_specs(left.split()[0], right)
            exact = exact and ports is not None
        elif left not in ("tcp sport", "udp sport") or op not in files.OPS:
            exact = False  # a negation, another ct state, a match the printer cannot print
    if not exact:
        return [ANYONE] if action == "allow" else []
    return [Rule(action, source, ports) for source in sources]


def _match_parts(inner):
    if not isinstance(inner, dict):
        return None, None, None
    return files.left_text(inner.get("left")), inner.get("op"), inner.get("right")


def _judged_apart(op, right, action):
    """``ct state established,related accept`` and ``ct state invalid drop``."""
    if op != "in":
        return False
    if action == "allow":
        return isinstance(right, list) and sorted(right) == ["established", "related"]
    return right in ("invalid", ["invalid"])


def access_rules(snapshot):
    """Our input chain's rules in order. Other tables' accepts let nothing
    past our chain: a packet must pass every base chain on the input hook."""
    return [rule for exprs in snapshot.exprs for rule in _rule_access(exprs, snapshot.sets)]


def own_rules(snapshot):
    """Every rule of our table is ours: all of them, as the audit reads them."""
    return access_rules(snapshot)


def audit_findings(snapshot):
    """``[(severity, message)]``: our table is switched off by its flags, or
    would not survive a reboot."""
    if not snapshot.table:
        return []
    findings = []
    if snapshot.flags:
        dormant = " (dormant: it filters nothing)" if "dormant" in snapshot.flags else ""
        findings.append(
            ("high", f"table {TABLE_NAME} has flags {', '.join(snapshot.flags)}{dormant}; apply the zimbra_fw states")
        )
    path = persisted_path(snapshot.layout)
    if snapshot.persisted is None or not snapshot.included:
        findings.append(
            (
                "medium",
                f"table {TABLE_NAME} is not persisted ({path} included from {snapshot.layout.main}): "
                "after a reboot the firewall is open; apply the zimbra_fw states",
            )
        )
    elif snapshot.persisted != _live_text(snapshot):
        findings.append(
            (
                "medium",
                f"{path} differs from the running table {TABLE_NAME}: a reboot loads another firewall; "
                "apply the zimbra_fw states",
            )
        )
    if snapshot.boot is False:
        findings.append(
            ("medium", f"{UNIT} is not enabled: nothing loads table {TABLE_NAME} at boot; systemctl enable {UNIT}")
        )
    elif snapshot.boot is None:  # low: no state can fix it, and it widens nothing until a reboot
        findings.append(("low", f"no init system here: nothing loads table {TABLE_NAME} at boot"))
    return findings


def _live_text(snapshot):
    """The running table as the persisted file would hold it (elements in
    address order, as they are rendered)."""
    sets = {
        name: found._replace(elements=tuple(sorted(found.elements, key=files.sort_key)))
        for name, found in snapshot.sets.items()
    }
    return files.replacing(files.table_text(sets, snapshot.rules, _live_policy(snapshot) or "unreadable"))


def prepare_stopped(policy, run, test=False):  # pylint: disable=unused-argument
    """Nothing to prepare: nftables is no daemon, the policy drops only once its rules are in."""
    return []


# ---------------------------------------------------------------- rollback


def saved_paths(where=None):
    """The files a rollback puts back: the persisted table and the main configuration."""
    where = where or layout()
    return (persisted_path(where), where.main)


def save(run, config=None):  # pylint: disable=unused-argument
    """Our table as nft lists it (None: absent) and the files a run writes, byte for byte."""
    retcode, stdout, stderr = run([PROGRAM, "list", "table", FAMILY, TABLE])
    if retcode != 0 and "No such file or directory" not in stderr:
        raise CommandExecutionError(f"'nft list table {TABLE_NAME}' failed (exit {retcode}): {stderr.strip()}")
    return {"files": save_files(saved_paths()), "table": stdout if retcode == 0 else None}


def restore(saved, run):
    """Put back what ``save`` returned: the files (each replaced atomically),
    then the table, replaced whole or deleted in one transaction."""
    restore_files({path: saved["files"][path] for path in saved_paths() if path in saved["files"]})
    table = saved.get("table")
    _load(run, files.replacing(table) if table else f"table {FAMILY} {TABLE} {{}}\ndelete table {FAMILY} {TABLE}\n")
