"""
The firewalld backend: the policy as firewalld services, ipsets and rich
rules in one zone, permanent and runtime alike.

* Each port group is a permanent service (``zimbra``, ``zimbra-mta``, ...;
  /etc/firewalld/services/NAME.xml) whose description carries ``MARK``.
* Each group that only some sources may reach (peers of a role, the admin
  subnets) has two permanent hash:net ipsets, ``SERVICE-v4`` and
  ``SERVICE-v6`` (/etc/firewalld/ipsets), marked the same way; its sources
  are their entries. A peer joining or leaving is one entry, not one rule.
* In the zone (pillar ``firewalld:zone``, else firewalld's default zone) the
  public group is a zone service; every other access is a rich rule with
  priority ``PRIORITY`` (one per ipset for the groups): positive priorities
  run after the zone's own services, ports and rules, so an admin's reject
  rule still wins, and the priority marks the rule as this formula's (only
  those are ever removed).
* ``read_snapshot(run, live)`` reads firewalld once, over D-Bus, in this
  process (zimbra_fw_firewalld_read), and our service and ipset files.
* ``plan(part, policy, snapshot)`` is pure; ``apply(steps, run)`` carries
  the steps out over D-Bus, in this process (zimbra_fw_firewalld_client).
  Services and ipsets are defined permanently only: firewalld loads new or
  changed ones on ``reload``, which the profile part does only then, after
  putting the rules and ipset entries in the permanent configuration, so
  that one reload loads them all. Otherwise ipset entries and rules change
  in both scopes without a reload.
* ``save(run, config)`` and ``restore(saved, run)``: firewalld as a rollback
  puts it back (zimbra_fw_rollback): the files of our services and ipsets
  and of the zone (permanent), and the zone's and our ipsets' runtime state.
"""

import ipaddress
import json
import os
import re
from collections import namedtuple

import salt.utils.path
import zimbra_fw_audit as audit
import zimbra_fw_firewalld_client as client
import zimbra_fw_firewalld_files as files
import zimbra_fw_firewalld_read as reader
import zimbra_fw_noop as noop
import zimbra_fw_policy as policies
from salt.exceptions import CommandExecutionError
from zimbra_fw_audit import Rule
from zimbra_fw_backend import PARTS, Plan, Step, count, dispatch, group_changes, said, sentence
from zimbra_fw_catalogue import ROLES
from zimbra_fw_commands import (
    ApplyFailed,
    FirewallStopped,
    checked,
    checked_output,
)
from zimbra_fw_config import ZONE_NAME_RE, source_text
from zimbra_fw_firewalld_files import MARK, IPSet
from zimbra_fw_rollback import restore_files, save_files


def __virtual__():
    return (False, "zimbra_fw_firewalld is a library of the zimbra_fw module, not a Salt util")


NAME = "firewalld"
PACKAGE = SERVICE = "firewalld"
PROGRAM = "firewall-cmd"
LIVE_PARTS = PARTS  # every part reads firewalld over D-Bus
RULE_PARTS = PARTS  # the profile and firewall parts reload: the runtime gets the permanent configuration's rules
PRIORITY = 32000
IPSET_TYPE = "hash:net"
IPSET_NAME_MAX = 32  # firewalld's limit
FAMILIES = {4: "inet", 6: "inet6"}
RULE_PREFIX = f'rule priority="{PRIORITY}" '
OFFLINE_PROGRAM = "firewall-offline-cmd"
SERVICE_NAMED = re.compile(r'service name="([^"]+)"')  # firewalld's permanent configuration while it does not run

Zone = namedtuple("Zone", "services rules target ports")
SCOPES = ("runtime", "permanent")


# services: our permanent services, {name: ((port, proto), ...)}; runtime_services:
# the ports firewalld runs with for those names (absent: not loaded). ipsets: our
# permanent ipsets, {name: IPSet}; runtime_ipsets: every ipset firewalld runs with.
# active_zones: {zone: (interfaces, sources)} of the zones holding any (runtime);
# interfaces: this host's interfaces but lo. Both None when not read.
# other_services: {name: (PortSpec, ...)} of the services that are not ours
# which the zone holds or its rich rules name (either scope), from their
# files; None when not read.
_FIELDS = (
    "active zone default_zone services runtime_services ipsets runtime_ipsets permanent runtime active_zones interfaces"
    " other_services fingerprint"
)


class Snapshot(namedtuple("Snapshot", _FIELDS, defaults=(None, None, None, None))):
    __slots__ = ()

    @property
    def incoming(self):
        """What the zone does with what no rule allows, in ufw's words (the audit's)."""
        return "allow" if self.runtime.target.upper() == "ACCEPT" else "deny"


def unavailable():
    """Why firewalld cannot be used on this minion, or None."""
    if salt.utils.path.which("firewall-cmd") is None:
        return "firewalld is not available on this minion: install the 'firewalld' package"
    return None


def ipv6_off():
    """firewalld zones handle IPv6 and IPv4 alike."""
    return None


def _possible_ipsets(name):
    """Every ipset name the port groups of profile ``name`` can have."""
    suffixes = (*ROLES, policies.ALL_PEERS, policies.ADMIN_SUFFIX)
    return [ipset_name(f"{name}-{suffix}", version) for suffix in suffixes for version in FAMILIES]


