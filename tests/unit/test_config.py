"""Pillar validation (zimbra_fw_config): every bad value is named with its key,
nothing else passes. Each problem word for word (the key, the value and what to
do); hostile values (no value can widen a rule, and what reaches the firewall is
made from parsed values only: zone IDs, special and wide networks, the Salt
master's address and ports, names); the Salt Mine as data any minion can write
(only addresses inside cluster:networks count, a bad entry is left out, never an
error, and says why)."""

import ipaddress

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
import zimbra_fw_ufw_files as ufw_files
from hypothesis import given, settings
from hypothesis import strategies as st

UFW_FACTS = cfg.Facts(name_taken=ufw.name_taken)


SINGLE = {"roles": ["ldap", "mta", "proxy", "mailbox"], "trusted_subnets": ["192.168.1.0/24"]}


def problems(pillar, facts=UFW_FACTS):
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config(pillar, facts)
    return info.value.problems


def test_example_pillar_is_valid(example_pillar):
    config = cfg.parse_config(example_pillar)
    assert config.roles == ("ldap", "mailbox", "mta", "proxy")
    assert config.ssh_port == 22 and config.ssh_from == ("any",)
    assert config.profile_name == "Zimbra"
    assert config.enabled is True


def test_defaults_fill_missing_keys():
    config = cfg.parse_config({"roles": ["mta"]})
    assert config.trusted_subnets == ()
    assert config.extra_ports == () and config.exclude_ports == ()
    assert config.ssh_from == ("any",)


@pytest.mark.parametrize(
    "pillar, key, fragment",
    [
        ({}, "zimbra_fw:roles", "is required"),
        ({"roles": "ldap"}, "zimbra_fw:roles", "must be a list"),
        ({"roles": []}, "zimbra_fw:roles", "is empty"),
        ({"roles": ["mtaa"]}, "zimbra_fw:roles[0]: 'mtaa'", "did you mean 'mta'"),
        ({"roles": ["mta", "mta"]}, "zimbra_fw:roles: 'mta'", "listed twice"),
        ({"roles": [{"mta": 1}]}, "zimbra_fw:roles[0]", "is not a Zimbra role"),
        (dict(SINGLE, trusted_subnets=["0.0.0.0/0"]), "'0.0.0.0/0'", "whole internet"),
        (dict(SINGLE, trusted_subnets=["::/0"]), "'::/0'", "whole internet"),
        (dict(SINGLE, trusted_subnets=["any"]), "trusted_subnets[0]: 'any'", "whole internet"),
        (dict(SINGLE, trusted_subnets=["192.168.1.1/24"]), "'192.168.1.1/24'", "did you mean '192.168.1.0/24'"),
        (dict(SINGLE, trusted_subnets=["192.168.1.0/33"]), "'192.168.1.0/33'", "not a valid subnet"),
        (dict(SINGLE, trusted_subnets="192.168.1.0/24"), "trusted_subnets", "must be a list"),
        (dict(SINGLE, trusted_subnets=["10.0.0.0/8; rm -rf /"]), "trusted_subnets[0]", "not a valid subnet"),
        (dict(SINGLE, extra_ports=[0]), "extra_ports[0]: 0", "not a port"),
        (dict(SINGLE, extra_ports=[65536]), "extra_ports[0]: 65536", "not a port"),
        (dict(SINGLE, extra_ports=["53/icmp"]), "'53/icmp'", "other than tcp or udp"),
        (dict(SINGLE, extra_ports=["6010:6000/tcp"]), "'6010:6000/tcp'", "first port is not below"),
        (dict(SINGLE, extra_ports=[True]), "extra_ports[0]: True", "is a bool"),
        (dict(SINGLE, extra_ports=[{"port": 1}]), "extra_ports[0]", "is a dict"),
        (dict(SINGLE, extra_ports=[8443, "8443/tcp"]), "extra_ports: '8443/tcp'", "listed twice"),
        (
            dict(SINGLE, extra_ports=[11211]),
            "extra_ports: '11211/tcp'",
            "memcached (no authentication), a cluster port",
        ),
        (dict(SINGLE, extra_ports=["11211/udp"]), "extra_ports: '11211/udp'", "would publish 11211/udp"),
        (dict(SINGLE, extra_ports=["7025"]), "extra_ports: '7025/tcp'", "the mailbox role's LMTP delivery"),
        (dict(SINGLE, extra_ports=["514/udp"]), "extra_ports: '514/udp'", "logger role's remote syslog sink"),
        (dict(SINGLE, extra_ports=["300:400/tcp"]), "extra_ports: '300:400/tcp'", "389/tcp"),
        (dict(SINGLE, extra_ports=["6000:6010/tcp"], exclude_ports=["6005/tcp"]), "'6005/tcp'", "only partly"),
        (dict(SINGLE, ssh={"port": "22"}), "ssh:port: '22'", "not a port"),
        (dict(SINGLE, ssh={"from": []}), "ssh:from: []", "allow_no_management"),
        (dict(SINGLE, ssh={"from": ["10.0.0.1/8"]}), "ssh:from[0]", "host bits"),
        (dict(SINGLE, ssh={"prot": 22}), "ssh:prot", "did you mean 'port'"),
        (dict(SINGLE, ssh="22"), "zimbra_fw:ssh: '22'", "must be a mapping"),
        (dict(SINGLE, profile={"name": "Zim bra"}), "profile:name: 'Zim bra'", "not a safe profile name"),
        (dict(SINGLE, profile={"name": "Zimbra;reboot"}), "profile:name", "not a safe profile name"),
        (dict(SINGLE, profile={"name": "$(reboot)"}), "profile:name", "not a safe profile name"),
        (dict(SINGLE, profile={"name": "all"}), "profile:name: 'all'", "not a safe profile name"),
        (dict(SINGLE, profile={"name": "smtp"}), "profile:name: 'smtp'", "/etc/services"),
        (dict(SINGLE, profile={"name": "Zïmbra"}), "profile:name", "not a safe profile name"),
        (dict(SINGLE, profile={"title": "two\nlines"}), "profile:title", "one printable line"),
        (dict(SINGLE, profile={"description": ""}), "profile:description", "non-empty"),
        (dict(SINGLE, enabled="yes"), "zimbra_fw:enabled: 'yes'", "true or false"),
        (dict(SINGLE, trusted_subnet=["10.0.0.0/8"]), "zimbra_fw:trusted_subnet:", "did you mean 'trusted_subnets'"),
    ],
)
def test_bad_values_are_named(pillar, key, fragment):
    found = problems(pillar)
    assert any(key in problem and fragment in problem for problem in found), found


