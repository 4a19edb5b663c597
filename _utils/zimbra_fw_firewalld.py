"""
The firewalld backend: the policy as firewalld services and rich rules in
one zone, permanent and runtime alike.

* Each port group is a permanent service (``zimbra``, ``zimbra-mta``, ...;
  /etc/firewalld/services/NAME.xml) whose description carries ``MARK``.
* In the zone (pillar ``firewalld:zone``, else firewalld's default zone) the
  public group is a zone service; every other access is a rich rule with
  priority ``PRIORITY``: positive priorities run after the zone's own
  services, ports and rules, so an admin's reject rule still wins, and the
  priority marks the rule as this formula's (only those are ever removed).
* ``read_snapshot(run, live)`` reads firewalld once, over D-Bus, in one
  helper process (zimbra_fw_firewalld_client, run with firewalld's Python).
* ``plan(part, policy, snapshot)`` is pure; ``apply(steps, run)`` runs the
  steps in one helper process. Services are permanent only: firewalld loads
  new or changed ones on ``reload``, which the profile part does only then.
"""

import json
import os
import re
from collections import namedtuple
from xml.etree import ElementTree

import salt.utils.path
import zimbra_fw_policy as policies
from salt.exceptions import CommandExecutionError
from zimbra_fw_audit import Rule
from zimbra_fw_catalogue import PortSpec
from zimbra_fw_commands import ApplyFailed, helper_outcome, json_lines, program_python
from zimbra_fw_config import source_text


def __virtual__():
    return (False, "zimbra_fw_firewalld is a library of the zimbra_fw module, not a Salt util")


NAME = "firewalld"
PACKAGE = SERVICE = "firewalld"
PROGRAM = "firewall-cmd"
PARTS = ("profile", "rules", "firewall")
LIVE_PARTS = PARTS  # every part reads firewalld over D-Bus
PRIORITY = 32000
MARK = "Managed by Salt (zimbra_fw formula)."
SERVICE_DIRS = ("/usr/lib/firewalld/services", "/etc/firewalld/services")  # later ones win
CLIENT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zimbra_fw_firewalld_client.py")
RULE_PREFIX = f'rule priority="{PRIORITY}" '
LIMIT = "6/m"  # ufw's limit is 6 connections in 30 s; firewalld limits all sources together

Zone = namedtuple("Zone", "services rules target ports")


# services: our permanent services, {name: ((port, proto), ...)}; runtime_services:
# the ports firewalld runs with for those names (None: not loaded).
class Snapshot(namedtuple("Snapshot", "active zone default_zone services runtime_services permanent runtime")):
    __slots__ = ()

    @property
    def incoming(self):
        """What the zone does with what no rule allows, in ufw's words (the audit's)."""
        return "allow" if self.runtime.target.upper() == "ACCEPT" else "deny"


Plan = namedtuple("Plan", "changes steps comment")
Step = namedtuple("Step", "action args describe")


def unavailable():
    """Why firewalld cannot be used on this minion, or None."""
    if salt.utils.path.which("firewall-cmd") is None:
        return "firewalld is not available on this minion: install the 'firewalld' package"
    return None


def ipv6_off():
    """firewalld zones handle IPv6 and IPv4 alike."""
    return None


def name_taken(name):
    """Why firewalld cannot use ``name`` for a service of ours, or None."""
    service = service_name(name)
    for directory in SERVICE_DIRS:
        found = _read_service(os.path.join(directory, service + ".xml"))
        if found is not None and MARK not in found[1]:
            return f"is a firewalld service already ({service}, in {directory}); choose another profile:name"
    return None


# ---------------------------------------------------------------- reading