def name_taken(name):
    """Why firewalld cannot use ``name`` for our services and ipsets, or None."""
    if "." in name:  # firewalld's service and ipset names: letters, digits, _ and -
        return "has a '.', which firewalld's service and ipset names cannot hold"
    service, ipsets = service_name(name), _possible_ipsets(name)
    longest = max(ipsets, key=len)
    if len(longest) > IPSET_NAME_MAX:
        most = len(name) - (len(longest) - IPSET_NAME_MAX)
        return f"is too long for firewalld's ipset names ({longest}, over {IPSET_NAME_MAX}): {most} characters at most"
    for directory in files.SERVICE_DIRS:
        found = files.read_service(os.path.join(directory, service + ".xml"))
        if found is not None and MARK not in found[1]:
            return f"is a firewalld service already ({service}, in {directory}); choose another profile:name"
    for directory in files.IPSET_DIRS:
        for ipset in ipsets:
            found = files.read_ipset(os.path.join(directory, ipset + ".xml"))
            if found is not None and MARK not in found[0]:
                return f"names a firewalld ipset already ({ipset}, in {directory}); choose another profile:name"
    return None


# ---------------------------------------------------------------- reading


def _zone(view):
    ports = tuple(tuple(port) for port in view["ports"])
    return Zone(frozenset(view["services"]), tuple(view["rich_rules"]), view["target"], ports)


def read_snapshot(run, live=True, config=None):  # pylint: disable=unused-argument
    """firewalld as it is now: our permanent services and ipsets (from their
    files) and, over D-Bus in one process, the zone's permanent and runtime
    settings (the zone of ``config.zone``, else the default zone)."""
    zone = config.zone if config is not None else None
    reads, state, own_services = _read(run, zone)
    runtime_services = {name: tuple(tuple(p) for p in ports) for name, ports in state["runtime_services"].items()}
    runtime_ipsets = {
        name: IPSet(found["type"], found["family"], tuple(sorted(found["entries"])))
        for name, found in state["ipsets"].items()
    }
    return Snapshot(
        True,
        state["zone"],
        state["default_zone"],
        own_services,
        runtime_services,
        files.own_ipsets(reads.ipsets),
        runtime_ipsets,
        _zone(state["permanent"]),
        _zone(state["runtime"]),
        {name: (tuple(held["interfaces"]), tuple(held["sources"])) for name, held in state["active_zones"].items()},
        tuple(state["interfaces"]),
        {name: tuple(files.ports_of(found)) for name, found in reads.others},
        noop.digest(reads),
    )


def read_fingerprint(run, zone=None):
    """The fingerprint read_snapshot(run) would carry with ``zone`` as
    config.zone, from the same reads, the ipsets unparsed."""
    return noop.digest(_read(run, zone)[0])


# What a snapshot is parsed from: the zone asked for, our service and ipset
# files (files.xml_files), what firewalld answered over D-Bus (as JSON), and
# the files of the other services the zone names (files.service_files).
Reads = namedtuple("Reads", "zone services ipsets answer others")


def _read(run, zone):  # pylint: disable=unused-argument
    """(Reads, firewalld's state, our services): firewalld read once, in this process, its answer checked."""
    reason = unavailable()
    if reason:
        raise CommandExecutionError(reason)
    services = files.xml_files(files.SERVICE_DIRS[-1])
    own = files.own_services(services)
    try:
        state = reader.state(zone, sorted(own))
    except (reader.dbus.DBusFailure, OSError) as exc:
        raise CommandExecutionError(f"reading firewalld over D-Bus failed: {exc}") from exc
    if not state["running"]:
        raise FirewallStopped(
            "firewalld is not running: start it (systemctl enable --now firewalld); "
            "'firewall-cmd --state' must say running"
        )
    if state["permanent"] is None:  # the zone is not one of firewalld's
        known = ", ".join(state["zones"])
        if zone is not None:
            raise CommandExecutionError(f"zimbra_fw:firewalld:zone: {zone!r} is not a firewalld zone (zones: {known})")
        raise CommandExecutionError(
            f"firewalld's default zone {state['zone']!r} is not one of its zones ({known}): "
            "was firewalld reloaded meanwhile? Run again"
        )
    others = set()
    for scope in ("permanent", "runtime"):
        others.update(state[scope]["services"])
        others.update(name for rule in state[scope]["rich_rules"] for name in SERVICE_NAMED.findall(rule))
    others -= set(own)
    answer = json.dumps(state, sort_keys=True, ensure_ascii=False)  # as zimbra_fw_noop.inputs_digest
    reads = Reads(zone, services, files.xml_files(files.IPSET_DIRS[-1]), answer, files.service_files(sorted(others)))
    return reads, state, own


# ---------------------------------------------------------------- the policy in firewalld's words


def service_name(group_name):
    return group_name.lower()


def _range_text(first, last):
    return str(first) if first == last else f"{first}-{last}"


def _port_text(spec):
    return _range_text(spec.first, spec.last)


def _ranges(ports):
    """Consecutive port numbers as (first, last) ranges."""
    ranges = []
    for port in sorted(ports):
        if ranges and ranges[-1][1] == port - 1:
            ranges[-1] = (ranges[-1][0], port)
        else:
            ranges.append((port, port))
    return ranges


