"""
firewalld's formats, as the firewalld backend reads them: service and ipset
files (ours carry ``MARK`` in their description) and rich rules, as the
audit reads them.
"""

import os
import re
from collections import namedtuple
from xml.etree import ElementTree

from zimbra_fw_audit import Rule, address_sources
from zimbra_fw_catalogue import PortSpec


def __virtual__():
    return (False, "zimbra_fw_firewalld_files is a library of the zimbra_fw module, not a Salt util")


MARK = "Managed by Salt (zimbra_fw formula)."
SERVICE_DIRS = ("/usr/lib/firewalld/services", "/etc/firewalld/services")  # later ones win
IPSET_DIRS = ("/usr/lib/firewalld/ipsets", "/etc/firewalld/ipsets")
IPSet = namedtuple("IPSet", "type family entries")  # entries: a tuple of texts


def _read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _root(data):
    try:
        return None if data is None else ElementTree.fromstring(data)
    except (ElementTree.ParseError, LookupError, ValueError):  # LookupError: an encoding Python does not know
        return None


def service_of(data):
    """(short, description, ((port, proto), ...)) from a service XML file's bytes, or None."""
    root = _root(data)
    if root is None:
        return None
    ports = tuple((p.get("port", ""), p.get("protocol", "")) for p in root.findall("port"))
    return root.findtext("short", ""), root.findtext("description", ""), ports


def ipset_of(data):
    """(description, IPSet) from an ipset XML file's bytes, or None."""
    root = _root(data)
    if root is None:
        return None
    options = {option.get("name"): option.get("value") for option in root.findall("option")}
    entries = tuple(sorted(entry.text.strip() for entry in root.findall("entry") if entry.text))
    return root.findtext("description", ""), IPSet(root.get("type", ""), options.get("family", "inet"), entries)


def read_service(path):
    return service_of(_read_bytes(path))


def read_ipset(path):
    return ipset_of(_read_bytes(path))


def xml_files(directory):
    """``((name, bytes), ...)`` of the NAME.xml files in ``directory``, by name."""
    try:
        names = sorted(n[: -len(".xml")] for n in os.listdir(directory) if n.endswith(".xml"))
    except FileNotFoundError:
        return ()
    found = ((name, _read_bytes(os.path.join(directory, name + ".xml"))) for name in names)
    return tuple((name, data) for name, data in found if data is not None)


def own_ipsets(found=None):
    """Our permanent ipsets: ``{name: IPSet}``, from ``found`` (xml_files) or read now."""
    parsed = {name: ipset_of(data) for name, data in (xml_files(IPSET_DIRS[-1]) if found is None else found)}
    return {name: item[1] for name, item in parsed.items() if item is not None and MARK in item[0]}


def own_services(found=None):
    """Our permanent services: ``{name: ((port, proto), ...)}``, from ``found`` (xml_files) or read now."""
    parsed = {name: service_of(data) for name, data in (xml_files(SERVICE_DIRS[-1]) if found is None else found)}
    return {name: item[2] for name, item in parsed.items() if item is not None and MARK in item[1]}


def service_files(names):
    """``((name, (bytes or None, ...)), ...)``: each named service's file in
    each of SERVICE_DIRS, as read now."""
    return tuple(
        (name, tuple(_read_bytes(os.path.join(directory, name + ".xml")) for directory in SERVICE_DIRS))
        for name in names
    )


def ports_of(found):
    """The ports of a service, from its files in SERVICE_DIRS (``found``, as
    service_files gives them): the last directory's file that parses wins."""
    for data in reversed(found):
        parsed = service_of(data)
        if parsed is not None:
            return [spec for port, proto in parsed[2] if (spec := _port_spec_or_none(port, proto)) is not None]
    return []


def _port_spec_or_none(port, proto):
    """The PortSpec of a tcp or udp port of a service file; None for another
    protocol, no port, or one that is no port or range (firewalld refuses it too)."""
    if proto not in ("tcp", "udp") or not port:
        return None
    try:
        spec = port_spec(port, proto)
    except ValueError:
        return None
    return spec if 0 < spec.first <= spec.last <= 65535 else None


RICH_ACTIONS = {"accept": "allow", "reject": "reject", "drop": "deny"}
RICH_IGNORED = ("forward-port", "masquerade", "icmp-block", "icmp-type")
# Sources the audit cannot judge: an accept rule on them counts as from anyone
# (a NOT address admits nearly everyone, a MAC whatever its router forwards).
RICH_ANY_SOURCE = (" NOT ", "mac=")


def port_spec(port, proto):
    first, _, last = port.partition("-")
    return PortSpec(int(first), int(last or first), proto)


def service_ports(name):
    return ports_of(service_files([name])[0][1])


def _rule_sources(fields, ipsets):
    """Who a rich rule is about: ``any``, its address, or its ipset's entries."""
    if "source ipset" not in fields:
        return [fields.get("source address", "any")]
    found = ipsets.get(fields["source ipset"])
    if found is None or found.type not in ("hash:ip", "hash:net"):
        return []
    return [source for entry in found.entries for source in address_sources(entry) or ()]


def rich_rule_access(rule, ipsets=None, services=None):
    """[(priority, Rule)]: what a rich rule lets in or keeps out, as the audit
    reads it, one Rule per source (an ipset's entries, from ``ipsets``), a
    service's ports from ``services`` (``{name: ports}``) when given, else
    from its file; []
    for rules it ignores. A rule on source ports reaches every port of that
    protocol from its source. An accept rule whose source the audit cannot
    judge (RICH_ANY_SOURCE) counts as from anyone; such a reject or drop
    rule keeps no one out."""
    action = re.search(r"\b(accept|reject|drop)\b", rule)
    if action is None or any(word in rule for word in RICH_IGNORED):
        return []
    unjudged = any(word in rule for word in RICH_ANY_SOURCE)
    if unjudged and action.group(1) != "accept":
        return []
    fields = dict(re.findall(r'([a-z-]+ [a-z]+)="([^"]*)"', rule))
    priority = int(fields.get("rule priority", 0))
    ports = None
    if "service name" in fields:
        name = fields["service name"]
        ports = service_ports(name) if services is None else list(services.get(name, ()))
    elif "port port" in fields:
        ports = [port_spec(fields["port port"], re.search(r'port port="[^"]*" protocol="(\w+)"', rule).group(1))]
    elif "source-port port" in fields or "protocol value" in fields:
        proto = re.search(r'protocol(?: value)?="(\w+)"', rule).group(1)
        ports = [PortSpec(1, 65535, proto)]
    verdict = RICH_ACTIONS[action.group(1)]
    sources = ["any"] if unjudged else _rule_sources(fields, ipsets or {})
    return [(priority, Rule(verdict, source, ports)) for source in sources]
