"""
The ``zimbra_fw`` pillar: schema, defaults and validation.

``parse_config(pillar, facts)`` returns a Config or raises ConfigInvalid
naming every pillar key and value at fault. It reads nothing itself: what it
needs to know about the minion (installed packages, mine data, its Salt
master, what its firewall accepts) comes in ``facts``. Knows no firewall.
"""

import difflib
import ipaddress
import re
from collections import namedtuple

import zimbra_fw_catalogue as catalogue
from salt.exceptions import CommandExecutionError
from zimbra_fw_backend import NAMES as BACKENDS


def __virtual__():
    return (False, "zimbra_fw_config is a library of the zimbra_fw module, not a Salt util")


PILLAR_KEY = "zimbra_fw"

Config = namedtuple(
    "Config",
    "roles roles_source trusted_subnets admin_subnets extra_ports exclude_ports ssh_port ssh_from ssh_limit "
    "profile_name profile_title profile_description enabled allow_no_management peers mine mine_target "
    "salt_masters mail_mode only_from left_out backend zone allow_wide_networks wide_networks confirm "
    "allow_cut_sessions close_foreign",
)
# address: an ip_network (a host). ports: the master's ports (4505, 4506),
# which its packets come from. local_ports: a PortSpec, the minion's
# ephemeral range, where its connections to the master start.
SaltMaster = namedtuple("SaltMaster", "address ports local_ports")
Peer = namedtuple("Peer", "name addresses roles source")

# What the minion tells about itself. ``packages``: installed package names
# (None: not read, as roles are in pillar). ``mine_data``: minion id ->
# zimbra_fw.identity (None: the mine is not used). ``salt_master``: (address,
# ports, (low, high)) or None; (low, high) is the minion's ephemeral port
# range (/proc/sys/net/ipv4/ip_local_port_range), DEFAULT_LOCAL_PORTS when
# left out. ``ipv6_off``: None, or why the firewall cannot take IPv6
# rules. ``name_taken``: name -> None, or why the firewall cannot use that
# name for a port group. ``os_family``: the os_family grain (picks the
# default backend).
Facts = namedtuple("Facts", "packages mine_data minion_id salt_master ipv6_off name_taken os_family")
Facts.__new__.__defaults__ = (None, None, None, None, None, lambda name: None, None)
NO_FACTS = Facts()

DEFAULTS = {
    "roles": None,
    "trusted_subnets": [],
    "admin_subnets": [],
    "extra_ports": [],
    "exclude_ports": [],
    "only_from": {},
    "ssh": {"port": 22, "from": ["any"], "limit": False},
    "profile": {
        "name": "Zimbra",
        "title": "Zimbra Collaboration Server",
        "description": "Open source server for email, contacts, calendar and collaboration",
    },
    "enabled": True,
    "allow_no_management": False,
    "allow_wide_networks": False,
    "allow_salt_master": True,
    "cluster": {"peers": [], "mine": False, "mine_target": "*", "networks": []},
    "mail_mode": "https",
    "backend": None,  # ufw, or firewalld on the RedHat os_family
    "firewalld": {"zone": None},
    "confirm": None,  # seconds: roll back unless zimbra_fw.confirm comes first
    "allow_cut_sessions": False,
    "close_foreign": False,
}
# The rollback's delay: 5 s is for tests; a person needs 30 s or more.
CONFIRM_SECONDS = (5, 86400)
ZONE_NAME_RE = re.compile(r"[A-Za-z0-9_+-]{1,17}")  # firewalld's limit: 17 characters

# Room is left for the "-<role>" suffix of the per-role groups (ufw allows 64).
PROFILE_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,47}")  # fullmatch: "$" would let a newline in
# ufw's own words: a profile named so would read as part of the rule.
RESERVED_PROFILE_NAMES = {"all", "any", "from", "to", "in", "out", "on", "log", "log-all", "comment", "route"}
RESERVED_PROFILE_NAMES |= {"port", "proto", "app", "allow", "deny", "reject", "limit", "delete", "insert", "prepend"}
PROFILE_TEXT_MAX = 200


class ConfigInvalid(CommandExecutionError):
    """The pillar cannot be applied; ``problems`` lists each key and value at fault."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("Invalid pillar, nothing was changed:\n- " + "\n- ".join(self.problems))


VALUE_SHOWN = 1000  # characters of a value a problem quotes


class Problems(list):
    def add(self, key, value, reason):
        shown = repr(value)
        if len(shown) > VALUE_SHOWN:  # mine data can be as large as its writer likes
            shown = shown[:VALUE_SHOWN] + f"... ({len(shown)} characters)"
        self.append(f"{PILLAR_KEY}:{key}: {shown} {reason}")

    def missing(self, key, reason):
        self.append(f"{PILLAR_KEY}:{key} {reason}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def network_order(network):
    """A sort key that orders networks as ipaddress does (IPv4 first, then by
    address, then by prefix length), from integers: comparing the objects
    themselves runs ipaddress's Python comparisons, thousands per sort."""
    return (network.version, int(network.network_address), network.prefixlen)