def ipset_name(group_name, version):
    return f"{service_name(group_name)}-v{version}"


def _through_ipsets(access):
    """Is this access a source of a group (a peer, an admin subnet)? Those
    are entries of the group's ipsets, reached by one rule per family."""
    return access.group is not None and access.source is not None


def rich_rules(access):
    """One policy access as rich rules (none for the public group: a zone service)."""
    if access.kind == policies.ANYONE:
        return []
    if access.limit:
        # A rich rule's limit is one rate shared by every source: one
        # scanner's attempts would lock everybody out of ssh.
        raise CommandExecutionError(
            "zimbra_fw:ssh:limit cannot be applied with firewalld: a rich rule's limit is one rate "
            "shared by every source; set ssh:limit to false"
        )
    if _through_ipsets(access):
        service = service_name(access.group)
        return [
            f'{RULE_PREFIX}source ipset="{ipset_name(access.group, version)}" service name="{service}" accept'
            for version in FAMILIES
        ]
    head = RULE_PREFIX
    if access.source is not None:
        head += f'family="ipv{access.source.version}" source address="{source_text(access.source)}" '
    if access.source_ports and not access.ports:  # the Salt master's replies, from its ports
        ranges = _ranges(access.source_ports)
        return [f'{head}source-port port="{_range_text(*r)}" protocol="tcp" accept' for r in ranges]
    if access.ports is None:
        return [head + "accept"]
    # A rich rule holds one element: with source ports and ports (the Salt
    # master's replies to the minion's ephemeral ports) the ports are enough.
    return [f'{head}port port="{_port_text(spec)}" protocol="{spec.proto}" accept' for spec in access.ports]


Desired = namedtuple("Desired", "services rules entries")


def desired(policy):
    """Zone services, rich rules (in the policy's order) and ``{ipset: entries}``."""
    services = {service_name(a.group) for a in policy.accesses if a.kind == policies.ANYONE}
    rules, sources, ipsets = [], {}, {}
    for access in policy.accesses:
        if _through_ipsets(access):  # a group's sources share its rules: names made once a group
            if access.group not in ipsets:
                ipsets[access.group] = {version: ipset_name(access.group, version) for version in FAMILIES}
                rules += [rule for rule in rich_rules(access) if rule not in rules]
                for name in ipsets[access.group].values():
                    sources.setdefault(name, set())
            sources[ipsets[access.group][access.source.version]].add(access.source)
            continue
        rules += [rule for rule in rich_rules(access) if rule not in rules]
    entries = {name: _entries(networks) for name, networks in sources.items()}
    return Desired(frozenset(services), tuple(rules), entries)


def _entries(networks):
    """An ipset's entries, sorted as firewalld's are read. A network inside
    another is left out: firewalld refuses overlapping entries, and the wider
    one admits it."""
    wider = [net for net in networks if net.prefixlen < net.max_prefixlen]  # only these can hold others
    if wider:
        networks = [net for net in networks if not any(net != other and net.subnet_of(other) for other in wider)]
    return tuple(sorted(source_text(net) for net in networks))


def ipset_definitions(policy):
    """``{ipset name: {"short", "description", "family"}}``: two per group that sources reach."""
    definitions = {}
    for name in dict.fromkeys(access.group for access in policy.accesses if _through_ipsets(access)):
        group = policy.groups[name]
        for version, family in FAMILIES.items():
            definitions[ipset_name(group.name, version)] = {
                "short": f"{group.title} IPv{version}",
                "description": f"Sources that may reach the {service_name(group.name)} service. {MARK}",
                "family": family,
            }
    return definitions


def service_definitions(policy):
    """``{service name: {"short", "description", "ports"}}`` for the policy's port groups."""
    return {
        service_name(name): {
            "short": group.title,
            "description": f"{group.description} {MARK}",
            "ports": [(_port_text(spec), spec.proto) for spec in sorted(group.ports)],
        }
        for name, group in policy.groups.items()
    }


def _ports_text(ports):
    return ",".join(f"{port}/{proto}" for port, proto in ports)


def profiles(policy):
    """``{service name: ports text}`` and where the services live."""
    definitions = service_definitions(policy)
    return {
        "path": files.SERVICE_DIRS[-1],
        "profiles": {name: _ports_text(d["ports"]) for name, d in definitions.items()},
        "text": None,
    }


# ---------------------------------------------------------------- planning (pure)


def _ours(zone, own_names):
    """(services, rules) of a zone that are this formula's."""
    return zone.services & own_names, tuple(r for r in zone.rules if r.startswith(RULE_PREFIX))


def _zone_change(zone, own_names, services, rules, foreign=None):
    """What makes ``zone`` hold ``services`` and ``rules`` of ours, and lose
    ``foreign`` (foreign_openings): the change, or None."""
    our_services, our_rules = _ours(zone, own_names)
    foreign = foreign or {}
    change = {
        "add_services": sorted(services - zone.services),
        "add_rules": [r for r in rules if r not in zone.rules],
        "remove_services": sorted((our_services - services) | set(foreign.get("services", ()))),
        # firewalld's order varies
        "remove_rules": sorted({r for r in our_rules if r not in rules} | set(foreign.get("rules", ()))),
    }
    if foreign.get("ports"):
        change["remove_ports"] = foreign["ports"]
    return change if any(change.values()) else None