def test_every_problem_is_reported_at_once():
    found = problems({"roles": ["nope"], "trusted_subnets": ["any"], "enabled": 1})
    assert [problem.split(":", 2)[1] for problem in found] == ["roles[0]", "trusted_subnets[0]", "enabled"]


def test_pillar_that_is_not_a_mapping():
    assert "must be a mapping" in problems(["ldap"])[0]


def test_huge_valid_lists_are_accepted():
    subnets = [f"10.{i // 256}.{i % 256}.0/24" for i in range(2000)]
    config = cfg.parse_config(dict(SINGLE, trusted_subnets=subnets))
    assert [str(n) for n in config.trusted_subnets] == subnets


def test_no_management_allowed_when_said_explicitly():
    config = cfg.parse_config(dict(SINGLE, ssh={"from": []}, allow_no_management=True))
    assert config.ssh_from == ()
    assert policies.management(policies.build(config)) == []


def test_ssh_any_covers_subnets():
    config = cfg.parse_config(dict(SINGLE, ssh={"from": ["10.0.0.0/8", "any"]}))
    assert config.ssh_from == ("any",)


def test_ipv6_values_are_errors_when_ufw_has_ipv6_off():
    pillar = dict(
        SINGLE,
        trusted_subnets=["192.168.1.0/24", "2001:db8::/64"],
        ssh={"from": ["fd00::1"]},
        cluster={"peers": [{"name": "mta1", "addresses": ["10.0.0.5", "2001:db8:5::5"], "roles": ["mta"]}]},
    )
    ipv6_off = cfg.Facts(ipv6_off="ufw has IPv6 off (IPV6=no in /etc/default/ufw)")
    assert cfg.parse_config(pillar).trusted_subnets[-1].version == 6
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config(pillar, ipv6_off)
    assert [p.split(":")[1] for p in info.value.problems] == ["trusted_subnets", "ssh", "cluster"]
    assert "zimbra_fw:cluster:peers[mta1]: '2001:db8:5::5' is IPv6" in info.value.problems[2]
    assert cfg.parse_config(SINGLE, ipv6_off).trusted_subnets


