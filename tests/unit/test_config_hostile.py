"""Hostile pillar and facts (issue 18): no value can widen a rule, and what
reaches the firewall is made from parsed values only."""

import ipaddress

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies

MTA = {"roles": ["mta"]}
ZONE = '2001:db8::1%" invert="true" address="2001:db8::2'
ZONE_REASON = "has an IPv6 zone ID ('%...'): a firewall rule cannot name one; leave it out"


def problems(pillar, facts=cfg.NO_FACTS):
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config(pillar, facts)
    return info.value.problems


# ------------------------------------------------------------ zone IDs, text


@pytest.mark.parametrize(
    "pillar, key",
    [
        ({"trusted_subnets": [ZONE]}, "trusted_subnets[0]"),
        ({"admin_subnets": ["fe80::1%eth0"]}, "admin_subnets[0]"),
        ({"only_from": {"25": [ZONE]}}, "only_from:25[0]"),
        ({"ssh": {"from": [ZONE]}}, "ssh:from[0]"),
        ({"cluster": {"networks": ["2001:db8::/64%x"]}}, "cluster:networks[0]"),
        (
            {"cluster": {"peers": [{"name": "p", "addresses": [ZONE], "roles": ["ldap"]}]}},
            "cluster:peers[0]:addresses[0]",
        ),
    ],
)
def test_a_zone_id_is_refused_naming_key_and_value(pillar, key):
    found = problems({**MTA, **pillar})
    value = {**pillar}
    assert any(p.startswith(f"zimbra_fw:{key}: ") and p.endswith(ZONE_REASON) for p in found), found
    assert value == pillar


def test_a_zone_id_in_the_salt_master_address_is_refused():
    found = problems(MTA, cfg.Facts(salt_master=(ZONE, (4505, 4506))))
    assert found == [f"zimbra_fw:allow_salt_master: {ZONE!r} {ZONE_REASON}"]


def test_source_text_comes_from_the_parsed_address_never_the_text():
    scoped = ipaddress.ip_network(ZONE)  # what ipaddress makes of it: a /128 that keeps the text
    assert cfg.source_text(scoped) == "2001:db8::1"
    assert cfg.source_text(ipaddress.ip_network("2001:0db8:0000::/48")) == "2001:db8::/48"
    assert cfg.source_text(ipaddress.ip_network("10.0.0.5")) == "10.0.0.5"


def test_only_address_characters_pass_even_if_the_parser_took_more(monkeypatch):
    # Python's ipaddress takes ASCII digits, hex digits, '.', ':' and '/' only; should one take more
    # (fullwidth digits here), the text is still refused, naming key and value.
    real = ipaddress.ip_network

    def lenient(text, strict=True):
        return real(text.replace("\uff11", "1"), strict)

    monkeypatch.setattr(cfg.ipaddress, "ip_network", lenient)
    assert problems({**MTA, "trusted_subnets": ["\uff110.0.0.0/8"]}) == [
        "zimbra_fw:trusted_subnets[0]: '\uff110.0.0.0/8' is not a valid subnet: only digits, a-f, '.', ':' and '/' "
        "may be in one"
    ]


def test_whitespace_is_stripped_and_values_are_parsed_objects():
    config = cfg.parse_config({**MTA, "trusted_subnets": [" 10.1.0.0/16\n"], "ssh": {"from": ["\t10.2.0.0/16 "]}})
    assert config.trusted_subnets == (ipaddress.ip_network("10.1.0.0/16"),)
    assert config.ssh_from == (ipaddress.ip_network("10.2.0.0/16"),)


@pytest.mark.parametrize(
    "pillar, key",
    [({"profile": {"name": "Zimbra\n"}}, "profile:name"), ({"firewalld": {"zone": "public\n"}}, "firewalld:zone")],
)
def test_a_name_with_a_trailing_newline_is_refused(pillar, key):
    found = problems({**MTA, **pillar})
    assert len(found) == 1 and found[0].startswith(f"zimbra_fw:{key}: "), found


# ------------------------------------------------------------ special addresses

