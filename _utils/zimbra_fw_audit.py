"""
The audit: what listens on this server against who the firewall lets reach
it, judged by the catalogue and the policy. Pure: the listening sockets
come as /proc/net texts, the firewall as its effective rules (from the
backend), its state as (active, default incoming policy).
"""

import ipaddress
from collections import namedtuple

import zimbra_fw_catalogue as catalogue
from zimbra_fw_catalogue import CLUSTER, LOCALHOST, PUBLIC, PortSpec
from zimbra_fw_config import shortest_prefix


def __virtual__():
    return (False, "zimbra_fw_audit is a library of the zimbra_fw module, not a Salt util")


SEVERITIES = ("critical", "high", "medium", "low", "info")
MANAGEMENT = "management"
UNKNOWN = "unknown"
PROC_NET_FILES = (("tcp", "tcp"), ("tcp6", "tcp"), ("udp", "udp"), ("udp6", "udp"))
Listener = namedtuple("Listener", "address port proto")
# An incoming rule as the firewall applies it, in the firewall's order.
# action: allow, limit, deny or reject. source: an address or subnet, or
# "any". ports: PortSpecs, or None for every port.
Rule = namedtuple("Rule", "action source ports")


def parse_proc_net(text, proto):
    """Listening sockets from /proc/net/{tcp,tcp6,udp,udp6} text."""
    wanted_state = "0A" if proto == "tcp" else "07"  # TCP_LISTEN / UDP unconnected
    listeners = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != wanted_state:
            continue
        address_hex, port_hex = fields[1].split(":")
        raw = bytes.fromhex(address_hex)
        # The kernel prints each 32-bit word in host (little-endian) order.
        packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        listeners.append(Listener(ipaddress.ip_address(packed), int(port_hex, 16), proto))
    return listeners


def listeners(proc_texts, policy):
    """Listening TCP sockets, and UDP ones on ports the catalogue or the policy
    names, from ``{name: text}`` of the /proc/net files in PROC_NET_FILES."""
    known_udp = {row.port for row in catalogue.CATALOGUE if row.proto == "udp"}
    known_udp |= {p for spec in policy.public if spec.proto == "udp" for p in range(spec.first, spec.last + 1)}
    found = []
    for name, proto in PROC_NET_FILES:
        for listener in parse_proc_net(proc_texts.get(name) or "", proto):
            if proto == "tcp" or listener.port in known_udp:
                found.append(listener)
    return found


def _matches(rule, spec):
    return rule.ports is None or any(p.covers(spec) for p in rule.ports)


def address_sources(text):
    """An address, a subnet or a ``first-last`` range, as firewalld's ipsets
    and nft's sets write them, as subnet texts; None when it cannot be read."""
    first, _, last = text.partition("-")
    try:
        if last:
            bounds = ipaddress.ip_address(first), ipaddress.ip_address(last)
            return [str(net) for net in ipaddress.summarize_address_range(*bounds)]
        ipaddress.ip_network(text, strict=False)
    except (ValueError, TypeError):
        return None
    return [text]


def reachability(listener, rules, active, incoming):
    """Who can reach a listener: ``localhost``, ``anyone``, ``nobody`` or a list of sources."""
    if listener.address.is_loopback:
        return "localhost"
    if not active or incoming == "allow":
        return "anyone"
    spec = PortSpec(listener.port, listener.port, listener.proto)
    for rule in rules:
        if rule.source == "any" and _matches(rule, spec):
            if rule.action in ("allow", "limit"):
                return "anyone"
            break
        if rule.action in ("allow", "limit") and _matches(rule, spec) and _wide(rule.source):
            return "anyone"
    dual_stack = listener.address == ipaddress.IPv6Address("::")
    sources = []
    for rule in rules:
        if rule.source != "any" and rule.action in ("allow", "limit") and _matches(rule, spec):
            network = ipaddress.ip_network(rule.source, strict=False)
            if network.version == listener.address.version or dual_stack:
                sources.append(rule.source)
    return sorted(set(sources)) or "nobody"


# Port numbers the catalogue keeps to the cluster or localhost whatever the
# protocol: the ports the pillar may never open to anyone.
INTERNAL_PORTS = tuple(sorted({row.port for row in catalogue.internal_rows()}))


def opened_to_anyone(policy):
    """The PortSpecs the policy itself opens to anyone."""
    return [spec for access in policy.accesses if access.source is None for spec in access.ports or ()]


# The severities that say someone reaches more than they should (the lower
# ones say a port is closed, or listens where it should not but is not reachable).
WIDENING = ("critical", "high", "medium")


def beyond_policy(findings, policy):
    """The findings of an audit that say the firewall lets in more than the
    policy does: critical, high and medium ones, but not those about a port
    the policy itself opens to anyone (the admin console without
    admin_subnets is a finding, not drift)."""
    opened = opened_to_anyone(policy)
    kept = []
    for finding in findings:
        if finding["severity"] not in WIDENING:
            continue
        if finding["port"] is not None:
            port, proto = finding["port"].split("/")
            if any(own.covers(PortSpec(int(port), int(port), proto)) for own in opened):
                continue
        kept.append(finding)
    return kept


def widens(rule, policy):
    """Does ``rule`` (one the formula did not make) let anyone, or a large part
    of the internet, reach a port the catalogue keeps to the cluster or
    localhost that the policy does not open to anyone? These are the rules
    ``zimbra_fw:close_foreign`` removes (a hand-made ``ufw allow 11211``)."""
    if rule.action not in ("allow", "limit") or (rule.source != "any" and not _wide(rule.source)):
        return False
    opened = opened_to_anyone(policy)
    for port in INTERNAL_PORTS:
        for proto in ("tcp", "udp"):
            spec = PortSpec(port, port, proto)
            if _matches(rule, spec) and not any(own.covers(spec) for own in opened):
                return True
    return False