def foreign_openings(policy, snapshot, zone):
    """What ``zone`` (runtime or permanent) holds that is not this formula's
    and widens access (zimbra_fw_audit.widens): ``{"services", "ports",
    "rules"}`` (a zone service someone added, ``--add-port=11211/tcp``)."""

    def widens(ports):
        return audit.widens(Rule("allow", "any", ports), policy)

    others = snapshot.other_services or {}
    return {
        "services": sorted(name for name in zone.services if name in others and widens(others[name])),
        "ports": [list(port) for port in zone.ports if widens([files.port_spec(*port)])],
        "rules": [
            rule
            for rule in zone.rules
            if not rule.startswith(RULE_PREFIX)
            and any(
                audit.widens(found, policy)
                for _, found in files.rich_rule_access(rule, snapshot.runtime_ipsets, others)
            )
        ],
    }


# A runtime ipset whose entries change this many times more than stay is
# refilled in one call (its staying entries covered by a rule each).
REFILL_RATIO = 20


def _entries_change(ipsets, entries, cover_zone=None):
    """``{ipset: {"add", "remove"}}`` that makes ``ipsets`` hold ``entries``.
    With ``cover_zone`` (the runtime), an ipset whose new entries overlap
    leaving ones gets ``"cover": {"zone", "rules"}``: a rich rule per such new
    entry, held while it replaces them (see the client's change_entries); one
    whose entries change REFILL_RATIO times more than stay gets ``"refill"``
    and a cover rule per staying entry too."""
    change = {}
    for name, wanted in entries.items():
        current = ipsets[name].entries if name in ipsets else ()
        have, want = set(current), set(wanted)  # thousands of entries: no list scans
        add, remove = [e for e in wanted if e not in have], [e for e in current if e not in want]
        if add or remove:
            change[name] = {"add": add, "remove": remove}
            covered = _replacing(add, remove)
            stays = [e for e in current if e in want]
            if cover_zone is not None and stays and len(stays) * REFILL_RATIO <= len(add) + len(remove):
                # One entry at a time, firewalld checks each against every entry (N^2):
                # refill the set in one call, the entries that stay held by cover rules.
                change[name]["refill"] = True
                covered += stays
            rules = _cover_rules(name, covered)
            if cover_zone is not None and rules:
                change[name]["cover"] = {"zone": cover_zone, "rules": rules}
    return change


def _replacing(add, remove):
    """The added entries that overlap a removed one. Two hosts overlap only
    when they are one (never here: an entry is added or removed), so a new
    host is compared with the removed subnets only."""
    if not add or not remove:  # peers only join, or only leave: nothing is replaced
        return []
    leaving = [ipaddress.ip_network(old, strict=False) for old in remove]
    subnets = [old for old in leaving if old.prefixlen < old.max_prefixlen]
    replacing = []
    for new in add:
        network = ipaddress.ip_network(new)
        against = subnets if network.prefixlen == network.max_prefixlen else leaving
        if any(network.overlaps(old) for old in against):
            replacing.append(new)
    return replacing


def _cover_rules(name, entries):
    """Rich rules admitting each of ``entries`` to ipset ``name``'s service."""
    service, version = name.rsplit("-v", 1)
    return [
        f'{RULE_PREFIX}family="ipv{version}" source address="{entry}" service name="{service}" accept'
        for entry in entries
    ]


def _describe(change, entries_change):
    texts = {"added": [], "removed": []}
    for key, verb in (("services", "service"), ("ports", "port"), ("rules", None)):
        for direction, label in (("add", "added"), ("remove", "removed")):
            items = change.get(f"{direction}_{key}", [])
            if key == "ports":
                items = ["/".join(port) for port in items]
            texts[label] += [f"{verb} {item}" if verb else item for item in items]
    for name, items in entries_change.items():
        texts["added"] += [f"{entry} in ipset {name}" for entry in items["add"]]
        texts["removed"] += [f"{entry} in ipset {name}" for entry in items["remove"]]
    return {label: items for label, items in texts.items() if items}


def _summary(change):
    counts = [f"{len(items)} {key.replace('_', ' ')}" for key, items in change.items() if items]
    return ", ".join(counts)


def _zone_step(snapshot, scope, change):
    return Step("zone", (snapshot.zone, scope, change), f"{scope} zone {snapshot.zone}: {_summary(change)}")


def _scope_steps(snapshot, own_names, wanted, policy=None):
    """``{scope: steps}`` and the changes that make both scopes hold
    ``wanted`` (a Desired): ipset entries, then the zone's services and
    rules; with ``policy``, the foreign openings go too (zimbra_fw:close_foreign)."""
    steps, described = {}, {}
    for scope in SCOPES:
        steps[scope] = []
        zone = getattr(snapshot, scope)
        foreign = foreign_openings(policy, snapshot, zone) if policy is not None else None
        ipsets = snapshot.runtime_ipsets if scope == "runtime" else snapshot.ipsets
        entries_change = _entries_change(ipsets, wanted.entries, snapshot.zone if scope == "runtime" else None)
        if entries_change:
            added = sum(len(c["add"]) for c in entries_change.values())
            removed = sum(len(c["remove"]) for c in entries_change.values())
            text = f"{scope} ipset entries: {added} added, {removed} removed"
            steps[scope].append(Step("entries", (scope, entries_change), text))
        change = _zone_change(zone, own_names, wanted.services, wanted.rules, foreign)
        if change:
            steps[scope].append(_zone_step(snapshot, scope, change))
        if change or entries_change:
            described[scope] = _describe(change or {}, entries_change)
    if described.get("runtime") == described.get("permanent"):
        return steps, described.get("runtime", {})
    return steps, described


