"""Cluster computation: per-role profiles, peers, admin subnets, role detection."""

import ipaddress

import pytest
import zimbra_fw_catalogue as catalogue
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
import zimbra_fw_ufw_files as ufw_files

PEERS = [
    {"name": "ldap", "addresses": ["10.0.0.11"], "roles": ["ldap"]},
    {"name": "mta", "addresses": ["10.0.0.12", "2001:db8::12"], "roles": ["mta"]},
    {"name": "mailbox", "addresses": ["10.0.0.13"], "roles": ["mailbox", "memcached"]},
    {"name": "proxy", "addresses": ["10.0.0.14"], "roles": ["proxy"]},
]


def node(name, **pillar):
    """The policy of one node of the 4-node cluster."""
    roles = next(p["roles"] for p in PEERS if p["name"] == name)
    peers = [p for p in PEERS if p["name"] != name]
    return policy_of(dict({"roles": roles, "cluster": {"peers": peers}}, **pillar))


def policy_of(pillar, facts=cfg.NO_FACTS):
    return policies.build(cfg.parse_config(pillar, facts))


def ports(specs):
    return [str(s) for s in specs]


def test_mailbox_profiles_per_consumer_role():
    groups = node("mailbox").groups
    assert list(groups) == ["Zimbra", "Zimbra-mta", "Zimbra-proxy"]
    assert ports(groups["Zimbra-mta"].ports) == ["7025/tcp", "7073/tcp", "8443/tcp"]  # 7071 is public here
    assert "11211/tcp" in ports(groups["Zimbra-proxy"].ports) and "8080/tcp" in ports(groups["Zimbra-proxy"].ports)
    assert "Zimbra-mailbox" not in groups  # no other mailbox in this cluster


def test_mailbox_public_ports_depend_on_a_proxy_in_the_cluster():
    assert policies.open_ports(node("mailbox"))["public"] == ["5222/tcp", "5223/tcp", "7071/tcp"]
    alone = policy_of({"roles": ["mailbox"], "cluster": {"peers": PEERS[:2]}})
    assert "443/tcp" in policies.open_ports(alone)["public"]


def test_one_rule_per_peer_address_and_profile():
    rules = ufw.desired_rules(node("ldap"))
    peer_rules = [r for r in rules if "app" in r]
    assert peer_rules == [
        ("allow", "from", "10.0.0.13", "to", "any", "app", "Zimbra-all"),
        ("allow", "from", "10.0.0.13", "to", "any", "app", "Zimbra-mailbox"),
        ("allow", "from", "10.0.0.12", "to", "any", "app", "Zimbra-all"),
        ("allow", "from", "2001:db8::12", "to", "any", "app", "Zimbra-all"),
        ("allow", "from", "10.0.0.14", "to", "any", "app", "Zimbra-all"),
    ]
    assert ("allow", "Zimbra") not in rules  # LDAP has nothing public


def test_profile_text_has_a_section_per_profile():
    text = ufw.profile_text(node("mailbox"))
    assert list(ufw_files.profile_file_ports(text)) == ["Zimbra", "Zimbra-mta", "Zimbra-proxy"]
    assert ufw_files.profile_file_ports(text)["Zimbra-mta"] == "7025,7073,8443/tcp"


def test_admin_subnets_take_the_console_off_the_internet():
    policy = policy_of({"roles": ["mailbox", "proxy"], "admin_subnets": ["10.9.0.0/24"]})
    ports_ = policies.open_ports(policy)
    assert "7071/tcp" not in ports_["public"] and "9071/tcp" not in ports_["public"]
    assert ports_["admin"] == {"7071/tcp": ["10.9.0.0/24"], "9071/tcp": ["10.9.0.0/24"]}
    assert ("allow", "from", "10.9.0.0/24", "to", "any", "app", "Zimbra-admin") in ufw.desired_rules(policy)


def test_open_ports_lists_peers_per_port():
    result = policies.open_ports(node("mailbox"))
    assert result["peers"]["7025/tcp"] == ["mta"]
    assert result["peers"]["11211/tcp"] == ["proxy"]
    assert result["roles"] == {"roles": ["mailbox", "memcached"], "source": "pillar"}


def test_roles_from_packages():
    packages = ["zimbra-core", "zimbra-store", "zimbra-mta", "zimbra-snmp", "bash"]
    assert catalogue.roles_from_packages(packages) == ["mailbox", "mta", "snmp"]
    config = cfg.parse_config({}, cfg.Facts(packages=packages))
    assert config.roles == ("mailbox", "mta", "snmp") and config.roles_source == "packages"
    with pytest.raises(cfg.ConfigInvalid, match=r"no zimbra-\* role package is installed"):
        cfg.parse_config({}, cfg.Facts(packages=["bash"]))


def test_mine_peers_exclude_self_and_yield_to_pillar():
    mine = {
        "mailbox": {"roles": ["mailbox"], "addresses": ["10.0.0.13"]},
        "mta": {"roles": ["mta"], "addresses": ["10.0.0.99"]},
        "proxy": {"roles": ["proxy"], "addresses": ["10.0.0.14"]},
    }
    pillar = {"roles": ["mailbox"], "cluster": {"mine": True, "networks": ["10.0.0.0/24"], "peers": [PEERS[1]]}}
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
        ([PEERS[0], PEERS[0]], "cluster:peers: 'ldap' is listed twice"),
        ([{"name": "x", "addresses": ["0.0.0.0/0"], "roles": ["ldap"]}], "whole internet"),
    ],
)
def test_bad_peers_are_named(peers, fragment):
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config({"roles": ["mta"], "cluster": {"peers": peers}})
    assert any(fragment in problem for problem in info.value.problems), info.value.problems


def test_salt_master_stays_reachable():
    master = cfg.Facts(salt_master=("10.77.0.1", (4505, 4506), (32768, 60999)))
    policy = policy_of({"roles": ["mta"]}, master)
    # From the master's ports 4505/4506, to the minion's ephemeral ports only.
    assert policies.management(policy)[1] == policies.Access(
        "salt-master",
        ipaddress.ip_network("10.77.0.1/32"),
        (catalogue.PortSpec(32768, 60999, "tcp"),),
        None,
        (4505, 4506),
    )
    management = [ufw.rule_words(access) for access in policies.management(policy)]
    assert ufw.desired_rules(policy)[:2] == management
    off = policy_of({"roles": ["mta"], "allow_salt_master": False}, master)
    assert [ufw.rule_words(access) for access in policies.management(off)] == [("allow", "22/tcp")]


def test_rule_profile():
    assert ufw_files.rule_profile(("allow", "Zimbra")) == "Zimbra"
    assert ufw_files.rule_profile(("allow", "from", "10.0.0.1", "to", "any", "app", "Zimbra-mta")) == "Zimbra-mta"
    assert ufw_files.rule_profile(("allow", "22/tcp")) is None
    assert ufw_files.rule_profile(("allow", "from", "10.0.0.0/8")) is None
