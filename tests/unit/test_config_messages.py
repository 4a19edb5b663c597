"""Each pillar problem, word for word: the key, the value and what to do."""

import pytest
import zimbra_fw_config as cfg

MTA = {"roles": ["mta"]}
INTERNET = "would give the whole internet access (LDAP, memcached, MySQL)"
KNOWN = "roles, trusted_subnets, admin_subnets, extra_ports, exclude_ports, only_from, ssh, profile, enabled, "
KNOWN += "allow_no_management, allow_wide_networks, allow_salt_master, cluster, mail_mode, backend, firewalld, close_foreign"

CASES = [
    (
        {"admin_subnets": ["10.0.0.1/8", "any"]},
        [
            "zimbra_fw:admin_subnets[0]: '10.0.0.1/8' is not a valid subnet: 10.0.0.1/8 has host bits set "
            "(did you mean '10.0.0.0/8'?)",
            f"zimbra_fw:admin_subnets[1]: 'any' {INTERNET}",
        ],
    ),
    (
        {"exclude_ports": ["x", 25, "25/tcp"]},
        [
            "zimbra_fw:exclude_ports[0]: 'x' is not a port (1-65535) or a range such as '6000:6010/tcp'",
            "zimbra_fw:exclude_ports: '25/tcp' is listed twice",
        ],
    ),
    (
        {
            "cluster": {
                "peers": [{"name": "", "addresses": "10.0.0.1", "roles": []}, 5],
                "mine": "yes",
                "mine_target": "",
            }
        },
        [
            "zimbra_fw:cluster:mine: 'yes' must be true or false",
            "zimbra_fw:cluster:mine_target: '' must be a Salt target such as '*' or 'G@zimbra:*'",
            "zimbra_fw:cluster:peers[0]:name: '' must be a non-empty string",
            "zimbra_fw:cluster:peers[0]:addresses: '10.0.0.1' must be a list, not a str",
            "zimbra_fw:cluster:peers[0]:addresses: '10.0.0.1' must list at least one address",
            "zimbra_fw:cluster:peers[0]:roles: [] is empty: list at least one Zimbra role",
            "zimbra_fw:cluster:peers[1]: 5 must be a mapping with name, addresses and roles",
        ],
    ),
    ({"cluster": ["a"]}, ["zimbra_fw:cluster: ['a'] must be a mapping with peers, mine, mine_target and networks"]),
    (
        {"ssh": {"port": 0, "from": ["10.0.0.0/8", "10.0.0.0/8", 5]}},
        [
            "zimbra_fw:ssh:port: 0 is not a port number (1-65535)",
            "zimbra_fw:ssh:from[2]: 5 must be an address or subnet such as '192.168.1.0/24'",
            "zimbra_fw:ssh:from: '10.0.0.0/8' is listed twice",
        ],
    ),
    ({"ssh": {"port": 65536}}, ["zimbra_fw:ssh:port: 65536 is not a port number (1-65535)"]),
    ({"ssh": {"port": True}}, ["zimbra_fw:ssh:port: True is not a port number (1-65535)"]),
    ({"profile": "x"}, ["zimbra_fw:profile: 'x' must be a mapping with name, title and description"]),
    (
        {"profile": {"title": "t" * 201, "description": 5}},
        [
            f"zimbra_fw:profile:title: '{'t' * 201}' must be one printable line of at most 200 characters",
            "zimbra_fw:profile:description: 5 must be a non-empty string",
        ],
    ),
    (
        {"allow_no_management": "no", "allow_salt_master": 1, "enabled": None},
        [
            "zimbra_fw:allow_no_management: 'no' must be true or false",
            "zimbra_fw:allow_salt_master: 1 must be true or false",
            "zimbra_fw:enabled: None must be true or false",
        ],
    ),
    (
        {"trusted_subnets": ["10.0.0.0/8", "10.0.0.0/8", "fe80::/10x"]},
        [
            "zimbra_fw:trusted_subnets[2]: 'fe80::/10x' is not a valid subnet: "
            "'fe80::/10x' does not appear to be an IPv4 or IPv6 network",
            "zimbra_fw:trusted_subnets: '10.0.0.0/8' is listed twice",
        ],
    ),
    (
        {"trusted_subnets": ["0.0.0.0/0"]},
        [
            "zimbra_fw:trusted_subnets[0]: '0.0.0.0/0' is the whole internet: "
            "it would give everyone access (LDAP, memcached, MySQL)"
        ],
    ),
    ({"roles": ["mta", "mta", "ldap"]}, ["zimbra_fw:roles: 'mta' is listed twice"]),
    ({"roles": ["mtx"]}, ["zimbra_fw:roles[0]: 'mtx' is not a Zimbra role (did you mean 'mta'?)"]),
    (
        {"extra_ports": ["6000:6010/tcp"], "exclude_ports": ["6005:7000/tcp"]},
        ["zimbra_fw:exclude_ports: '6005:7000/tcp' only partly covers the range 6000:6010/tcp"],
    ),
    (
        {"extra_ports": ["10020:10030/tcp"]},
        [
            f"zimbra_fw:extra_ports: '10020:10030/tcp' would publish {port}/tcp: {port}/tcp is the mta role's "
            f"{purpose}, a localhost port (Zimbra binds it to localhost; it is never opened)"
            for port, purpose in (
                (10024, "amavisd inbound content filter"),
                (10025, "postfix re-injection from amavisd"),
                (10026, "amavisd ORIGINATING policy bank"),
                (10027, "postfix postjournal filter"),
                (10028, "postfix reinject listener"),
                (10029, "postfix archive listener"),
                (10030, "postfix OpenDKIM hop"),
            )
        ],
    ),
    ({"wat": 1}, [f"zimbra_fw:wat: 1 is not a known key; known keys: {KNOWN}"]),
    ({"cluster": {"peer": []}}, ["zimbra_fw:cluster:peer: [] is not a known key (did you mean 'peers'?)"]),
]


