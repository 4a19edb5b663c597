"""
Least-privilege ufw firewall for Zimbra Collaboration servers.

The module has two halves:

* pure computation -- the Zimbra port catalogue, pillar validation, the
  whitelist per role set, the ufw application profile text and the plan of
  ufw commands that turns the current firewall into the wanted one;
* a thin layer that reads ufw (its rules files ``user.rules`` and
  ``user6.rules`` as ``ufw show added`` would list them, ``ufw status
  verbose``, the profile file and ``/etc/default/ufw``) and applies a plan, running
  consecutive ufw commands in one ufw process (``zimbra_fw_ufw_batch.py``).

Every rule this formula adds carries the ufw comment ``zimbra_fw``; only those
rules are ever removed.  Configuration comes from the ``zimbra_fw`` pillar key
(see ``pillar.example``).
"""

import configparser
import difflib
import ipaddress
import json
import os
import re
import socket
import tempfile
from collections import namedtuple

import salt.utils.path
from salt.exceptions import CommandExecutionError

__virtualname__ = "zimbra_fw"

PILLAR_KEY = "zimbra_fw"
RULE_COMMENT = "zimbra_fw"
PROFILE_PATH = "/etc/ufw/applications.d/zimbra"
UFW_DEFAULTS_PATH = "/etc/default/ufw"
RULES_FILES = ("/etc/ufw/user.rules", "/etc/ufw/user6.rules")
PROFILE_HEADER = "# Managed by Salt (zimbra_fw formula). Local changes are overwritten.\n"
PARTS = ("profile", "rules", "firewall")
MULTIPORT_LIMIT = 15  # iptables multiport: at most 15 ports per group, a range counts 2


def __virtual__():
    # The catalogue and whitelist work anywhere; functions that touch ufw
    # report "not available" themselves, with the reason.
    return __virtualname__


# ---------------------------------------------------------------- catalogue

Port = namedtuple("Port", "port proto role exposure consumers purpose critical when_missing")
Port.__new__.__defaults__ = (False, None)

# Pillar role -> Zimbra package that owns the listeners.
ROLES = {
    "ldap": "zimbra-ldap",
    "mta": "zimbra-mta",
    "proxy": "zimbra-proxy",
    "mailbox": "zimbra-store",
    "memcached": "zimbra-memcached",
    "logger": "zimbra-logger",
    "spell": "zimbra-spell",
    "snmp": "zimbra-snmp",
    "imapd": "zimbra-imapd",
    "convertd": "zimbra-convertd",
    "onlyoffice": "zimbra-onlyoffice",
    "docs": "zimbra-docs",
    "dnscache": "zimbra-dnscache",
    "modules-ng": "zimbra-network-modules-ng",
}
CORE_ROLE = "core"  # zimbra-core: present on every Zimbra node

PUBLIC, CLUSTER, LOCALHOST = "public", "cluster", "localhost"
ANYONE = ("internet",)
ADMINS = ("admins",)
ALL_NODES = ("all",)
LOCAL = ("localhost",)

# Built from shared/reference/zimbra-ports.yaml (Zimbra sources per port).
# ``consumers`` names the roles (or internet/admins/all/localhost) that connect.
# ``when_missing``: the row applies only when that role is absent from the node.
CATALOGUE = (
    # zimbra-proxy: what users and the internet reach
    Port(80, "tcp", "proxy", PUBLIC, ANYONE, "nginx HTTP web proxy (redirects to 443)"),
    Port(110, "tcp", "proxy", PUBLIC, ANYONE, "nginx POP3 proxy"),
    Port(143, "tcp", "proxy", PUBLIC, ANYONE, "nginx IMAP proxy"),
    Port(443, "tcp", "proxy", PUBLIC, ANYONE, "nginx HTTPS web proxy (webmail, EWS, ActiveSync, DAV)"),
    Port(993, "tcp", "proxy", PUBLIC, ANYONE, "nginx IMAPS proxy"),
    Port(995, "tcp", "proxy", PUBLIC, ANYONE, "nginx POP3S proxy"),
    Port(3443, "tcp", "proxy", PUBLIC, ANYONE, "nginx client-certificate (certauth SSO) port"),
    Port(9071, "tcp", "proxy", PUBLIC, ADMINS, "nginx admin console proxy (to mailbox 7071)"),
    # zimbra-mta
    Port(25, "tcp", "mta", PUBLIC, (*ANYONE, "mailbox"), "postfix SMTP (inbound MX, relay for mailboxes)"),
    Port(465, "tcp", "mta", PUBLIC, ANYONE, "postfix SMTPS submission (implicit TLS)"),
    Port(587, "tcp", "mta", PUBLIC, ANYONE, "postfix submission (STARTTLS)"),
    Port(3310, "tcp", "mta", LOCALHOST, LOCAL, "ClamAV clamd"),
    Port(7026, "tcp", "mta", LOCALHOST, LOCAL, "Zimbra milter server"),
    Port(7308, "tcp", "mta", LOCALHOST, LOCAL, "antispam MariaDB (binds 0.0.0.0 when enabled)", True),
    Port(8465, "tcp", "mta", LOCALHOST, LOCAL, "OpenDKIM milter"),
    Port(10024, "tcp", "mta", LOCALHOST, LOCAL, "amavisd inbound content filter", True),
    Port(10025, "tcp", "mta", LOCALHOST, LOCAL, "postfix re-injection from amavisd", True),
    Port(10026, "tcp", "mta", LOCALHOST, LOCAL, "amavisd ORIGINATING policy bank", True),
    Port(10027, "tcp", "mta", LOCALHOST, LOCAL, "postfix postjournal filter", True),
    Port(10028, "tcp", "mta", LOCALHOST, LOCAL, "postfix reinject listener", True),
    Port(10029, "tcp", "mta", LOCALHOST, LOCAL, "postfix archive listener", True),
    Port(10030, "tcp", "mta", LOCALHOST, LOCAL, "postfix OpenDKIM hop", True),
    Port(10031, "tcp", "mta", LOCALHOST, LOCAL, "cbpolicyd policy daemon", True),
    Port(10032, "tcp", "mta", LOCALHOST, LOCAL, "amavisd ORIGINATING_POST (SpamAssassin)", True),
    Port(23232, "tcp", "mta", LOCALHOST, LOCAL, "amavis-services (ZeroMQ forwarder)"),
    Port(23233, "tcp", "mta", LOCALHOST, LOCAL, "amavis-services snmp-responder"),
    # zimbra-store (mailbox)
    Port(5222, "tcp", "mailbox", PUBLIC, ANYONE, "XMPP client (Zimbra Chat)"),
    Port(5223, "tcp", "mailbox", PUBLIC, ANYONE, "XMPP legacy SSL (Zimbra Chat)"),
    Port(7071, "tcp", "mailbox", PUBLIC, (*ADMINS, "proxy", "mailbox"), "admin console and admin SOAP"),
    Port(80, "tcp", "mailbox", PUBLIC, ANYONE, "mailboxd HTTP (no proxy on this node)", when_missing="proxy"),
    Port(110, "tcp", "mailbox", PUBLIC, ANYONE, "mailboxd POP3 (no proxy on this node)", when_missing="proxy"),
    Port(143, "tcp", "mailbox", PUBLIC, ANYONE, "mailboxd IMAP (no proxy on this node)", when_missing="proxy"),
    Port(443, "tcp", "mailbox", PUBLIC, ANYONE, "mailboxd HTTPS (no proxy on this node)", when_missing="proxy"),
    Port(993, "tcp", "mailbox", PUBLIC, ANYONE, "mailboxd IMAPS (no proxy on this node)", when_missing="proxy"),
    Port(995, "tcp", "mailbox", PUBLIC, ANYONE, "mailboxd POP3S (no proxy on this node)", when_missing="proxy"),
    Port(5269, "tcp", "mailbox", CLUSTER, ("mailbox",), "XMPP server-to-server between mailboxes"),
    Port(7025, "tcp", "mailbox", CLUSTER, ("mta",), "LMTP delivery from the MTA"),
    Port(7072, "tcp", "mailbox", CLUSTER, ("proxy",), "nginx route lookup handler"),
    Port(7073, "tcp", "mailbox", CLUSTER, ("mta",), "MTA SASL auth endpoint"),
    Port(7074, "tcp", "mailbox", CLUSTER, ("onlyoffice",), "document-editing callback"),
    Port(7110, "tcp", "mailbox", CLUSTER, ("proxy",), "POP3 backend"),
    Port(7143, "tcp", "mailbox", CLUSTER, ("proxy",), "IMAP backend"),
    Port(7285, "tcp", "mailbox", CLUSTER, ("mailbox",), "message channel"),
    Port(7993, "tcp", "mailbox", CLUSTER, ("proxy",), "IMAPS backend"),
    Port(7995, "tcp", "mailbox", CLUSTER, ("proxy",), "POP3S backend"),
    Port(8080, "tcp", "mailbox", CLUSTER, ("proxy", "mailbox"), "HTTP backend"),
    Port(8443, "tcp", "mailbox", CLUSTER, ("proxy", "mailbox", "docs"), "HTTPS backend, server-to-server SOAP"),
    Port(8742, "tcp", "mailbox", CLUSTER, ("proxy",), "zx HTTP endpoint (Zextras extensions)"),
    Port(8743, "tcp", "mailbox", CLUSTER, ("proxy",), "zx HTTPS endpoint (Zextras extensions)"),
    Port(9443, "tcp", "mailbox", CLUSTER, ("proxy",), "HTTPS with client certificate"),
    Port(7035, "tcp", "mailbox", LOCALHOST, LOCAL, "notification server (deprecated)"),
    Port(7036, "tcp", "mailbox", LOCALHOST, LOCAL, "notification server SSL (deprecated)"),
    Port(7306, "tcp", "mailbox", LOCALHOST, LOCAL, "mailbox MariaDB", True),
    # other roles
    Port(389, "tcp", "ldap", CLUSTER, ALL_NODES, "OpenLDAP (ldap://, StartTLS)", True),
    Port(636, "tcp", "ldap", CLUSTER, ALL_NODES, "OpenLDAP (ldaps://)", True),
    Port(11211, "tcp", "memcached", CLUSTER, ("proxy", "mailbox"), "memcached (no authentication)", True),
    Port(514, "udp", "logger", CLUSTER, ALL_NODES, "remote syslog sink"),
    Port(7307, "tcp", "logger", LOCALHOST, LOCAL, "legacy logger MySQL", True),
    Port(7780, "tcp", "spell", CLUSTER, ("mailbox",), "spell checker (Apache + aspell)"),
    Port(8143, "tcp", "imapd", CLUSTER, ("proxy",), "standalone IMAP daemon"),
    Port(8993, "tcp", "imapd", CLUSTER, ("proxy",), "standalone IMAPS daemon"),
    Port(7047, "tcp", "convertd", CLUSTER, ("mailbox",), "attachment conversion"),
    Port(7084, "tcp", "onlyoffice", CLUSTER, ("proxy",), "OnlyOffice document service"),
    Port(7085, "tcp", "onlyoffice", CLUSTER, ("proxy",), "OnlyOffice spellchecker"),
    Port(9980, "tcp", "docs", CLUSTER, ("proxy", "mailbox"), "Zimbra Docs server"),
    Port(53, "tcp", "dnscache", LOCALHOST, LOCAL, "unbound DNS cache"),
    Port(53, "udp", "dnscache", LOCALHOST, LOCAL, "unbound DNS cache"),
    Port(8735, "tcp", "modules-ng", CLUSTER, ("mailbox",), "Network Modules NG inter-instance"),
    Port(8736, "tcp", "modules-ng", CLUSTER, ("mailbox",), "Network Modules NG inter-instance"),
    # zimbra-core: every node
    Port(22, "tcp", CORE_ROLE, CLUSTER, ("mailbox",), "sshd for Zimbra remote management (zmrcd)"),
    Port(7171, "tcp", CORE_ROLE, LOCALHOST, LOCAL, "zmconfigd control listener", True),
)


