"""Hostile pillars: whatever a pillar or the Salt Mine
says, an accepted config never widens a rule, and what the backends render
is read back by the firewalls' own parsers exactly as written.

Every generated pillar is either refused (ConfigInvalid, from parse_config
or build) or accepted; for each accepted one the policy must keep the
invariants below, and the rules rendered from it must be text the firewall
reads as meant. The firewalls' parsers run in ONE process of the system
Python per test, on every rule the examples rendered (tests/oracles.py).

Violations are gathered over all examples, the smallest pillar of each
kind kept, and reported together at the end: one run shows every kind of
widening, not only the first.
"""

import ipaddress
import re

import oracles
import pytest
import zimbra_fw_catalogue as catalogue
import zimbra_fw_config as cfg
import zimbra_fw_firewalld as firewalld
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = {
    "deadline": None,
    "derandomize": True,  # the same examples on every run and in CI
    "database": None,  # nothing written into the repository
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}

# ---------------------------------------------------------------- hostile values

GOOD_NETWORKS = [
    "10.0.0.0/8",
    "192.168.1.0/24",
    "10.8.0.0/16",
    "198.51.100.0/24",
    "203.0.113.7",
    "10.0.0.12",
    "100.64.0.0/10",
    "2001:db8::/32",
    "2001:db8:1::/64",
    "2001:db8::12",
]
ZONE_IDS = [
    '" invert="true" address="2001:db8::2',
    '"invert="true',
    "eth0",
    "eth0 ",
    "\n",
    "x\ny",
    "%",
    "'",
    '"',
    "a b",
    ";rm -rf /",
    "$(id)",
    "\u200b",
    "1/64",
    "1",
    "",
]
ZONE_ID_NETWORKS = [
    '2001:db8::1%" invert="true" address="2001:db8::2',
    "2001:db8::1%eth0",
    "2001:db8::1%eth0/128",
    "fe80::1%eth0",
    "2001:db8::%1/64",
    "::ffff:10.0.0.1%eth0",
]
MAPPED = [
    "::ffff:10.0.0.0/104",
    "::ffff:0:0/96",
    "::ffff:10.0.0.1",
    "::ffff:a00:1",
    "::ffff:0.0.0.0/96",
    "::ffff:127.0.0.1",
    "::10.0.0.1",
    "::a00:1",
    "::a00:0/104",
    "::/96",
    "0:0:0:0:0:ffff:10.0.0.1",
    "::FFFF:10.0.0.1",
]
SHORT = [
    "0.0.0.0/1",
    "128.0.0.0/1",
    "0.0.0.0/7",
    "10.0.0.0/7",
    "8.0.0.0/5",
    "2000::/3",
    "::/1",
    "8000::/1",
    "fc00::/7",
    "2000::/15",
    "2001::/15",
    "0.0.0.0/0",
    "::/0",
    "0/0",
]
LINK_LOCAL = ["169.254.0.0/16", "169.254.1.1", "169.254.0.0/24", "fe80::/10", "fe80::1", "fe80::/64", "febf::/16"]
MULTICAST = ["224.0.0.0/4", "239.1.1.1", "224.0.0.251", "ff02::1", "ff00::/8", "ff05::/16"]
LOOPBACK = ["127.0.0.0/8", "127.0.0.1", "127.1.2.0/24", "::1", "::1/128"]
UNSPECIFIED = ["0.0.0.0", "0.0.0.0/32", "::", "::/128", "0.0.0.0/8", "0.1.2.3"]
ODD_TEXT = [
    "\uff11\uff10.0.0.0/8",  # fullwidth digits
    "\u0661\u0660.0.0.0/8",  # Arabic-Indic digits (int() takes them)
    "10.0.0.0/\u0668",
    "10.0.0.0/\uff18",
    "2001:db8::/\u0663\u0662",
    "10.0.0.0/8\xa0",  # non-breaking space (str.strip() takes it off)
    "\xa010.0.0.0/8",
    "10.0.0.0/8\u200b",  # zero-width space
    "\u200b10.0.0.0/8",
    "10.0.0\u200b.0/8",
    "10.0.0.0/8\n",
    "10.0.0.0/8\nallow from any",
    "10.0.0.0/8 any",
    "10.0.0.0/8,0.0.0.0/0",
    "10.0.0.0/8;0.0.0.0/0",
    "10.0.0.0/08",
    "010.0.0.0/8",
    "10.0.0.0/+8",
    " any ",
    "ANY",
    "any\u200b",
    "anywhere",
    "any\xa0",
    "\u0430ny",  # Cyrillic a
    "2001:db8::/32\t",
    "2001:DB8::/32",
    "1" * 5000,
    "10.0.0.0/8" + " " * 5000,
    "2001:db8::1%" + "x" * 5000,
    "10.0.0.0/" + "9" * 400,
]
# IPv4 embedded in IPv6 (NAT64, 6to4, Teredo, SIIT) and other odd corners: exercised, not judged here.
EMBEDDED = ["64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "::ffff:0:0:0/96", "::/16", "255.255.255.255"]
HOSTILE_NETWORK_TEXT = [
    *ZONE_ID_NETWORKS,
    *MAPPED,
    *EMBEDDED,
    *SHORT,
    *LINK_LOCAL,
    *MULTICAST,
    *LOOPBACK,
    *UNSPECIFIED,
    *ODD_TEXT,
]

WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.binary(max_size=4),
    st.lists(st.sampled_from(GOOD_NETWORKS), max_size=2),
    st.dictionaries(st.sampled_from(["address", "port", "any"]), st.sampled_from(GOOD_NETWORKS), max_size=1),
)


