"""Zimbra's flows in a split install, per-port sources (only_from), ssh rate
limiting, and what the mine may publish: the policy and its ufw rules."""

import ipaddress

import pytest
import zimbra_fw_audit as audit
import zimbra_fw_catalogue as catalogue
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw

MTA = {"name": "mta1", "addresses": ["10.0.0.12"], "roles": ["mta"]}
IMAPD = {"name": "imap1", "addresses": ["10.0.0.16"], "roles": ["imapd"]}
MAILBOX = {"name": "mb1", "addresses": ["10.0.0.13"], "roles": ["mailbox"]}


def policy_of(pillar, facts=cfg.NO_FACTS):
    return policies.build(cfg.parse_config(pillar, facts))


def group_ports(policy, name):
    return [str(spec) for spec in policy.groups[name].ports]


@pytest.mark.parametrize(
    "mode, soap",
    [
        ("https", ["8443/tcp"]),
        ("http", ["8080/tcp"]),
        ("both", ["8080/tcp", "8443/tcp"]),
        ("mixed", ["8080/tcp", "8443/tcp"]),
        ("redirect", ["8080/tcp", "8443/tcp"]),
    ],
)
def test_spam_training_and_imapd_reach_admin_soap_and_the_soap_port_of_the_mail_mode(mode, soap):
    policy = policy_of(
        {"roles": ["mailbox"], "admin_subnets": ["10.8.0.0/24"], "mail_mode": mode, "cluster": {"peers": [MTA, IMAPD]}}
    )
    assert group_ports(policy, "Zimbra-mta") == sorted(
        ["7025/tcp", "7071/tcp", "7073/tcp", *soap], key=lambda p: int(p[:4])
    )
    assert group_ports(policy, "Zimbra-imapd") == sorted(["7071/tcp", *soap], key=lambda p: int(p[:4]))


def test_the_default_mail_mode_is_https():
    assert cfg.parse_config({"roles": ["mta"]}).mail_mode == "https"


def test_zmrcd_follows_the_ssh_port():
    policy = policy_of(
        {"roles": ["ldap"], "ssh": {"port": 2222, "from": ["192.0.2.0/24"]}, "cluster": {"peers": [MAILBOX, MTA]}}
    )
    assert group_ports(policy, "Zimbra-mailbox") == ["2222/tcp"]
    assert "22/tcp" not in [str(s) for s in policy.cluster] and "2222/tcp" in [str(s) for s in policy.cluster]
    assert ufw.desired_rules(policy) == [
        ("allow", "from", "192.0.2.0/24", "to", "any", "port", "2222", "proto", "tcp"),
        ("allow", "from", "10.0.0.13", "to", "any", "app", "Zimbra-all"),
        ("allow", "from", "10.0.0.13", "to", "any", "app", "Zimbra-mailbox"),
        ("allow", "from", "10.0.0.12", "to", "any", "app", "Zimbra-all"),
    ]


def test_only_from_narrows_a_public_port_to_its_networks():
    policy = policy_of(
        {
            "roles": ["mta", "mailbox", "proxy"],
            "trusted_subnets": ["192.168.1.0/24"],
            "only_from": {"25": ["198.51.100.0/24"], "7071/tcp": ["10.8.0.0/16", "10.9.0.0/16"]},
        }
    )
    assert "25/tcp" not in group_ports(policy, "Zimbra") and "587/tcp" in group_ports(policy, "Zimbra")
    assert "7071/tcp" not in group_ports(policy, "Zimbra")
    assert ufw.desired_rules(policy) == [
        ("allow", "22/tcp"),
        ("allow", "from", "192.168.1.0/24"),
        ("allow", "from", "198.51.100.0/24", "to", "any", "port", "25", "proto", "tcp"),
        ("allow", "from", "10.8.0.0/16", "to", "any", "port", "7071", "proto", "tcp"),
        ("allow", "from", "10.9.0.0/16", "to", "any", "port", "7071", "proto", "tcp"),
        ("allow", "Zimbra"),
    ]
    ports = policies.open_ports(policy)
    assert ports["only_from"] == {"25/tcp": ["198.51.100.0/24"], "7071/tcp": ["10.8.0.0/16", "10.9.0.0/16"]}
    assert "25/tcp" in ports["public"]


def test_only_from_takes_a_range_and_udp():
    policy = policy_of(
        {
            "roles": ["snmp"],
            "extra_ports": ["6000:6010/tcp", "1194/udp"],
            "only_from": {"6000:6010/tcp": ["10.1.0.0/16"], "1194/udp": ["10.2.0.0/16"]},
        }
    )
    assert ufw.desired_rules(policy)[1:] == [
        ("allow", "from", "10.2.0.0/16", "to", "any", "port", "1194", "proto", "udp"),
        ("allow", "from", "10.1.0.0/16", "to", "any", "port", "6000:6010", "proto", "tcp"),
    ]
    assert "Zimbra" not in policy.groups  # nothing left for anyone


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


