"""Cluster computation: per-role profiles, peers, admin subnets, role detection."""

import pytest

PEERS = [
    {"name": "ldap", "addresses": ["10.0.0.11"], "roles": ["ldap"]},
    {"name": "mta", "addresses": ["10.0.0.12", "2001:db8::12"], "roles": ["mta"]},
    {"name": "mailbox", "addresses": ["10.0.0.13"], "roles": ["mailbox", "memcached"]},
    {"name": "proxy", "addresses": ["10.0.0.14"], "roles": ["proxy"]},
]


def node(zfw, name, **pillar):
    roles = next(p["roles"] for p in PEERS if p["name"] == name)
    peers = [p for p in PEERS if p["name"] != name]
    return zfw.parse_config(dict({"roles": roles, "cluster": {"peers": peers}}, **pillar))


def ports(specs):
    return [str(s) for s in specs]


def test_mailbox_profiles_per_consumer_role(zfw):
    profiles = zfw.access_profiles(node(zfw, "mailbox"))
    assert ports(profiles["mta"]) == ["7025/tcp", "7073/tcp"]
    assert "11211/tcp" in ports(profiles["proxy"]) and "8080/tcp" in ports(profiles["proxy"])
    assert "mailbox" not in profiles  # no other mailbox in this cluster


def test_mailbox_public_ports_depend_on_a_proxy_in_the_cluster(zfw):
    assert zfw.whitelist(node(zfw, "mailbox"))["public"] == ["5222/tcp", "5223/tcp", "7071/tcp"]
    alone = zfw.parse_config({"roles": ["mailbox"], "cluster": {"peers": PEERS[:2]}})
    assert "443/tcp" in zfw.whitelist(alone)["public"]


def test_one_rule_per_peer_address_and_profile(zfw):
    rules = zfw.desired_rules(node(zfw, "ldap"))
    peer_rules = [r for r in rules if "app" in r]
    assert peer_rules == [
        ("allow", "from", "10.0.0.13", "to", "any", "app", "Zimbra-all"),
        ("allow", "from", "10.0.0.13", "to", "any", "app", "Zimbra-mailbox"),
        ("allow", "from", "10.0.0.12", "to", "any", "app", "Zimbra-all"),
        ("allow", "from", "2001:db8::12", "to", "any", "app", "Zimbra-all"),
        ("allow", "from", "10.0.0.14", "to", "any", "app", "Zimbra-all"),
    ]
    assert ("allow", "Zimbra") not in rules  # LDAP has nothing public


def test_profile_text_has_a_section_per_profile(zfw):
    text = zfw.profile_text(node(zfw, "mailbox"))
    assert list(zfw.profile_file_ports(text)) == ["Zimbra", "Zimbra-mta", "Zimbra-proxy"]
    assert zfw.profile_file_ports(text)["Zimbra-mta"] == "7025,7073/tcp"


def test_admin_subnets_take_the_console_off_the_internet(zfw):
    config = zfw.parse_config({"roles": ["mailbox", "proxy"], "admin_subnets": ["10.9.0.0/24"]})
    ports_ = zfw.whitelist(config)
    assert "7071/tcp" not in ports_["public"] and "9071/tcp" not in ports_["public"]
    assert ports_["admin"] == {"7071/tcp": ["10.9.0.0/24"], "9071/tcp": ["10.9.0.0/24"]}
    assert ("allow", "from", "10.9.0.0/24", "to", "any", "app", "Zimbra-admin") in zfw.desired_rules(config)


def test_open_ports_lists_peers_per_port(zfw):
    result = zfw.whitelist(node(zfw, "mailbox"))
    assert result["peers"]["7025/tcp"] == ["mta"]
    assert result["peers"]["11211/tcp"] == ["proxy"]
    assert result["roles"] == {"roles": ["mailbox", "memcached"], "source": "pillar"}


def test_roles_from_packages(zfw):
    packages = ["zimbra-core", "zimbra-store", "zimbra-mta", "zimbra-snmp", "bash"]
    assert zfw.roles_from_packages(packages) == ["mailbox", "mta", "snmp"]
    config = zfw.parse_config({}, packages=packages)
    assert config.roles == ("mailbox", "mta", "snmp") and config.roles_source == "packages"
    with pytest.raises(zfw.ConfigInvalid, match=r"no zimbra-\* role package is installed"):
        zfw.parse_config({}, packages=["bash"])


def test_mine_peers_exclude_self_and_yield_to_pillar(zfw):
    mine = {
        "mailbox": {"roles": ["mailbox"], "addresses": ["10.0.0.13"]},
        "mta": {"roles": ["mta"], "addresses": ["10.0.0.99"]},
        "proxy": {"roles": ["proxy"], "addresses": ["10.0.0.14"]},
    }
    pillar = {"roles": ["mailbox"], "cluster": {"mine": True, "peers": [PEERS[1]]}}
    config = zfw.parse_config(pillar, mine_data=mine, minion_id="mailbox")
    assert [(p.name, p.source) for p in config.peers] == [("mta", "pillar"), ("proxy", "mine")]
    assert [str(a) for a in config.peers[0].addresses] == ["10.0.0.12/32", "2001:db8::12/128"]


def test_empty_mine_is_an_error_not_an_empty_cluster(zfw):
    with pytest.raises(zfw.ConfigInvalid, match=r"the mine has no zimbra_fw\.identity data"):
        zfw.parse_config({"roles": ["mta"], "cluster": {"mine": True}}, mine_data={}, minion_id="mta")


@pytest.mark.parametrize(
    "peers, fragment",
    [
        ("ldap", "cluster:peers: 'ldap' must be a list"),
        ([{"name": "x", "addresses": ["10.0.0.300"], "roles": ["ldap"]}], "cluster:peers[0]:addresses[0]"),
        ([{"name": "x", "addresses": [], "roles": ["ldap"]}], "must list at least one address"),
        ([{"name": "x", "addresses": ["10.0.0.1"], "roles": ["ldapp"]}], "cluster:peers[0]:roles[0]: 'ldapp'"),
        ([{"name": "x", "addresses": ["10.0.0.1"], "roles": ["ldap"], "role": 1}], "did you mean 'roles'"),
        ([PEERS[0], PEERS[0]], "cluster:peers: 'ldap' is listed twice"),
        ([{"name": "x", "addresses": ["0.0.0.0/0"], "roles": ["ldap"]}], "whole internet"),
    ],
)
def test_bad_peers_are_named(zfw, peers, fragment):
    with pytest.raises(zfw.ConfigInvalid) as info:
        zfw.parse_config({"roles": ["mta"], "cluster": {"peers": peers}})
    assert any(fragment in problem for problem in info.value.problems), info.value.problems


def test_salt_master_stays_reachable(zfw):
    config = zfw.parse_config({"roles": ["mta"]}, salt_master=("10.77.0.1", (4505, 4506)))
    assert ("allow", "from", "10.77.0.1", "port", "4505,4506", "proto", "tcp") in zfw.management_rules(config)
    off = zfw.parse_config({"roles": ["mta"], "allow_salt_master": False}, salt_master=("10.77.0.1", (4505, 4506)))
    assert zfw.management_rules(off) == [("allow", "22/tcp")]


def test_rule_profile(zfw):
    assert zfw.rule_profile(("allow", "Zimbra")) == "Zimbra"
    assert zfw.rule_profile(("allow", "from", "10.0.0.1", "to", "any", "app", "Zimbra-mta")) == "Zimbra-mta"
    assert zfw.rule_profile(("allow", "22/tcp")) is None
    assert zfw.rule_profile(("allow", "from", "10.0.0.0/8")) is None