def _kind(ipset):
    return f"{ipset.type} {ipset.family}" if ipset is not None else None


def _wanted_kind(definition):
    """The kind of the ipset an ``ipset_definitions`` entry defines."""
    return _kind(IPSet(IPSET_TYPE, definition["family"], ()))


def _definition_steps(policy, snapshot):
    """Changes and steps that write, redefine and remove our services and
    ipsets (permanent), and the snapshot they leave: the zone without what
    named retired ones, the ipsets written anew empty."""
    wanted = service_definitions(policy)
    wanted_sets = ipset_definitions(policy)
    changes, steps = {}, []
    retired = sorted(set(snapshot.services) - set(wanted))
    retired_sets = sorted(set(snapshot.ipsets) - set(wanted_sets))
    # Rules and zone entries naming a service or an ipset go before it does.
    removed, left = set(), snapshot
    for scope in SCOPES:
        zone = getattr(snapshot, scope)
        change = {
            "remove_services": sorted(zone.services & set(retired)),
            "remove_rules": sorted(r for r in _ours(zone, set())[1] if _names_any(r, retired + retired_sets)),
        }
        if any(change.values()):
            steps.append(_zone_step(snapshot, scope, change))
            removed.update(f"service {name}" for name in change["remove_services"])
            removed.update(change["remove_rules"])
            left = left._replace(**{scope: _zone_after(zone, change)})
    if removed:
        changes["rules removed"] = sorted(removed)
    for name, definition in wanted.items():
        ports = tuple(definition["ports"])
        if snapshot.services.get(name) != ports:
            changes.setdefault("ports", {})[name] = {
                "old": _ports_text(snapshot.services[name]) if name in snapshot.services else None,
                "new": _ports_text(ports),
            }
            steps.append(Step("service", (name, definition), f"write service {name}"))
    for name, definition in wanted_sets.items():
        kind = _wanted_kind(definition)
        if _kind(snapshot.ipsets.get(name)) != kind:
            changes.setdefault("ipsets", {})[name] = {"old": _kind(snapshot.ipsets.get(name)), "new": kind}
            steps.append(Step("ipset", (name, definition), f"write ipset {name}"))
            left = left._replace(ipsets={n: s for n, s in left.ipsets.items() if n != name})  # written empty
    for name in retired:
        changes.setdefault("ports", {})[name] = {"old": _ports_text(snapshot.services[name]), "new": None}
        steps.append(Step("drop-service", (name,), f"remove service {name}"))
    for name in retired_sets:
        changes.setdefault("ipsets", {})[name] = {"old": _kind(snapshot.ipsets[name]), "new": None}
        steps.append(Step("drop-ipset", (name,), f"remove ipset {name}"))
    return changes, steps, left


def _stale(policy, snapshot):
    """Our services and ipsets that the runtime lacks, or runs with other ports, type or family."""
    services = service_definitions(policy).items()
    stale = [name for name, definition in services if snapshot.runtime_services.get(name) != tuple(definition["ports"])]
    sets = ipset_definitions(policy).items()
    return stale + [name for name, d in sets if _kind(snapshot.runtime_ipsets.get(name)) != _wanted_kind(d)]


def plan_profile(policy, snapshot):
    changes, steps, left = _definition_steps(policy, snapshot)
    stale = _stale(policy, snapshot)
    if steps or stale:
        # The reload makes the runtime what the permanent configuration holds:
        # with the rules and ipset entries there first, the one reload loads
        # them too (no runtime call of their own; no ipset it loads runs empty).
        # The changes say what that makes of each scope.
        rule_steps, rule_changes = _rule_steps(policy, left)
        reloaded_only = stale and not changes
        changes.update(rule_changes)
        if reloaded_only:
            changes.setdefault("runtime", {})["reloaded"] = stale
        others = _reload_others(left, _own_names(policy, snapshot), rule_steps)
        if others:
            changes.setdefault("runtime", {})["others"] = others
        steps += [
            *rule_steps["permanent"],
            Step("reload", (), "firewall-cmd --reload (loads the services, ipsets and rules)"),
        ]
    return Plan(changes, steps, None)


def _zone_after(zone, change):
    """``zone`` as the client's zone step leaves it after ``change``."""
    settings = {"services": sorted(zone.services), "rules_str": list(zone.rules), "ports": list(zone.ports)}
    settings.update(client.zone_update(settings, change))
    ports = tuple(tuple(port) for port in settings["ports"])
    return zone._replace(services=frozenset(settings["services"]), rules=tuple(settings["rules_str"]), ports=ports)


def _others(zone, own_names):
    """What ``zone`` holds that is not this formula's, in words."""
    return (
        {f"service {name}" for name in zone.services - own_names}
        | {f"port {port}/{proto}" for port, proto in zone.ports}
        | {rule for rule in zone.rules if not rule.startswith(RULE_PREFIX)}
    )