@pytest.mark.parametrize("pillar, expected", CASES, ids=[str(i) for i in range(len(CASES))])
def test_problems_word_for_word(pillar, expected):
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config({**MTA, **pillar})
    assert info.value.problems == expected
    assert str(info.value).startswith("Invalid pillar, nothing was changed:\n- " + expected[0])


MINE = {"mine": True, "networks": ["10.0.0.0/8", "2001:db8::/32"]}


def test_bad_mine_entries_are_left_out_with_their_problems_named():
    mine = {
        "a": {"roles": ["mta"], "addresses": ["10.0.0.0/8", "::/0"]},
        "b": {"roles": "x", "addresses": [], "extra": 1},
        "c": {"roles": ["mta"], "addresses": ["10.0.0.3"]},
    }
    config = cfg.parse_config({**MTA, "cluster": MINE}, cfg.Facts(mine_data=mine, minion_id="z"))
    assert [peer.name for peer in config.peers] == ["c"]
    assert config.left_out == {
        "a": (
            "zimbra_fw:cluster:mine[a]:addresses[0]: '10.0.0.0/8' is not a host address: a minion publishes its own "
            "addresses (/32, /128), never networks",
            "zimbra_fw:cluster:mine[a]:addresses[1]: '::/0' is the whole internet: it would give everyone access "
            "(LDAP, memcached, MySQL)",
        ),
        "b": (
            "zimbra_fw:cluster:mine[b]:extra: 1 is not a known key; known keys: roles, addresses",
            "zimbra_fw:cluster:mine[b]:roles: 'x' must be a list, not a str",
            "zimbra_fw:cluster:mine[b]:addresses: [] must list at least one address",
        ),
    }


def test_mine_is_not_read_unless_asked_and_pillar_peers_win():
    mine = {"mta1": {"roles": ["mta"], "addresses": ["10.0.0.5"]}}
    assert cfg.parse_config(MTA, cfg.Facts(mine_data=mine)).peers == ()
    pillar = {
        **MTA,
        "cluster": {**MINE, "peers": [{"name": "mta1", "addresses": ["10.0.0.9"], "roles": ["ldap"]}]},
    }
    (peer,) = cfg.parse_config(pillar, cfg.Facts(mine_data=mine, minion_id="self")).peers
    assert (peer.name, [str(a) for a in peer.addresses], peer.roles, peer.source) == (
        "mta1",
        ["10.0.0.9/32"],
        ("ldap",),
        "pillar",
    )


