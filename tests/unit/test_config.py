"""Pillar validation: every bad value is named with its key, nothing else passes."""

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
import zimbra_fw_ufw_files as ufw_files
from zimbra_fw_catalogue import parse_port_spec

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


@pytest.mark.parametrize(
    "value, expected",
    [(8443, "8443/tcp"), ("8443", "8443/tcp"), ("514/udp", "514/udp"), ("6000:6010/tcp", "6000:6010/tcp")],
)
def test_port_spec_forms(value, expected):
    assert str(parse_port_spec(value)) == expected


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