@pytest.mark.parametrize(
    "text, enabled",
    [("IPV6=yes\n", True), ('IPV6="no"\n', False), ("IPV6=No\n", False), ("# IPV6=no\n", True), (None, True)],
)
def test_defaults_ipv6(text, enabled):
    assert ufw_files.defaults_ipv6(text) is enabled


def test_missing_roles_are_worded_without_a_value():
    found = problems({}, cfg.Facts(packages=["bash"]))
    assert found == [
        "zimbra_fw:roles is not set and no zimbra-* role package is installed: list this server's Zimbra roles"
    ]


@pytest.mark.parametrize("key", ["profile", "ssh", "cluster"])
def test_mappings_with_keys_that_are_not_strings_are_named(key):
    found = problems(dict(SINGLE, **{key: {22: "x"}}))
    assert any(problem.startswith(f"zimbra_fw:{key}:22: 'x' is not a known key") for problem in found), found


def test_mine_entries_that_are_not_mappings_are_left_out_naming_the_minion():
    pillar = dict(SINGLE, cluster={"mine": True, "networks": ["10.0.0.0/8"]})
    config = cfg.parse_config(pillar, cfg.Facts(mine_data={"evil": "0.0.0.0/1", "ok": None}, minion_id="self"))
    what = "must be a mapping with roles and addresses (what zimbra_fw.identity publishes)"
    assert config.peers == ()
    assert config.left_out == {
        "evil": (f"zimbra_fw:cluster:mine[evil]: '0.0.0.0/1' {what}",),
        "ok": (f"zimbra_fw:cluster:mine[ok]: None {what}",),
    }


CLUSTER_PEERS = [
    {"name": "ldap", "addresses": ["10.0.0.11"], "roles": ["ldap"]},
    {"name": "mta", "addresses": ["10.0.0.12", "2001:db8::12"], "roles": ["mta"]},
    {"name": "mailbox", "addresses": ["10.0.0.13"], "roles": ["mailbox", "memcached"]},
    {"name": "proxy", "addresses": ["10.0.0.14"], "roles": ["proxy"]},
]


LAN_MINE = {"mine": True, "networks": ["10.0.0.0/24"]}


def policy_of(pillar, facts=cfg.NO_FACTS):
    return policies.build(cfg.parse_config(pillar, facts))


def test_mine_peers_exclude_self_and_yield_to_pillar():
    mine = {
        "mailbox": {"roles": ["mailbox"], "addresses": ["10.0.0.13"]},
        "mta": {"roles": ["mta"], "addresses": ["10.0.0.99"]},
        "proxy": {"roles": ["proxy"], "addresses": ["10.0.0.14"]},
    }
    pillar = {"roles": ["mailbox"], "cluster": {"mine": True, "networks": ["10.0.0.0/24"], "peers": [CLUSTER_PEERS[1]]}}
    config = cfg.parse_config(pillar, cfg.Facts(mine_data=mine, minion_id="mailbox"))
    assert [(p.name, p.source) for p in config.peers] == [("mta", "pillar"), ("proxy", "mine")]
    assert [str(a) for a in config.peers[0].addresses] == ["10.0.0.12/32", "2001:db8::12/128"]


def test_empty_mine_is_an_error_not_an_empty_cluster():
    with pytest.raises(cfg.ConfigInvalid, match=r"the mine has no zimbra_fw\.identity data"):
        cfg.parse_config(
            {"roles": ["mta"], "cluster": {"mine": True, "networks": ["10.0.0.0/8"]}},
            cfg.Facts(mine_data={}, minion_id="mta"),
        )