def _reload_others(left, own_names, rule_steps):
    """What a reload loads into the runtime zone, or drops from it, that is
    not this formula's: the permanent zone (after the steps) against the
    runtime's. ``{"loaded": [...], "dropped": [...]}``, the empty ones left out."""
    zone = left.permanent
    for step in rule_steps["permanent"]:
        if step.action == "zone":
            zone = _zone_after(zone, step.args[2])
    after, now = _others(zone, own_names), _others(left.runtime, own_names)
    found = {"loaded": sorted(after - now), "dropped": sorted(now - after)}
    return {key: items for key, items in found.items() if items}


def _reloads(policy, snapshot):
    """Does the profile part reload firewalld?"""
    return bool(_definition_steps(policy, snapshot)[1] or _stale(policy, snapshot))


def _names_any(rule, names):
    """Does a rich rule name one of these services or ipsets?"""
    return any(f'service name="{name}"' in rule or f'source ipset="{name}"' in rule for name in names)


def _own_names(policy, snapshot):
    """The names of our services: those in our files and those the policy wants."""
    return set(snapshot.services) | set(service_definitions(policy))


def _rule_steps(policy, snapshot):
    closing = policy if policy.config.close_foreign else None
    return _scope_steps(snapshot, _own_names(policy, snapshot), desired(policy), closing)


LOADED_BY_PROFILE = "The rules and ipset entries are loaded with the services by the profile part's reload"


def plan_rules(policy, snapshot):
    if _reloads(policy, snapshot):
        return Plan({}, [], LOADED_BY_PROFILE, waits_for="profile")
    steps, changes = _rule_steps(policy, snapshot)
    return Plan(changes, [*steps["runtime"], *steps["permanent"]], None)


def plan_firewall(policy, snapshot):
    if not policy.config.enabled:
        return Plan({}, [], "zimbra_fw:enabled is false: firewalld's zone target is left alone")
    target = snapshot.permanent.target
    if target.upper() != "ACCEPT" and snapshot.runtime.target.upper() != "ACCEPT":
        return Plan({}, [], None)
    steps = []
    if not policy.config.allow_no_management:
        required = [rule for access in policies.management(policy) for rule in rich_rules(access)]
        steps.append(Step("check", (snapshot.zone, required), "check that management access is allowed"))
    change = {"target": "default"}
    steps.append(Step("zone", (snapshot.zone, "permanent", change), f"zone {snapshot.zone}: target default"))
    steps.append(Step("reload", (), "firewall-cmd --reload"))
    return Plan({"target": {"old": target, "new": "default"}}, steps, None)


PLANNERS = dict(zip(PARTS, (plan_profile, plan_rules, plan_firewall), strict=True))


def plan(part, policy, snapshot):
    return dispatch(PLANNERS, part, policy, snapshot)


DONE = {
    "profile": "The firewalld services and ipsets are as configured",
    "rules": "The zimbra_fw rich rules and ipset entries are as configured",
    "firewall": "The zone denies incoming by default (target default)",
}


def _count_rules(items):
    """'3 rules', or with ipset entries among them '3 rules and 200 ipset entries'."""
    entries = [item for item in items if " in ipset " in item]
    rules = [item for item in items if " in ipset " not in item]
    counts = ([count(rules, "rule")] if rules or not entries else []) + (
        [count(entries, "ipset entry", "ipset entries")] if entries else []
    )
    return " and ".join(counts)


def describe(changes, test):
    """A plan's changes in words: 'Added 3 rules and 200 ipset entries; reloaded firewalld for zimbra'."""
    words = group_changes(changes, "ports", "service", test) + group_changes(changes, "ipsets", "ipset", test)
    if "rules removed" in changes:
        counted = count(changes["rules removed"], "rule of a retired service", "rules of a retired service")
        words.append(said(test, f"removed {counted}", f"{counted} would be removed"))
    # Both scopes alike give added/removed; else each scope has its own.
    for scope, scoped in (
        ("", changes),
        (" (runtime)", changes.get("runtime", {})),
        (" (permanent)", changes.get("permanent", {})),
    ):
        for verb in ("added", "removed"):
            if verb in scoped:
                counted = _count_rules(scoped[verb])
                words.append(said(test, f"{verb} {counted}{scope}", f"{counted} would be {verb}{scope}"))
    if "reloaded" in changes.get("runtime", {}):
        loaded = ", ".join(changes["runtime"]["reloaded"])
        words.append(said(test, f"reloaded firewalld for {loaded}", f"firewalld would be reloaded for {loaded}"))
    others = changes.get("runtime", {}).get("others", {})
    for done, pending, where in (("loaded", "load", "into"), ("dropped", "drop", "from")):
        if others.get(done):
            what = f"{', '.join(others[done])} (not zimbra_fw's)"
            words.append(
                said(
                    test,
                    f"the reload {done} {what} {where} the runtime",
                    f"the reload would {pending} {what} {where} the runtime",
                )
            )
    if "target" in changes:
        words.append(said(test, "set the zone's target to default", "the zone's target would be set to default"))
    return sentence(words)


# ---------------------------------------------------------------- applying