def test_ipv6_problems_name_every_key_while_ipv6_is_off():
    pillar = {**MTA, "ssh": {"from": ["2001:db8::/64"]}, "admin_subnets": ["2001:db8:1::/64"]}
    facts = cfg.Facts(ipv6_off="IPv6 is off", salt_master=("2001:db8::1", (4506, 4505)))
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config(pillar, facts)
    assert info.value.problems == [
        "zimbra_fw:admin_subnets: '2001:db8:1::/64' is IPv6, but IPv6 is off",
        "zimbra_fw:ssh:from: '2001:db8::/64' is IPv6, but IPv6 is off",
        "zimbra_fw:allow_salt_master: '2001:db8::1' is IPv6, but IPv6 is off",
    ]


def test_a_missing_pillar_takes_the_defaults_and_roles_from_packages():
    config = cfg.parse_config(None, cfg.Facts(packages=["zimbra-mta"]))
    assert (config.roles, config.roles_source, config.ssh_port, config.ssh_from) == (("mta",), "packages", 22, ("any",))
    assert (config.profile_name, config.enabled, config.mine, config.mine_target) == ("Zimbra", True, False, "*")


def test_the_salt_master_is_kept_with_its_ports_once_each_and_in_order():
    config = cfg.parse_config(MTA, cfg.Facts(salt_master=("10.0.0.1", (4506, 4505, 4505))))
    assert [(str(m.address), m.ports) for m in config.salt_masters] == [("10.0.0.1/32", (4505, 4506))]
    assert (
        cfg.parse_config({**MTA, "allow_salt_master": False}, cfg.Facts(salt_master=("10.0.0.1", (4505,)))).salt_masters
        == ()
    )


def test_host_addresses_are_written_without_a_prefix_length():
    assert cfg.source_text(cfg.parse_config({**MTA, "trusted_subnets": ["10.0.0.5"]}).trusted_subnets[0]) == "10.0.0.5"
    assert (
        cfg.source_text(cfg.parse_config({**MTA, "trusted_subnets": ["10.0.0.0/24"]}).trusted_subnets[0])
        == "10.0.0.0/24"
    )


ROLES = (
    "ldap, mta, proxy, mailbox, memcached, logger, spell, snmp, imapd, convertd, onlyoffice, docs, dnscache, modules-ng"
)
MORE_CASES = [
    ({"ssh": "x"}, ["zimbra_fw:ssh: 'x' must be a mapping with port, from and limit, such as {port: 22, from: [any]}"]),
    (
        {"ssh": {"from": []}, "allow_no_management": "yes"},
        [
            "zimbra_fw:allow_no_management: 'yes' must be true or false",
            "zimbra_fw:ssh:from: [] leaves no management access once default-deny is on; list who may reach ssh, "
            "or set zimbra_fw:allow_no_management: true if that is intended",
        ],
    ),
    (
        {"profile": {"name": "9x"}},
        [
            "zimbra_fw:profile:name: '9x' is not a safe profile name: use a letter then letters, digits, '.', '_' "
            "or '-' (48 at most)"
        ],
    ),
    (
        {"roles": ["x", "y"]},
        [
            f"zimbra_fw:roles[0]: 'x' is not a Zimbra role; known roles: {ROLES}",
            f"zimbra_fw:roles[1]: 'y' is not a Zimbra role; known roles: {ROLES}",
        ],
    ),
    (
        {"trusted_subnets": ["anywhere", "bad"]},
        [
            f"zimbra_fw:trusted_subnets[0]: 'anywhere' {INTERNET}",
            "zimbra_fw:trusted_subnets[1]: 'bad' is not a valid subnet: "
            "'bad' does not appear to be an IPv4 or IPv6 network",
        ],
    ),
    ({"exclude_ports": "x"}, ["zimbra_fw:exclude_ports: 'x' must be a list, not a str"]),
    (
        {"cluster": {"peers": [5, {"name": "x", "addresses": ["bad"], "roles": ["mta"]}]}},
        [
            "zimbra_fw:cluster:peers[0]: 5 must be a mapping with name, addresses and roles",
            "zimbra_fw:cluster:peers[1]:addresses[0]: 'bad' is not a valid subnet: "
            "'bad' does not appear to be an IPv4 or IPv6 network",
            "zimbra_fw:cluster:peers[1]:addresses: ['bad'] must list at least one address",
        ],
    ),
    (
        {"ssh": {22: 1, "x": 2}},
        [
            "zimbra_fw:ssh:22: 1 is not a known key; known keys: port, from, limit",
            "zimbra_fw:ssh:x: 2 is not a known key; known keys: port, from, limit",
        ],
    ),
]