@pytest.mark.parametrize(
    "peers, fragment",
    [
        ("ldap", "cluster:peers: 'ldap' must be a list"),
        ([{"name": "x", "addresses": ["10.0.0.300"], "roles": ["ldap"]}], "cluster:peers[0]:addresses[0]"),
        ([{"name": "x", "addresses": [], "roles": ["ldap"]}], "must list at least one address"),
        ([{"name": "x", "addresses": ["10.0.0.1"], "roles": ["ldapp"]}], "cluster:peers[0]:roles[0]: 'ldapp'"),
        ([{"name": "x", "addresses": ["10.0.0.1"], "roles": ["ldap"], "role": 1}], "did you mean 'roles'"),
        ([CLUSTER_PEERS[0], CLUSTER_PEERS[0]], "cluster:peers: 'ldap' is listed twice"),
        ([{"name": "x", "addresses": ["0.0.0.0/0"], "roles": ["ldap"]}], "whole internet"),
    ],
)
def test_bad_peers_are_named(peers, fragment):
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config({"roles": ["mta"], "cluster": {"peers": peers}})
    assert any(fragment in problem for problem in info.value.problems), info.value.problems


def test_the_default_mail_mode_is_https():
    assert cfg.parse_config({"roles": ["mta"]}).mail_mode == "https"


@pytest.mark.parametrize(
    "pillar, problem",
    [
        (
            {"only_from": {"389": ["10.0.0.0/8"]}},
            "zimbra_fw:only_from:389/tcp: '389/tcp' is not a public port of this server (its public ports: "
            "25/tcp, 465/tcp, 587/tcp)",
        ),
        (
            {"only_from": {"x": ["10.0.0.0/8"]}},
            "zimbra_fw:only_from:x: 'x' is not a port (1-65535) or a range such as '6000:6010/tcp'",
        ),
        (
            {"only_from": ["25"]},
            "zimbra_fw:only_from: ['25'] must be a mapping of port to networks, such as {'25': [198.51.100.0/24]}",
        ),
        (
            {"only_from": {"25": ["any"]}},
            "zimbra_fw:only_from:25[0]: 'any' would give the whole internet access (LDAP, memcached, MySQL)",
        ),
        (
            {"only_from": {"25": ["0.0.0.0/0"]}},
            "zimbra_fw:only_from:25[0]: '0.0.0.0/0' is the whole internet: it would give everyone access "
            "(LDAP, memcached, MySQL)",
        ),
        (
            {"only_from": {"25": ["198.51.100.7/24"]}},
            "zimbra_fw:only_from:25[0]: '198.51.100.7/24' is not a valid subnet: 198.51.100.7/24 has host bits set "
            "(did you mean '198.51.100.0/24'?)",
        ),
        (
            {"only_from": {"25": []}},
            "zimbra_fw:only_from:25: [] is empty: list the networks that may reach the port, or leave the port out",
        ),
        (
            {"only_from": {"25": ["10.0.0.0/8"], "25/tcp": ["10.1.0.0/16"]}},
            "zimbra_fw:only_from: '25/tcp' names 25/tcp twice",
        ),
        (
            {"mail_mode": "ftp"},
            "zimbra_fw:mail_mode: 'ftp' is not a Zimbra mail mode (zimbraMailMode): one of https, http, both, mixed, "
            "redirect",
        ),
        ({"ssh": {"limit": "yes"}}, "zimbra_fw:ssh:limit: 'yes' must be true or false"),
        (
            {"cluster": {"networks": ["any"]}},
            "zimbra_fw:cluster:networks[0]: 'any' would give the whole internet access (LDAP, memcached, MySQL)",
        ),
    ],
)
def test_bad_values_of_the_new_keys_are_named(pillar, problem):
    with pytest.raises(cfg.ConfigInvalid) as info:
        policy_of({"roles": ["mta"], **pillar})
    assert info.value.problems == [problem]


def test_the_admin_console_cannot_be_both_admin_only_and_only_from():
    with pytest.raises(cfg.ConfigInvalid, match=r"only_from:7071/tcp: '7071/tcp' is not a public port of this server"):
        policy_of({"roles": ["mailbox"], "admin_subnets": ["10.8.0.0/24"], "only_from": {"7071": ["10.9.0.0/16"]}})