def test_ssh_limit_rate_limits_the_management_rules_and_the_check_expects_them():
    policy = policy_of({"roles": ["mta"], "ssh": {"limit": True, "from": ["any", "10.0.0.0/8"]}})
    assert ufw.desired_rules(policy)[0] == ("limit", "22/tcp")
    policy = policy_of({"roles": ["mta"], "ssh": {"limit": True, "from": ["10.0.0.0/8"]}})
    rule = ("limit", "from", "10.0.0.0/8", "to", "any", "port", "22", "proto", "tcp")
    assert ufw.desired_rules(policy)[0] == rule
    plan = ufw.plan_firewall(policy, ufw.Snapshot([], None, {}, False, "deny"))
    assert plan.steps[0].args == (rule,)
    assert cfg.parse_config({"roles": ["mta"]}).ssh_limit is False


MINE = {"mine": True, "networks": ["10.0.0.0/24"]}


def test_the_mine_may_only_publish_host_addresses():
    mine = {"evil": {"roles": ["proxy", "mta", "mailbox"], "addresses": ["0.0.0.0/1", "128.0.0.0/1"]}}
    policy = policy_of({"roles": ["mailbox"], "cluster": MINE}, cfg.Facts(mine_data=mine, minion_id="mb"))
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


def test_the_open_admin_console_is_a_finding():
    policy = policy_of({"roles": ["mailbox", "proxy"]})
    found = [audit.Listener(ipaddress.ip_address("0.0.0.0"), port, "tcp") for port in (7071, 9071)]
    rules = [audit.Rule("allow", "any", policy.public)]
    result = audit.audit(policy, found, rules, active=True, incoming="deny", firewall="ufw")
    assert [(f["severity"], f["port"], f["message"]) for f in result["findings"]] == [
        (
            "medium",
            "7071/tcp",
            "admin console and admin SOAP is reachable from anyone; set zimbra_fw:admin_subnets (or only_from) "
            "for admins",
        ),
        (
            "medium",
            "9071/tcp",
            "nginx admin console proxy (to mailbox 7071) is reachable from anyone; set zimbra_fw:admin_subnets "
            "(or only_from) for admins",
        ),
    ]
    narrowed = policy_of({"roles": ["mailbox", "proxy"], "admin_subnets": ["10.8.0.0/24"]})
    rules = [audit.Rule("allow", "10.8.0.0/24", narrowed.admin)]
    assert audit.audit(narrowed, found, rules, active=True, incoming="deny", firewall="ufw")["findings"] == []


def test_only_from_as_accesses_and_every_bad_port_named():
    policy = policy_of({"roles": ["mta"], "only_from": {"25": ["198.51.100.0/24"]}})
    assert policy.accesses[1] == policies.Access(
        "only-from", ipaddress.ip_network("198.51.100.0/24"), tuple(policy.public[:1]), None, ()
    )
    with pytest.raises(cfg.ConfigInvalid) as info:
        policy_of({"roles": ["mta"], "only_from": {"x": ["10.0.0.0/8"], "y": ["10.0.0.0/8"]}})
    assert [p.split(":")[2] for p in info.value.problems] == ["x", "y"]
    with pytest.raises(cfg.ConfigInvalid) as info:
        policy_of({"roles": ["ldap"], "only_from": {"25": ["10.0.0.0/8"]}})
    assert info.value.problems == [
        "zimbra_fw:only_from:25/tcp: '25/tcp' is not a public port of this server (its public ports: none)"
    ]


def test_a_bad_mine_address_does_not_hide_the_next():
    mine = {"m": {"roles": ["mta"], "addresses": ["bad", "10.0.0.0/24", "10.0.0.5"]}}
    policy = policy_of({"roles": ["mailbox"], "cluster": MINE}, cfg.Facts(mine_data=mine))
    assert [p.split(":")[3] for p in policy.config.left_out["m"]] == ["addresses[0]", "addresses[1]"]
    assert policy.config.peers == ()


def test_the_catalogue_shows_who_connects_in_each_mail_mode():
    (row,) = [row for row in catalogue.as_dicts() if row["port"] == 8443]
    assert row["consumers"] == ["proxy", "mailbox", "docs"]
    assert row["consumers_by_mail_mode"] == {
        "https": ["proxy", "mailbox", "docs", "mta", "imapd"],
        "http": ["proxy", "mailbox", "docs"],
        "both": ["proxy", "mailbox", "docs", "mta", "imapd"],
        "mixed": ["proxy", "mailbox", "docs", "mta", "imapd"],
        "redirect": ["proxy", "mailbox", "docs", "mta", "imapd"],
    }
    assert "consumers_by_mail_mode" not in next(row for row in catalogue.as_dicts() if row["port"] == 7025)
