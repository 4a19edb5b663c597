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


def read_service(path):
    """(short, description, ((port, proto), ...)) from a service XML file, or None."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    ports = tuple((p.get("port", ""), p.get("protocol", "")) for p in root.findall("port"))
    return root.findtext("short", ""), root.findtext("description", ""), ports


def read_ipset(path):
    """(description, IPSet) from an ipset XML file, or None."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    options = {option.get("name"): option.get("value") for option in root.findall("option")}
    entries = tuple(sorted(entry.text.strip() for entry in root.findall("entry") if entry.text))
    return root.findtext("description", ""), IPSet(root.get("type", ""), options.get("family", "inet"), entries)


def _files(directory, read):
    """``{name: read(path)}`` for the NAME.xml files in ``directory``; files
    ``read`` cannot read are left out."""
    try:
        names = sorted(n[: -len(".xml")] for n in os.listdir(directory) if n.endswith(".xml"))
    except FileNotFoundError:
        return {}
    found = {name: read(os.path.join(directory, name + ".xml")) for name in names}
    return {name: item for name, item in found.items() if item is not None}


def own_ipsets():
    """Our permanent ipsets: ``{name: IPSet}``."""
    found = _files(IPSET_DIRS[-1], read_ipset)
    return {name: ipset for name, (description, ipset) in found.items() if MARK in description}


def own_services():
    """Our permanent services: ``{name: ((port, proto), ...)}``."""
    found = _files(SERVICE_DIRS[-1], read_service)
    return {name: ports for name, (_, description, ports) in found.items() if MARK in description}


RICH_ACTIONS = {"accept": "allow", "reject": "reject", "drop": "deny"}
RICH_IGNORED = ("forward-port", "masquerade", "icmp-block", "icmp-type")
# Sources the audit cannot judge: an accept rule on them counts as from anyone
# (a NOT address admits nearly everyone, a MAC whatever its router forwards).
RICH_ANY_SOURCE = (" NOT ", "mac=")


def port_spec(port, proto):
    first, _, last = port.partition("-")
    return PortSpec(int(first), int(last or first), proto)


def service_ports(name):
    for directory in reversed(SERVICE_DIRS):
        found = read_service(os.path.join(directory, name + ".xml"))
        if found is not None:
            return [port_spec(port, proto) for port, proto in found[2] if proto in ("tcp", "udp") and port]
    return []


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