def _random_network(address, prefix):
    return str(ipaddress.ip_network(f"{address}/{min(prefix, address.max_prefixlen)}", strict=False))


NETWORK_TEXT = st.one_of(
    st.sampled_from(HOSTILE_NETWORK_TEXT),
    st.sampled_from(GOOD_NETWORKS),
    st.builds(
        "{}%{}{}".format,
        st.sampled_from(["2001:db8::1", "fe80::1", "2001:db8::"]),
        st.sampled_from(ZONE_IDS) | st.text(max_size=8),
        st.sampled_from(["", "/64", "/128"]),
    ),
    st.builds(_random_network, st.ip_addresses(), st.integers(0, 128)),
    st.builds(str, st.ip_addresses()),
)
NETWORK = st.one_of(NETWORK_TEXT, NETWORK_TEXT, WEIRD, st.text(max_size=20))
NETWORKS = st.lists(NETWORK, max_size=3) | WEIRD

INTERNAL_PORTS = sorted({row.port for row in catalogue.internal_rows()})
ADMIN_PORTS = sorted({row.port for row in catalogue.CATALOGUE if "admins" in row.consumers})
INTERESTING_PORTS = sorted({*INTERNAL_PORTS, *ADMIN_PORTS, 22, 25, 80, 443, 465, 587, 2222, 8448, 1, 65535})
PORT_NUMBER = st.sampled_from(INTERESTING_PORTS) | st.integers(1, 65535)


def _range(port, below, above, proto):
    return f"{max(1, port - below)}:{min(65535, port + above)}{proto}"


PROTO_SUFFIX = st.sampled_from(["", "", "/tcp", "/udp", "/TCP", "/sctp", " /tcp", "/tcp ", "/tcp\n"])
PORT_TEXT = st.one_of(
    st.builds("{}{}".format, PORT_NUMBER, PROTO_SUFFIX),
    st.builds(
        _range,
        st.sampled_from(INTERESTING_PORTS),
        st.sampled_from([0, 1, 3, 50, 1000]),
        st.sampled_from([1, 3, 50, 1000]),
        PROTO_SUFFIX,
    ),
    st.sampled_from(
        [
            "\u0663\u0668\u0669",  # 389, Arabic-Indic
            "\uff13\uff18\uff19",  # 389, fullwidth
            "\u0661\u0661\u0662\u0661\u0661/udp",  # 11211/udp
            "389\u200b",
            "\xa0389",
            "\u0662\u0662",  # 22
            "\u00b2\u00b2",  # superscript 22: isdigit(), yet int() refuses it
            "7071\u200b",
            "\u0667\u0660\u0667\u0661",  # 7071
            "1:65535",
            "1:65535/udp",
            "7000:7100",
            "9050:9080",
            "20:30",
            "2200:2300",
            "10000:10100",
            "11000:12000/udp",
            "0:0",
            "-1",
            "25,389",
            "25 389",
            "25/tcp/udp",
        ]
    ),
)
PORT = st.one_of(PORT_NUMBER, PORT_TEXT, PORT_TEXT, WEIRD, st.text(max_size=10))
ROLE_LISTS = st.one_of(
    st.lists(st.sampled_from(["mailbox", "proxy", "mta", "ldap"]), min_size=1, max_size=4, unique=True),
    st.lists(st.sampled_from(sorted(catalogue.ROLES)), min_size=1, max_size=5, unique=True),
    st.lists(st.sampled_from(["mailbox", "proxy", "MTA", "mta ", "ldap\n", "mta\u200b", "store", 7]), max_size=3),
    WEIRD,
)
NAMES = st.sampled_from(["mta1", "proxy1", "ldap1", "", " ", "a b", 'x" y', "mb\n", "\u200b", 7, None]) | st.text(
    max_size=8
)
PEER = st.one_of(
    st.fixed_dictionaries(
        {"name": NAMES, "addresses": NETWORKS, "roles": ROLE_LISTS},
        optional={"port": PORT, "source": st.just("pillar")},
    ),
    WEIRD,
)
PROFILE_NAMES = st.sampled_from(
    [
        "Zimbra",
        "Zimbra.x_y-z",
        'Zimbra" x',
        "Zimbra%1",
        "Zimbra\n",
        "Zimbra\nx",
        "Z" * 60,
        "all",
        "zimbra;id",
        "Zi mbra",
    ]
)