def _row_spec(entry):
    """A catalogue row's port as a PortSpec."""
    return PortSpec(entry.port, entry.port, entry.proto)


def _critical_ports():
    return {(entry.port, entry.proto): entry for entry in CATALOGUE if entry.critical}


# ---------------------------------------------------------------- port specs


class PortSpec(namedtuple("PortSpec", "first last proto")):
    """A port or an inclusive port range with its protocol."""

    __slots__ = ()

    def __str__(self):
        ports = str(self.first) if self.first == self.last else f"{self.first}:{self.last}"
        return f"{ports}/{self.proto}"

    @property
    def weight(self):
        """Entries it takes in an iptables multiport list."""
        return 1 if self.first == self.last else 2

    def covers(self, other):
        return self.proto == other.proto and self.first <= other.first and other.last <= self.last

    def overlaps(self, other):
        return self.proto == other.proto and self.first <= other.last and other.first <= self.last


def _sort_key(spec):
    return (spec.first, spec.last, spec.proto)


# ---------------------------------------------------------------- configuration

Config = namedtuple(
    "Config",
    "roles roles_source trusted_subnets admin_subnets extra_ports exclude_ports ssh_port ssh_from "
    "profile_name profile_title profile_description enabled allow_no_management peers mine mine_target "
    "salt_masters",
)
SaltMaster = namedtuple("SaltMaster", "address ports")
Peer = namedtuple("Peer", "name addresses roles source")

DEFAULTS = {
    "roles": None,
    "trusted_subnets": [],
    "admin_subnets": [],
    "extra_ports": [],
    "exclude_ports": [],
    "ssh": {"port": 22, "from": ["any"]},
    "profile": {
        "name": "Zimbra",
        "title": "Zimbra Collaboration Server",
        "description": "Open source server for email, contacts, calendar and collaboration",
    },
    "enabled": True,
    "allow_no_management": False,
    "allow_salt_master": True,
    "cluster": {"peers": [], "mine": False, "mine_target": "*"},
}
CLUSTER_DEFAULTS = DEFAULTS["cluster"]

# Room is left for the "-<role>" suffix of the per-role profiles (ufw allows 64).
PROFILE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,47}$")
RESERVED_PROFILE_NAMES = {"all", "any"}
PROFILE_TEXT_MAX = 200


class ConfigInvalid(CommandExecutionError):
    """The pillar cannot be applied; ``problems`` lists each key and value at fault."""

    def __init__(self, problems):
        self.problems = problems
        super().__init__("Invalid pillar, nothing was changed:\n- " + "\n- ".join(problems))


class _Problems(list):
    def add(self, key, value, reason):
        self.append(f"{PILLAR_KEY}:{key}: {value!r} {reason}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_port_number(text):
    if not text.isdigit():
        return None
    number = int(text)
    return number if 1 <= number <= 65535 else None


def parse_port_spec(value, default_proto="tcp"):
    """Parse ``8443``, ``"8443"``, ``"514/udp"`` or ``"6000:6010/tcp"``.

    Returns a PortSpec or raises ValueError with the reason.
    """
    if _is_int(value):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"is a {type(value).__name__}; give a port such as 8443 or '514/udp'")
    ports, _, proto = value.strip().partition("/")
    proto = proto or default_proto
    if proto not in ("tcp", "udp"):
        raise ValueError("has a protocol other than tcp or udp")
    first_text, sep, last_text = ports.partition(":")
    first = _parse_port_number(first_text)
    last = _parse_port_number(last_text) if sep else first
    if first is None or last is None:
        raise ValueError("is not a port (1-65535) or a range such as '6000:6010/tcp'")
    if first >= last and sep:
        raise ValueError("is a range whose first port is not below its last")
    return PortSpec(first, last, proto)


def _check_list(problems, key, value):
    if not isinstance(value, list):
        problems.add(key, value, f"must be a list, not a {type(value).__name__}")
        return []
    return value