SPECIAL = [
    ("::ffff:10.0.0.0/104", "is an IPv4-mapped IPv6 address"),
    ("::ffff:10.0.0.1", "is an IPv4-mapped IPv6 address"),
    ("::10.0.0.1", "is an IPv4-compatible IPv6 address"),
    ("::a00:0/104", "is an IPv4-compatible IPv6 address"),
    ("fe80::/64", "is link-local"),
    ("fe80::1", "is link-local"),
    ("169.254.0.0/16", "is link-local"),
    ("ff02::1", "is multicast"),
    ("224.0.0.0/4", "is multicast"),
    ("239.1.2.3", "is multicast"),
    ("127.0.0.0/8", "is a loopback address"),
    ("127.0.0.1", "is a loopback address"),
    ("::1", "is the loopback address"),
    ("::", "is the unspecified address"),
    ("0.0.0.0", "is in 0.0.0.0/8, the unspecified address"),
]


@pytest.mark.parametrize("address, reason", SPECIAL)
@pytest.mark.parametrize(
    "where, key",
    [
        (lambda a: {"trusted_subnets": [a]}, "trusted_subnets[0]"),
        (lambda a: {"admin_subnets": [a]}, "admin_subnets[0]"),
        (lambda a: {"only_from": {"25": [a]}}, "only_from:25[0]"),
        (lambda a: {"ssh": {"from": [a]}}, "ssh:from[0]"),
        (
            lambda a: {"cluster": {"peers": [{"name": "p", "addresses": [a], "roles": ["ldap"]}]}},
            "cluster:peers[0]:addresses[0]",
        ),
    ],
    ids=["trusted", "admin", "only_from", "ssh", "peer"],
)
def test_special_addresses_are_refused_as_sources_and_peers(address, reason, where, key):
    found = problems({**MTA, **where(address)})
    assert any(p.startswith(f"zimbra_fw:{key}: {address!r} {reason}") for p in found), found


@pytest.mark.parametrize("address", ["::ffff:10.77.0.1", "fe80::1", "0.0.0.0"])
def test_a_special_salt_master_address_is_refused(address):
    (found,) = problems(MTA, cfg.Facts(salt_master=(address, (4505, 4506))))
    assert found.startswith(f"zimbra_fw:allow_salt_master: {address!r} is ")


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_a_salt_master_on_this_host_needs_no_rule(address):
    # ufw's and firewalld's own rules accept loopback traffic
    assert cfg.parse_config(MTA, cfg.Facts(salt_master=(address, (4505, 4506)))).salt_masters == ()


def test_ordinary_ipv6_and_ipv4_stay_valid():
    config = cfg.parse_config({**MTA, "trusted_subnets": ["2001:db8::/32", "fd00::/16", "10.0.0.0/8", "2a01::/16"]})
    assert [str(n) for n in config.trusted_subnets] == ["10.0.0.0/8", "2001:db8::/32", "2a01::/16", "fd00::/16"]


@pytest.mark.parametrize(
    "network, held",
    [
        ("::/16", "::/128, unspecified"),
        ("::/64", "::/128, unspecified"),
        ("::fffe:0:0/95", "::ffff:0:0/96, IPv4-mapped"),
        ("169.0.0.0/8", "169.254.0.0/16, link-local"),
    ],
)
def test_a_network_that_holds_special_addresses_is_refused(network, held):
    assert problems({**MTA, "trusted_subnets": [network]}) == [
        f"zimbra_fw:trusted_subnets[0]: {network!r} holds {held} addresses no rule may name: list networks without them"
    ]


def test_a_wide_network_allowed_may_hold_special_ranges():
    config = cfg.parse_config({**MTA, "trusted_subnets": ["0.0.0.0/1", "128.0.0.0/1"], "allow_wide_networks": True})
    assert [str(n) for n in config.trusted_subnets] == ["0.0.0.0/1", "128.0.0.0/1"]


# ------------------------------------------------------------ wide networks

WIDE = "it would give a large part of the internet access (LDAP, memcached, MySQL); list narrower networks, or "
WIDE += "set zimbra_fw:allow_wide_networks: true if that is intended"