def apply(steps, run):  # pylint: disable=unused-argument
    """Carry out planned steps in order, over D-Bus in this process
    (zimbra_fw_firewalld_client); returns what was applied. On failure
    raises ApplyFailed naming the failed step and the steps already applied."""
    if not steps:
        return []
    reason = unavailable()
    if reason:
        raise CommandExecutionError(reason)
    count, error = client.run_steps([[step.action, *step.args] for step in steps])
    applied = [step.describe for step in steps[:count]]
    if error is not None:
        raise ApplyFailed.at(steps[count].describe, error, applied)
    return applied


# ---------------------------------------------------------------- status and audit


def status(snapshot):
    own_names = set(snapshot.services)
    services, rules = _ours(snapshot.runtime, own_names)
    return {
        "backend": NAME,
        "active": snapshot.active,
        "zone": snapshot.zone,
        "target": snapshot.runtime.target,
        "managed_rules": [f"service {s}" for s in sorted(services)] + list(rules),
        "other_rules": [f"service {s}" for s in sorted(snapshot.runtime.services - services)]
        + [r for r in snapshot.runtime.rules if r not in rules],
        "ipsets": {
            name: list(snapshot.runtime_ipsets[name].entries)
            for name in sorted(snapshot.ipsets)
            if name in snapshot.runtime_ipsets
        },
    }


def access_rules(snapshot):
    """The zone's incoming rules in the order firewalld applies them: rich
    rules with a negative priority, then reject and drop rules, then services,
    ports and accept rules, then rules with a positive priority."""
    zone = snapshot.runtime
    rich = [found for rule in zone.rules for found in files.rich_rule_access(rule, snapshot.runtime_ipsets)]
    first = [rule for _, rule in sorted((p for p in rich if p[0] < 0), key=lambda p: p[0])]
    denied = [rule for priority, rule in rich if priority == 0 and rule.action != "allow"]
    allowed = [Rule("allow", "any", files.service_ports(name)) for name in sorted(zone.services)]
    allowed += [Rule("allow", "any", [files.port_spec(port, proto)]) for port, proto in zone.ports]
    allowed += [rule for priority, rule in rich if priority == 0 and rule.action == "allow"]
    last = [rule for _, rule in sorted((p for p in rich if p[0] > 0), key=lambda p: p[0])]
    return first + denied + allowed + last


def own_rules(snapshot):
    """The zone's rich rules this formula made (with its priority), as the
    audit reads them; none when the zone was not read live."""
    if snapshot.runtime is None:
        return []
    rules = (rule for rule in snapshot.runtime.rules if rule.startswith(RULE_PREFIX))
    return [found for rule in rules for _, found in files.rich_rule_access(rule, snapshot.runtime_ipsets)]


def _zone_of_interfaces(snapshot):
    """``{interface: zone}``: where traffic arriving on each interface of this
    host goes. An interface no zone holds goes to the default zone (firewalld
    binds the default zone to the interface ``+``)."""
    held = {iface: zone for zone, (ifaces, _) in snapshot.active_zones.items() for iface in ifaces}
    return {iface: held.get(iface, snapshot.default_zone) for iface in sorted({*snapshot.interfaces, *held})}


def audit_findings(snapshot):
    """``[(severity, message)]``: what makes firewalld's zone not do what
    zimbra_fw put in it. The zone may hold no interface and no source, so
    that its rules apply to nothing; an interface or a source may be in the
    ``trusted`` zone, which accepts everything. Nothing when the zones were
    not read."""
    if snapshot.active_zones is None or snapshot.interfaces is None:
        return []
    zones = _zone_of_interfaces(snapshot)
    findings = []
    _, sources = snapshot.active_zones.get(snapshot.zone, ((), ()))
    trusted, trusted_sources = snapshot.active_zones.get("trusted", ((), ()))
    arriving = [iface for iface, zone in zones.items() if zone == snapshot.zone]
    if not arriving and not sources:
        where = ", ".join(f"{iface} in {zone}" for iface, zone in zones.items()) or "no interface"
        findings.append(
            (
                "high",
                f"firewalld zone {snapshot.zone} holds no interface or source: its rules apply to nothing "
                f"({where}); add the interface to it (firewall-cmd --permanent --zone={snapshot.zone} "
                "--change-interface=NAME) or set zimbra_fw:firewalld:zone",
            )
        )
    for iface in (iface for iface, zone in zones.items() if zone == "trusted"):
        how = "" if iface in trusted else " (the default zone, which holds every interface no zone holds)"
        findings.append(
            (
                "high",
                f"interface {iface} is in firewalld's trusted zone{how}: everything arriving on it is accepted, "
                "whatever zimbra_fw's rules say",
            )
        )
    # A source bound to a zone takes its packets before any interface's zone does.
    findings += [
        (
            "high",
            f"source {source} is in firewalld's trusted zone: everything it sends is accepted on every "
            "interface, whatever zimbra_fw's rules say",
        )
        for source in trusted_sources
    ]
    return findings


# ---------------------------------------------------------------- before firewalld first starts