def _unique_networks(networks):
    """``networks`` each once, in network_order (a list of one as it is)."""
    if len(networks) == 1:
        return tuple(networks)
    by_order = {network_order(network): network for network in networks}  # equal networks, equal keys
    return tuple(by_order[order] for order in sorted(by_order))


def _check_keys(problems, prefix, mapping, known):
    """Each key of ``mapping`` not in ``known`` is a problem, named ``prefix`` + key."""
    unknown_keys = [key for key in mapping if key not in known]
    for unknown in sorted(set(unknown_keys), key=str) if unknown_keys else ():
        hint = difflib.get_close_matches(str(unknown), known)
        extra = f" (did you mean {hint[0]!r}?)" if hint else f"; known keys: {', '.join(known)}"
        problems.add(f"{prefix}{unknown}", mapping[unknown], "is not a known key" + extra)


def _mapping(problems, key, value, defaults, shape):
    """``value`` (a mapping) over ``defaults``; unknown keys are problems."""
    if not isinstance(value, dict):
        problems.add(key, value, f"must be a mapping with {shape}")
        value = {}
    _check_keys(problems, f"{key}:", value, tuple(defaults))
    return {**defaults, **value}


def _check_list(problems, key, value):
    if not isinstance(value, list):
        problems.add(key, value, f"must be a list, not a {type(value).__name__}")
        return []
    return value


def _check_no_duplicates(problems, key, items):
    seen = set()
    for item in items:
        if item in seen:
            problems.add(key, str(item), "is listed twice")
        seen.add(item)


def _check_bool(problems, key, value):
    if not isinstance(value, bool):
        problems.add(key, value, "must be true or false")
        return False
    return value


def _parse_roles(problems, value, packages):
    """(roles, where they came from); installed packages are used when ``value`` is None."""
    if value is None:
        if packages is None:
            problems.missing("roles", f"is required: list this server's Zimbra roles ({', '.join(catalogue.ROLES)})")
            return (), "pillar"
        detected = catalogue.roles_from_packages(packages)
        if not detected:
            problems.missing(
                "roles", "is not set and no zimbra-* role package is installed: list this server's Zimbra roles"
            )
        return tuple(detected), "packages"
    return _parse_role_list(problems, "roles", value), "pillar"


def _parse_role_list(problems, key, value):
    roles = []
    for index, role in enumerate(_check_list(problems, key, value)):
        if not isinstance(role, str) or role not in catalogue.ROLES:
            hint = difflib.get_close_matches(str(role), catalogue.ROLES)
            extra = f" (did you mean {hint[0]!r}?)" if hint else f"; known roles: {', '.join(catalogue.ROLES)}"
            problems.add(f"{key}[{index}]", role, "is not a Zimbra role" + extra)
            continue
        roles.append(role)
    if isinstance(value, list) and not value:
        problems.add(key, value, "is empty: list at least one Zimbra role")
    _check_no_duplicates(problems, key, roles)
    return tuple(sorted(set(roles)))


# Addresses no rule may name: they are no host's, or they do not mean what
# they seem (an IPv4-mapped IPv6 source never matches IPv4 traffic).
# (network, kind, why no rule may name an address in it)
SPECIAL_NETWORKS = tuple(
    (ipaddress.ip_network(network), kind, reason)
    for network, kind, reason in (
        ("0.0.0.0/8", "unspecified", "is in 0.0.0.0/8, the unspecified address: it names no host"),
        ("::/128", "unspecified", "is the unspecified address: it names no host"),
        ("127.0.0.0/8", "loopback", "is a loopback address: no other host has it"),
        ("::1/128", "loopback", "is the loopback address: no other host has it"),
        (
            "169.254.0.0/16",
            "link-local",
            "is link-local: it names a host on some link, not a routed peer; use its routable address",
        ),
        (
            "fe80::/10",
            "link-local",
            "is link-local: it names a host on some link, not a routed peer; use its routable address",
        ),
        ("224.0.0.0/4", "multicast", "is multicast: no connection comes from it"),
        ("ff00::/8", "multicast", "is multicast: no connection comes from it"),
        (
            "::ffff:0:0/96",
            "IPv4-mapped",
            "is an IPv4-mapped IPv6 address (::ffff:a.b.c.d): IPv4 packets never match an IPv6 rule; "
            "write the IPv4 address or subnet",
        ),
        (
            "::/96",
            "IPv4-compatible",
            "is an IPv4-compatible IPv6 address (::a.b.c.d, deprecated): write the IPv4 address or subnet",
        ),
    )
)
NETWORK_TEXT_RE = re.compile(r"[0-9A-Fa-f.:/]+")
# A dotted quad, as ipaddress reads one (ASCII digits, no leading zero, to
# 255), with /32 or no prefix: most of a large cluster's addresses.
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_HOST_RE = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/32)?", re.ASCII)
# Shorter prefixes (0.0.0.0/1, 2000::/3) need allow_wide_networks: true.
MIN_PREFIX = {4: 8, 6: 16}