def test_networks_wider_than_8_or_16_are_refused_in_every_source_key():
    found = problems(
        {
            "roles": ["mta", "mailbox"],
            "trusted_subnets": ["0.0.0.0/1", "128.0.0.0/1"],
            "admin_subnets": ["2000::/3"],
            "only_from": {"25": ["10.0.0.0/7"]},
            "ssh": {"from": ["2000::/15"]},
            "cluster": {"peers": [{"name": "p", "addresses": ["64.0.0.0/2"], "roles": ["ldap"]}]},
        }
    )
    assert found == [
        f"zimbra_fw:trusted_subnets[0]: '0.0.0.0/1' is wider than /8: {WIDE}",
        f"zimbra_fw:trusted_subnets[1]: '128.0.0.0/1' is wider than /8: {WIDE}",
        f"zimbra_fw:admin_subnets[0]: '2000::/3' is wider than /24 (its addresses stand for IPv4 hosts, 6to4 "
        f"2002::/16): {WIDE}",
        f"zimbra_fw:cluster:peers[0]:addresses[0]: '64.0.0.0/2' is wider than /8: {WIDE}",
        "zimbra_fw:cluster:peers[0]:addresses: ['64.0.0.0/2'] must list at least one address",
        f"zimbra_fw:only_from:25[0]: '10.0.0.0/7' is wider than /8: {WIDE}",
        f"zimbra_fw:ssh:from[0]: '2000::/15' is wider than /104 (its addresses stand for IPv4 hosts, Teredo "
        f"2001::/32): {WIDE}",
        "zimbra_fw:ssh:from: [] leaves no management access once default-deny is on; list who may reach ssh, "
        "or set zimbra_fw:allow_no_management: true if that is intended",
    ]


def test_allow_wide_networks_accepts_them_and_says_so_on_every_run():
    pillar = {**MTA, "trusted_subnets": ["0.0.0.0/1", "128.0.0.0/1", "10.0.0.0/8"], "allow_wide_networks": True}
    config = cfg.parse_config(pillar)
    assert config.allow_wide_networks is True
    assert [(key, str(n)) for key, n in config.wide_networks] == [
        ("trusted_subnets[0]", "0.0.0.0/1"),
        ("trusted_subnets[1]", "128.0.0.0/1"),
    ]
    assert policies.open_ports(policies.build(config))["warnings"] == [
        "zimbra_fw:trusted_subnets[0]: 0.0.0.0/1 is wider than /8, allowed by zimbra_fw:allow_wide_networks: "
        "it gives a large part of the internet access",
        "zimbra_fw:trusted_subnets[1]: 128.0.0.0/1 is wider than /8, allowed by zimbra_fw:allow_wide_networks: "
        "it gives a large part of the internet access",
    ]
    assert problems({**pillar, "allow_wide_networks": "yes"})[0] == (
        "zimbra_fw:allow_wide_networks: 'yes' must be true or false"
    )


def test_cluster_networks_wider_than_8_are_refused_too():
    # cluster:networks bound the addresses any minion may claim in the mine: a /7 would let most of them in.
    pillar = {"roles": ["mailbox"], "cluster": {"mine": True, "networks": ["10.0.0.0/7", "2001:db8::/32"]}}
    assert problems(pillar) == [f"zimbra_fw:cluster:networks[0]: '10.0.0.0/7' is wider than /8: {WIDE}"]
    config = cfg.parse_config({**pillar, "allow_wide_networks": True})
    assert [(key, str(n)) for key, n in config.wide_networks] == [("cluster:networks[0]", "10.0.0.0/7")]


def test_wide_networks_are_refused_unless_allowed_in_so_many_words():
    wide, found = cfg.WideNetworks(), cfg.Problems()
    assert wide.check(found, "k", "10.0.0.0/7", ipaddress.ip_network("10.0.0.0/7")) is False
    assert found == [f"zimbra_fw:k: '10.0.0.0/7' is wider than /8: {WIDE}"] and wide == []


def test_no_warning_without_wide_networks_and_any_stays_the_word_for_anyone():
    config = cfg.parse_config({**MTA, "ssh": {"from": ["any"]}, "trusted_subnets": ["10.0.0.0/8", "2a01::/16"]})
    assert config.ssh_from == ("any",) and config.wide_networks == ()
    assert policies.open_ports(policies.build(config))["warnings"] == []


# ------------------------------------------------------------ ssh:limit


@pytest.mark.parametrize("pillar, os_family", [({"backend": "firewalld"}, None), ({}, "RedHat")])
def test_ssh_limit_is_refused_with_firewalld_saying_why_and_what_instead(pillar, os_family):
    found = problems({**MTA, **pillar, "ssh": {"limit": True}}, cfg.Facts(os_family=os_family))
    assert found == [
        "zimbra_fw:ssh:limit: True cannot be used with backend firewalld: a firewalld rich-rule limit is one rate "
        "shared by every source, so more than 6 new connections a minute from anyone (a port scan will do) locks "
        "the admins out; use fail2ban, or the ufw backend (its limit counts each address apart)"
    ]
    assert cfg.parse_config({**MTA, **pillar, "ssh": {"limit": False}}, cfg.Facts(os_family=os_family))
    assert cfg.parse_config({**MTA, "backend": "ufw", "ssh": {"limit": True}}, cfg.Facts(os_family=os_family))