def test_the_mine_may_only_publish_host_addresses():
    mine = {"evil": {"roles": ["proxy", "mta", "mailbox"], "addresses": ["0.0.0.0/1", "128.0.0.0/1"]}}
    policy = policy_of({"roles": ["mailbox"], "cluster": LAN_MINE}, cfg.Facts(mine_data=mine, minion_id="mb"))
    assert policy.config.peers == () and "443/tcp" in [str(s) for s in policy.public]
    assert policies.open_ports(policy)["left_out"] == {
        "evil": [
            "zimbra_fw:cluster:mine[evil]:addresses[0]: '0.0.0.0/1' is not a host address: a minion publishes its "
            "own addresses (/32, /128), never networks",
            "zimbra_fw:cluster:mine[evil]:addresses[1]: '128.0.0.0/1' is not a host address: a minion publishes its "
            "own addresses (/32, /128), never networks",
        ]
    }


def test_mine_addresses_outside_the_cluster_networks_are_left_out_and_said():
    mine = {
        "mta1": {"roles": ["mta"], "addresses": ["10.0.0.12", "203.0.113.12", "2001:db8::12"]},
        "far": {"roles": ["proxy"], "addresses": ["198.51.100.9"]},
    }
    pillar = {"roles": ["mailbox"], "cluster": {"mine": True, "networks": ["10.0.0.0/24", "2001:db8::/64"]}}
    policy = policy_of(pillar, cfg.Facts(mine_data=mine, minion_id="mb"))
    assert [(p.name, [str(a) for a in p.addresses]) for p in policy.config.peers] == [
        ("mta1", ["10.0.0.12/32", "2001:db8::12/128"])
    ]
    assert policies.open_ports(policy)["left_out"] == {
        "far": ["198.51.100.9 is outside cluster:networks"],
        "mta1": ["203.0.113.12 is outside cluster:networks"],
    }
    assert "Zimbra-proxy" not in policy.groups
    # Pillar peers are the admins' own word: not filtered.
    pillar["cluster"]["peers"] = [{"name": "p", "addresses": ["198.51.100.5"], "roles": ["proxy"]}]
    policy = policy_of(pillar, cfg.Facts(mine_data=mine, minion_id="mb"))
    assert "Zimbra-proxy" in policy.groups


def test_a_bad_mine_address_does_not_hide_the_next():
    mine = {"m": {"roles": ["mta"], "addresses": ["bad", "10.0.0.0/24", "10.0.0.5"]}}
    policy = policy_of({"roles": ["mailbox"], "cluster": LAN_MINE}, cfg.Facts(mine_data=mine))
    assert [p.split(":")[3] for p in policy.config.left_out["m"]] == ["addresses[0]", "addresses[1]"]
    assert policy.config.peers == ()


MTA = {"roles": ["mta"]}


ZONE = '2001:db8::1%" invert="true" address="2001:db8::2'


ZONE_REASON = "has an IPv6 zone ID ('%...'): a firewall rule cannot name one; leave it out"


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


def test_a_peers_addresses_are_each_kept_once_in_address_order():
    peers = [{"name": "p", "addresses": ["10.0.0.9", "10.0.0.5/32", "10.0.0.5"], "roles": ["mta"]}]
    config = cfg.parse_config({**SINGLE, "cluster": {"peers": peers}}, UFW_FACTS)
    assert [str(a) for a in config.peers[0].addresses] == ["10.0.0.5/32", "10.0.0.9/32"]
    peers[0]["addresses"] = ["2001:db8::7", "10.0.0.9"]  # two, the IPv6 one first
    config = cfg.parse_config({**SINGLE, "cluster": {"peers": peers}}, UFW_FACTS)
    assert [str(a) for a in config.peers[0].addresses] == ["10.0.0.9/32", "2001:db8::7/128"]