GOOD_ROLES = st.one_of(
    st.lists(st.sampled_from(["mailbox", "proxy", "mta", "ldap"]), min_size=1, max_size=4, unique=True),
    st.lists(st.sampled_from(sorted(catalogue.ROLES)), min_size=1, max_size=4, unique=True),
)
GOOD_NETWORKS_LIST = st.lists(st.sampled_from(GOOD_NETWORKS), min_size=1, max_size=2, unique=True)
GOOD_PEER = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["mta1", "proxy1", "ldap1", "mb2"]),
        "addresses": st.lists(st.sampled_from(["10.0.0.11", "10.0.0.12", "2001:db8::12"]), min_size=1, unique=True),
        "roles": st.lists(st.sampled_from(["mailbox", "proxy", "mta", "ldap", "memcached"]), min_size=1, unique=True),
    }
)
# Hostile networks: mostly text an address parser might take, sometimes anything.
HOSTILE_NETWORK = st.one_of(
    st.sampled_from(HOSTILE_NETWORK_TEXT),
    st.sampled_from(HOSTILE_NETWORK_TEXT),
    st.builds(
        "{}%{}{}".format,
        st.sampled_from(["2001:db8::1", "fe80::1", "2001:db8::"]),
        st.sampled_from(ZONE_IDS) | st.text(max_size=8),
        st.sampled_from(["", "/64", "/128"]),
    ),
    st.builds(_random_network, st.ip_addresses(), st.integers(1, 20)),  # short prefixes
    st.builds(_random_network, st.ip_addresses(), st.integers(0, 128)),
    st.builds(str, st.ip_addresses()),  # hypothesis leans to special addresses
    WEIRD,
    st.text(max_size=20),
)
NETWORK_KEYS = ["trusted_subnets", "admin_subnets", "ssh:from", "only_from", "cluster:networks", "cluster:peers"]
SENSITIVE_SUFFIX = st.sampled_from(["", "", "/tcp", "/udp"])


def _list_at(pillar, path):
    """The list at ``a:b`` in the pillar, made when missing (replaced when not a list)."""
    *parents, last = path.split(":")
    node = pillar
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if not isinstance(node.get(last), list):
        node[last] = []
    return node[last]


def _inject_network(draw, pillar, public):
    key = draw(st.sampled_from(NETWORK_KEYS))
    value = draw(HOSTILE_NETWORK)
    if key == "only_from":
        port = draw(st.sampled_from(public)) if public else draw(PORT_NUMBER)
        pillar["only_from"] = {str(port.first if hasattr(port, "first") else port): [value]}
    elif key == "cluster:peers":
        peer = draw(GOOD_PEER)
        peer["addresses"] = [*peer["addresses"], value] if draw(st.booleans()) else [value]
        _list_at(pillar, key).append(peer)
    else:
        _list_at(pillar, key).append(value)


def _sensitive_ports(pillar):
    """The ports an extra_ports range must never open to anyone here."""
    ports = [*INTERNAL_PORTS, *ADMIN_PORTS]
    only_from = pillar.get("only_from")
    if isinstance(only_from, dict):
        ports += [k for k in only_from if isinstance(k, int)]
        ports += [
            int(k.split("/")[0])
            for k in only_from
            if isinstance(k, str) and k.split("/")[0].isascii() and k.split("/")[0].isdigit()
        ]
    ssh = pillar.get("ssh")
    if isinstance(ssh, dict) and isinstance(ssh.get("port"), int):
        ports.append(ssh["port"])
    return [p for p in ports if 1 <= p <= 65535] or [22]


def _inject_port(draw, pillar, public):
    key = draw(st.sampled_from(["extra_ports", "extra_ports", "exclude_ports"]))
    value = draw(
        st.one_of(
            st.builds(
                _range,
                st.sampled_from(_sensitive_ports(pillar)),
                st.sampled_from([0, 1, 2, 7, 100]),
                st.sampled_from([0, 1, 3, 50]),
                SENSITIVE_SUFFIX,
            ),
            st.sampled_from(_sensitive_ports(pillar)),
            PORT,
        )
    )
    _list_at(pillar, key).append(value)


def _inject_ssh(draw, pillar, public):
    ssh = pillar.get("ssh") if isinstance(pillar.get("ssh"), dict) else {}
    choice = draw(st.integers(0, 3))
    if choice == 0:
        ssh["port"] = draw(st.sampled_from([p.first for p in public] or [25]) | PORT_NUMBER)
    elif choice == 1:
        ssh["port"] = draw(PORT_NUMBER | PORT_TEXT | WEIRD)
    elif choice == 2:
        ssh["from"] = draw(
            st.lists(HOSTILE_NETWORK | st.sampled_from(["any", "ANY", " any", "anywhere"]), min_size=1, max_size=2)
        )
    else:
        ssh["limit"] = draw(WEIRD)
    if "from" not in ssh and draw(st.booleans()):
        ssh["from"] = draw(GOOD_NETWORKS_LIST)
    pillar["ssh"] = ssh