@pytest.mark.parametrize("pillar, expected", MORE_CASES, ids=[str(i) for i in range(len(MORE_CASES))])
def test_more_problems_word_for_word(pillar, expected):
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config({**MTA, **pillar})
    assert info.value.problems == expected
    assert info.value.strerror.startswith("Invalid pillar, nothing was changed:\n- " + "\n- ".join(expected))


def test_roles_are_required_without_packages_to_read_them_from():
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config({})
    assert info.value.problems == [f"zimbra_fw:roles is required: list this server's Zimbra roles ({ROLES})"]


def test_an_empty_mine_is_named_and_ipv6_mine_addresses_left_out_while_ipv6_is_off():
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config({**MTA, "cluster": MINE}, cfg.Facts(mine_data={}))
    assert info.value.problems == [
        "zimbra_fw:cluster:mine: True but the mine has no zimbra_fw.identity data: run mine.update (nothing removed)"
    ]
    mine = {
        "b": {"roles": ["mta"], "addresses": ["2001:db8::5", "10.0.0.5"]},
        "c": {"roles": ["mta"], "addresses": ["2001:db8::6"]},
    }
    config = cfg.parse_config({**MTA, "cluster": MINE}, cfg.Facts(mine_data=mine, ipv6_off="off"))
    assert [(p.name, [str(a) for a in p.addresses]) for p in config.peers] == [("b", ["10.0.0.5/32"])]
    assert config.left_out == {"b": ("2001:db8::5 is IPv6, but off",), "c": ("2001:db8::6 is IPv6, but off",)}


def test_mine_ids_of_any_type_are_read_in_a_stable_order():
    mine = {2: {"roles": ["mta"], "addresses": ["10.0.0.2"]}, "a": {"roles": ["mta"], "addresses": ["10.0.0.3"]}}
    config = cfg.parse_config({**MTA, "cluster": MINE}, cfg.Facts(mine_data=mine))
    assert [peer.name for peer in config.peers] == ["a"]
    assert config.left_out == {"2": ("zimbra_fw:cluster:mine[2]: 2 is not a minion id",)}


def test_edges_that_are_valid():
    assert cfg.parse_config({**MTA, "ssh": {"port": 1}}).ssh_port == 1
    assert cfg.parse_config({**MTA, "ssh": {"port": 65535}}).ssh_port == 65535
    assert cfg.parse_config({**MTA, "profile": {"title": "t" * 200}}).profile_title == "t" * 200
    assert cfg.parse_config({**MTA, "profile": {"title": "  Mail  "}}).profile_title == "Mail"


def test_mine_problems_come_in_minion_order():
    mine = {"b": {"roles": "x", "addresses": ["10.0.0.2"]}, "a": {"roles": "x", "addresses": ["10.0.0.3"]}}
    config = cfg.parse_config({**MTA, "cluster": MINE}, cfg.Facts(mine_data=mine))
    assert list(config.left_out.items()) == [
        ("a", ("zimbra_fw:cluster:mine[a]:roles: 'x' must be a list, not a str",)),
        ("b", ("zimbra_fw:cluster:mine[b]:roles: 'x' must be a list, not a str",)),
    ]