def _read_service(path):
    """(short, description, ((port, proto), ...)) from a service XML file, or None."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    ports = tuple((p.get("port", ""), p.get("protocol", "")) for p in root.findall("port"))
    return root.findtext("short", ""), root.findtext("description", ""), ports


def _own_services():
    directory = SERVICE_DIRS[-1]
    try:
        names = sorted(n[: -len(".xml")] for n in os.listdir(directory) if n.endswith(".xml"))
    except FileNotFoundError:
        return {}
    services = {}
    for name in names:
        found = _read_service(os.path.join(directory, name + ".xml"))
        if found is not None and MARK in found[1]:
            services[name] = found[2]
    return services


def _helper(run, request):
    """Run the D-Bus helper with ``request``: (retcode, JSON lines it printed, stderr)."""
    reason = unavailable()
    if reason:
        raise CommandExecutionError(reason)
    python = program_python(salt.utils.path.which("firewall-cmd"))
    if python is None:
        raise CommandExecutionError("cannot tell which Python runs firewall-cmd (its first line)")
    retcode, stdout, stderr = run([python, "-I", CLIENT_SCRIPT], stdin=json.dumps(request))
    lines = json_lines(stdout)
    if any("unavailable" in line for line in lines):
        raise CommandExecutionError(next(line["unavailable"] for line in lines if "unavailable" in line))
    return retcode, lines, stderr


def _zone(view):
    ports = tuple(tuple(port) for port in view["ports"])
    return Zone(frozenset(view["services"]), tuple(view["rich_rules"]), view["target"], ports)


def read_snapshot(run, live=True, config=None):  # pylint: disable=unused-argument
    """firewalld as it is now: our permanent services (from their files) and,
    over D-Bus in one process, the zone's permanent and runtime settings (the
    zone of ``config.zone``, else the default zone)."""
    zone = config.zone if config is not None else None
    services = _own_services()
    retcode, lines, stderr = _helper(run, {"read": zone, "services": sorted(services)})
    if retcode != 0 or not lines:
        raise CommandExecutionError(f"reading firewalld failed (exit {retcode}): {stderr.strip()}")
    state = lines[-1]
    if not state.get("running"):
        raise CommandExecutionError(
            "firewalld is not running: start it (systemctl enable --now firewalld); "
            "'firewall-cmd --state' must say running"
        )
    if zone is not None and zone not in state["zones"]:
        known = ", ".join(state["zones"])
        raise CommandExecutionError(f"zimbra_fw:firewalld:zone: {zone!r} is not a firewalld zone (zones: {known})")
    runtime_services = {name: tuple(tuple(p) for p in ports) for name, ports in state["runtime_services"].items()}
    return Snapshot(
        True,
        state["zone"],
        state["default_zone"],
        services,
        runtime_services,
        _zone(state["permanent"]),
        _zone(state["runtime"]),
    )


# ---------------------------------------------------------------- the policy in firewalld's words


def service_name(group_name):
    return group_name.lower()


def _port_text(spec):
    return str(spec.first) if spec.first == spec.last else f"{spec.first}-{spec.last}"


def _ranges(ports):
    """Consecutive port numbers as (first, last) ranges."""
    ranges = []
    for port in sorted(ports):
        if ranges and ranges[-1][1] == port - 1:
            ranges[-1] = (ranges[-1][0], port)
        else:
            ranges.append((port, port))
    return ranges


def rich_rules(access):
    """One policy access as rich rules (none for the public group: a zone service)."""
    if access.kind == policies.ANYONE:
        return []
    head = RULE_PREFIX
    if access.source is not None:
        head += f'family="ipv{access.source.version}" source address="{source_text(access.source)}" '
    if access.source_ports:  # the Salt master's replies, from its ports
        specs = [PortSpec(first, last, "tcp") for first, last in _ranges(access.source_ports)]
        return [f'{head}source-port port="{_port_text(s)}" protocol="tcp" accept' for s in specs]
    if access.group:
        return [f'{head}service name="{service_name(access.group)}" accept']
    if access.ports is None:
        return [head + "accept"]
    (spec,) = access.ports
    limit = f' limit value="{LIMIT}"' if access.limit else ""
    return [f'{head}port port="{_port_text(spec)}" protocol="{spec.proto}" accept{limit}']


def desired(policy):
    """(zone services, rich rules) for the policy, rules in the policy's order."""
    services = {service_name(a.group) for a in policy.accesses if a.kind == policies.ANYONE}
    rules = []
    for access in policy.accesses:
        rules += [rule for rule in rich_rules(access) if rule not in rules]
    return frozenset(services), tuple(rules)


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
        "path": SERVICE_DIRS[-1],
        "profiles": {name: _ports_text(d["ports"]) for name, d in definitions.items()},
        "text": None,
    }


# ---------------------------------------------------------------- planning (pure)


def _ours(zone, own_names):
    """(services, rules) of a zone that are this formula's."""
    return zone.services & own_names, tuple(r for r in zone.rules if r.startswith(RULE_PREFIX))


def _zone_change(zone, own_names, services, rules):
    """What makes ``zone`` hold ``services`` and ``rules`` of ours: the change, or None."""
    our_services, our_rules = _ours(zone, own_names)
    change = {
        "add_services": sorted(services - zone.services),
        "add_rules": [r for r in rules if r not in zone.rules],
        "remove_services": sorted(our_services - services),
        "remove_rules": sorted(r for r in our_rules if r not in rules),  # firewalld's order varies
    }
    return change if any(change.values()) else None


def _describe(change):
    texts = {"added": [], "removed": []}
    for key, verb in (("services", "service"), ("rules", None)):
        for direction, label in (("add", "added"), ("remove", "removed")):
            texts[label] += [f"{verb} {item}" if verb else item for item in change.get(f"{direction}_{key}", [])]
    return {label: items for label, items in texts.items() if items}


def _zone_steps(snapshot, own_names, services, rules):
    """Steps and changes that make both scopes hold ``services`` and ``rules`` of ours."""
    steps, described = [], {}
    for scope in ("runtime", "permanent"):
        change = _zone_change(getattr(snapshot, scope), own_names, services, rules)
        if change:
            steps.append(
                Step("zone", (snapshot.zone, scope, change), f"{scope} zone {snapshot.zone}: {_summary(change)}")
            )
            described[scope] = _describe(change)
    if described.get("runtime") == described.get("permanent"):
        return steps, described.get("runtime", {})
    return steps, described