def _inject_only_from_key(draw, pillar, public):
    port = draw(st.sampled_from(public)).first if public else 25
    digits = str(port)
    key = draw(
        st.sampled_from(
            [
                digits.translate(
                    str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")
                ),
                digits.translate(
                    str.maketrans("0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19")
                ),
                f"{digits}/TCP",
                f" {digits} ",
                f"{digits}\u200b",
                f"{port - 1}:{port + 1}",
                port,
                f"{digits}/udp",
            ]
        )
        | PORT_NUMBER
        | PORT_TEXT
        | st.none()
        | st.booleans()
        | st.text(max_size=8)
    )
    pillar["only_from"] = {key: draw(GOOD_NETWORKS_LIST | NETWORKS)}


def _inject_anything(draw, pillar, public):
    key = draw(st.sampled_from(sorted(cfg.DEFAULTS)))
    pillar[key] = draw(WEIRD | st.text(max_size=30) | st.lists(WEIRD, max_size=2))


def _inject_roles(draw, pillar, public):
    pillar["roles"] = draw(ROLE_LISTS)


def _inject_profile(draw, pillar, public):
    pillar["profile"] = {"name": draw(PROFILE_NAMES | st.text(max_size=12))}


def _inject_wide(draw, pillar, public):
    pillar["allow_wide_networks"] = draw(st.just(True) | WEIRD)
    _inject_network(draw, pillar, public)


def _inject_peer(draw, pillar, public):
    _list_at(pillar, "cluster:peers").append(draw(PEER))


INJECTIONS = [
    _inject_network,
    _inject_network,
    _inject_network,
    _inject_port,
    _inject_port,
    _inject_ssh,
    _inject_ssh,
    _inject_only_from_key,
    _inject_anything,
    _inject_roles,
    _inject_profile,
    _inject_wide,
    _inject_peer,
]


@st.composite
def pillars(draw, backend):
    """A pillar a careful admin could write, then up to three hostile edits."""
    roles = draw(GOOD_ROLES)
    public = policies.build(cfg.parse_config({"roles": roles})).public
    pillar = {"roles": roles, "backend": backend}
    if draw(st.booleans()):
        pillar["trusted_subnets"] = draw(GOOD_NETWORKS_LIST)
    if draw(st.booleans()):
        pillar["admin_subnets"] = draw(GOOD_NETWORKS_LIST)
    if draw(st.booleans()):
        pillar["ssh"] = {
            "port": draw(st.sampled_from([22, 22, 2222])),
            "from": draw(GOOD_NETWORKS_LIST | st.just(["any"])),
            "limit": draw(st.booleans()),
        }
    if public and draw(st.booleans()):
        spec = draw(st.sampled_from(public))
        pillar["only_from"] = {str(spec): draw(GOOD_NETWORKS_LIST)}
    if draw(st.booleans()):
        pillar["cluster"] = {"peers": draw(st.lists(GOOD_PEER, max_size=2, unique_by=lambda p: p["name"]))}
    if draw(st.booleans()):
        pillar["extra_ports"] = draw(
            st.lists(st.sampled_from(["8448", "1194/udp", "6000:6010/tcp", 8448]), max_size=2, unique=True)
        )
    if draw(st.booleans()):
        pillar["mail_mode"] = draw(st.sampled_from(sorted(catalogue.MAIL_MODES)))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3]))):  # none: the careful admin's pillar itself
        draw(st.sampled_from(INJECTIONS))(draw, pillar, public)
    return pillar


INSIDE = ["10.0.0.5", "10.0.0.6", "2001:db8::5"]  # inside the cluster networks the tests use
OUTSIDE = ["203.0.113.5", "198.51.100.9", "2001:db8:1::5", "10.0.1.5"]
MINE_ADDRESS = st.sampled_from([*INSIDE, *OUTSIDE, None]).flatmap(
    lambda a: HOSTILE_NETWORK if a is None else st.just(a)
)


@st.composite
def mine_data(draw):
    """The Salt Mine's zimbra_fw.identity per minion: mostly the shape a
    minion publishes, with addresses inside and outside the cluster, and
    sometimes a hostile shape."""
    mine = {}
    names = st.sampled_from(["mta1", "proxy1", "evil", "ldap1", "me"]) | st.text(max_size=5) | st.integers(0, 3)
    for name in draw(st.lists(names, min_size=1, max_size=4, unique=True)):
        identity = {
            "roles": draw(
                st.lists(st.sampled_from(["proxy", "mta", "ldap", "mailbox", "memcached"]), min_size=1, unique=True)
            ),
            "addresses": draw(st.lists(MINE_ADDRESS, min_size=1, max_size=3)),
        }
        tweak = draw(st.integers(0, 9))
        if tweak == 0:
            identity = draw(WEIRD)
        elif tweak == 1:
            identity[draw(st.sampled_from(["roles", "addresses", "name", "source", "networks"]))] = draw(
                WEIRD | NAMES | ROLE_LISTS
            )
        mine[name] = identity
    return mine


