"""Pillar validation: every bad value is named with its key, nothing else passes."""

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
import zimbra_fw_ufw_files as ufw_files

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