def _wide(source):
    """Is a rule's source a large part of the internet (wider than the config
    lets any key be: 0.0.0.0/0 written out, 0.0.0.0/1, 2002::/16, ...)?"""
    try:
        network = ipaddress.ip_network(source, strict=False)
    except ValueError:
        return True  # a source the audit cannot read: judged as anyone
    return network.prefixlen < shortest_prefix(network)[0]


def _widest(reaches):
    """The widest reach among the addresses a port listens on."""
    if "anyone" in reaches:
        return "anyone"
    sources = sorted({source for reach in reaches if isinstance(reach, list) for source in reach})
    if sources:
        return sources
    return "nobody" if "nobody" in reaches else "localhost"


def _expected(policy, port, proto, row):
    spec = PortSpec(port, port, proto)
    if any(p.covers(spec) for p in policy.public):
        return PUBLIC
    if (port, proto) == (policy.config.ssh_port, "tcp"):
        return MANAGEMENT
    return row.exposure if row else UNKNOWN


def _finding(expected, widest, row, service, addresses):
    """(severity, message) for one listening port, or None when all is well."""
    if widest == "anyone" and expected in (CLUSTER, LOCALHOST):
        return (
            "critical" if row.critical else "high"
        ), f"{service} is reachable from anyone; it should be {expected}-only"
    if widest == "anyone" and expected == UNKNOWN:
        return "medium", "not a Zimbra port, yet reachable from anyone"
    if widest == "anyone" and row and "admins" in row.consumers:
        return "medium", f"{service} is reachable from anyone; set zimbra_fw:admin_subnets (or only_from) for admins"
    if widest == "nobody" and expected in (PUBLIC, UNKNOWN):
        return "low", f"{service} listens on {', '.join(addresses)} but no rule allows it"
    if expected == LOCALHOST and widest != "localhost":
        return "info", f"{service} listens beyond loopback; Zimbra binds it to localhost"
    return None


def _management_finding(policy, port, proto, widest):
    """(severity, message) when the management port is reachable beyond
    ``ssh:from``, or None. Sources the policy itself gives that port (ssh:from,
    trusted subnets, mailbox peers for zmrcd) are expected; anyone else is not."""
    config = policy.config
    if (port, proto) != (config.ssh_port, "tcp") or "any" in config.ssh_from:
        return None
    allowed = ", ".join(str(net) for net in config.ssh_from) or "nobody"
    where = f"beyond zimbra_fw:ssh:from ({allowed})"
    if widest == "anyone":
        return "high", f"management (ssh) is reachable from anyone, {where}"
    if not isinstance(widest, list):
        return None
    spec = PortSpec(port, port, proto)
    granted = [
        access.source
        for access in policy.accesses
        if access.source is not None and (access.ports is None or any(p.covers(spec) for p in access.ports))
    ]
    beyond = []
    for source in widest:
        network = ipaddress.ip_network(source, strict=False)  # reachability() read it already
        if not any(network.version == net.version and network.subnet_of(net) for net in granted):
            beyond.append(source)
    if beyond:
        return "high", f"management (ssh) is reachable from {', '.join(beyond)}, {where}"
    return None


def audit(policy, found, rules, *, active, incoming, firewall, extra_findings=()):
    """Compare what listens with what the firewall lets in: the audit report.
    ``extra_findings``: (severity, message) pairs the backend found about the
    firewall itself (no port)."""
    findings = []
    if not active:
        findings.append((None, "high", f"{firewall} is inactive: every listening port is reachable from anyone"))
    elif incoming == "allow":
        findings.append((None, "high", f"{firewall}'s default incoming policy is allow"))
    for severity, message in extra_findings:
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}: one of {', '.join(SEVERITIES)}")
        findings.append((None, severity, message))
    by_port = {}
    for listener in found:
        by_port.setdefault((listener.port, listener.proto), []).append(listener)
    ports = []
    for (port, proto), bound in sorted(by_port.items()):
        label = f"{port}/{proto}"
        reach = {str(listener.address): reachability(listener, rules, active, incoming) for listener in bound}
        widest = _widest(list(reach.values()))
        row = catalogue.row_for(port, proto, policy.config.roles)
        expected = _expected(policy, port, proto, row)
        service = row.purpose if row else "not a Zimbra port"
        ports.append(
            {
                "port": label,
                "service": service,
                "expected": expected,
                "reachable_from": widest,
                "addresses": sorted(reach),
            }
        )
        finding = _management_finding(policy, port, proto, widest) or _finding(
            expected, widest, row, service, sorted(reach)
        )
        if finding:
            findings.append((label, *finding))
    findings = [
        {"severity": severity, "port": label, "message": message}
        for label, severity, message in sorted(findings, key=lambda f: SEVERITIES.index(f[1]))
    ]
    return {
        "report": _report_lines(findings, ports),
        "summary": {severity: sum(f["severity"] == severity for f in findings) for severity in SEVERITIES},
        "findings": findings,
        "ports": ports,
        "firewall": {"active": active, "default_incoming": incoming},
    }


def _report_lines(findings, ports):
    """The audit as lines a person reads on the CLI."""
    lines = [f"{f['severity'].upper()} {f['port'] or 'firewall'}: {f['message']}" for f in findings]
    lines.append(f"{'port':<10} {'expected':<11} reachable from")
    for entry in ports:
        reach = entry["reachable_from"]
        shown = ", ".join(reach) if isinstance(reach, list) else reach
        lines.append(f"{entry['port']:<10} {entry['expected']:<11} {shown}")
    return lines