@st.composite
def pillars_and_facts(draw, backend, os_family):
    """(pillar, Facts); sometimes with the mine on, its data hostile too."""
    pillar = draw(pillars(backend))
    mine = None
    if draw(st.integers(0, 3)) == 0:
        cluster = pillar.get("cluster") if isinstance(pillar.get("cluster"), dict) else {}
        cluster["mine"] = True
        if "networks" not in cluster and draw(st.booleans()):
            cluster["networks"] = ["10.0.0.0/24", "2001:db8::/64"]
        pillar["cluster"] = cluster
        mine = draw(mine_data())
    found = cfg.Facts(
        mine_data=mine,
        minion_id="me",
        salt_master=draw(st.none() | st.just(("10.77.0.1", (4505, 4506)))),
        os_family=os_family,
    )
    return pillar, found


# Known attacks, checked before the generated examples: pillar alone, or (pillar, mine_data).
KNOWN_ATTACKS = [
    {"roles": ["mta"], "trusted_subnets": ['2001:db8::1%" invert="true" address="2001:db8::2']},
    {"roles": ["mta"], "ssh": {"from": ['2001:db8::1%" invert="true" address="2001:db8::2']}},
    {"roles": ["mta"], "only_from": {"25": ['2001:db8::1%" invert="true" address="2001:db8::2']}},
    {"roles": ["mailbox"], "admin_subnets": ["2001:db8::1%eth0"]},
    {"roles": ["mta"], "trusted_subnets": ["::ffff:10.0.0.0/104"]},
    {"roles": ["mta"], "trusted_subnets": ["::10.0.0.1"]},
    {"roles": ["mta"], "trusted_subnets": ["0.0.0.0/1", "128.0.0.0/1"]},
    {"roles": ["mta"], "trusted_subnets": ["2000::/3"]},
    {"roles": ["mta"], "trusted_subnets": ["fe80::/10"]},
    {"roles": ["mta"], "trusted_subnets": ["169.254.0.0/16"]},
    {"roles": ["mta"], "trusted_subnets": ["224.0.0.0/4"]},
    {"roles": ["mta"], "trusted_subnets": ["127.0.0.0/8"]},
    {"roles": ["mta"], "trusted_subnets": ["0.0.0.0/8"]},
    {"roles": ["mta"], "ssh": {"from": ["::"]}},
    {"roles": ["mta"], "only_from": {"25": ["198.51.100.0/24"]}, "extra_ports": ["23:30"]},
    {"roles": ["mta"], "only_from": {"465/tcp": ["198.51.100.0/24"]}, "extra_ports": ["400:500/tcp"]},
    {"roles": ["mta"], "only_from": {"25": ["198.51.100.0/24"]}, "extra_ports": [25]},
    {"roles": ["mta"], "only_from": {"25": ["198.51.100.0/24"]}, "extra_ports": ["1:24", "26:65535"]},
    {"roles": ["mailbox"], "admin_subnets": ["10.8.0.0/24"], "extra_ports": [7071]},
    {"roles": ["mailbox", "proxy"], "admin_subnets": ["10.8.0.0/24"], "extra_ports": ["9050:9080"]},
    {"roles": ["mta"], "ssh": {"port": 2222, "from": ["10.8.0.0/16"]}, "extra_ports": [2222]},
    {"roles": ["mta"], "ssh": {"port": 2222, "from": ["10.8.0.0/16"]}, "extra_ports": ["2200:2300"]},
    {"roles": ["mta"], "ssh": {"port": 25, "from": ["10.8.0.0/16"]}},
    {"roles": ["proxy"], "ssh": {"port": 443, "from": ["10.8.0.0/16"]}},
    {"roles": ["mta"], "ssh": {"port": 389}},
    {"roles": ["mta"], "ssh": {"port": 11211, "from": ["any"]}},
    {"roles": ["mta"], "extra_ports": ["\u0663\u0668\u0669"]},
    {"roles": ["mta"], "extra_ports": ["11000:12000/udp"]},
    {"roles": ["mta"], "extra_ports": ["10000:10100"]},
    {"roles": ["mta"], "profile": {"name": 'Zimbra" x'}},
    {"roles": ["mta"], "profile": {"name": "Zimbra\n"}},
    (
        {"roles": ["mailbox"], "cluster": {"mine": True, "networks": ["10.0.0.0/24"]}},
        {"evil": {"roles": ["proxy"], "addresses": ["203.0.113.5"]}},
    ),
    (
        {"roles": ["mailbox"], "cluster": {"mine": True, "networks": ["10.0.0.0/24"]}},
        {"evil": {"roles": ["proxy", "ldap"], "addresses": ["10.0.0.5%eth0", "::ffff:10.0.0.5", "203.0.113.5"]}},
    ),
    (
        {"roles": ["mailbox"], "cluster": {"mine": True, "networks": ["10.0.0.0/24"]}},
        {"evil": {"roles": ["proxy"], "addresses": ["0.0.0.0/1"]}},
    ),
]

# ---------------------------------------------------------------- invariants