def _check_no_duplicates(problems, key, items, shown):
    seen = set()
    for item, raw in zip(items, shown, strict=True):
        if item in seen:
            problems.add(key, raw, "is listed twice")
        seen.add(item)


def roles_from_packages(packages):
    """Zimbra roles implied by installed package names (zimbra-store -> mailbox, ...)."""
    by_package = {package: role for role, package in ROLES.items()}
    return sorted({by_package[name] for name in packages if name in by_package})


def _parse_roles(problems, value, packages, key="roles"):
    """(roles, where they came from); ``packages`` is used when ``value`` is None."""
    if value is None:
        if packages is None:
            problems.add(key, value, f"is required: list this server's Zimbra roles ({', '.join(ROLES)})")
            return (), "pillar"
        detected = roles_from_packages(packages)
        if not detected:
            problems.add(key, value, "is not set and no zimbra-* role package is installed: list the roles")
        return tuple(detected), "packages"
    return _parse_role_list(problems, key, value), "pillar"


def _parse_role_list(problems, key, value):
    roles = []
    for index, role in enumerate(_check_list(problems, key, value)):
        if not isinstance(role, str) or role not in ROLES:
            hint = difflib.get_close_matches(str(role), ROLES, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else f"; known roles: {', '.join(ROLES)}"
            problems.add(f"{key}[{index}]", role, "is not a Zimbra role" + extra)
            continue
        roles.append(role)
    if isinstance(value, list) and not value:
        problems.add(key, value, "is empty: list at least one Zimbra role")
    _check_no_duplicates(problems, key, roles, roles)
    return tuple(sorted(set(roles)))


def _parse_network(problems, key, value):
    if not isinstance(value, str):
        problems.add(key, value, "must be an address or subnet such as '192.168.1.0/24'")
        return None
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        hint = ""
        try:
            hint = f" (did you mean {str(ipaddress.ip_network(value.strip(), strict=False))!r}?)"
        except ValueError:
            pass
        problems.add(key, value, f"is not a valid subnet: {exc}{hint}")
        return None
    if network.prefixlen == 0:
        problems.add(key, value, "is the whole internet: it would give everyone access (LDAP, memcached, MySQL)")
        return None
    return network


def _parse_subnets(problems, key, value):
    """A list of subnets that must not be the whole internet."""
    networks = []
    for index, item in enumerate(_check_list(problems, key, value)):
        item_key = f"{key}[{index}]"
        if isinstance(item, str) and item.strip().lower() in ("any", "anywhere"):
            problems.add(item_key, item, "would give the whole internet access (LDAP, memcached, MySQL)")
            continue
        network = _parse_network(problems, item_key, item)
        if network is not None:
            networks.append(network)
    _check_no_duplicates(problems, key, networks, networks)
    return tuple(sorted(set(networks), key=lambda n: (n.version, n)))


def _parse_port_list(problems, key, value):
    specs = []
    for index, item in enumerate(_check_list(problems, key, value)):
        try:
            specs.append(parse_port_spec(item))
        except ValueError as exc:
            problems.add(f"{key}[{index}]", item, str(exc))
    _check_no_duplicates(problems, key, specs, [str(s) for s in specs])
    return tuple(sorted(set(specs), key=_sort_key))


def _check_extra_ports_safe(problems, extra_ports):
    for spec in extra_ports:
        for (port, proto), entry in sorted(_critical_ports().items()):
            if spec.covers(PortSpec(port, port, proto)):
                problems.add(
                    "extra_ports",
                    str(spec),
                    f"would publish {port}/{proto} ({entry.purpose}), which must never be public",
                )


def _parse_ssh(problems, value):
    if not isinstance(value, dict):
        problems.add("ssh", value, "must be a mapping such as {port: 22, from: [any]}")
        return 22, ()
    _check_keys(problems, "ssh", value, ("port", "from"))
    port = value.get("port", 22)
    if not _is_int(port) or not 1 <= port <= 65535:
        problems.add("ssh:port", port, "is not a port number (1-65535)")
        port = 22
    sources = []
    for index, item in enumerate(_check_list(problems, "ssh:from", value.get("from", ["any"]))):
        if isinstance(item, str) and item.strip().lower() == "any":
            sources.append("any")
            continue
        network = _parse_network(problems, f"ssh:from[{index}]", item)
        if network is not None:
            sources.append(network)
    _check_no_duplicates(problems, "ssh:from", sources, [str(s) for s in sources])
    if "any" in sources:
        return port, ("any",)
    return port, tuple(sorted(set(sources), key=lambda n: (n.version, n)))


def _parse_profile_text(problems, key, value):
    if not isinstance(value, str) or not value.strip():
        problems.add(key, value, "must be a non-empty string")
        return ""
    if len(value) > PROFILE_TEXT_MAX or any(not ch.isprintable() for ch in value):
        problems.add(key, value, f"must be one printable line of at most {PROFILE_TEXT_MAX} characters")
        return ""
    return value.strip()


def _parse_profile(problems, value):
    if not isinstance(value, dict):
        problems.add("profile", value, "must be a mapping with name, title and description")
        value = {}
    _check_keys(problems, "profile", value, ("name", "title", "description"))
    profile = dict(DEFAULTS["profile"], **value)
    name = profile["name"]
    if not isinstance(name, str) or not PROFILE_NAME_RE.match(name) or name.lower() in RESERVED_PROFILE_NAMES:
        problems.add(
            "profile:name",
            name,
            "is not a safe ufw profile name: use a letter then letters, digits, '.', '_' or '-' (48 at most)",
        )
    elif _is_service_name(name):
        problems.add("profile:name", name, "is a service name in /etc/services; ufw would ignore the profile")
    title = _parse_profile_text(problems, "profile:title", profile["title"])
    description = _parse_profile_text(problems, "profile:description", profile["description"])
    return name, title, description


def _is_service_name(name):
    for proto in ("tcp", "udp"):
        try:
            socket.getservbyname(name, proto)
            return True
        except OSError:
            continue
    return False


def _check_keys(problems, key, mapping, known):
    for unknown in sorted(set(mapping) - set(known), key=str):
        hint = difflib.get_close_matches(str(unknown), known, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else f"; known keys: {', '.join(known)}"
        problems.add(f"{key}:{unknown}" if key else str(unknown), mapping[unknown], "is not a known key" + extra)


def _check_bool(problems, key, value):
    if not isinstance(value, bool):
        problems.add(key, value, "must be true or false")
        return False
    return value


def _parse_peer(problems, key, value, source):
    if not isinstance(value, dict):
        problems.add(key, value, "must be a mapping with name, addresses and roles")
        return None
    _check_keys(problems, key, value, ("name", "addresses", "roles"))
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.add(f"{key}:name", name, "must be a non-empty string")
    addresses = []
    for index, item in enumerate(_check_list(problems, f"{key}:addresses", value.get("addresses"))):
        network = _parse_network(problems, f"{key}:addresses[{index}]", item)
        if network is not None:
            addresses.append(network)
    if not addresses:
        problems.add(f"{key}:addresses", value.get("addresses"), "must list at least one address")
    roles = _parse_role_list(problems, f"{key}:roles", value.get("roles"))
    return Peer(str(name), tuple(sorted(set(addresses), key=lambda n: (n.version, n))), roles, source)


def _parse_cluster(problems, value, mine_data, minion_id):
    """(peers, mine wanted, mine target) from zimbra_fw:cluster and the Salt Mine's data."""
    if not isinstance(value, dict):
        problems.add("cluster", value, "must be a mapping with peers, mine and mine_target")
        value = {}
    _check_keys(problems, "cluster", value, tuple(CLUSTER_DEFAULTS))
    cluster = dict(CLUSTER_DEFAULTS, **value)
    use_mine = _check_bool(problems, "cluster:mine", cluster["mine"])
    target = cluster["mine_target"]
    if not isinstance(target, str) or not target.strip():
        problems.add("cluster:mine_target", target, "must be a Salt target such as '*' or 'G@zimbra:*'")
    peers = {}
    for index, item in enumerate(_check_list(problems, "cluster:peers", cluster["peers"])):
        peer = _parse_peer(problems, f"cluster:peers[{index}]", item, "pillar")
        if peer is None:
            continue
        if peer.name in peers:
            problems.add("cluster:peers", peer.name, "is listed twice")
        peers[peer.name] = peer
    if use_mine and mine_data is not None:
        if not mine_data:
            problems.add(
                "cluster:mine", True, "but the mine has no zimbra_fw.identity data: run mine.update (nothing removed)"
            )
        for name, identity in sorted(mine_data.items()):
            if name == minion_id or name in peers:
                continue  # pillar peers override the mine
            peer = _parse_peer(problems, f"cluster:mine[{name}]", dict(identity or {}, name=name), "mine")
            if peer is not None:
                peers[name] = peer
    return tuple(sorted(peers.values())), use_mine, target


def _ipv6_networks(config):
    """(pillar key, network) for every IPv6 address or subnet the rules would name."""
    keys = [("trusted_subnets", config.trusted_subnets), ("admin_subnets", config.admin_subnets)]
    keys.append(("ssh:from", [n for n in config.ssh_from if n != "any"]))
    keys += [(f"cluster:{'peers' if p.source == 'pillar' else 'mine'}[{p.name}]", p.addresses) for p in config.peers]
    keys.append(("allow_salt_master", [master.address for master in config.salt_masters]))
    return [(key, network) for key, networks in keys for network in networks if network.version == 6]


def parse_config(pillar, *, packages=None, mine_data=None, minion_id=None, salt_master=None, ufw_ipv6=True):
    """Validate the ``zimbra_fw`` pillar and return a Config.

    ``packages`` (installed package names) is used when roles are not in
    pillar; ``mine_data`` (minion id -> zimbra_fw.identity) adds peers when
    ``cluster:mine`` is true; ``salt_master`` (the minion's master address
    and ports) is kept reachable unless ``allow_salt_master`` is false;
    ``ufw_ipv6`` false (IPV6=no in /etc/default/ufw) makes IPv6 values errors.
    Raises ConfigInvalid naming every pillar key and value at fault.
    """
    problems = _Problems()
    if pillar is None:
        pillar = {}
    if not isinstance(pillar, dict):
        raise ConfigInvalid([f"{PILLAR_KEY}: {pillar!r} must be a mapping (see pillar.example)"])
    for key in sorted(set(pillar) - set(DEFAULTS), key=str):
        hint = difflib.get_close_matches(str(key), DEFAULTS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else f"; known keys: {', '.join(DEFAULTS)}"
        problems.add(key, pillar[key], "is not a known key" + extra)
    merged = dict(DEFAULTS, **pillar)
    roles, roles_source = _parse_roles(problems, merged["roles"], packages)
    trusted = _parse_subnets(problems, "trusted_subnets", merged["trusted_subnets"])
    admin = _parse_subnets(problems, "admin_subnets", merged["admin_subnets"])
    peers, use_mine, mine_target = _parse_cluster(problems, merged["cluster"], mine_data, minion_id)
    extra = _parse_port_list(problems, "extra_ports", merged["extra_ports"])
    _check_extra_ports_safe(problems, extra)
    exclude = _parse_port_list(problems, "exclude_ports", merged["exclude_ports"])
    ssh_port, ssh_from = _parse_ssh(problems, merged["ssh"])
    name, title, description = _parse_profile(problems, merged["profile"])
    enabled = _check_bool(problems, "enabled", merged["enabled"])
    allow_no_management = _check_bool(problems, "allow_no_management", merged["allow_no_management"])
    masters = ()
    if _check_bool(problems, "allow_salt_master", merged["allow_salt_master"]) and salt_master:
        masters = (SaltMaster(ipaddress.ip_network(salt_master[0]), tuple(sorted(set(salt_master[1])))),)
    if not ssh_from and not allow_no_management:
        problems.add(
            "ssh:from",
            [],
            "leaves no management access once default-deny is on; list who may reach ssh, "
            "or set zimbra_fw:allow_no_management: true if that is intended",
        )
    config = Config(
        roles=roles,
        roles_source=roles_source,
        trusted_subnets=trusted,
        admin_subnets=admin,
        extra_ports=extra,
        exclude_ports=exclude,
        ssh_port=ssh_port,
        ssh_from=ssh_from,
        profile_name=name,
        profile_title=title,
        profile_description=description,
        enabled=enabled,
        allow_no_management=allow_no_management,
        peers=peers,
        mine=use_mine,
        mine_target=mine_target,
        salt_masters=masters,
    )
    _public_ports(config, problems)  # finds exclusions that split a range
    if not ufw_ipv6:
        for key, network in _ipv6_networks(config):
            problems.add(key, _source(network), "is IPv6, but ufw has IPv6 off (IPV6=no in /etc/default/ufw)")
    if problems:
        raise ConfigInvalid(list(problems))
    return config


# ---------------------------------------------------------------- whitelist

ADMIN_SUFFIX = "admin"
ALL_PEERS = "all"


def _cluster_roles(config):
    """Roles present anywhere in the cluster: this node's and its peers'."""
    return set(config.roles).union(*(peer.roles for peer in config.peers))


def _catalogue_rows(config):
    """Catalogue rows that apply to this node (its roles plus zimbra-core)."""
    present = set(config.roles) | {CORE_ROLE}
    cluster = _cluster_roles(config)
    return [
        entry
        for entry in CATALOGUE
        if entry.role in present and (entry.when_missing is None or entry.when_missing not in cluster)
    ]


def _admin_ports(config):
    """Ports of the admin console, opened only to admin_subnets when those are set."""
    if not config.admin_subnets:
        return set()
    rows = _catalogue_rows(config)
    return {_row_spec(e) for e in rows if e.exposure == PUBLIC and "admins" in e.consumers}


def _public_ports(config, problems=None):
    rows = _catalogue_rows(config)
    wanted = {_row_spec(e) for e in rows if e.exposure == PUBLIC}
    wanted = (wanted - _admin_ports(config)) | set(config.extra_ports)
    kept = set()
    for spec in wanted:
        excluded = [ex for ex in config.exclude_ports if ex.overlaps(spec)]
        if not excluded:
            kept.add(spec)
        elif problems is not None and not any(ex.covers(spec) for ex in excluded):
            problems.add("exclude_ports", str(excluded[0]), f"only partly covers the range {spec}")
    return sorted(kept, key=_sort_key)


def _peer_ports(config):
    """``{consumer role or 'all': {PortSpec}}``: this node's non-public ports by who connects."""
    public = set(_public_ports(config))
    by_consumer = {}
    for entry in _catalogue_rows(config):
        spec = _row_spec(entry)
        if entry.exposure == LOCALHOST or spec in public:
            continue
        for consumer in entry.consumers:
            if consumer in ROLES or consumer == ALL_PEERS:
                by_consumer.setdefault(consumer, set()).add(spec)
    return by_consumer


def _peer_consumers(peer, by_consumer):
    """The consumer groups whose ports ``peer`` may reach, given its roles."""
    return sorted(c for c in by_consumer if c == ALL_PEERS or c in peer.roles)


def access_profiles(config):
    """``{suffix: [PortSpec]}`` for the per-role profiles peers and admins are allowed to."""
    by_consumer = _peer_ports(config)
    used = {c for peer in config.peers for c in _peer_consumers(peer, by_consumer)}
    profiles = {c: sorted(by_consumer[c], key=_sort_key) for c in sorted(used)}
    admin = _admin_ports(config)
    if admin:
        profiles[ADMIN_SUFFIX] = sorted(admin, key=_sort_key)
    return profiles


def whitelist(config):
    """Ports by exposure for this node, where the roles came from, and who gets cluster ports."""
    rows = _catalogue_rows(config)

    def ports(exposure):
        specs = {_row_spec(e) for e in rows if e.exposure == exposure}
        return [str(s) for s in sorted(specs, key=_sort_key)]

    by_consumer = _peer_ports(config)
    peers = {}
    for peer in config.peers:
        for consumer in _peer_consumers(peer, by_consumer):
            for spec in by_consumer[consumer]:
                peers.setdefault(spec, set()).add(peer.name)
    result = {
        PUBLIC: [str(s) for s in _public_ports(config)],
        CLUSTER: ports(CLUSTER),
        LOCALHOST: ports(LOCALHOST),
        "roles": {"roles": list(config.roles), "source": config.roles_source},
        "peers": {str(spec): sorted(peers[spec]) for spec in sorted(peers, key=_sort_key)},
    }
    if config.admin_subnets:
        result["admin"] = {
            str(spec): [str(n) for n in config.admin_subnets] for spec in sorted(_admin_ports(config), key=_sort_key)
        }
    return result


# ---------------------------------------------------------------- profile text


def port_groups(specs):
    """Split ports into ufw profile groups of ``LIST/proto`` within the multiport limit."""
    groups = []
    for proto in ("tcp", "udp"):
        current, weight = [], 0
        for spec in sorted((s for s in specs if s.proto == proto), key=_sort_key):
            if weight + spec.weight > MULTIPORT_LIMIT:
                groups.append(current)
                current, weight = [], 0
            current.append(spec)
            weight += spec.weight
        if current:
            groups.append(current)
    return [",".join(str(s).split("/")[0] for s in group) + "/" + group[0].proto for group in groups]


def profile_name(config, suffix=None):
    return config.profile_name if suffix is None else f"{config.profile_name}-{suffix}"


def wanted_profiles(config):
    """``{name: (title, description, [PortSpec])}``: the public profile and per-role ones."""
    profiles = {}
    public = _public_ports(config)
    if public:
        profiles[config.profile_name] = (config.profile_title, config.profile_description, public)
    for suffix, ports in access_profiles(config).items():
        who = {ADMIN_SUFFIX: "admin_subnets", ALL_PEERS: "all peers"}.get(suffix, f"{suffix} peers")
        profiles[profile_name(config, suffix)] = (
            f"{config.profile_title} ({who})",
            f"Zimbra ports that {who} connect to",
            ports,
        )
    return profiles


def profile_text(config):
    """The text of the application profile file, or None when no profile is needed."""
    sections = [
        f"[{name}]\ntitle={title}\ndescription={description}\nports={'|'.join(port_groups(ports))}\n"
        for name, (title, description, ports) in wanted_profiles(config).items()
    ]
    return PROFILE_HEADER + "\n".join(sections) if sections else None


def profile_file_ports(text):
    """``{profile name: ports text}`` from a profile file, in file order ({} if unreadable)."""
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text or "")
    except configparser.Error:
        return {}
    return {name: parser.get(name, "ports", fallback=None) for name in parser.sections()}


# ---------------------------------------------------------------- rules


def _source(network):
    """ufw's spelling of an address or subnet, as ``ufw show added`` prints it."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def management_rules(config):
    """The rules that keep the server manageable: ssh, and its Salt master's
    connections (opened before ufw tracked them, so not "established")."""
    port = str(config.ssh_port)
    rules = [
        ("allow", f"{port}/tcp")
        if source == "any"
        else ("allow", "from", _source(source), "to", "any", "port", port, "proto", "tcp")
        for source in config.ssh_from
    ]
    for master in config.salt_masters:
        ports = ",".join(str(p) for p in master.ports)
        rules.append(("allow", "from", _source(master.address), "port", ports, "proto", "tcp"))
    return rules


def desired_rules(config):
    """The managed allow rules as ufw arguments: management access first, then
    trusted subnets, admin subnets, cluster peers and the public profile."""
    rules = management_rules(config)
    rules.extend(("allow", "from", _source(network)) for network in config.trusted_subnets)
    if _admin_ports(config):
        admin_profile = profile_name(config, ADMIN_SUFFIX)
        rules.extend(("allow", "from", _source(n), "to", "any", "app", admin_profile) for n in config.admin_subnets)
    by_consumer = _peer_ports(config)
    for peer in config.peers:
        for consumer in _peer_consumers(peer, by_consumer):
            app = profile_name(config, consumer)
            rules.extend(("allow", "from", _source(address), "to", "any", "app", app) for address in peer.addresses)
    if _public_ports(config):
        rules.append(("allow", config.profile_name))
    return rules


def rule_profile(rule):
    """The application profile a rule names, if any."""
    if "app" in rule[:-1]:
        return rule[rule.index("app") + 1]
    return rule[1] if len(rule) == 2 and not rule[1][:1].isdigit() else None


ANYWHERE = ("0.0.0.0/0", "::/0")
UfwTuple = namedtuple("UfwTuple", "action proto dport dst sport src dapp sapp direction iface_in iface_out logtype")


def _command_words(rule):
    """A UfwTuple's arguments as ``ufw show added`` writes them."""
    words = [rule.action]
    interfaces = rule.iface_in or rule.iface_out
    if rule.dst in ANYWHERE and rule.src in ANYWHERE and rule.sport == "any" and not rule.sapp and not interfaces:
        if rule.dport != "any":  # ufw's short form: allow 22/tcp, allow Zimbra
            words += ["out"] if rule.direction == "out" else []
            words += [rule.logtype] if rule.logtype else []
            words.append(rule.dapp or (rule.dport if rule.proto == "any" else f"{rule.dport}/{rule.proto}"))
            return tuple(words)
    words += ["in", "on", rule.iface_in] if rule.iface_in else []
    words += ["out", "on", rule.iface_out] if rule.iface_out else (["out"] if rule.direction == "out" else [])
    words += [rule.logtype] if rule.logtype else []
    for keyword, address, port, app in (
        ("from", rule.src, rule.sport, rule.sapp),
        ("to", rule.dst, rule.dport, rule.dapp),
    ):
        where = "any" if address in ANYWHERE else address
        if where != "any" or port != "any" or app:
            words += [keyword, where, *(["app", app] if app else ["port", port] if port != "any" else [])]
    if "from" not in words and "to" not in words and not interfaces:
        words += ["to", "any"]
    if rule.proto != "any" and not rule.dapp and not rule.sapp:
        words += ["proto", rule.proto]
    return tuple(words)


def _interfaces(field):
    """(direction, in-interface, out-interface) from a tuple's last field, or None."""
    direction = field.split("_")[0]
    if "_" not in field:
        return direction, "", ""
    parts = field.split("!")
    if len(parts) == 2 and parts[0].startswith("in_") and parts[1].startswith("out_"):
        return direction, parts[0][3:], parts[1][4:]
    if field.startswith("in_"):
        return direction, field[3:], ""
    if field.startswith("out_"):
        return direction, "", field[4:]
    return None


def _tuple_rule(line):
    """One ``### tuple ###`` line of user.rules: (argument tuple, comment or None), or None."""
    body, _, comment_hex = line.partition(" comment=")
    fields = body.split()[3:]
    if not 6 <= len(fields) <= 9:
        return None
    iface = ("in", "", "")
    if len(fields) in (7, 9):
        iface = _interfaces(fields.pop())
        if iface is None:
            return None
    action, proto, dport, dst, sport, src = fields[:6]
    apps = [app.replace("%20", " ") if app != "-" else "" for app in fields[6:8]] or ["", ""]
    route = action.startswith("route:")
    action, _, logtype = action.split(":")[-1].lower().partition("_")
    if action not in ("allow", "reject", "limit"):
        action = "deny"
    words = _command_words(UfwTuple(action, proto, dport, dst, sport, src, *apps, *iface, logtype))
    try:
        comment = bytes.fromhex(comment_hex.strip()).decode("utf-8") if comment_hex.strip() else None
    except ValueError:
        comment = comment_hex.strip()
    return (("route", *words) if route else words), comment


def rules_from_files(texts):
    """The rules in ufw's rules files (user.rules, then user6.rules), as
    ``ufw show added`` lists them: (argument tuple, comment or None), in
    ufw's order, each once."""
    rules, seen = [], set()
    for text in texts:
        for line in (text or "").splitlines():
            rule = _tuple_rule(line) if line.startswith("### tuple ###") else None
            if rule is not None and rule not in seen:
                seen.add(rule)
                rules.append(rule)
    return rules


def split_managed(rules):
    """(managed, other) argument tuples; other rules keep their comment."""
    managed = [rule for rule, comment in rules if comment == RULE_COMMENT]
    other = [rule + (("comment", comment) if comment else ()) for rule, comment in rules if comment != RULE_COMMENT]
    return managed, other


def rule_text(rule):
    return " ".join(rule)


def plan_rules(desired, managed):
    """Rules to add (in order) and managed rules to remove."""
    add = [rule for rule in desired if rule not in managed]
    remove = [rule for rule in managed if rule not in desired]
    return add, remove


# ---------------------------------------------------------------- firewall status

POLICY_WORDS = {"DROP": "deny", "REJECT": "reject", "ACCEPT": "allow"}


def parse_status(output):
    """Parse ``ufw status verbose``: (active, default incoming policy or None)."""
    active = False
    incoming = None
    for line in output.splitlines():
        if line.startswith("Status:"):
            active = line.split(":", 1)[1].strip() == "active"
        match = re.match(r"Default:\s*(\w+) \(incoming\)", line)
        if match:
            incoming = match.group(1)
    return active, incoming


def _defaults_value(text, name):
    match = re.search(rf'^{name}="?(\w+)"?', text or "", re.MULTILINE)
    return match.group(1) if match else None


def parse_defaults_file(text):
    """Default incoming policy from /etc/default/ufw text."""
    policy = _defaults_value(text, "DEFAULT_INPUT_POLICY")
    return POLICY_WORDS.get(policy.upper(), policy.lower()) if policy else None


def defaults_ipv6(text):
    """Whether /etc/default/ufw text leaves IPv6 on (ufw's default when unset)."""
    value = _defaults_value(text, "IPV6")
    return value is None or value.lower() == "yes"


# ---------------------------------------------------------------- audit

SEVERITIES = ("critical", "high", "medium", "low", "info")
Listener = namedtuple("Listener", "address port proto")
Rule = namedtuple("Rule", "action source ports")  # ports: None = every port


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


def parse_ufw_ports(text):
    """PortSpecs from ufw port syntax: ``22``, ``80,443/tcp``, ``6000:6010/tcp``, ``a/tcp|b/udp``."""
    specs = []
    for group in text.split("|"):
        ports, _, proto = group.partition("/")
        for item in ports.split(","):
            first, _, last = item.partition(":")
            for one_proto in (proto,) if proto else ("tcp", "udp"):
                specs.append(PortSpec(int(first), int(last or first), one_proto))
    return specs


def parse_app_profiles(texts):
    """``{name: [PortSpec]}`` from the texts of the files in applications.d."""
    profiles = {}
    for text in texts:
        for name, ports in profile_file_ports(text).items():
            if ports is None:
                continue
            try:
                profiles[name] = parse_ufw_ports(ports)
            except ValueError:  # ports ufw would refuse
                continue
    return profiles


def parse_rule(words, profiles):
    """An incoming rule from ufw command words, or None for rules the audit ignores."""
    words = [w for w in words if w not in ("log", "log-all")]
    if not words or words[0] not in ("allow", "deny", "reject", "limit"):
        return None
    action, rest = words[0], words[1:]
    if rest[:1] == ["out"]:
        return None
    if rest[:1] == ["in"]:
        rest = rest[1:]
    if rest[:1] == ["on"]:
        rest = rest[2:]
    if len(rest) == 1:  # simple form: a port spec or an application
        target = rest[0]
        ports = profiles.get(target) if not target[:1].isdigit() else parse_ufw_ports(target)
        return Rule(action, "any", ports or [])
    fields = dict(zip(rest[::2], rest[1::2], strict=False))
    source = fields.get("from", "any")
    ports = None
    if "app" in fields:
        ports = profiles.get(fields["app"], [])
    elif "port" in fields:
        ports = parse_ufw_ports(fields["port"] + (f"/{fields['proto']}" if "proto" in fields else ""))
    elif "proto" in fields:
        ports = [PortSpec(1, 65535, fields["proto"])]
    return Rule(action, source, ports)


def _rule_matches(rule, spec):
    return rule.ports is None or any(p.covers(spec) for p in rule.ports)


def reachability(listener, rules, active, incoming):
    """Who can reach a listener: ``localhost``, ``anyone``, ``nobody`` or a list of sources."""
    if listener.address.is_loopback:
        return "localhost"
    if not active or incoming == "allow":
        return "anyone"
    spec = PortSpec(listener.port, listener.port, listener.proto)
    family = listener.address.version
    for rule in rules:
        if rule.source == "any" and _rule_matches(rule, spec):
            if rule.action in ("allow", "limit"):
                return "anyone"
            break
    sources = []
    for rule in rules:
        if rule.source != "any" and rule.action in ("allow", "limit") and _rule_matches(rule, spec):
            network = ipaddress.ip_network(rule.source, strict=False)
            dual_stack = listener.address == ipaddress.IPv6Address("::")
            if network.version == family or dual_stack:
                sources.append(rule.source)
    return sorted(set(sources)) or "nobody"


def _catalogue_row(port, proto, roles):
    rows = [e for e in CATALOGUE if e.port == port and e.proto == proto]
    own = [e for e in rows if e.role in set(roles) | {CORE_ROLE}]
    return (own or rows or [None])[0]


def audit_findings(listeners, rules, active, incoming, config):
    """Compare what listens with what the firewall lets in; returns the audit report."""
    findings = []

    def finding(severity, port, message):
        findings.append({"severity": severity, "port": port, "message": message})

    if not active:
        finding("high", None, "ufw is inactive: every listening port is reachable from anyone")
    elif incoming == "allow":
        finding("high", None, "ufw's default incoming policy is allow")
    public = _public_ports(config)
    merged = {}
    for listener in listeners:
        merged.setdefault((listener.port, listener.proto), []).append(listener)
    ports = []
    for (port, proto), bound in sorted(merged.items()):
        label = f"{port}/{proto}"
        reach = {str(listener.address): reachability(listener, rules, active, incoming) for listener in bound}
        widest = _widest(list(reach.values()))
        row = _catalogue_row(port, proto, config.roles)
        is_public = any(p.covers(PortSpec(port, port, proto)) for p in public)
        is_management = (port, proto) == (config.ssh_port, "tcp")
        expected = PUBLIC if is_public else "management" if is_management else row.exposure if row else "unknown"
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
        if widest == "anyone" and expected in (CLUSTER, LOCALHOST):
            severity = "critical" if row.critical else "high"
            finding(severity, label, f"{service} is reachable from anyone; it should be {expected}-only")
        elif widest == "anyone" and expected == "unknown":
            finding("medium", label, "not a Zimbra port, yet reachable from anyone")
        elif widest == "nobody" and expected in (PUBLIC, "unknown"):
            finding("low", label, f"{service} listens on {', '.join(sorted(reach))} but no rule allows it")
        elif expected == LOCALHOST and widest != "localhost":
            finding("info", label, f"{service} listens beyond loopback; Zimbra binds it to localhost")
    findings.sort(key=lambda f: SEVERITIES.index(f["severity"]))
    summary = {severity: sum(f["severity"] == severity for f in findings) for severity in SEVERITIES}
    return {
        "report": _report_lines(findings, ports),
        "summary": summary,
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
        lines.append(
            f"{entry['port']:<10} {entry['expected']:<11} {', '.join(reach) if isinstance(reach, list) else reach}"
        )
    return lines


def _widest(reaches):
    """The widest reach among the addresses a port listens on."""
    if "anyone" in reaches:
        return "anyone"
    sources = sorted({source for reach in reaches if isinstance(reach, list) for source in reach})
    if sources:
        return sources
    return "nobody" if "nobody" in reaches else "localhost"


# ---------------------------------------------------------------- ufw I/O (thin)


def _require_ufw():
    if not __salt__["cmd.has_exec"]("ufw"):
        raise CommandExecutionError("ufw is not available on this minion: install the 'ufw' package")


def _ufw(args, check=True):
    _require_ufw()
    result = __salt__["cmd.run_all"](
        ["ufw", *args],
        python_shell=False,
        env={"LC_ALL": "C", "LANG": "C"},
        ignore_retcode=True,
        output_loglevel="debug",
    )
    if check and result["retcode"] != 0:
        message = (result.get("stderr") or result.get("stdout") or "").strip()
        raise CommandExecutionError(f"'ufw {' '.join(args)}' failed (exit {result['retcode']}): {message}")
    return result["stdout"]


# Runs a list of ufw commands in one ufw process (see _ufw_batch); synced
# beside this module by saltutil.sync_modules.
UFW_BATCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zimbra_fw_ufw_batch.py")


def batch_outcome(commands, report, retcode, stderr=""):
    """What a run of zimbra_fw_ufw_batch did, from its JSON-lines ``report``:
    (number of commands applied, error or None), or None when ufw's library
    could not be loaded (the caller then runs the commands one by one)."""
    applied, error = 0, None
    for line in report.splitlines():
        try:
            fields = json.loads(line)
        except ValueError:
            continue
        if "unavailable" in fields:
            return None
        if "done" in fields:
            applied = max(applied, fields["done"] + 1)
        if "failed" in fields:
            applied, error = fields["failed"], fields["error"]
    if applied == len(commands):
        return applied, None
    error = error or f"exit {retcode}: {(stderr or '').strip()}"
    return applied, f"'ufw {' '.join(commands[applied])}' failed: {error}"


def _ufw_python(path):
    """The Python that runs the ufw program at ``path`` (its #! line), or None."""
    try:
        with open(path, "rb") as handle:
            first_line = handle.readline(200).decode("utf-8", "replace")
    except (OSError, TypeError):
        return None
    words = first_line[2:].split() if first_line.startswith("#!") else []
    if words and os.path.basename(words[0]) == "env" and len(words) > 1:
        words = [salt.utils.path.which(words[1]) or ""]
    if words and os.path.basename(words[0]).startswith("python") and os.access(words[0], os.X_OK):
        return words[0]
    return None


def _ufw_batch(commands):
    """Run ufw commands in order in one ufw process. Returns (number applied,
    error or None), or None when ufw's library cannot be loaded that way."""
    program = salt.utils.path.which("ufw")
    python = _ufw_python(program)
    if python is None or not os.path.exists(UFW_BATCH_SCRIPT):
        return None
    result = __salt__["cmd.run_all"](
        [python, "-I", UFW_BATCH_SCRIPT, program],
        stdin=json.dumps(commands),
        python_shell=False,
        env={"LC_ALL": "C", "LANG": "C"},
        ignore_retcode=True,
        output_loglevel="debug",
    )
    return batch_outcome(commands, result["stdout"], result["retcode"], result.get("stderr"))


def _run_ufw_commands(commands):
    """Run ufw commands in order, batched when possible, one process each
    otherwise. Returns (number applied, error or None)."""
    _require_ufw()
    batched = _ufw_batch(commands)
    if batched is not None:
        return batched
    for applied, args in enumerate(commands):
        try:
            _ufw(args)
        except CommandExecutionError as exc:
            return applied, str(exc)
    return len(commands), None


def _read_file(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write_atomic(path, text):
    directory = os.path.dirname(path)
    # A dot-file: ufw skips hidden files in applications.d while it is written.
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".zimbra_fw-")
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


def _rule_list():
    """ufw's rules, read from its rules files (as ufw itself reads them)."""
    paths = [RULES_FILES[0]]
    if defaults_ipv6(_read_file(UFW_DEFAULTS_PATH)) and os.path.exists("/proc/sys/net/ipv6"):
        paths.append(RULES_FILES[1])
    return rules_from_files(_read_file(path) for path in paths)


def _read_rules():
    return split_managed(_rule_list())


def _read_app_profiles():
    directory = os.path.dirname(PROFILE_PATH)
    names = sorted(name for name in os.listdir(directory) if not name.startswith("."))
    return parse_app_profiles(_read_file(os.path.join(directory, name)) or "" for name in names)


def _read_listeners(config):
    """Listening TCP sockets, and UDP ones on ports the catalogue or whitelist names."""
    known_udp = {e.port for e in CATALOGUE if e.proto == "udp"}
    known_udp |= {p for spec in _public_ports(config) if spec.proto == "udp" for p in (spec.first, spec.last)}
    listeners = []
    for name, proto in (("tcp", "tcp"), ("tcp6", "tcp"), ("udp", "udp"), ("udp6", "udp")):
        for listener in parse_proc_net(_read_file(f"/proc/net/{name}") or "", proto):
            if proto == "tcp" or listener.port in known_udp:
                listeners.append(listener)
    return listeners


def _read_firewall():
    active, incoming = parse_status(_ufw(["status", "verbose"]))
    if incoming is None:  # ufw prints defaults only while active
        incoming = parse_defaults_file(_read_file(UFW_DEFAULTS_PATH))
    return active, incoming


def _plain(value):
    """Pillar data as plain dicts and lists (Salt may wrap them to mask output)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


MINE_FUNCTION = "zimbra_fw.identity"


def _config(with_mine=True):
    # __pillar__ rather than pillar.get: Salt 3008 masks values pillar.get returns.
    pillar = _plain(__pillar__.get(PILLAR_KEY))
    settings = pillar if isinstance(pillar, dict) else {}
    packages = None
    if settings.get("roles") is None:
        packages = list(__salt__["pkg.list_pkgs"]())
    mine_data = None
    cluster = settings.get("cluster")
    if with_mine and isinstance(cluster, dict) and cluster.get("mine") is True:
        target = cluster.get("mine_target", CLUSTER_DEFAULTS["mine_target"])
        mine_data = _plain(dict(__salt__["mine.get"](target, MINE_FUNCTION, tgt_type="compound")))
    return parse_config(
        pillar,
        packages=packages,
        mine_data=mine_data,
        minion_id=__opts__.get("id"),
        salt_master=_salt_master(),
        ufw_ipv6=defaults_ipv6(_read_file(UFW_DEFAULTS_PATH)),
    )


def _salt_master():
    """(address, ports) of this minion's Salt master, or None for a masterless minion."""
    if __opts__.get("file_client") == "local" or not __opts__.get("master_ip"):
        return None
    return __opts__["master_ip"], (int(__opts__.get("publish_port", 4505)), int(__opts__.get("master_port", 4506)))


def _own_addresses():
    """This minion's addresses other than loopback and link-local."""
    addresses = __salt__["network.ip_addrs"]() + __salt__["network.ip_addrs6"]()
    return sorted(
        {a for a in addresses if not ipaddress.ip_address(a).is_link_local},
        key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a)),
    )


# ---------------------------------------------------------------- planning


def _step_ufw(args, describe=None):
    return {"ufw": list(args), "describe": describe or "ufw " + " ".join(args)}


def _plan_profile(config):
    current = _read_file(PROFILE_PATH)
    wanted = profile_text(config)
    changes, steps = {}, []
    if current == wanted:
        return {"changes": changes, "steps": steps}
    current_ports, wanted_ports = profile_file_ports(current), profile_file_ports(wanted)
    retired = [name for name in current_ports if name not in wanted_ports]
    if retired:
        # Rules naming a profile must go before the profile does: ufw can
        # no longer delete them once their profile is unknown.
        managed, _ = _read_rules()
        stale = [rule for rule in managed if rule_profile(rule) in retired]
        for rule in stale:
            steps.append(_step_ufw(["delete", *rule]))
        if stale:
            changes["rules removed"] = [rule_text(rule) for rule in stale]
    if wanted is None:
        steps.append({"remove": PROFILE_PATH, "describe": f"remove {PROFILE_PATH}"})
    else:
        steps.append({"write": PROFILE_PATH, "text": wanted, "describe": f"write {PROFILE_PATH}"})
    for name, new_ports in wanted_ports.items():
        old_ports = current_ports.get(name)
        if old_ports != new_ports:
            changes.setdefault("ports", {})[name] = {"old": old_ports, "new": new_ports}
            if old_ports is not None:
                steps.append(_step_ufw(["app", "update", name]))
    for name in retired:
        changes.setdefault("ports", {})[name] = {"old": current_ports[name], "new": None}
    if not changes.get("ports"):
        changes["file"] = {"old": current, "new": wanted}
    return {"changes": changes, "steps": steps}


def _plan_rules(config):
    managed, _ = _read_rules()
    add, remove = plan_rules(desired_rules(config), managed)
    steps = [_step_ufw([*rule, "comment", RULE_COMMENT], "ufw " + rule_text(rule)) for rule in add]
    # Stale rules go only after the new ones are in place.
    steps += [_step_ufw(["delete", *rule]) for rule in remove]
    changes = {}
    if add:
        changes["added"] = [rule_text(rule) for rule in add]
    if remove:
        changes["removed"] = [rule_text(rule) for rule in remove]
    return {"changes": changes, "steps": steps}


def _plan_firewall(config):
    if not config.enabled:
        return {"changes": {}, "steps": [], "comment": "zimbra_fw:enabled is false: ufw's state is left alone"}
    active, incoming = _read_firewall()
    changes, steps = {}, []
    if incoming != "deny":
        changes["default incoming"] = {"old": incoming, "new": "deny"}
        steps.append(_step_ufw(["default", "deny", "incoming"]))
    if not active:
        changes["active"] = {"old": False, "new": True}
        steps.append(_step_ufw(["--force", "enable"]))
    if steps and not config.allow_no_management:
        steps.insert(
            0,
            {
                "require_rules": [list(r) for r in management_rules(config)],
                "describe": "check that management access is allowed",
            },
        )
    return {"changes": changes, "steps": steps}


_PLANNERS = {"profile": _plan_profile, "rules": _plan_rules, "firewall": _plan_firewall}


# ---------------------------------------------------------------- applying


def _apply_step(step):
    if "write" in step:
        _write_atomic(step["write"], step["text"])
    elif "remove" in step:
        if os.path.exists(step["remove"]):
            os.unlink(step["remove"])
    elif "require_rules" in step:
        managed, _ = _read_rules()
        missing = [rule_text(rule) for rule in step["require_rules"] if tuple(rule) not in managed]
        if missing:
            raise CommandExecutionError(
                "refusing to enable default-deny: management access is not allowed yet "
                f"(missing: {', '.join(missing)}); apply the zimbra_fw rules first"
            )
    else:
        raise CommandExecutionError(f"unknown plan step {step!r}")


def _step_batches(steps):
    """The steps in order, consecutive ufw commands grouped into one list."""
    batches = []
    for step in steps:
        if "ufw" in step and batches and "ufw" in batches[-1][0]:
            batches[-1].append(step)
        else:
            batches.append([step])
    return batches


def _apply_batch(batch):
    """Apply a group of steps; returns (number applied, error or None)."""
    try:
        if "ufw" in batch[0]:
            return _run_ufw_commands([step["ufw"] for step in batch])
        _apply_step(batch[0])
    except (CommandExecutionError, OSError) as exc:
        return 0, str(exc)
    return 1, None


# ---------------------------------------------------------------- public functions


def catalogue():
    """
    Return every Zimbra port the formula knows: port, protocol, owning role,
    exposure (public / cluster / localhost), who connects and what it is.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.catalogue
    """
    return [
        {
            "port": entry.port,
            "proto": entry.proto,
            "role": entry.role,
            "exposure": entry.exposure,
            "consumers": list(entry.consumers),
            "purpose": entry.purpose,
            "critical": entry.critical,
            **({"only_without": entry.when_missing} if entry.when_missing else {}),
        }
        for entry in sorted(CATALOGUE, key=lambda e: (e.port, e.proto, e.role))
    ]


def identity():
    """
    Return what this minion publishes to the Salt Mine for its peers: its
    Zimbra roles and its addresses. Publish it with the minion (or pillar)
    setting ``mine_functions: {zimbra_fw.identity: []}``.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.identity
        salt '*' mine.update
    """
    config = _config(with_mine=False)  # what it publishes must not depend on the mine
    return {"roles": list(config.roles), "addresses": _own_addresses()}


def open_ports():
    """
    Return this minion's whitelist from its ``zimbra_fw`` pillar, by exposure:
    ``public`` is opened to anyone, ``cluster`` to trusted subnets and to the
    peers whose roles use each port (``peers``), ``localhost`` is never
    opened. ``roles`` says where the roles came from (pillar or packages);
    ``admin`` lists the admin console ports when ``admin_subnets`` is set.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.open_ports
    """
    return whitelist(_config())


def profile():
    """
    Return the ufw application profiles this minion needs (the public one
    and one per peer role or admin_subnets) with their ports, the file path
    and the file text (None when no profile is needed).

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.profile
    """
    config = _config()
    return {
        "path": PROFILE_PATH,
        "profiles": {name: "|".join(port_groups(ports)) for name, (_, _, ports) in wanted_profiles(config).items()},
        "text": profile_text(config),
    }


def plan(part=None):
    """
    Show what a converge would change now, changing nothing. ``part`` limits
    it to one of ``profile``, ``rules`` or ``firewall``.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.plan
        salt '*' zimbra_fw.plan part=rules
    """
    config = _config()
    _require_ufw()
    if part is not None:
        if part not in _PLANNERS:
            raise CommandExecutionError(f"part {part!r} is not one of {', '.join(PARTS)}")
        return _PLANNERS[part](config)
    return {name: _PLANNERS[name](config) for name in PARTS}


def apply(plan):  # pylint: disable=redefined-outer-name
    """
    Carry out a plan made by ``zimbra_fw.plan part=...`` (the states pass it
    on) in order: its ``steps`` run ufw commands (consecutive ones in one
    ufw process), write or remove the profile file, or check that management
    rules exist. On failure the error says which step failed and lists the
    steps already applied (also in its ``info['applied']``).

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.apply '{"steps": [{"ufw": ["app", "update", "Zimbra"]}]}'
    """
    applied = []
    for batch in _step_batches(plan.get("steps", [])):
        count, error = _apply_batch(batch)
        applied.extend(step.get("describe") for step in batch[:count])
        if error is not None:
            failed = batch[count].get("describe")
            done = "; ".join(applied) or "nothing"
            raise CommandExecutionError(
                f"step '{failed}' failed: {error}. Already applied: {done}",
                info={"applied": applied, "failed": failed},
            )
    return applied


def audit():
    """
    Compare what listens on this minion with what ufw lets in. For each
    listening port: who can reach it now (anyone, the listed sources,
    nobody, localhost) against what the catalogue says it should be, and
    findings by severity (critical: memcached, LDAP, MySQL, zmconfigd or
    amavis reachable from anyone). Exits non-zero from salt-call when
    something critical is found.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.audit
        salt '*' zimbra_fw.audit --out=json
    """
    config = _config()
    profiles = _read_app_profiles()
    words = [words for words, _ in _rule_list()]
    rules = [rule for rule in (parse_rule(w, profiles) for w in words) if rule is not None]
    active, incoming = _read_firewall()
    report = audit_findings(_read_listeners(config), rules, active, incoming, config)
    if report["summary"]["critical"]:
        __context__["retcode"] = 2
    return report


def status():
    """
    Return ufw as it is: active or not, the default incoming policy, the
    rules this formula manages and the rules it does not.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.status
    """
    managed, other = _read_rules()
    active, incoming = _read_firewall()
    return {
        "active": active,
        "default_incoming": incoming,
        "managed_rules": [rule_text(rule) for rule in managed],
        "other_rules": [rule_text(rule) for rule in other],
    }