# IPv6 prefixes whose addresses stand for IPv4 hosts, with the bit where the
# IPv4 address starts: a network inside one is as wide as the IPv4 network it
# covers (2002::/16 passes for a /16, yet reaches every IPv4 host a relay serves).
IPV4_EMBEDDING = (
    (ipaddress.ip_network("2002::/16"), 16, "6to4"),
    (ipaddress.ip_network("2001::/32"), 96, "Teredo"),  # a client's address is the last 32 bits
    (ipaddress.ip_network("64:ff9b::/96"), 96, "NAT64"),
    (ipaddress.ip_network("64:ff9b:1::/48"), 48, "local NAT64"),
    (ipaddress.ip_network("::ffff:0:0:0/96"), 96, "SIIT"),
)


def shortest_prefix(network):
    """(the shortest prefix length ``network`` may have, the IPv4-embedding
    range it lies in or holds, or None)."""
    if network.version == 4:
        return MIN_PREFIX[4], None
    for prefix, ipv4_at, name in IPV4_EMBEDDING:
        if network.subnet_of(prefix) or prefix.subnet_of(network):
            return ipv4_at + MIN_PREFIX[4], f"{name} {prefix}"
    return MIN_PREFIX[network.version], None


class WideNetworks(list):
    """The networks wider than MIN_PREFIX met while parsing, as (key, network);
    a problem each unless ``allowed`` (zimbra_fw:allow_wide_networks)."""

    def __init__(self, allowed=False):
        super().__init__()
        self.allowed = allowed

    def check(self, problems, key, value, network):
        """True when ``network`` may be used."""
        shortest, embedding = shortest_prefix(network)
        if network.prefixlen >= shortest:
            return True
        if not self.allowed:
            stands_for = f" (its addresses stand for IPv4 hosts, {embedding})" if embedding else ""
            problems.add(
                key,
                value,
                f"is wider than /{shortest}{stands_for}: it would give a large part of the internet access (LDAP, "
                "memcached, MySQL); list narrower networks, or set zimbra_fw:allow_wide_networks: true if that is "
                "intended",
            )
            return False
        self.append((key, network))
        return True


def _network_of_text(problems, key, value):
    """The ip_network the text ``value`` names, or None with a problem."""
    if not isinstance(value, str):
        problems.add(key, value, "must be an address or subnet such as '192.168.1.0/24'")
        return None
    text = value.strip()
    if "%" in text:  # ipaddress keeps whatever follows a zone ID, and str() gives it back
        problems.add(key, value, "has an IPv6 zone ID ('%...'): a firewall rule cannot name one; leave it out")
        return None
    host = IPV4_HOST_RE.fullmatch(text)
    if host is not None:  # the same network as ip_network(text), built from the integer
        first, second, third, fourth = map(int, host.groups())
        return ipaddress.IPv4Network(((first << 24) | (second << 16) | (third << 8) | fourth, 32))
    try:
        network = ipaddress.ip_network(text)
    except ValueError as exc:
        hint = ""
        try:
            hint = f" (did you mean {str(ipaddress.ip_network(text, strict=False))!r}?)"
        except ValueError:
            pass
        problems.add(key, value, f"is not a valid subnet: {exc}{hint}")
        return None
    if not NETWORK_TEXT_RE.fullmatch(text):
        problems.add(key, value, "is not a valid subnet: only digits, a-f, '.', ':' and '/' may be in one")
        return None
    return network


SPECIAL_BOUNDS = {
    version: [
        (int(special.network_address), int(special.broadcast_address), special, kind, reason)
        for special, kind, reason in SPECIAL_NETWORKS
        if special.version == version
    ]
    for version in (4, 6)
}
# A network at least MIN_PREFIX long lies in one block of that length, and a
# special range is either nested with that block or disjoint from it: so only
# the ranges nested with its block need checking (none, for most addresses).
BLOCK_SHIFT = {version: bits - MIN_PREFIX[version] for version, bits in ((4, 32), (6, 128))}