def special_reason_reference(network):
    """special_reason as ipaddress itself would answer it: every special range, by subnet_of."""
    if network.prefixlen == 0:
        return "is the whole internet: it would give everyone access (LDAP, memcached, MySQL)"
    same = [(s, kind, reason) for s, kind, reason in cfg.SPECIAL_NETWORKS if s.version == network.version]
    for special, _, reason in same:
        if network.subnet_of(special):
            return reason
    if network.prefixlen >= cfg.MIN_PREFIX[network.version]:
        for special, kind, _ in same:
            if special.subnet_of(network):
                return f"holds {special}, {kind} addresses no rule may name: list networks without them"
    return None


def test_special_reason_answers_as_ipaddress_does_at_every_prefix_around_each_range():
    """Every prefix length of the networks at and just beside each special
    range's first and last address: each check of a network's block is met."""
    for special, _, _ in cfg.SPECIAL_NETWORKS:
        top = 2**special.max_prefixlen - 1
        first, last = int(special.network_address), int(special.broadcast_address)
        for anchor in {max(first - 1, 0), first, last, min(last + 1, top)}:
            for length in range(special.max_prefixlen + 1):
                network = ipaddress.ip_network((anchor, length), strict=False)
                assert cfg.special_reason(network) == special_reason_reference(network), network


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


INTERNET = "would give the whole internet access (LDAP, memcached, MySQL)"


KNOWN = "roles, trusted_subnets, admin_subnets, extra_ports, exclude_ports, only_from, ssh, profile, enabled, "


