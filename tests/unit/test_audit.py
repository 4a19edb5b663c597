"""Audit logic: /proc/net parsing, ufw rule reading and findings."""

import ipaddress

import pytest
import zimbra_fw_audit as audit
import zimbra_fw_config as cfg
import zimbra_fw_firewalld as fwd
import zimbra_fw_firewalld_files as fw_files
import zimbra_fw_policy as policies
import zimbra_fw_ufw_files as ufw_files

PROC_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4568966 1 0 100 0 0 10 0
   1: 0100007F:1C03 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4568967 1 0 100 0 0 10 0
   2: 0101A8C0:0050 0A01A8C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 4568999 1 0 100 0 0 10 0
"""


PROC_TCP6 = """  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000001000000:1C8A 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 00000000000000000000000000000000:2BCB 00000000000000000000000000000000:0000 0A 00000000:00000000
"""


PROC_UDP = """   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref
 6971: 00000000:0202 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4568970 2 0 0
"""


PROFILE = "[Zimbra]\ntitle=Z\ndescription=Z\nports=25,80,443/tcp|514/udp\n"


def listeners(policy):
    return audit.listeners({"tcp": PROC_TCP, "tcp6": PROC_TCP6, "udp": PROC_UDP}, policy)


def test_parse_proc_net():
    policy = policies.build(cfg.parse_config({"roles": ["mta"]}))
    found = {(str(lst.address), lst.port, lst.proto) for lst in listeners(policy)}
    assert found == {
        ("0.0.0.0", 22, "tcp"),
        ("127.0.0.1", 7171, "tcp"),
        ("::1", 7306, "tcp"),
        ("::", 11211, "tcp"),
        ("0.0.0.0", 514, "udp"),
    }


def test_parse_ufw_ports_and_profiles():
    assert [str(p) for p in ufw_files.parse_ufw_ports("80,443/tcp|6000:6010/tcp")] == [
        "80/tcp",
        "443/tcp",
        "6000:6010/tcp",
    ]
    assert [str(p) for p in ufw_files.parse_ufw_ports("53")] == ["53/tcp", "53/udp"]
    profiles = ufw_files.parse_app_profiles([PROFILE, "not [an ini"])
    assert [str(p) for p in profiles["Zimbra"]] == ["25/tcp", "80/tcp", "443/tcp", "514/udp"]


def test_parse_rule_forms():
    profiles = ufw_files.parse_app_profiles([PROFILE])
    rule = ufw_files.access_rule(("allow", "22/tcp"), profiles)
    assert rule.source == "any" and [str(p) for p in rule.ports] == ["22/tcp"]
    assert ufw_files.access_rule(("allow", "from", "10.0.0.0/8"), profiles).ports is None
    rule = ufw_files.access_rule(("allow", "from", "10.0.0.0/8", "to", "any", "port", "22", "proto", "tcp"), profiles)
    assert rule.source == "10.0.0.0/8" and [str(p) for p in rule.ports] == ["22/tcp"]
    assert len(ufw_files.access_rule(("allow", "Zimbra"), profiles).ports) == 4
    assert ufw_files.access_rule(("deny", "in", "on", "eth0", "11211"), profiles).action == "deny"
    assert ufw_files.access_rule(("allow", "out", "53"), profiles) is None
    assert ufw_files.access_rule(("route", "allow", "80"), profiles) is None


def report(rules, active=True, incoming="deny", pillar=None):
    policy = policies.build(cfg.parse_config(pillar or {"roles": ["ldap", "mta", "proxy", "mailbox"]}))
    profiles = ufw_files.parse_app_profiles([PROFILE])
    parsed = [ufw_files.access_rule(rule, profiles) for rule in rules]
    return audit.audit(policy, listeners(policy), parsed, active=active, incoming=incoming, firewall="ufw")


def by_port(result):
    return {entry["port"]: entry for entry in result["ports"]}


def test_hand_opened_memcached_is_critical():
    result = report([("allow", "22/tcp"), ("allow", "11211")])
    assert result["summary"]["critical"] == 1
    critical = result["findings"][0]
    assert critical["severity"] == "critical" and critical["port"] == "11211/tcp"
    assert "memcached" in critical["message"]
    assert by_port(result)["11211/tcp"]["reachable_from"] == "anyone"


def test_converged_firewall_has_nothing_critical():
    result = report([("allow", "22/tcp"), ("allow", "from", "192.168.1.0/24"), ("allow", "Zimbra")])
    assert result["summary"]["critical"] == 0
    # The test profile also publishes 514/udp: syslog from anyone is a high finding.
    assert [(f["severity"], f["port"]) for f in result["findings"] if f["severity"] == "high"] == [("high", "514/udp")]
    ports = by_port(result)
    assert ports["11211/tcp"]["reachable_from"] == ["192.168.1.0/24"]
    assert ports["7171/tcp"]["reachable_from"] == "localhost"
    assert ports["22/tcp"]["expected"] == "management"


def test_inactive_firewall_is_reported_and_exposes_everything():
    result = report([], active=False, incoming="deny")
    assert result["findings"][0]["severity"] == "critical"
    assert any(f["severity"] == "high" and "inactive" in f["message"] for f in result["findings"])


def test_deny_before_allow_wins():
    result = report([("deny", "11211"), ("allow", "11211")])
    assert by_port(result)["11211/tcp"]["reachable_from"] == "nobody"
    assert result["summary"]["critical"] == 0


def test_listening_port_without_rule_is_reported():
    result = report([("allow", "22/tcp")], pillar={"roles": ["logger"]})
    assert by_port(result)["514/udp"]["reachable_from"] == "nobody"
    assert result["summary"]["critical"] == 0


def test_address_family_of_sources():
    lst = audit.Listener(ipaddress.ip_address("0.0.0.0"), 389, "tcp")
    rules = [audit.Rule("allow", "2001:db8::/64", None), audit.Rule("allow", "10.0.0.0/8", None)]
    assert audit.reachability(lst, rules, True, "deny") == ["10.0.0.0/8"]


def test_the_salt_master_rule_matches_source_ports_so_the_master_reaches_every_tcp_port():
    rule = ufw_files.access_rule(("allow", "from", "10.77.0.1", "port", "4505,4506", "proto", "tcp"), {})
    assert rule == audit.Rule("allow", "10.77.0.1", [audit.PortSpec(1, 65535, "tcp")])
    ldap = audit.Listener(ipaddress.ip_address("0.0.0.0"), 389, "tcp")
    assert audit.reachability(ldap, [rule], True, "deny") == ["10.77.0.1"]
    syslog = audit.Listener(ipaddress.ip_address("0.0.0.0"), 514, "udp")
    assert audit.reachability(syslog, [rule], True, "deny") == "nobody"


def test_every_severity_is_reported_port_by_port():
    rules = [("allow", "22/tcp"), ("allow", "7306"), ("allow", "9999/tcp")]
    text = PROC_TCP + "".join(
        f"   9: 00000000:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1 0 100 0 0 10 0\n"
        for port in (7306, 7171, 9998, 9999)
    )
    policy = policies.build(cfg.parse_config({"roles": ["ldap", "mta", "proxy", "mailbox"]}))
    found = audit.listeners({"tcp": text}, policy)
    parsed = [ufw_files.access_rule(rule, {}) for rule in rules]
    result = audit.audit(policy, found, parsed, active=True, incoming="deny", firewall="ufw")
    assert [(f["severity"], f["port"]) for f in result["findings"]] == [
        ("critical", "7306/tcp"),
        ("medium", "9999/tcp"),
        ("low", "9998/tcp"),
        ("info", "7171/tcp"),
    ]
    assert "MariaDB" in result["findings"][0]["message"]
    assert result["summary"] == {"critical": 1, "high": 0, "medium": 1, "low": 1, "info": 1}
    assert (
        result["report"][0]
        == "CRITICAL 7306/tcp: mailbox MariaDB is reachable from anyone; it should be localhost-only"
    )


def listener(address, port, proto="tcp"):
    return audit.Listener(ipaddress.ip_address(address), port, proto)


def test_reachability_cases():
    limit_any = audit.Rule("limit", "any", [audit.PortSpec(22, 22, "tcp")])
    limit_lan = audit.Rule("limit", "10.1.2.3/8", None)  # ufw may keep host bits in a source
    assert audit.reachability(listener("127.0.0.1", 22), [limit_any], True, "deny") == "localhost"
    assert audit.reachability(listener("::1", 22), [], False, "deny") == "localhost"
    assert audit.reachability(listener("0.0.0.0", 22), [], True, "allow") == "anyone"
    assert audit.reachability(listener("0.0.0.0", 22), [], False, "deny") == "anyone"
    assert audit.reachability(listener("0.0.0.0", 22), [limit_any], True, "deny") == "anyone"
    assert audit.reachability(listener("0.0.0.0", 25), [limit_any, limit_lan], True, "deny") == ["10.1.2.3/8"]
    assert audit.reachability(listener("::", 25), [limit_lan], True, "deny") == ["10.1.2.3/8"]  # dual stack
    assert audit.reachability(listener("::", 25), [], True, "deny") == "nobody"
    udp = audit.Rule("allow", "any", [audit.PortSpec(25, 25, "udp")])
    assert audit.reachability(listener("0.0.0.0", 25), [udp], True, "deny") == "nobody"


def test_a_wide_or_unreadable_source_reaches_as_anyone_whether_allowed_or_limited():
    memcached = [audit.PortSpec(11211, 11211, "tcp")]
    for action in ("allow", "limit"):
        wide = audit.Rule(action, "0.0.0.0/1", memcached)
        assert audit.reachability(listener("0.0.0.0", 11211), [wide], True, "deny") == "anyone", action
        unreadable = audit.Rule(action, "10.0.0.0/8 or so", memcached)
        assert audit.reachability(listener("0.0.0.0", 11211), [unreadable], True, "deny") == "anyone", action


def test_udp_listeners_on_public_udp_ranges_are_read():
    udp = (
        "  sl  local_address rem_address   st\n"
        "   1: 00000000:1771 00000000:0000 07 0\n"  # 6001/udp
        "   2: 00000000:1F90 00000000:0000 07 0\n"  # 8080/udp: no rule or row names it
        "   3: 00000000:0202 00000000:0000 01 0\n"  # 514/udp, not unconnected
        "   4: short\n"
    )
    policy = policies.build(cfg.parse_config({"roles": ["mta"], "extra_ports": ["6000:6002/udp"]}))
    assert [(lst.port, lst.proto) for lst in audit.listeners({"udp": udp}, policy)] == [(6001, "udp")]
    assert audit.listeners({}, policy) == []


def test_an_unknown_port_open_to_anyone_is_medium_and_the_report_lists_every_port():
    policy = policies.build(cfg.parse_config({"roles": ["mta"]}))
    found = [listener("0.0.0.0", 9999), listener("127.0.0.1", 10024)]
    rules = [audit.Rule("allow", "any", None)]
    result = audit.audit(policy, found, rules, active=True, incoming="deny", firewall="ufw")
    assert result["findings"] == [
        {"severity": "medium", "port": "9999/tcp", "message": "not a Zimbra port, yet reachable from anyone"}
    ]
    assert result["report"] == [
        "MEDIUM 9999/tcp: not a Zimbra port, yet reachable from anyone",
        "port       expected    reachable from",
        "9999/tcp   unknown     anyone",
        "10024/tcp  localhost   localhost",
    ]
    assert result["ports"][0] == {
        "port": "9999/tcp",
        "service": "not a Zimbra port",
        "expected": "unknown",
        "reachable_from": "anyone",
        "addresses": ["0.0.0.0"],
    }
    assert result["firewall"] == {"active": True, "default_incoming": "deny"}


def test_firewall_findings_name_the_firewall():
    policy = policies.build(cfg.parse_config({"roles": ["mta"]}))
    off = audit.audit(policy, [], [], active=False, incoming="deny", firewall="ufw")
    assert off["report"] == [
        "HIGH firewall: ufw is inactive: every listening port is reachable from anyone",
        "port       expected    reachable from",
    ]
    allow = audit.audit(policy, [], [], active=True, incoming="allow", firewall="firewalld")
    assert allow["findings"] == [
        {"severity": "high", "port": None, "message": "firewalld's default incoming policy is allow"}
    ]


def test_a_public_port_that_is_not_in_the_catalogue_is_expected_public():
    policy = policies.build(cfg.parse_config({"roles": ["mta"], "extra_ports": [8448]}))
    result = audit.audit(policy, [listener("0.0.0.0", 8448)], [], active=True, incoming="deny", firewall="ufw")
    assert result["ports"][0]["expected"] == "public"
    assert result["findings"] == [
        {
            "severity": "low",
            "port": "8448/tcp",
            "message": "not a Zimbra port listens on 0.0.0.0 but no rule allows it",
        }
    ]


def test_an_allow_default_policy_opens_every_listener():
    policy = policies.build(cfg.parse_config({"roles": ["mta"]}))
    found = [listener("0.0.0.0", 10024), listener("::", 10024)]
    result = audit.audit(policy, found, [], active=True, incoming="allow", firewall="ufw")
    assert result["ports"][0]["reachable_from"] == "anyone"
    assert result["ports"][0]["addresses"] == ["0.0.0.0", "::"]
    assert [(f["severity"], f["port"]) for f in result["findings"]] == [("critical", "10024/tcp"), ("high", None)]


def test_sources_of_a_port_are_listed_in_the_report():
    policy = policies.build(cfg.parse_config({"roles": ["ldap"]}))
    rules = [audit.Rule("allow", "10.0.0.0/8", None), audit.Rule("allow", "192.168.0.0/16", None)]
    result = audit.audit(policy, [listener("0.0.0.0", 389)], rules, active=True, incoming="deny", firewall="ufw")
    assert result["report"][-1] == "389/tcp    cluster     10.0.0.0/8, 192.168.0.0/16"


def test_a_listener_on_two_addresses_that_no_rule_allows():
    policy = policies.build(cfg.parse_config({"roles": ["mta"]}))
    found = [listener("10.0.0.1", 25), listener("10.0.0.2", 25)]
    result = audit.audit(policy, found, [], active=True, incoming="deny", firewall="ufw")
    assert result["findings"][0]["message"] == (
        "postfix SMTP (inbound MX, relay for mailboxes) listens on 10.0.0.1, 10.0.0.2 but no rule allows it"
    )


def test_proc_net_lines_of_exactly_four_fields_are_read():
    text = "header\n   0: 00000000:0016 00000000:0000 0A\n"
    assert audit.parse_proc_net(text, "tcp") == [listener("0.0.0.0", 22)]


def test_only_the_public_udp_range_is_read():
    udp = "h\n 1: 00000000:0064 0 07\n 2: 00000000:1773 0 07\n 3: 00000000:1772 0 07\n"  # 100, 6003, 6002
    policy = policies.build(cfg.parse_config({"roles": ["mta"], "extra_ports": ["6000:6002/udp"]}))
    assert [lst.port for lst in audit.listeners({"udp": udp}, policy)] == [6002]


def ssh_audit(pillar, rules, facts=cfg.NO_FACTS, found=None, **kwargs):
    policy = policies.build(cfg.parse_config({"roles": ["mta"], **pillar}, facts))
    found = [listener("0.0.0.0", 22), listener("::", 22)] if found is None else found
    return audit.audit(policy, found, rules, active=True, incoming="deny", firewall="firewalld", **kwargs)


SSH = [audit.PortSpec(22, 22, "tcp")]


def test_ssh_open_to_anyone_while_ssh_from_names_a_network_is_high():
    # firewalld's stock ``ssh`` zone service: 22 from anyone, on every RHEL host.
    result = ssh_audit({"ssh": {"from": ["10.8.0.0/16"]}}, [audit.Rule("allow", "any", SSH)])
    assert result["findings"] == [
        {
            "severity": "high",
            "port": "22/tcp",
            "message": "management (ssh) is reachable from anyone, beyond zimbra_fw:ssh:from (10.8.0.0/16)",
        }
    ]
    assert result["summary"]["high"] == 1
    assert result["report"][0] == (
        "HIGH 22/tcp: management (ssh) is reachable from anyone, beyond zimbra_fw:ssh:from (10.8.0.0/16)"
    )


def test_ssh_from_a_source_outside_ssh_from_is_high_and_named():
    rules = [
        audit.Rule("allow", "10.8.0.0/16", SSH),
        audit.Rule("allow", "10.8.3.0/24", SSH),  # inside ssh:from
        audit.Rule("limit", "203.0.113.0/24", SSH),
        audit.Rule("allow", "10.0.0.0/8", None),  # wider than ssh:from: beyond it
    ]
    result = ssh_audit({"ssh": {"from": ["10.8.0.0/16"]}}, rules)
    assert [(f["severity"], f["port"], f["message"]) for f in result["findings"]] == [
        (
            "high",
            "22/tcp",
            "management (ssh) is reachable from 10.0.0.0/8, 203.0.113.0/24, beyond zimbra_fw:ssh:from (10.8.0.0/16)",
        )
    ]


def test_the_management_finding_names_every_ssh_from_network():
    rules = [audit.Rule("allow", "203.0.113.0/24", SSH)]
    result = ssh_audit({"ssh": {"from": ["10.8.0.0/16", "2001:db8:8::/48"]}}, rules)
    assert [f["message"] for f in result["findings"]] == [
        "management (ssh) is reachable from 203.0.113.0/24, beyond zimbra_fw:ssh:from (10.8.0.0/16, 2001:db8:8::/48)"
    ]


def test_ssh_reached_only_as_ssh_from_says_is_no_finding():
    rules = [
        audit.Rule("allow", "10.8.0.0/16", SSH),
        audit.Rule("allow", "2001:db8:8::/48", SSH),
        audit.Rule("limit", "10.8.3.4/24", SSH),  # ufw may keep host bits in a source
    ]
    result = ssh_audit({"ssh": {"from": ["10.8.0.0/16", "2001:db8:8::/48"]}}, rules)
    assert result["findings"] == []
    assert by_port(result)["22/tcp"]["reachable_from"] == ["10.8.0.0/16", "10.8.3.4/24", "2001:db8:8::/48"]


def test_sources_the_policy_itself_gives_the_ssh_port_are_not_beyond_ssh_from():
    # Trusted subnets reach every port, mailbox peers reach the ssh port for zmrcd.
    pillar = {
        "ssh": {"from": ["10.8.0.0/16"]},
        "trusted_subnets": ["192.168.1.0/24"],
        "cluster": {"peers": [{"name": "mb1", "addresses": ["10.0.0.13"], "roles": ["mailbox"]}]},
    }
    rules = [
        audit.Rule("allow", "10.8.0.0/16", SSH),
        audit.Rule("allow", "192.168.1.0/24", None),
        audit.Rule("allow", "192.168.1.0/25", SSH),
        audit.Rule("allow", "10.0.0.13", SSH),
    ]
    assert ssh_audit(pillar, rules)["findings"] == []
    # An mta peer has no business on the ssh port: it is beyond ssh:from.
    pillar["cluster"]["peers"][0]["roles"] = ["mta"]
    assert [f["message"] for f in ssh_audit(pillar, rules)["findings"]] == [
        "management (ssh) is reachable from 10.0.0.13, beyond zimbra_fw:ssh:from (10.8.0.0/16)"
    ]


def test_a_rule_for_every_tcp_port_from_the_master_reaches_ssh_beyond_ssh_from():
    # A Salt master rule on source ports only (ufw's older form) admits the
    # master to every TCP port, the ssh port too: said, unless ssh:from has it.
    rules = [
        audit.Rule("allow", "10.8.0.0/16", SSH),
        audit.Rule("allow", "10.77.0.1", [audit.PortSpec(1, 65535, "tcp")]),
    ]
    assert [f["message"] for f in ssh_audit({"ssh": {"from": ["10.8.0.0/16"]}}, rules)["findings"]] == [
        "management (ssh) is reachable from 10.77.0.1, beyond zimbra_fw:ssh:from (10.8.0.0/16)"
    ]
    assert ssh_audit({"ssh": {"from": ["10.8.0.0/16", "10.77.0.1"]}}, rules)["findings"] == []


def test_ssh_from_any_is_no_management_finding():
    assert ssh_audit({}, [audit.Rule("allow", "any", SSH)])["findings"] == []
    assert ssh_audit({"ssh": {"from": ["any"]}}, [audit.Rule("allow", "any", None)])["findings"] == []


def test_the_management_finding_follows_ssh_port():
    found = [listener("0.0.0.0", 22), listener("0.0.0.0", 2222)]
    rules = [audit.Rule("allow", "any", [audit.PortSpec(22, 22, "tcp"), audit.PortSpec(2222, 2222, "tcp")])]
    result = ssh_audit({"ssh": {"port": 2222, "from": ["10.8.0.0/16"]}}, rules, found=found)
    management = [f for f in result["findings"] if f["message"].startswith("management")]
    assert [(f["severity"], f["port"]) for f in management] == [("high", "2222/tcp")]


def test_ssh_from_a_firewalld_rich_rule_outside_ssh_from_is_high():
    rule = 'rule family="ipv4" source address="192.0.2.0/24" port port="22" protocol="tcp" accept'
    rules = [found for _, found in fw_files.rich_rule_access(rule)]
    result = ssh_audit({"ssh": {"from": ["10.8.0.0/16"]}}, rules)
    assert [(f["severity"], f["port"]) for f in result["findings"]] == [("high", "22/tcp")]
    assert "192.0.2.0/24" in result["findings"][0]["message"]


def test_no_management_wanted_yet_ssh_reachable_is_high():
    pillar = {"ssh": {"from": []}, "allow_no_management": True}
    result = ssh_audit(pillar, [audit.Rule("allow", "any", SSH)])
    assert result["findings"][0]["message"] == (
        "management (ssh) is reachable from anyone, beyond zimbra_fw:ssh:from (nobody)"
    )
    assert ssh_audit(pillar, [])["findings"] == []  # nobody reaches it: as wanted


def test_management_is_judged_even_when_the_ssh_port_is_public():
    # A policy that also publishes the ssh port (the config refuses such a
    # pillar; the audit must not trust that): anyone reaching it is still beyond ssh:from.
    pillar = {"roles": ["mta"], "ssh": {"port": 2222, "from": ["10.8.0.0/16"]}}
    policy = policies.build(cfg.parse_config(pillar))
    policy = policy._replace(public=[*policy.public, audit.PortSpec(2222, 2222, "tcp")])
    rules = [audit.Rule("allow", "any", [audit.PortSpec(2222, 2222, "tcp")])]
    result = audit.audit(policy, [listener("0.0.0.0", 2222)], rules, active=True, incoming="deny", firewall="ufw")
    assert result["ports"][0]["expected"] == "public"
    assert [(f["severity"], f["port"]) for f in result["findings"]] == [("high", "2222/tcp")]


def test_a_source_beyond_ssh_from_is_named_even_when_the_policy_opens_the_ssh_port_to_anyone():
    # As above, with the ssh port in the anyone access too: that access grants no source, so 203.0.113.0/24
    # (a rule of its own) is still beyond ssh:from.
    pillar = {"roles": ["mta"], "ssh": {"port": 2222, "from": ["10.8.0.0/16"]}}
    policy = policies.build(cfg.parse_config(pillar))
    spec = audit.PortSpec(2222, 2222, "tcp")
    accesses = [a._replace(ports=(*a.ports, spec)) if a.source is None else a for a in policy.accesses]
    policy = policy._replace(public=[*policy.public, spec], accesses=accesses)
    rules = [audit.Rule("allow", "203.0.113.0/24", [spec])]
    result = audit.audit(policy, [listener("0.0.0.0", 2222)], rules, active=True, incoming="deny", firewall="ufw")
    assert [(f["severity"], f["port"], f["message"]) for f in result["findings"]] == [
        (
            "high",
            "2222/tcp",
            "management (ssh) is reachable from 203.0.113.0/24, beyond zimbra_fw:ssh:from (10.8.0.0/16)",
        )
    ]


def test_extra_findings_from_the_backend_are_sorted_with_the_rest():
    policy = policies.build(cfg.parse_config({"roles": ["mta"]}))
    extra = [
        ("low", "zone public has no interface"),
        ("high", "interface eth1 is in the trusted zone"),
    ]
    found = [listener("0.0.0.0", 9999)]
    rules = [audit.Rule("allow", "any", None)]
    result = audit.audit(
        policy, found, rules, active=True, incoming="allow", firewall="firewalld", extra_findings=extra
    )
    assert [(f["severity"], f["port"], f["message"]) for f in result["findings"]] == [
        ("high", None, "firewalld's default incoming policy is allow"),
        ("high", None, "interface eth1 is in the trusted zone"),
        ("medium", "9999/tcp", "not a Zimbra port, yet reachable from anyone"),
        ("low", None, "zone public has no interface"),
    ]
    assert result["summary"] == {"critical": 0, "high": 2, "medium": 1, "low": 1, "info": 0}
    assert result["report"][1] == "HIGH firewall: interface eth1 is in the trusted zone"
    assert result["report"][3] == "LOW firewall: zone public has no interface"


def test_extra_findings_default_to_none_and_refuse_an_unknown_severity():
    policy = policies.build(cfg.parse_config({"roles": ["mta"]}))
    assert audit.audit(policy, [], [], active=True, incoming="deny", firewall="ufw")["findings"] == []
    with pytest.raises(ValueError) as info:
        audit.audit(policy, [], [], active=True, incoming="deny", firewall="ufw", extra_findings=[("urgent", "x")])
    assert str(info.value) == "unknown severity 'urgent': one of critical, high, medium, low, info"


def test_firewalld_stock_ssh_service_beside_ssh_from_is_high(monkeypatch):
    # A RHEL zone as installed (ssh, cockpit), after zimbra_fw added ssh:from's rule: 22 stays open to anyone.
    stock = {"ssh": [audit.PortSpec(22, 22, "tcp")], "cockpit": [audit.PortSpec(9090, 9090, "tcp")]}
    monkeypatch.setattr(fw_files, "service_ports", lambda name: stock.get(name, []))
    pillar = {"roles": ["mta"], "backend": "firewalld", "ssh": {"from": ["10.8.0.0/16"]}}
    policy = policies.build(cfg.parse_config(pillar))
    rules = fwd.desired(policy).rules
    zone = fwd.Zone(frozenset({"ssh", "cockpit"}), rules, "default", ())
    snapshot = fwd.Snapshot(*[None] * len(fwd.Snapshot._fields))._replace(
        active=True, zone="public", runtime=zone, permanent=zone, runtime_ipsets={}
    )
    found = [listener("0.0.0.0", 22), listener("0.0.0.0", 9090)]
    result = audit.audit(policy, found, fwd.access_rules(snapshot), active=True, incoming="deny", firewall="firewalld")
    assert [(f["severity"], f["port"], f["message"]) for f in result["findings"]] == [
        ("high", "22/tcp", "management (ssh) is reachable from anyone, beyond zimbra_fw:ssh:from (10.8.0.0/16)"),
        ("medium", "9090/tcp", "not a Zimbra port, yet reachable from anyone"),
    ]


@pytest.mark.parametrize("source", ["0.0.0.0/0", "0.0.0.0/1", "2002::/16", "64:ff9b::/95"])
def test_a_source_wider_than_any_key_may_be_counts_as_anyone(source):
    rule = audit.Rule("allow", source, [audit.PortSpec(11211, 11211, "tcp")])
    result = report([("allow", "22/tcp")])
    policy = policies.build(cfg.parse_config({"roles": ["ldap", "mta", "proxy", "mailbox"]}))
    found = audit.audit(policy, listeners(policy), [rule], active=True, incoming="deny", firewall="firewalld")
    assert by_port(found)["11211/tcp"]["reachable_from"] == "anyone"
    assert ("critical", "11211/tcp") in [(f["severity"], f["port"]) for f in found["findings"]]
    assert by_port(result)["11211/tcp"]["reachable_from"] == "nobody"


def test_a_narrow_source_is_listed_not_anyone():
    rule = audit.Rule("allow", "10.0.0.0/8", [audit.PortSpec(11211, 11211, "tcp")])
    policy = policies.build(cfg.parse_config({"roles": ["ldap", "mta", "proxy", "mailbox"]}))
    found = audit.audit(policy, listeners(policy), [rule], active=True, incoming="deny", firewall="ufw")
    assert by_port(found)["11211/tcp"]["reachable_from"] == ["10.0.0.0/8"]


def policy_of(pillar, facts=cfg.NO_FACTS):
    return policies.build(cfg.parse_config(pillar, facts))


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


def test_drift_keeps_every_widening_finding_whatever_comes_before_it():
    """beyond_policy: a finding below medium, or about a port the policy opens
    to anyone (the admin console without admin_subnets), is left out; the
    findings after it are still read."""
    policy = policy_of({"roles": ["mailbox", "proxy"]})
    low = {"severity": "low", "port": "11211/tcp"}
    opened = {"severity": "medium", "port": "7071/tcp"}
    critical = {"severity": "critical", "port": "11211/tcp"}
    portless = {"severity": "high", "port": None}
    assert audit.beyond_policy([low, critical], policy) == [critical]
    assert audit.beyond_policy([opened, critical, portless], policy) == [critical, portless]