def _special_by_block(version):
    """``{block: SPECIAL_BOUNDS entries nested with it}``, in SPECIAL_BOUNDS order."""
    shift, by_block = BLOCK_SHIFT[version], {}
    for bound in SPECIAL_BOUNDS[version]:
        for block in range(bound[0] >> shift, (bound[1] >> shift) + 1):
            by_block.setdefault(block, []).append(bound)
    return by_block


SPECIAL_BY_BLOCK = {version: _special_by_block(version) for version in (4, 6)}


def special_reason(network):
    """Why no rule may name ``network``, or None. A network that holds a
    special range is refused too, unless it is wider than MIN_PREFIX (those
    are allow_wide_networks' to accept or refuse)."""
    if network.prefixlen == 0:
        return "is the whole internet: it would give everyone access (LDAP, memcached, MySQL)"
    # As integers, without ipaddress's broadcast_address: every peer address passes here.
    first = int(network.network_address)
    last = first | ((1 << (network.max_prefixlen - network.prefixlen)) - 1)
    version = network.version
    if network.prefixlen >= MIN_PREFIX[version]:
        same = SPECIAL_BY_BLOCK[version].get(first >> BLOCK_SHIFT[version], ())
    else:
        same = SPECIAL_BOUNDS[version]
    for low, high, _, _, reason in same:
        if low <= first and last <= high:  # network inside the special range
            return reason
    if network.prefixlen >= MIN_PREFIX[version]:
        for low, high, special, kind, _ in same:
            if first <= low and high <= last:  # the special range inside network
                return f"holds {special}, {kind} addresses no rule may name: list networks without them"
    return None


def _parse_network(problems, key, value, wide=None):
    """An ip_network from the text ``value``, or None with a problem. ``wide``
    (a WideNetworks) checks the prefix length; without it any length but /0 passes."""
    network = _network_of_text(problems, key, value)
    if network is None:
        return None
    if reason := special_reason(network):
        problems.add(key, value, reason)
        return None
    if wide is not None and not wide.check(problems, key, value, network):
        return None
    return network


def _parse_networks(problems, key, value, allow_any=False, wide=None):
    """A list of subnets, none the whole internet; with ``allow_any``, ``any`` stands for everyone."""
    networks = []
    for index, item in enumerate(_check_list(problems, key, value)):
        item_key = f"{key}[{index}]"
        if isinstance(item, str) and item.strip().lower() in ("any", "anywhere"):
            if allow_any:
                networks.append("any")
            else:
                problems.add(item_key, item, "would give the whole internet access (LDAP, memcached, MySQL)")
            continue
        network = _parse_network(problems, item_key, item, wide)
        if network is not None:
            networks.append(network)
    _check_no_duplicates(problems, key, networks)
    if "any" in networks:
        return ("any",)
    return _unique_networks(networks)


def _parse_port_list(problems, key, value):
    specs = []
    for index, item in enumerate(_check_list(problems, key, value)):
        try:
            specs.append(catalogue.parse_port_spec(item))
        except ValueError as exc:
            problems.add(f"{key}[{index}]", item, str(exc))
    _check_no_duplicates(problems, key, specs)
    return tuple(sorted(set(specs)))


SSH_LIMIT_ON_FIREWALLD = (
    "cannot be used with backend firewalld: a firewalld rich-rule limit is one rate shared by every source, so "
    "more than 6 new connections a minute from anyone (a port scan will do) locks the admins out; "
    "use fail2ban, or the ufw backend (its limit counts each address apart)"
)
HOW_REACHED = {
    catalogue.CLUSTER: "peers reach it by their roles (cluster:peers, cluster:mine), trusted_subnets reach every port",
    catalogue.LOCALHOST: "Zimbra binds it to localhost; it is never opened",
}


def _check_extra_ports(problems, extra_ports, exclude_ports):
    for spec in extra_ports:
        for row in catalogue.internal_rows():
            if spec.first <= row.port <= spec.last:  # either protocol: memcached over UDP amplifies
                problems.add(
                    "extra_ports",
                    str(spec),
                    f"would publish {row.port}/{spec.proto}: {row.port}/{row.proto} is the {row.role} role's "
                    f"{row.purpose}, a {row.exposure} port ({HOW_REACHED[row.exposure]})",
                )
        splitting = [ex for ex in exclude_ports if ex.overlaps(spec) and not ex.covers(spec)]
        for excluded in splitting:
            problems.add("exclude_ports", str(excluded), f"only partly covers the range {spec}")