# ------------------------------------------------------------ the Salt master


def test_the_salt_master_gets_the_ephemeral_range_from_its_fact_or_the_default():
    (master,) = cfg.parse_config(MTA, cfg.Facts(salt_master=("10.77.0.1", (4506, 4505), (40000, 50000)))).salt_masters
    assert (master.ports, master.local_ports) == ((4505, 4506), cfg.catalogue.PortSpec(40000, 50000, "tcp"))
    (master,) = cfg.parse_config(MTA, cfg.Facts(salt_master=("10.77.0.1", (4505, 4506)))).salt_masters
    assert master.local_ports == cfg.catalogue.PortSpec(32768, 60999, "tcp")


def test_the_salt_master_range_may_be_a_single_port():
    (master,) = cfg.parse_config(MTA, cfg.Facts(salt_master=("10.77.0.1", (1, 65535), (40000, 40000)))).salt_masters
    assert (master.ports, master.local_ports) == ((1, 65535), cfg.catalogue.PortSpec(40000, 40000, "tcp"))


def test_a_salt_master_address_that_is_a_network_is_refused():
    assert problems(MTA, cfg.Facts(salt_master=("10.77.0.0/24", (4505, 4506)))) == [
        "zimbra_fw:allow_salt_master: '10.77.0.0/24' is not the Salt master's address (a network)"
    ]


@pytest.mark.parametrize("ports", [(), (0, 4506), (4505, 65536), (4505, "4506"), (True, 4506), (4505.0, 4506)])
def test_salt_master_ports_that_are_no_ports_are_refused(ports):
    assert problems(MTA, cfg.Facts(salt_master=("10.77.0.1", ports))) == [
        f"zimbra_fw:allow_salt_master: {list(ports)!r} are not the Salt master's ports (publish_port, master_port)"
    ]


@pytest.mark.parametrize(
    "fact",
    [
        ("10.77.0.0/24", (4505, 4506)),
        ("10.77.0.1", (0,)),
        ("bad", (4505, 4506)),
        ("10.77.0.1", (4505, 4506), (80, 90)),
        ("10.77.0.0/24", (4505, 4506), (80, 90)),
    ],
)
def test_a_salt_master_with_a_problem_gives_no_master(fact):
    found = cfg.Problems()
    assert cfg._parse_salt_master(found, fact, 22) == ()
    assert found


RANGE = (
    "is not a usable ephemeral port range (net.ipv4.ip_local_port_range, where the minion's connections to its "
    "master start): it must be two ports, 1024 <= low <= high <= 65535; fix it or set zimbra_fw:allow_salt_master: "
    "false"
)
FIX = "narrow it (sysctl net.ipv4.ip_local_port_range, e.g. '32768 60999') or set zimbra_fw:allow_salt_master: false"


@pytest.mark.parametrize(
    "local, ssh, expected",
    [
        ((80, 2000), 22, f"zimbra_fw:allow_salt_master: '80-2000' {RANGE}"),
        ((60999, 32768), 22, f"zimbra_fw:allow_salt_master: '60999-32768' {RANGE}"),
        (("1", 70000), 22, f"zimbra_fw:allow_salt_master: '1-70000' {RANGE}"),
        ((40000,), 22, f"zimbra_fw:allow_salt_master: '40000-None' {RANGE}"),
        ((40000, 65536), 22, f"zimbra_fw:allow_salt_master: '40000-65536' {RANGE}"),
        (
            (7025, 7026),
            22,
            "zimbra_fw:allow_salt_master: '7025-7026' is the minion's ephemeral port range, which the Salt master's "
            f"rule opens to the master, and it holds 7025/tcp, 7026/tcp; {FIX}",
        ),
        (
            (40022, 50000),
            40022,
            "zimbra_fw:allow_salt_master: '40022-50000' is the minion's ephemeral port range, which the Salt "
            f"master's rule opens to the master, and it holds 40022/tcp (ssh:port); {FIX}",
        ),
        (
            (30000, 40022),
            40022,
            "zimbra_fw:allow_salt_master: '30000-40022' is the minion's ephemeral port range, which the Salt "
            f"master's rule opens to the master, and it holds 40022/tcp (ssh:port); {FIX}",
        ),
        (
            (7000, 7100),
            22,
            "zimbra_fw:allow_salt_master: '7000-7100' is the minion's ephemeral port range, which the Salt master's "
            "rule opens to the master, and it holds 7025/tcp, 7026/tcp, 7035/tcp, 7036/tcp, 7047/tcp, 7071/tcp, "
            f"7072/tcp, 7073/tcp, 7074/tcp, 7084/tcp, 7085/tcp; {FIX}",
        ),
        (
            (32768, 60999),
            40022,
            "zimbra_fw:allow_salt_master: '32768-60999' is the minion's ephemeral port range, which the Salt "
            f"master's rule opens to the master, and it holds 40022/tcp (ssh:port); {FIX}",
        ),
    ],
)
def test_a_bad_ephemeral_range_is_refused_naming_allow_salt_master(local, ssh, expected):
    facts = cfg.Facts(salt_master=("10.77.0.1", (4505, 4506), local))
    assert problems({**MTA, "ssh": {"port": ssh}}, facts) == [expected]
    assert cfg.parse_config({**MTA, "ssh": {"port": ssh}, "allow_salt_master": False}, facts).salt_masters == ()