SPECIAL_SOURCES = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "::/128",
        "::1/128",
        "fe80::/10",
        "ff00::/8",
        "::ffff:0:0/96",
        "::/96",
    )
]
MIN_PREFIX = {4: 8, 6: 16}
# One ufw word: ASCII letters, digits and . _ : , / - only (an IPv6 source may start with ':').
UFW_WORD = re.compile(r"[A-Za-z0-9:][A-Za-z0-9._:,/-]*", re.ASCII)
SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*", re.ASCII)


def _wide_allowed(pillar):
    return isinstance(pillar, dict) and pillar.get("allow_wide_networks") is True


def _overlapping(spec, numbers, proto=None):
    return [n for n in numbers if spec.first <= n <= spec.last and (proto is None or spec.proto == proto)]


def policy_violations(pillar, policy):
    """[(kind, detail)]: how an accepted policy widens what it may not."""
    found = []
    for access in policy.accesses:
        if access.source is None:
            found += _anyone_violations(policy.config, access)
        else:
            found += [
                (f"config: source {kind}", f"{access.kind} {access.source!r}")
                for kind in _bad_source(access.source, pillar)
            ]
    return found + _mine_violations(pillar, policy.config)


def _anyone_violations(config, access):
    """What an access for anyone opens that it may not."""
    if access.ports is None:
        return [("policy: every port open to anyone", repr(access))]
    rows = catalogue.rows_for(config.roles, set(config.roles).union(*(p.roles for p in config.peers)))
    console = [r.port for r in rows if r.exposure == catalogue.PUBLIC and "admins" in r.consumers]
    found = []
    for spec in access.ports:
        internal = _overlapping(spec, INTERNAL_PORTS)
        # 22 is zmrcd's, the ssh port itself: open to anyone when ssh:from says any.
        internal = [p for p in internal if not (p == 22 == config.ssh_port and access.kind == policies.MANAGEMENT)]
        if internal:
            found.append(("policy: a cluster/localhost port open to anyone", f"{spec} covers {internal}"))
        found += [
            ("policy: an only_from port open to anyone", f"{spec} covers {restricted}")
            for restricted, _ in config.only_from
            if restricted.overlaps(spec)
        ]
        if config.admin_subnets and (hit := _overlapping(spec, console, "tcp")):
            found.append(("policy: an admin console port open to anyone with admin_subnets", f"{spec}: {hit}"))
        if "any" not in config.ssh_from and _overlapping(spec, [config.ssh_port], "tcp"):
            found.append(("policy: the ssh port open to anyone though ssh:from is not any", f"{spec}"))
    return found


def _mine_violations(pillar, config):
    """Peers the mine gave though no cluster:networks vouches for them."""
    networks = _cluster_networks(pillar)
    found = []
    for peer in (peer for peer in config.peers if peer.source == "mine"):
        if not networks:
            found.append(("config: a mine peer taken with no cluster:networks to trust", repr(peer)))
        elif any(not any(a.version == n.version and a.subnet_of(n) for n in networks) for a in peer.addresses):
            found.append(("config: a mine peer address outside cluster:networks", repr(peer)))
    return found


def _cluster_networks(pillar):
    """The cluster:networks of a pillar, read strictly (what the test trusts)."""
    cluster = pillar.get("cluster") if isinstance(pillar, dict) else None
    items = cluster.get("networks") if isinstance(cluster, dict) else None
    networks = []
    for item in items if isinstance(items, list) else []:
        try:
            networks.append(ipaddress.ip_network(item.strip()))
        except (AttributeError, ValueError):
            continue
    return networks