def _parse_ssh(problems, value, wide):
    """(port, who may connect, rate-limited or not)."""
    ssh = _mapping(problems, "ssh", value, DEFAULTS["ssh"], "port, from and limit, such as {port: 22, from: [any]}")
    port = ssh["port"]
    if not _is_int(port) or not 1 <= port <= 65535:
        problems.add("ssh:port", port, "is not a port number (1-65535)")
    elif port != catalogue.ZMRCD.port and (
        row := catalogue.row_for(port, "tcp", ()) or catalogue.row_for(port, "udp", ())
    ):
        problems.add(
            "ssh:port",
            port,
            f"is a Zimbra port ({row.port}/{row.proto}, the {row.role} role's {row.purpose}): "
            "sshd cannot share it, and the ssh rule would open it to ssh:from",
        )
    sources = _parse_networks(problems, "ssh:from", ssh["from"], allow_any=True, wide=wide)
    return port, sources, _check_bool(problems, "ssh:limit", ssh["limit"])


def _parse_only_from(problems, value, wide):
    """((PortSpec, networks), ...) from zimbra_fw:only_from; each port at most once."""
    if not isinstance(value, dict):
        problems.add("only_from", value, "must be a mapping of port to networks, such as {'25': [198.51.100.0/24]}")
        return ()
    restricted = {}
    for port, networks in value.items():
        key = f"only_from:{port}"
        try:
            spec = catalogue.parse_port_spec(port)
        except ValueError as exc:
            problems.add(key, port, str(exc))
            continue
        if spec in restricted:
            problems.add("only_from", port, f"names {spec} twice")
        restricted[spec] = _parse_networks(problems, key, networks, wide=wide)
        if networks == []:
            problems.add(key, networks, "is empty: list the networks that may reach the port, or leave the port out")
    return tuple(sorted(restricted.items()))


def _parse_profile_text(problems, key, value):
    """The text, stripped; with a problem added when it is not one printable line."""
    if not isinstance(value, str) or not value.strip():
        problems.add(key, value, "must be a non-empty string")
    elif len(value) > PROFILE_TEXT_MAX or any(not ch.isprintable() for ch in value):
        problems.add(key, value, f"must be one printable line of at most {PROFILE_TEXT_MAX} characters")
    else:
        return value.strip()
    return None


def _parse_profile(problems, value, name_taken):
    profile = _mapping(problems, "profile", value, DEFAULTS["profile"], "name, title and description")
    name = profile["name"]
    if not isinstance(name, str) or not PROFILE_NAME_RE.fullmatch(name) or name.lower() in RESERVED_PROFILE_NAMES:
        problems.add(
            "profile:name",
            name,
            "is not a safe profile name: use a letter then letters, digits, '.', '_' or '-' (48 at most)",
        )
    elif taken := name_taken(name):  # asks the firewall (files, /etc/services) once
        problems.add("profile:name", name, taken)
    title = _parse_profile_text(problems, "profile:title", profile["title"])
    description = _parse_profile_text(problems, "profile:description", profile["description"])
    return name, title, description


# A peer's addresses and the peers of a cluster (pillar and mine): beyond
# these a rule set is a mistake or an attack (every minion can write the mine).
MAX_PEER_ADDRESSES = 64
MAX_PEERS = 5000
MAX_IDENTITY_KEYS = 8
MINE_REQUIRES_NETWORKS = (
    "is empty, but cluster:mine is true: any minion can write mine data, so list the networks the Zimbra "
    "servers live in (e.g. [10.0.0.0/24]); mine addresses outside them are left out"
)


def _check_address_count(problems, key, items, who):
    if len(items) > MAX_PEER_ADDRESSES:
        problems.add(key, f"{len(items)} addresses", f"are more than {MAX_PEER_ADDRESSES} for one peer ({who})")
        return []
    return items


def _parse_peer(problems, key, value, wide):
    """A Peer from a zimbra_fw:cluster:peers entry, or None."""
    if not isinstance(value, dict):
        problems.add(key, value, "must be a mapping with name, addresses and roles")
        return None
    _check_keys(problems, f"{key}:", value, ("name", "addresses", "roles"))
    name = value.get("name")
    if not isinstance(name, str) or not name.strip() or not name.isprintable():
        problems.add(f"{key}:name", name, "must be a non-empty string")
    name = name.strip() if isinstance(name, str) else name
    addresses_key = f"{key}:addresses"
    items = _check_list(problems, addresses_key, value.get("addresses"))
    addresses = []
    for index, item in enumerate(_check_address_count(problems, addresses_key, items, name)):
        network = _parse_network(problems, f"{addresses_key}[{index}]", item, wide)
        if network is not None:
            addresses.append(network)
    if not addresses:
        problems.add(addresses_key, value.get("addresses"), "must list at least one address")
    roles = _parse_role_list(problems, f"{key}:roles", value.get("roles"))
    return Peer(str(name), _unique_networks(addresses), roles, "pillar")