def _summary(change):
    counts = [f"{len(items)} {key.replace('_', ' ')}" for key, items in change.items() if items and key != "target"]
    return ", ".join(counts)


def plan_profile(policy, snapshot):
    wanted = service_definitions(policy)
    changes, steps = {}, []
    retired = sorted(set(snapshot.services) - set(wanted))
    # Rules and zone entries naming a service go before the service does.
    removed = set()
    for scope in ("runtime", "permanent"):
        zone = getattr(snapshot, scope)
        change = {
            "remove_services": sorted(zone.services & set(retired)),
            "remove_rules": sorted(r for r in _ours(zone, set())[1] if _names_any(r, retired)),
        }
        if any(change.values()):
            steps.append(
                Step("zone", (snapshot.zone, scope, change), f"{scope} zone {snapshot.zone}: {_summary(change)}")
            )
            removed.update(f"service {name}" for name in change["remove_services"])
            removed.update(change["remove_rules"])
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
    for name in retired:
        changes.setdefault("ports", {})[name] = {"old": _ports_text(snapshot.services[name]), "new": None}
        steps.append(Step("drop-service", (name,), f"remove service {name}"))
    stale = [n for n, d in wanted.items() if snapshot.runtime_services.get(n) != tuple(d["ports"])]
    if steps or stale:
        steps.append(Step("reload", (), "firewall-cmd --reload (loads the services)"))
        if stale and not changes:
            changes["runtime"] = {"services reloaded": stale}
    return Plan(changes, steps, None)


def _names_any(rule, service_names):
    return any(f'service name="{name}"' in rule for name in service_names)


def plan_rules(policy, snapshot):
    services, rules = desired(policy)
    own_names = set(snapshot.services) | set(service_definitions(policy))
    steps, changes = _zone_steps(snapshot, own_names, services, rules)
    return Plan(changes, steps, None)


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


PLANNERS = {"profile": plan_profile, "rules": plan_rules, "firewall": plan_firewall}


def plan(part, policy, snapshot):
    return PLANNERS[part](policy, snapshot)


# ---------------------------------------------------------------- applying


def apply(steps, run):
    """Carry out planned steps in order, in one helper process; returns what
    was applied. On failure raises ApplyFailed naming the failed step and the
    steps already applied."""
    if not steps:
        return []
    request = {"steps": [[step.action, *step.args] for step in steps]}
    retcode, lines, stderr = _helper(run, request)
    count, error = helper_outcome(lines, len(steps), retcode, stderr)
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
    }


RICH_ACTIONS = {"accept": "allow", "reject": "reject", "drop": "deny"}
RICH_IGNORED = (" NOT ", "ipset=", "mac=", "forward-port", "masquerade", "icmp-block", "icmp-type")


def _spec(port, proto):
    first, _, last = port.partition("-")
    return PortSpec(int(first), int(last or first), proto)


def _service_ports(name):
    for directory in reversed(SERVICE_DIRS):
        found = _read_service(os.path.join(directory, name + ".xml"))
        if found is not None:
            return [_spec(port, proto) for port, proto in found[2] if proto in ("tcp", "udp") and port]
    return []


def rich_rule_access(rule):
    """(priority, Rule): what a rich rule lets in or keeps out, as the audit
    reads it; None for rules it ignores. A rule on source ports reaches every
    port of that protocol from its source."""
    action = re.search(r"\b(accept|reject|drop)\b", rule)
    if action is None or any(word in rule for word in RICH_IGNORED):
        return None
    fields = dict(re.findall(r'([a-z-]+ [a-z]+)="([^"]*)"', rule))
    priority = int(fields.get("rule priority", 0))
    ports = None
    if "service name" in fields:
        ports = _service_ports(fields["service name"])
    elif "port port" in fields:
        ports = [_spec(fields["port port"], re.search(r'port port="[^"]*" protocol="(\w+)"', rule).group(1))]
    elif "source-port port" in fields or "protocol value" in fields:
        proto = re.search(r'protocol(?: value)?="(\w+)"', rule).group(1)
        ports = [PortSpec(1, 65535, proto)]
    return priority, Rule(RICH_ACTIONS[action.group(1)], fields.get("source address", "any"), ports)


def access_rules(snapshot):
    """The zone's incoming rules in the order firewalld applies them: rich
    rules with a negative priority, then reject and drop rules, then services,
    ports and accept rules, then rules with a positive priority."""
    zone = snapshot.runtime
    rich = [found for found in map(rich_rule_access, zone.rules) if found is not None]
    first = [rule for _, rule in sorted((p for p in rich if p[0] < 0), key=lambda p: p[0])]
    denied = [rule for priority, rule in rich if priority == 0 and rule.action != "allow"]
    allowed = [Rule("allow", "any", _service_ports(name)) for name in sorted(zone.services)]
    allowed += [Rule("allow", "any", [_spec(port, proto)]) for port, proto in zone.ports]
    allowed += [rule for priority, rule in rich if priority == 0 and rule.action == "allow"]
    last = [rule for _, rule in sorted((p for p in rich if p[0] > 0), key=lambda p: p[0])]
    return first + denied + allowed + last