def _bad_source(network, pillar):
    if not isinstance(network, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return ["that is no ip_network"]
    bad = []
    if "%" in str(network) or getattr(network.network_address, "scope_id", None) is not None:
        bad.append("with a zone ID")
    if network.prefixlen < MIN_PREFIX[network.version] and not _wide_allowed(pillar):
        bad.append(f"wider than /{MIN_PREFIX[network.version]}")
    for special in SPECIAL_SOURCES:
        if special.version == network.version and network.subnet_of(special):
            bad.append(f"inside {special}")
    return bad


class Findings:
    """Violations by kind, the smallest few examples of each; and the rendered
    rules, each with the smallest pillar that rendered it, for the oracles."""

    KEEP = 3

    def __init__(self):
        self.violations = {}
        self.rendered = {}
        self.tried = self.passed = 0

    def violation(self, kind, detail, case):
        kept = self.violations.setdefault(kind, {})
        shown = repr(case)
        if detail not in kept or len(shown) < len(kept[detail]):
            kept[detail] = shown
        if len(kept) > self.KEEP:
            del kept[max(kept, key=lambda d: (len(kept[d]), d))]

    def render(self, rule, case):
        shown = repr(case)
        if rule not in self.rendered or len(shown) < len(self.rendered[rule]):
            self.rendered[rule] = shown

    def accepted(self, pillar, facts_):
        """The policy of an accepted pillar, or None when it is refused."""
        case = (pillar, facts_.mine_data)
        self.tried += 1
        try:
            config = cfg.parse_config(pillar, facts_)
            policy = policies.build(config)
        except cfg.ConfigInvalid:
            return None
        except Exception as exc:  # anything else is a finding too
            self.violation(f"crash: {type(exc).__name__}", str(exc)[:300], case)
            return None
        self.passed += 1
        for kind, detail in policy_violations(pillar, policy):
            self.violation(kind, detail, case)
        return policy

    def reset_counts(self):
        self.tried = self.passed = 0

    def check(self, accepted_share=0.1):
        """Fail with every kind of violation; and when too few pillars were
        accepted for the invariants to have been put to the test."""
        assert self.passed >= accepted_share * self.tried, (
            f"only {self.passed} of {self.tried} generated pillars were accepted: the strategies test nothing"
        )
        if self.violations:
            lines = []
            for kind, kept in sorted(self.violations.items()):
                lines.append(f"{kind}:")
                for detail, shown in sorted(kept.items(), key=lambda item: len(item[1])):
                    lines.append(f"    {detail[:300]}\n        case: {shown[:500]}")
            pytest.fail(f"{len(self.violations)} kind(s) of violation:\n" + "\n".join(lines), pytrace=False)


def run_known_attacks(findings, backend, os_family, then):
    for attack in KNOWN_ATTACKS:
        pillar, mine = attack if isinstance(attack, tuple) else (attack, None)
        pillar = dict(pillar, backend=backend)
        facts_ = cfg.Facts(mine_data=mine, minion_id="me", os_family=os_family)
        policy = findings.accepted(pillar, facts_)
        if policy is not None:
            then(policy, (pillar, mine))


# ---------------------------------------------------------------- the tests


def test_hostile_pillars_never_widen_the_policy():
    """config/policy: the invariants hold for every accepted pillar."""
    findings = Findings()
    run_known_attacks(findings, "ufw", "Debian", lambda policy, case: None)
    findings.reset_counts()

    @settings(max_examples=400, **SETTINGS)
    @given(pillars_and_facts("ufw", "Debian"))
    def generated(case):
        pillar, facts_ = case
        findings.accepted(pillar, facts_)

    generated()
    findings.check()


def _firewalld_render(findings, policy, case):
    wanted = firewalld.desired(policy)
    for rule in wanted.rules:
        findings.render(rule, case)
    for name in wanted.services:
        if not SERVICE_NAME.fullmatch(name):
            findings.violation("firewalld: a service name out of grammar", repr(name), case)
    for ipset, entries in wanted.entries.items():
        if not SERVICE_NAME.fullmatch(ipset):
            findings.violation("firewalld: an ipset name out of grammar", repr(ipset), case)
        for entry in entries:
            try:
                network = ipaddress.ip_network(entry)
            except ValueError as exc:
                findings.violation("firewalld: an ipset entry that is no network", f"{entry!r}: {exc}", case)
                continue
            if (
                "%" in entry
                or cfg.source_text(network) != entry
                or network.compressed.removesuffix(f"/{network.max_prefixlen}") != entry
            ):
                findings.violation("firewalld: an ipset entry not in its canonical form", repr(entry), case)


def test_firewalld_rules_read_back_unchanged_by_firewalld():
    """firewalld backend: every rich rule reads back as written (no NOT, no
    invert), every ipset entry is a canonical network with no zone ID."""
    findings = Findings()
    run_known_attacks(findings, "firewalld", "RedHat", lambda policy, case: _firewalld_render(findings, policy, case))
    findings.reset_counts()

    @settings(max_examples=300, **SETTINGS)
    @given(pillars_and_facts("firewalld", "RedHat"))
    def generated(case):
        pillar, facts_ = case
        policy = findings.accepted(pillar, facts_)
        if policy is not None:
            _firewalld_render(findings, policy, (pillar, facts_.mine_data))

    generated()
    rules = sorted(findings.rendered)
    assert rules, "no accepted pillar rendered a rich rule: the strategies are too hostile to test anything"
    for rule, result in zip(rules, oracles.firewalld_rich_rules(rules), strict=True):
        case = findings.rendered[rule]
        if "%" in rule:
            findings.violation("firewalld: a rich rule with '%'", repr(rule), case)
        if " NOT " in rule or "invert" in rule:
            findings.violation("firewalld: a rich rule that inverts its source", repr(rule), case)
        if not result["ok"]:
            findings.violation("firewalld: a rich rule firewalld refuses", f"{rule!r}: {result['error']}", case)
        elif result["text"] != rule or result["invert"]:
            findings.violation(
                "firewalld: a rich rule firewalld reads as another rule", f"{rule!r} -> {result['text']!r}", case
            )
    findings.check()


def _ufw_render(findings, policy, case):
    for rule in ufw.desired_rules(policy):
        words = tuple(rule)
        findings.render(words, case)
        for word in words:
            if not isinstance(word, str) or not UFW_WORD.fullmatch(word):
                findings.violation("ufw: a word out of grammar", f"{word!r} in {words!r}", case)


def test_ufw_words_keep_a_strict_grammar_and_ufw_parses_them_as_meant():
    """ufw backend: every word of every rule is in a strict grammar, and ufw's
    own parser reads each rule with the source and port it was given."""
    findings = Findings()
    run_known_attacks(findings, "ufw", "Debian", lambda policy, case: _ufw_render(findings, policy, case))
    findings.reset_counts()

    @settings(max_examples=300, **SETTINGS)
    @given(pillars_and_facts("ufw", "Debian"))
    def generated(case):
        pillar, facts_ = case
        policy = findings.accepted(pillar, facts_)
        if policy is not None:
            _ufw_render(findings, policy, (pillar, facts_.mine_data))

    generated()
    commands = sorted(findings.rendered)
    assert commands
    for words, result in zip(commands, oracles.ufw_commands(commands), strict=True):
        case = findings.rendered[words]
        if not result["ok"]:
            findings.violation("ufw: a rule ufw's parser refuses", f"{words!r}: {result['error']}", case)
            continue
        if result["action"] != words[0]:
            findings.violation("ufw: a rule ufw reads with another action", f"{words!r}: {result}", case)
        if "from" in words and result["src"] != words[words.index("from") + 1]:
            findings.violation("ufw: a rule ufw reads with another source", f"{words!r}: {result}", case)
        to = words.index("to") if "to" in words else len(words)
        ports = [i for i, word in enumerate(words) if word == "port"]
        if any(i > to for i in ports) and result["dport"] != words[min(i for i in ports if i > to) + 1]:
            findings.violation("ufw: a rule ufw reads with another port", f"{words!r}: {result}", case)
        if any(i < to for i in ports) and result["sport"] != words[min(ports) + 1]:
            findings.violation("ufw: a rule ufw reads with another source port", f"{words!r}: {result}", case)
    findings.check()


# ---------------------------------------------------------------- the mine


CLUSTER_NETWORKS = [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("2001:db8::/64")]
MINE_PILLAR = {"roles": ["mailbox"], "cluster": {"mine": True, "networks": [str(n) for n in CLUSTER_NETWORKS]}}
WEB = [catalogue.PortSpec(80, 80, "tcp"), catalogue.PortSpec(443, 443, "tcp")]


def test_a_mine_entry_from_outside_cluster_networks_contributes_no_role():
    """A minion claiming proxy from an internet address must not make a
    mailbox drop its public web ports (80, 443 go to the proxy when one exists)."""
    mine = {
        "evil": {"roles": ["proxy"], "addresses": ["203.0.113.5"]},
        "mta1": {"roles": ["mta"], "addresses": ["10.0.0.12"]},
    }
    config = cfg.parse_config(MINE_PILLAR, cfg.Facts(mine_data=mine, minion_id="mb"))
    policy = policies.build(config)
    assert [peer.name for peer in config.peers] == ["mta1"]
    assert all(spec in policy.public for spec in WEB)
    assert "Zimbra-proxy" not in policy.groups
    assert not any(access.source == ipaddress.ip_network("203.0.113.5/32") for access in policy.accesses)


def _legitimate_addresses(identity):
    """The addresses of a mine entry that lie inside the cluster networks, read strictly."""
    if not isinstance(identity, dict) or not isinstance(identity.get("addresses"), list):
        return []
    found = []
    for item in identity["addresses"]:
        if not isinstance(item, str) or "%" in item:
            continue
        try:
            network = ipaddress.ip_network(item.strip())
        except ValueError:
            continue
        if network.prefixlen == network.max_prefixlen and any(
            network.version == n.version and network.subnet_of(n) for n in CLUSTER_NETWORKS
        ):
            found.append(network)
    return found


def test_hostile_mine_data_gives_roles_and_access_only_to_addresses_inside_cluster_networks():
    findings = Findings()

    @settings(max_examples=300, **SETTINGS)
    @given(mine_data())
    def generated(mine):
        case = (MINE_PILLAR, mine)
        policy = findings.accepted(MINE_PILLAR, cfg.Facts(mine_data=mine, minion_id="me"))
        if policy is None:
            return
        for peer in policy.config.peers:
            if peer.source != "mine":
                findings.violation("mine: a peer that is not from the mine", repr(peer), case)
                continue
            for address in peer.addresses:
                if not any(address.version == n.version and address.subnet_of(n) for n in CLUSTER_NETWORKS):
                    findings.violation("mine: a peer address outside cluster:networks", repr(peer), case)
            if not _legitimate_addresses(mine.get(peer.name)):
                findings.violation(
                    "mine: roles from a minion with no address inside cluster:networks", repr(peer), case
                )
        proxies = [
            name
            for name, identity in mine.items()
            if name != "me"
            and isinstance(identity, dict)
            and _legitimate_addresses(identity)
            and isinstance(identity.get("roles"), list)
            and "proxy" in identity["roles"]
        ]
        if not proxies and not all(spec in policy.public for spec in WEB):
            findings.violation(
                "mine: the mailbox dropped 80/443 for a proxy it may not trust", repr(policy.public), case
            )

    generated()
    findings.check()