def _mine_addresses(found, key, items, networks, ipv6_off):
    """(addresses kept, why others were left out): a minion publishes its own
    host addresses, and only those inside ``networks`` count."""
    addresses, reasons = [], []
    for index, item in enumerate(items):
        item_key = f"{key}:addresses[{index}]"
        network = _parse_network(found, item_key, item)
        if network is None:
            continue
        if network.prefixlen != network.max_prefixlen:
            found.add(
                item_key,
                item,
                "is not a host address: a minion publishes its own addresses (/32, /128), never networks",
            )
        elif not any(network.subnet_of(n) for n in networks if n.version == network.version):
            reasons.append(f"{source_text(network)} is outside cluster:networks")
        elif network.version == 6 and ipv6_off:
            reasons.append(f"{source_text(network)} is IPv6, but {ipv6_off}")
        else:
            addresses.append(network)
    return addresses, reasons


def _parse_mine_entry(name, identity, networks, ipv6_off):
    """(Peer or None, reasons for what was left out). Any minion can write
    the mine: a malformed entry is left out whole, never an error that would
    stop this minion's states; so is one with no address inside ``networks``."""
    key = f"cluster:mine[{name}]"
    found = Problems()
    if not isinstance(name, str) or not name.strip() or not name.isprintable():
        found.add(key, name, "is not a minion id")
        return None, tuple(found)
    if not isinstance(identity, dict):
        found.add(key, identity, "must be a mapping with roles and addresses (what zimbra_fw.identity publishes)")
        return None, tuple(found)
    if len(identity) > MAX_IDENTITY_KEYS:  # each unknown key would be a problem of its own
        found.add(key, f"{len(identity)} keys", "is not what zimbra_fw.identity publishes (roles and addresses)")
        return None, tuple(found)
    _check_keys(found, f"{key}:", identity, ("roles", "addresses"))
    if isinstance(identity.get("roles"), list) and len(identity["roles"]) > len(catalogue.ROLES):
        found.add(
            f"{key}:roles", f"{len(identity['roles'])} roles", f"are more than Zimbra has ({len(catalogue.ROLES)})"
        )
        return None, tuple(found)
    roles = _parse_role_list(found, f"{key}:roles", identity.get("roles"))
    items = _check_list(found, f"{key}:addresses", identity.get("addresses"))
    addresses, reasons = _mine_addresses(
        found, key, _check_address_count(found, f"{key}:addresses", items, name), networks, ipv6_off
    )
    if identity.get("addresses") == []:
        found.add(f"{key}:addresses", [], "must list at least one address")
    if found or not addresses:
        return None, (*found, *reasons)
    return Peer(name, _unique_networks(addresses), roles, "mine"), tuple(reasons)


def _mine_peers(problems, peers, mine_data, facts, networks):
    """``{name: Peer}`` and ``{minion: reasons}`` left out, from the mine."""
    if not mine_data:
        problems.add(
            "cluster:mine", True, "but the mine has no zimbra_fw.identity data: run mine.update (nothing removed)"
        )
        return {}, {}
    entries = [(n, i) for n, i in mine_data.items() if n != facts.minion_id and n not in peers]  # pillar peers win
    if len(peers) + len(entries) > MAX_PEERS:
        problems.add(
            "cluster",
            f"{len(peers) + len(entries)} peers",
            f"are more than {MAX_PEERS} ({len(peers)} in cluster:peers, {len(entries)} from the mine): "
            "narrow cluster:mine_target",
        )
        return {}, {}
    found, left_out = {}, {}
    for name, identity in sorted(entries, key=lambda item: str(item[0])):
        peer, reasons = _parse_mine_entry(name, identity, networks, facts.ipv6_off)
        if reasons:
            left_out[name if isinstance(name, str) else repr(name)] = reasons
        if peer is not None:
            found[name] = peer
    return found, left_out


def _parse_cluster(problems, value, facts, wide):
    """(peers, mine wanted, mine target, {minion: reasons left out}) from
    zimbra_fw:cluster and the Salt Mine's data."""
    cluster = _mapping(problems, "cluster", value, DEFAULTS["cluster"], "peers, mine, mine_target and networks")
    use_mine = _check_bool(problems, "cluster:mine", cluster["mine"])
    networks = _parse_networks(problems, "cluster:networks", cluster["networks"], wide=wide)
    if use_mine and cluster["networks"] == []:
        problems.add("cluster:networks", [], MINE_REQUIRES_NETWORKS)
    target = cluster["mine_target"]
    if not isinstance(target, str) or not target.strip():
        problems.add("cluster:mine_target", target, "must be a Salt target such as '*' or 'G@zimbra:*'")
    peers, left_out = {}, {}
    for index, item in enumerate(_check_list(problems, "cluster:peers", cluster["peers"])):
        peer = _parse_peer(problems, f"cluster:peers[{index}]", item, wide)
        if peer is None:
            continue
        if peer.name in peers:
            problems.add("cluster:peers", peer.name, "is listed twice")
        peers[peer.name] = peer
    if len(peers) > MAX_PEERS:
        problems.add("cluster:peers", f"{len(peers)} peers", f"are more than {MAX_PEERS}")
    elif use_mine and facts.mine_data is not None:
        mine, left_out = _mine_peers(problems, peers, facts.mine_data, facts, networks)
        peers.update(mine)
    return tuple(sorted(peers.values())), use_mine, target, left_out