KNOWN += "allow_no_management, allow_wide_networks, allow_salt_master, cluster, mail_mode, backend, firewalld, "
KNOWN += "confirm, allow_cut_sessions, close_foreign"


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
        {"allow_no_management": "no", "allow_salt_master": 1, "enabled": None, "close_foreign": "yes"},
        [
            "zimbra_fw:allow_no_management: 'no' must be true or false",
            "zimbra_fw:allow_salt_master: 1 must be true or false",
            "zimbra_fw:enabled: None must be true or false",
            "zimbra_fw:close_foreign: 'yes' must be true or false",
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


MAILBOX = {"roles": ["mailbox"]}


NETWORKS = ["10.0.0.0/24", "2001:db8::/64"]


MINE_IN_NETWORKS = {"mine": True, "networks": NETWORKS}


GOOD = {"roles": ["mta"], "addresses": ["10.0.0.12", "2001:db8::12"]}


def parse(mine, pillar=None, **facts):
    pillar = pillar or {**MAILBOX, "cluster": MINE_IN_NETWORKS}
    return cfg.parse_config(pillar, cfg.Facts(mine_data=mine, minion_id="mb", **facts))


def test_the_mine_needs_cluster_networks():
    with pytest.raises(cfg.ConfigInvalid) as info:
        parse({"mta1": GOOD}, {**MAILBOX, "cluster": {"mine": True}})
    assert info.value.problems == [
        "zimbra_fw:cluster:networks: [] is empty, but cluster:mine is true: any minion can write mine data, so list "
        "the networks the Zimbra servers live in (e.g. [10.0.0.0/24]); mine addresses outside them are left out"
    ]
    # The pillar is refused the same way when the mine is not read (zimbra_fw.identity).
    with pytest.raises(cfg.ConfigInvalid):
        cfg.parse_config({**MAILBOX, "cluster": {"mine": True}})


def test_an_entry_outside_the_networks_gets_no_rule_and_no_role():
    evil = {"roles": ["proxy", "ldap"], "addresses": ["203.0.113.5"]}
    policy = policies.build(parse({"evil": evil, "mta1": GOOD}))
    assert [peer.name for peer in policy.config.peers] == ["mta1"]
    assert "443/tcp" in [str(s) for s in policy.public]  # no proxy claimed: the mailbox keeps its web ports
    assert "Zimbra-proxy" not in policy.groups
    assert policies.open_ports(policy)["left_out"] == {"evil": ["203.0.113.5 is outside cluster:networks"]}


@pytest.mark.parametrize(
    "identity, reason",
    [
        ("10.0.0.5", "zimbra_fw:cluster:mine[evil]: '10.0.0.5' must be a mapping with roles and addresses"),
        ({"roles": ["proxy"], "addresses": ["10.0.0.5%eth0"]}, "has an IPv6 zone ID"),
        ({"roles": ["proxy"], "addresses": ['2001:db8::5%" invert="true']}, "has an IPv6 zone ID"),
        ({"roles": ["proxy"], "addresses": ["::ffff:10.0.0.5"]}, "is an IPv4-mapped IPv6 address"),
        ({"roles": ["proxy"], "addresses": ["::10.0.0.5"]}, "is an IPv4-compatible IPv6 address"),
        ({"roles": ["proxy"], "addresses": ["fe80::5"]}, "is link-local"),
        ({"roles": ["proxy"], "addresses": ["127.0.0.1"]}, "is a loopback address"),
        ({"roles": ["proxy"], "addresses": ["224.0.0.5"]}, "is multicast"),
        ({"roles": ["proxy"], "addresses": ["::"]}, "is the unspecified address"),
        ({"roles": ["proxy"], "addresses": ["10.0.0.0/24"]}, "is not a host address"),
        ({"roles": ["proxy"], "addresses": ["10.0.0.5", "bad"]}, "is not a valid subnet"),
        ({"roles": ["proxy", "nope"], "addresses": ["10.0.0.5"]}, "is not a Zimbra role"),
        ({"roles": "proxy", "addresses": ["10.0.0.5"]}, "must be a list, not a str"),
        ({"roles": ["proxy"], "addresses": "10.0.0.5"}, "must be a list, not a str"),
        ({"roles": ["proxy"], "addresses": []}, "must list at least one address"),
        ({"roles": ["proxy"], "addresses": ["10.0.0.5"], "source": "pillar"}, "is not a known key"),
    ],
)
def test_a_malformed_entry_is_left_out_whole_and_the_others_stay(identity, reason):
    config = parse({"evil": identity, "mta1": GOOD})
    assert [(peer.name, peer.source) for peer in config.peers] == [("mta1", "mine")]
    assert any(reason in text for text in config.left_out["evil"]), config.left_out
    assert all(text.startswith("zimbra_fw:cluster:mine[evil]") for text in config.left_out["evil"])


def test_a_minion_id_that_is_not_one_printable_line_is_left_out():
    config = parse({"mail\n1": GOOD, "mta1": GOOD})
    assert [peer.name for peer in config.peers] == ["mta1"]
    assert config.left_out == {"mail\n1": ("zimbra_fw:cluster:mine[mail\n1]: 'mail\\n1' is not a minion id",)}


def test_mine_data_is_not_read_while_cluster_mine_is_off():
    config = parse({"mta1": GOOD}, {**MAILBOX, "cluster": {"mine": False, "networks": NETWORKS}})
    assert (config.peers, config.left_out, config.mine) == ((), {}, False)


def test_ipv6_addresses_are_left_out_while_ipv6_is_off_and_the_ipv4_ones_kept():
    config = parse({"mta1": GOOD, "v6": {"roles": ["mta"], "addresses": ["2001:db8::13"]}}, ipv6_off="IPv6 is off")
    assert [(p.name, [str(a) for a in p.addresses]) for p in config.peers] == [("mta1", ["10.0.0.12/32"])]
    assert config.left_out == {
        "mta1": ("2001:db8::12 is IPv6, but IPv6 is off",),
        "v6": ("2001:db8::13 is IPv6, but IPv6 is off",),
    }


def test_at_most_64_addresses_a_peer():
    many = [f"10.0.0.{i}" for i in range(1, 66)]
    config = parse({"big": {"roles": ["mta"], "addresses": many}, "mta1": GOOD})
    assert [peer.name for peer in config.peers] == ["mta1"]
    assert config.left_out["big"] == (
        "zimbra_fw:cluster:mine[big]:addresses: '65 addresses' are more than 64 for one peer (big)",
    )
    assert len(parse({"big": {"roles": ["mta"], "addresses": many[:64]}}).peers[0].addresses) == 64
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config({**MAILBOX, "cluster": {"peers": [{"name": "big", "addresses": many, "roles": ["mta"]}]}})
    assert info.value.problems == [
        "zimbra_fw:cluster:peers[0]:addresses: '65 addresses' are more than 64 for one peer (big)",
        f"zimbra_fw:cluster:peers[0]:addresses: {many!r} must list at least one address",
    ]


def test_at_most_5000_peers_from_pillar_and_mine():
    peers = [{"name": f"p{i}", "addresses": ["10.0.0.7"], "roles": ["mta"]} for i in range(10)]
    mine = {f"m{i}": {"roles": ["mta"], "addresses": ["10.0.0.8"]} for i in range(4991)}
    with pytest.raises(cfg.ConfigInvalid) as info:
        parse(mine, {**MAILBOX, "cluster": {**MINE_IN_NETWORKS, "peers": peers}})
    assert info.value.problems == [
        "zimbra_fw:cluster: '5001 peers' are more than 5000 (10 in cluster:peers, 4991 from the mine): "
        "narrow cluster:mine_target"
    ]
    mine.pop("m0")
    assert len(parse(mine, {**MAILBOX, "cluster": {**MINE_IN_NETWORKS, "peers": peers}}).peers) == 5000


ADDRESSES = st.sampled_from(
    ["10.0.0.5", "10.0.0.0/24", "203.0.113.5", "2001:db8::5", "fe80::1%eth0", "::ffff:10.0.0.5", "0.0.0.0/1", "bad"]
)


IDENTITIES = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.integers(),
    st.fixed_dictionaries(
        {"roles": st.lists(st.sampled_from(["mta", "proxy", "nope", 5]), max_size=2) | st.text(max_size=3)},
        optional={"addresses": st.lists(ADDRESSES, max_size=3) | ADDRESSES, "name": st.text(max_size=3)},
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4) | st.integers(), IDENTITIES, min_size=1, max_size=4))
def test_no_mine_data_stops_this_minions_states(mine):
    config = parse(mine)
    networks = [cfg.ipaddress.ip_network(n) for n in NETWORKS]
    for peer in config.peers:
        assert peer.source == "mine" and peer.addresses
        assert all(any(a.subnet_of(n) for n in networks if n.version == a.version) for a in peer.addresses)
    named = {peer.name for peer in config.peers}
    assert all(str(name) in config.left_out or name in named or name == "mb" for name in mine)