# ------------------------------------------------------------ ports and names, ASCII only


@pytest.mark.parametrize("port", ["\u0668\u0664\u0664\u0668", "\uff18\uff14\uff14\uff18", "\u00b2\u00b2", "8448\u200b"])
def test_ports_are_ascii_digits_only(port):
    found = problems({**MTA, "extra_ports": [port]})
    assert found == [f"zimbra_fw:extra_ports[0]: {port!r} is not a port (1-65535) or a range such as '6000:6010/tcp'"]


def test_a_pillar_peer_name_is_one_printable_line():
    peer = {"name": "mb\n1", "addresses": ["10.0.0.5"], "roles": ["mailbox"]}
    assert problems({**MTA, "cluster": {"peers": [peer]}}) == [
        "zimbra_fw:cluster:peers[0]:name: 'mb\\n1' must be a non-empty string"
    ]
    (kept,) = cfg.parse_config({**MTA, "cluster": {"peers": [dict(peer, name=" mb1 ")]}}).peers
    assert kept.name == "mb1"


def test_a_peer_with_an_unknown_key_or_a_name_that_is_no_text_is_refused_by_key():
    peer = {"name": 5, "addresses": ["10.0.0.5"], "roles": ["mailbox"], "port": 22}
    assert problems({**MTA, "cluster": {"peers": [peer]}}) == [
        "zimbra_fw:cluster:peers[0]:port: 22 is not a known key; known keys: name, addresses, roles",
        "zimbra_fw:cluster:peers[0]:name: 5 must be a non-empty string",
    ]


@pytest.mark.parametrize(
    "network, shortest, name",
    [
        ("2002::/16", 24, "6to4 2002::/16"),
        ("2002:c000::/19", 24, "6to4 2002::/16"),
        ("2001::/32", 104, "Teredo 2001::/32"),
        ("2001:0:4136:e378::/64", 104, "Teredo 2001::/32"),
        ("64:ff9b::/95", 104, "NAT64 64:ff9b::/96"),
        ("64::/16", 104, "NAT64 64:ff9b::/96"),
        ("64:ff9b::/96", 104, "NAT64 64:ff9b::/96"),
        ("64:ff9b:1::/48", 56, "local NAT64 64:ff9b:1::/48"),
        ("::ffff:0:0:0/96", 104, "SIIT ::ffff:0:0:0/96"),
    ],
)
def test_an_ipv6_prefix_that_stands_for_ipv4_hosts_is_as_wide_as_they_are(network, shortest, name):
    found = problems({**MTA, "trusted_subnets": [network]})
    assert found == [
        f"zimbra_fw:trusted_subnets[0]: {network!r} is wider than /{shortest} (its addresses stand for IPv4 hosts, "
        f"{name}): it would give a large part of the internet access (LDAP, memcached, MySQL); list narrower "
        "networks, or set zimbra_fw:allow_wide_networks: true if that is intended"
    ]
    host = next(ipaddress.ip_network(network).subnets(new_prefix=shortest))
    assert cfg.parse_config({**MTA, "trusted_subnets": [str(host)]}).trusted_subnets == (host,)
    allowed = policies.build(cfg.parse_config({**MTA, "trusted_subnets": [network], "allow_wide_networks": True}))
    assert policies.warnings(allowed) == [
        f"zimbra_fw:trusted_subnets[0]: {network} is wider than /{shortest}, allowed by zimbra_fw:allow_wide_networks: "
        "it gives a large part of the internet access"
    ]