DEFAULT_LOCAL_PORTS = (32768, 60999)  # Linux's default net.ipv4.ip_local_port_range
LOCAL_PORTS_FIX = (
    "narrow it (sysctl net.ipv4.ip_local_port_range, e.g. '32768 60999') or set zimbra_fw:allow_salt_master: false"
)


def _local_ports(problems, fact, ssh_port):
    """The minion's ephemeral range from the Salt master fact, as a PortSpec,
    or None with a problem: the master's rule opens it to the master, so no
    Zimbra port and not the ssh port may be in it."""
    low, high = (*tuple(fact[2]), None, None)[:2] if len(fact) > 2 else DEFAULT_LOCAL_PORTS
    shown = f"{low}-{high}"
    if not (_is_int(low) and _is_int(high) and 1024 <= low <= high <= 65535):
        problems.add(
            "allow_salt_master",
            shown,
            "is not a usable ephemeral port range (net.ipv4.ip_local_port_range, where the minion's connections to "
            "its master start): it must be two ports, 1024 <= low <= high <= 65535; fix it or set "
            "zimbra_fw:allow_salt_master: false",
        )
        return None
    held = [
        f"{port}/{proto}"
        for port, proto in sorted({(r.port, r.proto) for r in catalogue.CATALOGUE})
        if low <= port <= high
    ]
    if _is_int(ssh_port) and low <= ssh_port <= high:
        held.append(f"{ssh_port}/tcp (ssh:port)")
    if held:
        problems.add(
            "allow_salt_master",
            shown,
            "is the minion's ephemeral port range, which the Salt master's rule opens to the master, and it holds "
            f"{', '.join(held)}; {LOCAL_PORTS_FIX}",
        )
        return None
    return catalogue.PortSpec(low, high, "tcp")


def _is_loopback(address):
    try:
        return ipaddress.ip_address(address).is_loopback
    except (TypeError, ValueError):
        return False


def _parse_salt_master(problems, fact, ssh_port):
    """(SaltMaster,) from the minion's fact, or () with problems. Its rule
    admits the master's packets (from its ports) to the minion's ephemeral
    ports only."""
    address, ports = fact[0], fact[1]
    if _is_loopback(address):  # a master on this host: ufw and firewalld accept loopback traffic anyway
        return ()
    network = _parse_network(problems, "allow_salt_master", address)
    if network is not None and network.prefixlen != network.max_prefixlen:
        problems.add("allow_salt_master", address, "is not the Salt master's address (a network)")
        network = None
    if not ports or not all(_is_int(port) and 1 <= port <= 65535 for port in ports):
        problems.add("allow_salt_master", list(ports), "are not the Salt master's ports (publish_port, master_port)")
        network = None
    local_ports = _local_ports(problems, fact, ssh_port)
    if network is None or local_ports is None:
        return ()
    return (SaltMaster(network, tuple(sorted(set(ports))), local_ports),)


def _parse_mail_mode(problems, value):
    if not isinstance(value, str) or value not in catalogue.MAIL_MODES:
        known = ", ".join(catalogue.MAIL_MODES)
        problems.add("mail_mode", value, f"is not a Zimbra mail mode (zimbraMailMode): one of {known}")
    return value


def backend_name(value, os_family):
    """The firewall the ``backend`` pillar value names, or the default for
    the os_family (firewalld on RedHat and its rebuilds, else ufw)."""
    if value is None:
        return "firewalld" if os_family == "RedHat" else "ufw"
    return value if isinstance(value, str) and value in BACKENDS else None


def _parse_backend(problems, value, os_family):
    name = backend_name(value, os_family)
    if name is None:
        problems.add("backend", value, f"is not a firewall zimbra_fw can manage: one of {', '.join(BACKENDS)}")
    return name


def _parse_firewalld(problems, value):
    settings = _mapping(problems, "firewalld", value, DEFAULTS["firewalld"], "zone")
    zone = settings["zone"]
    if zone is not None and not (isinstance(zone, str) and ZONE_NAME_RE.fullmatch(zone)):
        problems.add("firewalld:zone", zone, "is not a firewalld zone name (letters, digits, _ + -; up to 17)")
        return None
    return zone