def test_at_most_5000_pillar_peers():
    peers = [{"name": f"p{i}", "addresses": ["10.0.0.7"], "roles": ["mta"]} for i in range(5001)]
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config({**MAILBOX, "cluster": {"peers": peers}})
    assert info.value.problems == ["zimbra_fw:cluster:peers: '5001 peers' are more than 5000"]
    assert len(cfg.parse_config({**MAILBOX, "cluster": {"peers": peers[:5000]}}).peers) == 5000


# ---------------------------------------------------------------- commit-confirmed changes


def confirm_problems(pillar):
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config({"roles": ["mta"], **pillar})
    return info.value.problems


def test_confirm_and_allow_cut_sessions_default_to_off():
    config = cfg.parse_config({"roles": ["mta"]})
    assert (config.confirm, config.allow_cut_sessions) == (None, False)


@pytest.mark.parametrize("seconds", [5, 120, 86400])
def test_confirm_takes_seconds_from_5_to_a_day(seconds):
    assert cfg.parse_config({"roles": ["mta"], "confirm": seconds}).confirm == seconds


@pytest.mark.parametrize("value", [4, 0, -1, 86401, True, "120", 12.5, [120], {"seconds": 120}])
def test_confirm_out_of_range_or_not_a_number_is_refused_by_name_and_value(value):
    assert confirm_problems({"confirm": value}) == [
        f"zimbra_fw:confirm: {value!r} must be a number of seconds from 5 to 86400: how long the change may "
        "stand before it is rolled back unless zimbra_fw.confirm is called"
    ]


@pytest.mark.parametrize("value", ["yes", 1, None, []])
def test_allow_cut_sessions_must_be_true_or_false(value):
    assert confirm_problems({"allow_cut_sessions": value}) == [
        f"zimbra_fw:allow_cut_sessions: {value!r} must be true or false"
    ]