def prepare_stopped(policy, run, test=False):
    """Before a stopped firewalld is started: check that the zone exists and
    put the management rich rules (ssh, the Salt master) into the zone's
    permanent configuration with ``firewall-offline-cmd``, so that firewalld
    starts with them. Returns the rules added (with ``test``: that would be
    added). Raises CommandExecutionError, changing nothing, for an unknown
    zone."""
    program = salt.utils.path.which(OFFLINE_PROGRAM)
    if program is None:
        raise CommandExecutionError(f"{OFFLINE_PROGRAM} is not available on this minion: install 'firewalld'")
    zones = checked_output(run, [program, "--get-zones"]).split()
    zone = policy.config.zone or checked_output(run, [program, "--get-default-zone"]).strip()
    if zone not in zones:
        known = ", ".join(zones)
        raise CommandExecutionError(f"zimbra_fw:firewalld:zone: {zone!r} is not a firewalld zone (zones: {known})")
    required = [rule for access in policies.management(policy) for rule in rich_rules(access)]
    added = []
    for rule in required:
        if checked(run, [program, f"--zone={zone}", f"--query-rich-rule={rule}"], succeeded=(0, 1)) == 0:
            continue
        if not test:
            checked(run, [program, f"--zone={zone}", f"--add-rich-rule={rule}"])
        added.append(rule)
    return added


# ---------------------------------------------------------------- rollback

ZONE_DIR = "/etc/firewalld/zones"
ZoneOf = namedtuple("ZoneOf", "zone")  # what read_snapshot needs of a Config


def saved_paths(zone, services, ipsets):
    """The permanent files a rollback puts back: the zone's and those of the
    services and ipsets named, each with the ``.old`` copy firewalld keeps
    when it rewrites one."""
    found = [os.path.join(ZONE_DIR, f"{zone}.xml")]
    found += [os.path.join(files.SERVICE_DIRS[-1], f"{name}.xml") for name in sorted(services)]
    found += [os.path.join(files.IPSET_DIRS[-1], f"{name}.xml") for name in sorted(ipsets)]
    return [variant for path in found for variant in (path, path + ".old")]


def _runtime_view(snapshot):
    zone = snapshot.runtime
    loaded = [name for name in snapshot.ipsets if name in snapshot.runtime_ipsets]  # a half-done run may not have
    return {
        "services": sorted(zone.services),
        "rules": list(zone.rules),
        "ports": [list(port) for port in zone.ports],
        "entries": {name: list(snapshot.runtime_ipsets[name].entries) for name in loaded},
    }


def save(run, config=None):
    """firewalld as it is now, for ``restore``: the zone's file and those of
    our services and ipsets byte for byte, and the zone's runtime services,
    rich rules and ports and our ipsets' runtime entries."""
    snapshot = read_snapshot(run, config=config)
    if not ZONE_NAME_RE.fullmatch(snapshot.zone):  # it names a file, here and when restored
        raise CommandExecutionError(f"firewalld's zone {snapshot.zone!r} cannot be saved: not a plain zone name")
    paths = saved_paths(snapshot.zone, snapshot.services, snapshot.ipsets)
    return {"zone": snapshot.zone, "files": save_files(paths), "runtime": _runtime_view(snapshot)}


def _runtime_change(zone, saved):
    """What takes the runtime ``zone`` back to the ``saved`` view: a zone change, or None."""
    services, ports = set(saved["services"]), [tuple(port) for port in saved["ports"]]
    change = {
        "add_services": sorted(services - zone.services),
        "remove_services": sorted(zone.services - services),
        "add_rules": [rule for rule in saved["rules"] if rule not in zone.rules],
        "remove_rules": [rule for rule in zone.rules if rule not in saved["rules"]],
        "add_ports": [list(port) for port in ports if port not in zone.ports],
        "remove_ports": [list(port) for port in zone.ports if port not in ports],
    }
    return change if any(change.values()) else None


def restore(saved, run):
    """Put back what ``save`` returned: the permanent files (each replaced
    atomically; files of our services and ipsets made since are removed),
    one ``reload`` that loads them, then the runtime state firewalld held
    beyond its permanent configuration (rules added at runtime only)."""
    zone = saved["zone"]
    if not isinstance(zone, str) or not ZONE_NAME_RE.fullmatch(zone):  # it names a file
        raise CommandExecutionError(f"the saved firewall names no firewalld zone: {zone!r}")
    services = set(files.own_services()) | _names_in(saved["files"], files.SERVICE_DIRS[-1])
    ipsets = set(files.own_ipsets()) | _names_in(saved["files"], files.IPSET_DIRS[-1])
    restore_files({path: saved["files"].get(path) for path in saved_paths(zone, services, ipsets)})
    apply([Step("reload", (), "firewall-cmd --reload")], run)
    snapshot = read_snapshot(run, config=ZoneOf(zone))
    steps = []
    wanted = {name: tuple(found) for name, found in saved["runtime"]["entries"].items()}
    loaded = {name: found for name, found in wanted.items() if name in snapshot.runtime_ipsets}
    entries = _entries_change(snapshot.runtime_ipsets, loaded)
    if entries:
        steps.append(Step("entries", ("runtime", entries), "runtime ipset entries as saved"))
    change = _runtime_change(snapshot.runtime, saved["runtime"])
    if change:
        steps.append(_zone_step(snapshot, "runtime", change))
    apply(steps, run)


def _names_in(saved_files, directory):
    """The service or ipset names whose files in ``directory`` were saved."""
    return {
        os.path.basename(path)[: -len(".xml")]
        for path in saved_files
        if os.path.dirname(path) == directory and path.endswith(".xml")
    }