def _parse_confirm(problems, value):
    """The rollback's delay in seconds, or None (no rollback)."""
    low, high = CONFIRM_SECONDS
    if value is None:
        return None
    if not _is_int(value) or not low <= value <= high:
        problems.add(
            "confirm",
            value,
            f"must be a number of seconds from {low} to {high}: how long the change may stand before it is "
            "rolled back unless zimbra_fw.confirm is called",
        )
        return None
    return value


def source_text(network):
    """An address or subnet as firewalls print it: a host without its prefix
    length. Made from the parsed address alone (its bytes), never from text
    the pillar gave: no zone ID or other text can ride along."""
    if network.version == 4:  # every peer address passes here: its four bytes, without ipaddress's round trip
        value = int(network.network_address)
        text = f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
    else:
        text = ipaddress.ip_address(network.network_address.packed).compressed
    if network.prefixlen == network.max_prefixlen:
        return text
    return f"{text}/{network.prefixlen}"


def _ipv6_networks(config):
    """(pillar key, network) for every IPv6 address or subnet the rules would name."""
    keys = [("trusted_subnets", config.trusted_subnets), ("admin_subnets", config.admin_subnets)]
    keys += [(f"only_from:{spec}", networks) for spec, networks in config.only_from]
    keys.append(("ssh:from", [n for n in config.ssh_from if n != "any"]))
    # Mine peers hold none: their IPv6 addresses were left out while IPv6 is off.
    keys += [(f"cluster:peers[{p.name}]", p.addresses) for p in config.peers]
    keys.append(("allow_salt_master", [master.address for master in config.salt_masters]))
    return [(key, network) for key, networks in keys for network in networks if network.version == 6]


def parse_config(pillar, facts=NO_FACTS):
    """Validate the ``zimbra_fw`` pillar against ``facts`` and return a Config.

    Raises ConfigInvalid naming every pillar key and value at fault.
    """
    problems = Problems()
    if pillar is None:
        pillar = {}
    if not isinstance(pillar, dict):
        raise ConfigInvalid([f"{PILLAR_KEY}: {pillar!r} must be a mapping (see pillar.example)"])
    _check_keys(problems, "", pillar, tuple(DEFAULTS))
    merged = {**DEFAULTS, **pillar}
    roles, roles_source = _parse_roles(problems, merged["roles"], facts.packages)
    allow_wide = _check_bool(problems, "allow_wide_networks", merged["allow_wide_networks"])
    wide = WideNetworks(allow_wide)
    trusted = _parse_networks(problems, "trusted_subnets", merged["trusted_subnets"], wide=wide)
    admin = _parse_networks(problems, "admin_subnets", merged["admin_subnets"], wide=wide)
    peers, use_mine, mine_target, left_out = _parse_cluster(problems, merged["cluster"], facts, wide)
    extra = _parse_port_list(problems, "extra_ports", merged["extra_ports"])
    exclude = _parse_port_list(problems, "exclude_ports", merged["exclude_ports"])
    _check_extra_ports(problems, extra, exclude)
    only_from = _parse_only_from(problems, merged["only_from"], wide)
    ssh_port, ssh_from, ssh_limit = _parse_ssh(problems, merged["ssh"], wide)
    name, title, description = _parse_profile(problems, merged["profile"], facts.name_taken)
    allow_no_management = _check_bool(problems, "allow_no_management", merged["allow_no_management"])
    backend = _parse_backend(problems, merged["backend"], facts.os_family)
    if ssh_limit and backend == "firewalld":
        problems.add("ssh:limit", True, SSH_LIMIT_ON_FIREWALLD)
    masters = ()
    if _check_bool(problems, "allow_salt_master", merged["allow_salt_master"]) and facts.salt_master:
        masters = _parse_salt_master(problems, facts.salt_master, ssh_port)
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
        ssh_limit=ssh_limit,
        profile_name=name,
        profile_title=title,
        profile_description=description,
        enabled=_check_bool(problems, "enabled", merged["enabled"]),
        allow_no_management=allow_no_management,
        peers=peers,
        mine=use_mine,
        mine_target=mine_target,
        salt_masters=masters,
        mail_mode=_parse_mail_mode(problems, merged["mail_mode"]),
        only_from=only_from,
        left_out=left_out,
        backend=backend,
        zone=_parse_firewalld(problems, merged["firewalld"]),
        allow_wide_networks=allow_wide,
        wide_networks=tuple(wide),
        confirm=_parse_confirm(problems, merged["confirm"]),
        allow_cut_sessions=_check_bool(problems, "allow_cut_sessions", merged["allow_cut_sessions"]),
        close_foreign=_check_bool(problems, "close_foreign", merged["close_foreign"]),
    )
    if facts.ipv6_off:
        for key, network in _ipv6_networks(config):
            problems.add(key, source_text(network), f"is IPv6, but {facts.ipv6_off}")
    if problems:
        raise ConfigInvalid(problems)
    return config