def test_the_mine_read_from_every_minion_is_said_on_every_run():
    mine = {"mta1": {"roles": ["mta"], "addresses": ["10.0.0.12"]}}
    facts = cfg.Facts(mine_data=mine)
    pillar = {"roles": ["mailbox"], "cluster": {"mine": True, "networks": ["10.0.0.0/24"]}}
    assert policies.warnings(policies.build(cfg.parse_config(pillar, facts))) == [
        "zimbra_fw:cluster:mine_target: '*' reads every minion's mine data: any minion inside cluster:networks "
        "can claim Zimbra roles and get their ports (the mailbox role gets ssh through zmrcd); target the "
        "Zimbra servers only"
    ]
    narrow = {**pillar, "cluster": {**pillar["cluster"], "mine_target": "G@zimbra:true"}}
    assert policies.warnings(policies.build(cfg.parse_config(narrow, facts))) == []


def test_a_mine_entry_too_large_to_be_an_identity_is_left_out_in_a_few_words():
    facts = cfg.Facts(
        mine_data={
            "many-roles": {"roles": ["mta"] * 50_000, "addresses": ["10.0.0.5"]},
            "many-keys": {**{f"k{i}": i for i in range(1000)}, "roles": ["mta"], "addresses": ["10.0.0.6"]},
            "mta1": {"roles": ["mta"], "addresses": ["10.0.0.7"]},
        }
    )
    config = cfg.parse_config({"roles": ["mailbox"], "cluster": {"mine": True, "networks": ["10.0.0.0/24"]}}, facts)
    assert [peer.name for peer in config.peers] == ["mta1"]
    assert config.left_out == {
        "many-keys": ("zimbra_fw:cluster:mine[many-keys]: '1002 keys' is not what zimbra_fw.identity publishes "
                      "(roles and addresses)",),
        "many-roles": ("zimbra_fw:cluster:mine[many-roles]:roles: '50000 roles' are more than Zimbra has (14)",),
    }  # fmt: skip


def test_a_mine_entry_as_large_as_an_identity_may_be_is_read():
    roles = list(cfg.catalogue.ROLES)
    eight = {**{f"k{i}": i for i in range(6)}, "roles": ["mta"], "addresses": ["10.0.0.6"]}
    facts = cfg.Facts(mine_data={"all-roles": {"roles": roles, "addresses": ["10.0.0.5"]}, "eight-keys": eight})
    config = cfg.parse_config({"roles": ["mailbox"], "cluster": {"mine": True, "networks": ["10.0.0.0/24"]}}, facts)
    assert [(peer.name, peer.roles) for peer in config.peers] == [("all-roles", tuple(sorted(roles)))]
    assert config.left_out == {
        "eight-keys": tuple(
            f"zimbra_fw:cluster:mine[eight-keys]:k{i}: {i} is not a known key; known keys: roles, addresses"
            for i in range(6)
        )
    }


def test_a_problem_quotes_at_most_1000_characters_of_a_value():
    (found,) = problems({**MTA, "mail_mode": "x" * 5000})
    assert found.startswith("zimbra_fw:mail_mode: 'xxx") and "... (5002 characters) is not a Zimbra mail mode" in found
    assert len(found) < 1200
    (found,) = problems({**MTA, "mail_mode": "x" * 998})  # 1,000 characters quoted: all of them
    assert (
        found
        == f"zimbra_fw:mail_mode: '{'x' * 998}' is not a Zimbra mail mode (zimbraMailMode): one of "
        + ", ".join(cfg.catalogue.MAIL_MODES)
    )


@pytest.mark.parametrize("name", ["from", "in", "out", "log", "log-all", "comment", "proto", "App", "LIMIT"])
def test_ufws_own_words_are_no_profile_names(name):
    (found,) = problems({**MTA, "profile": {"name": name}})
    assert found.startswith(f"zimbra_fw:profile:name: {name!r} is not a safe profile name")


def test_firewalld_names_take_no_dot():
    import zimbra_fw_firewalld as fwd

    assert fwd.name_taken("zimbra.v2") == "has a '.', which firewalld's service and ipset names cannot hold"
    facts = cfg.Facts(os_family="RedHat", name_taken=fwd.name_taken)
    (found,) = problems({**MTA, "profile": {"name": "Zimbra.v2"}}, facts)
    assert (
        found == "zimbra_fw:profile:name: 'Zimbra.v2' has a '.', which firewalld's service and ipset names cannot hold"
    )
