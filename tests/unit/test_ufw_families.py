"""ufw's two families and what its rules really open: a rule is read per
rules file (user.rules for IPv4, user6.rules for IPv6), a copy missing from
one family is added back, the lockout check wants every management rule in
every family, an application rule is judged by the ports its tuples open
(not by its profile), and the Salt master's rule reads back as it is
written. No ufw runs here but its parser (ufw's Python package, when there)."""

import ipaddress
import json
import os
import subprocess

import pytest
import zimbra_fw_audit as audit
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
import zimbra_fw_ufw_files as ufw_files
from zimbra_fw_catalogue import PortSpec

ZF = "7a696d6272615f6677"  # "zimbra_fw" as ufw stores comments
SINGLE = {"roles": ["ldap", "mta", "proxy", "mailbox"], "trusted_subnets": ["192.168.1.0/24"]}
ZIMBRA_PORTS = "25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071"


def policy_of(pillar, **facts):
    return policies.build(cfg.parse_config(pillar, cfg.Facts(**facts)))


def tuple_line(rule, comment=ZF):
    return f"### tuple ### {rule} in comment={comment}\n"


SSH = "allow tcp 22 0.0.0.0/0 any 0.0.0.0/0"
SSH6 = "allow tcp 22 ::/0 any ::/0"
LAN = "allow any any 0.0.0.0/0 any 192.168.1.0/24"
ZIMBRA = f"allow tcp {ZIMBRA_PORTS} 0.0.0.0/0 any 0.0.0.0/0 Zimbra -"
ZIMBRA6 = f"allow tcp {ZIMBRA_PORTS} ::/0 any ::/0 Zimbra -"


@pytest.fixture
def etc(tmp_path, monkeypatch):
    """ufw's files in a temporary directory (IPv6 on), the profile file as the policy wants it."""
    apps = tmp_path / "applications.d"
    apps.mkdir()
    (apps / "zimbra").write_text(ufw.profile_text(policy_of(SINGLE)))
    (tmp_path / "default-ufw").write_text('IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\n')
    monkeypatch.setattr(ufw, "APPS_DIR", str(apps))
    monkeypatch.setattr(ufw, "PROFILE_PATH", str(apps / "zimbra"))
    monkeypatch.setattr(ufw, "RULES_FILES", (str(tmp_path / "user.rules"), str(tmp_path / "user6.rules")))
    monkeypatch.setattr(ufw, "DEFAULTS_PATH", str(tmp_path / "default-ufw"))
    monkeypatch.setattr(
        ufw.os.path, "exists", lambda path, real=os.path.exists: path == "/proc/sys/net/ipv6" or real(path)
    )
    monkeypatch.setattr(ufw.salt.utils.path, "which", lambda name: f"/usr/sbin/{name}" if name == "ufw" else None)
    return tmp_path


def write_rules(etc, v4, v6):
    (etc / "user.rules").write_text("".join(tuple_line(rule) for rule in v4))
    (etc / "user6.rules").write_text("".join(tuple_line(rule) for rule in v6))


def read(etc):
    return ufw.read_snapshot(lambda argv, stdin=None: (0, "", ""), live=True)


# ---------------------------------------------------------------- A: each family


def test_converged_files_in_both_families_plan_nothing(etc):
    write_rules(etc, [SSH, LAN, ZIMBRA], [SSH6, ZIMBRA6])
    snap = read(etc)
    policy = policy_of(SINGLE)
    assert ufw.plan_rules(policy, snap) == ufw.Plan({}, [], None)
    assert ufw.plan_profile(policy, snap) == ufw.Plan({}, [], None)
    assert ufw.plan_firewall(policy, snap) == ufw.Plan({}, [], None)


def test_the_ipv4_copy_of_allow_zimbra_deleted_by_hand_is_added_back(etc):
    write_rules(etc, [SSH, LAN], [SSH6, ZIMBRA6])  # ufw delete N of the IPv4 copy
    plan = ufw.plan_rules(policy_of(SINGLE), read(etc))
    assert plan.changes == {"added": ["allow Zimbra (IPv4)"]}
    assert [step.args for step in plan.steps] == [("allow", "Zimbra", "comment", "zimbra_fw")]


def test_the_ipv4_ssh_copy_deleted_by_hand_is_added_back_and_named(etc):
    write_rules(etc, [LAN, ZIMBRA], [SSH6, ZIMBRA6])
    plan = ufw.plan_rules(policy_of(SINGLE), read(etc))
    assert plan.changes == {"added": ["allow 22/tcp (IPv4)"]}
    assert [step.args for step in plan.steps] == [("allow", "22/tcp", "comment", "zimbra_fw")]


def test_a_rule_missing_from_both_families_is_named_plainly(etc):
    write_rules(etc, [LAN, ZIMBRA], [ZIMBRA6])
    assert ufw.plan_rules(policy_of(SINGLE), read(etc)).changes == {"added": ["allow 22/tcp"]}


def test_an_ipv4_source_belongs_to_ipv4_only_and_an_ipv6_source_to_ipv6_only(etc):
    pillar = dict(SINGLE, trusted_subnets=["192.168.1.0/24", "2001:db8::/64"])
    v6_lan = "allow any any ::/0 any 2001:db8::/64"
    write_rules(etc, [SSH, LAN, ZIMBRA], [SSH6, v6_lan, ZIMBRA6])
    assert ufw.plan_rules(policy_of(pillar), read(etc)).steps == []
    write_rules(
        etc, [SSH, ZIMBRA, v6_lan.replace("::/0", "0.0.0.0/0")], [SSH6, LAN.replace("0.0.0.0/0", "::/0"), ZIMBRA6]
    )
    # each subnet's rule sits in the other family's file only: both are missing
    assert ufw.plan_rules(policy_of(pillar), read(etc)).changes["added"] == [
        "allow from 192.168.1.0/24",
        "allow from 2001:db8::/64",
    ]
    assert ufw.families(("allow", "from", "10.77.0.1", "port", "4505,4506", "proto", "tcp")) == ("IPv4",)
    assert ufw.families(("allow", "from", "2001:db8::1")) == ("IPv6",)
    assert ufw.families(("allow", "Zimbra")) == ("IPv4", "IPv6")
    assert ufw.families(("allow", "Zimbra"), ipv6=False) == ("IPv4",)


def test_with_ipv6_off_a_rule_from_anyone_needs_its_ipv4_copy_only(etc):
    (etc / "default-ufw").write_text('IPV6=no\nDEFAULT_INPUT_POLICY="DROP"\n')
    write_rules(etc, [SSH, LAN, ZIMBRA], [])
    snap = read(etc)
    assert snap.ipv6 is False
    assert ufw.plan_rules(policy_of(SINGLE), snap).steps == []


def test_a_copy_of_ours_in_one_family_and_a_hand_made_one_in_the_other_is_adopted(etc):
    (etc / "user.rules").write_text(tuple_line(SSH) + tuple_line(LAN) + tuple_line(ZIMBRA))
    (etc / "user6.rules").write_text(f"### tuple ### {SSH6} in\n" + tuple_line(ZIMBRA6))
    plan = ufw.plan_rules(policy_of(SINGLE), read(etc))
    assert plan.changes == {"added": ["allow 22/tcp (IPv6)"]}  # ufw gives the IPv6 copy our comment


def test_the_lockout_check_wants_the_ipv4_ssh_copy(etc, monkeypatch):
    monkeypatch.setattr(ufw, "ufw_python", lambda program: None)
    write_rules(etc, [LAN, ZIMBRA], [SSH6, ZIMBRA6])
    snap = read(etc)._replace(active=False)
    plan = ufw.plan_firewall(policy_of(SINGLE), snap)
    assert plan.steps[0].action == "check"
    ran = []
    with pytest.raises(ufw.ApplyFailed) as info:
        ufw.apply(plan.steps, lambda argv, stdin=None: ran.append(argv) or (0, "", ""))
    assert "(missing: allow 22/tcp (IPv4)); apply the zimbra_fw rules first" in info.value.strerror
    assert ran == []
    write_rules(etc, [SSH, LAN, ZIMBRA], [SSH6, ZIMBRA6])
    assert ufw.apply(plan.steps, lambda argv, stdin=None: ran.append(argv) or (0, "", "")) == [
        "check that management access is allowed",
        "ufw --force enable",
    ]
    assert ran == [["ufw", "--force", "enable"]]


def test_the_lockout_check_fails_when_one_of_two_ssh_sources_lost_its_rule(etc, monkeypatch):
    monkeypatch.setattr(ufw, "ufw_python", lambda program: None)
    policy = policy_of(dict(SINGLE, ssh={"from": ["10.0.0.0/8", "172.16.0.0/12"]}))
    ssh_rules = [words for words in ufw.desired_rules(policy) if words[-3:] == ("22", "proto", "tcp")]
    assert ssh_rules == [
        ("allow", "from", "10.0.0.0/8", "to", "any", "port", "22", "proto", "tcp"),
        ("allow", "from", "172.16.0.0/12", "to", "any", "port", "22", "proto", "tcp"),
    ]
    assert ufw.plan_firewall(policy, read(etc)._replace(active=False)).steps[0].args == tuple(ssh_rules)
    first, second = (f"allow tcp 22 0.0.0.0/0 any {net}" for net in ("10.0.0.0/8", "172.16.0.0/12"))
    write_rules(etc, [first, LAN, ZIMBRA], [ZIMBRA6])
    plan = ufw.plan_firewall(policy, read(etc)._replace(active=False))
    with pytest.raises(ufw.ApplyFailed, match=r"missing: allow from 172\.16\.0\.0/12 to any port 22 proto tcp\)"):
        ufw.apply(plan.steps, lambda argv, stdin=None: (0, "", ""))
    write_rules(etc, [first, second, LAN, ZIMBRA], [ZIMBRA6])
    assert len(ufw.apply(plan.steps, lambda argv, stdin=None: (0, "", ""))) == len(plan.steps)


def test_rules_files_are_read_per_family():
    v4 = tuple_line(SSH) + tuple_line(LAN)
    v6 = tuple_line(SSH6)
    rules, copies = ufw_files.read_rules([v4, v6])
    assert rules == [(("allow", "22/tcp"), "zimbra_fw"), (("allow", "from", "192.168.1.0/24"), "zimbra_fw")]
    assert sorted(copies[rules[0]]) == ["IPv4", "IPv6"]
    assert list(copies[rules[1]]) == ["IPv4"]
    assert ufw_files.read_rules([None, v6]) == ([rules[0]], {rules[0]: {"IPv6": copies[rules[0]]["IPv6"]}})
    assert ufw_files.read_rules([v4]) == (
        rules,
        {rules[0]: {"IPv4": copies[rules[0]]["IPv4"]}, rules[1]: copies[rules[1]]},
    )


class CountedWords(tuple):
    """A rule's words that count how often they are compared: a list scan per
    rule compares each with every rule (N^2), a set lookup only on a hash match."""

    compared = 0

    def __eq__(self, other):
        CountedWords.compared += 1
        return tuple.__eq__(self, other)

    __hash__ = tuple.__hash__


def test_planning_is_linear_in_the_rules():
    """8,000 managed rules, as many wanted: a set lookup per rule, not a list scan
    (the benchmark times it; this counts the comparisons)."""
    addresses = [f"10.{i // 250}.{i % 250}.1" for i in range(8000)]
    accesses = [
        policies.Access(policies.TRUSTED, ipaddress.ip_network(address), None, None, ()) for address in addresses
    ]
    policy = policy_of(SINGLE)._replace(accesses=accesses)
    current = [(CountedWords(("allow", "from", address)), "zimbra_fw") for address in reversed(addresses[1:])]
    snap = ufw.Snapshot(current, None, {}, True, "deny")
    CountedWords.compared = 0
    plan = ufw.plan_rules(policy, snap)
    assert plan.changes == {"added": ["allow from 10.0.0.1"]}
    assert CountedWords.compared < 5 * len(addresses), CountedWords.compared


# ---------------------------------------------------------------- B: the ports an app rule opens


def test_a_stale_app_rule_is_updated_though_the_profile_file_is_right(etc):
    """The live allow Zimbra still opens 7071 after admin_subnets moved it to
    Zimbra-admin (ufw app update failed after the file was written)."""
    pillar = dict(SINGLE, admin_subnets=["10.9.0.0/24"])
    policy = policy_of(pillar)
    (etc / "applications.d" / "zimbra").write_text(ufw.profile_text(policy))
    admin = "allow tcp 7071,9071 0.0.0.0/0 any 10.9.0.0/24 Zimbra-admin -"
    write_rules(etc, [SSH, LAN, admin, ZIMBRA], [SSH6, ZIMBRA6])
    snap = read(etc)
    assert ufw.plan_rules(policy, snap).steps == []
    plan = ufw.plan_profile(policy, snap)
    assert [step.args for step in plan.steps] == [("app", "update", "Zimbra")]
    wanted = ZIMBRA_PORTS.replace(",7071,9071", "") + "/tcp"
    assert plan.changes == {
        "rules updated": {
            "allow Zimbra (IPv4)": {"old": ZIMBRA_PORTS + "/tcp", "new": wanted},
            "allow Zimbra (IPv6)": {"old": ZIMBRA_PORTS + "/tcp", "new": wanted},
        }
    }


def test_an_app_rule_split_over_several_tuples_counts_all_of_them(etc):
    ports = [f"{p}/tcp" for p in range(20000, 20020)] + ["1194/udp"]
    policy = policy_of({"roles": ["snmp"], "extra_ports": ports})
    (etc / "applications.d" / "zimbra").write_text(ufw.profile_text(policy))
    first = ",".join(str(p) for p in range(20000, 20015))
    tuples = [
        f"allow tcp {first} 0.0.0.0/0 any 0.0.0.0/0 Zimbra -",
        "allow tcp 20015,20016,20017,20018,20019 0.0.0.0/0 any 0.0.0.0/0 Zimbra -",
        "allow udp 1194 0.0.0.0/0 any 0.0.0.0/0 Zimbra -",
    ]
    write_rules(etc, [SSH, *tuples], [SSH6, *(t.replace("0.0.0.0/0", "::/0") for t in tuples)])
    snap = read(etc)
    assert ufw.plan_profile(policy, snap) == ufw.Plan({}, [], None)
    write_rules(etc, [SSH, *tuples[:2]], [SSH6, *(t.replace("0.0.0.0/0", "::/0") for t in tuples)])
    plan = ufw.plan_profile(policy, read(etc))
    assert [step.args for step in plan.steps] == [("app", "update", "Zimbra")]
    assert plan.changes["rules updated"] == {
        "allow Zimbra (IPv4)": {
            "old": f"{first}/tcp|20015,20016,20017,20018,20019/tcp",
            "new": ufw.profiles(policy)["profiles"]["Zimbra"],
        },
    }
    assert plan.changes["rules updated"]["allow Zimbra (IPv4)"]["new"].endswith("/tcp|1194/udp")


def test_a_changed_profile_is_reported_as_ports_not_again_as_stale_rules(etc):
    write_rules(etc, [SSH, LAN, ZIMBRA], [SSH6, ZIMBRA6])
    plan = ufw.plan_profile(policy_of(dict(SINGLE, exclude_ports=[5222, 5223])), read(etc))
    assert [step.action for step in plan.steps] == ["write", "ufw"]
    assert plan.steps[1].args == ("app", "update", "Zimbra")
    assert sorted(plan.changes) == ["ports"]


def test_the_audit_reads_an_app_rules_ports_from_its_tuples_not_its_profile(etc):
    """The profile file says Zimbra has no 7071; the live rule still opens it."""
    policy = policy_of(dict(SINGLE, admin_subnets=["10.9.0.0/24"]))
    (etc / "applications.d" / "zimbra").write_text(ufw.profile_text(policy))
    write_rules(etc, [SSH, ZIMBRA], [SSH6, ZIMBRA6])
    snap = read(etc)
    assert PortSpec(7071, 7071, "tcp") not in snap.app_profiles["Zimbra"]
    rules = ufw.access_rules(snap)
    listener = audit.Listener(ipaddress.ip_address("0.0.0.0"), 7071, "tcp")
    assert audit.reachability(listener, rules, True, "deny") == "anyone"
    assert audit.reachability(listener._replace(port=7072), rules, True, "deny") == "nobody"


def test_an_app_rule_of_a_hand_made_snapshot_opens_its_profiles_ports():
    profiles = {"Zimbra": [PortSpec(25, 25, "tcp")]}
    snap = ufw.Snapshot([(("allow", "Zimbra"), "zimbra_fw"), (("allow", "22/tcp"), None)], None, profiles, True, "deny")
    assert ufw.access_rules(snap) == [
        audit.Rule("allow", "any", [PortSpec(25, 25, "tcp")]),
        audit.Rule("allow", "any", [PortSpec(22, 22, "tcp")]),
    ]


def test_a_tuple_for_any_protocol_opens_its_ports_over_tcp_and_udp():
    rule = (("allow", "Dns"), None)
    line = "### tuple ### allow any 53 0.0.0.0/0 any 0.0.0.0/0 Dns - in\n"
    assert ufw_files.read_rules([line]) == (
        [rule],
        {rule: {"IPv4": {PortSpec(53, 53, "tcp"), PortSpec(53, 53, "udp")}}},
    )


def test_the_audit_of_an_app_rule_with_its_tuples_as_the_profile_says(etc):
    write_rules(etc, [SSH, "allow tcp 7071 0.0.0.0/0 any 10.9.0.0/24 Zimbra -"], [SSH6])
    rule = ufw.access_rules(read(etc))[1]
    assert rule == audit.Rule("allow", "10.9.0.0/24", [PortSpec(7071, 7071, "tcp")])


# ---------------------------------------------------------------- C: the Salt master's rule

SALT_MASTER = policies.Access(
    policies.SALT_MASTER,
    ipaddress.ip_network("10.77.0.1/32"),
    (PortSpec(32768, 60999, "tcp"),),
    None,
    (4505, 4506),
)
SALT_WORDS = ("allow", "from", "10.77.0.1", "port", "4505,4506", "to", "any", "port", "32768:60999", "proto", "tcp")


def test_the_salt_master_rule_names_the_minions_ports_too():
    assert ufw.rule_words(SALT_MASTER) == SALT_WORDS
    two = SALT_MASTER._replace(ports=(PortSpec(32768, 60999, "tcp"), PortSpec(61000, 61000, "tcp")))
    assert ufw.rule_words(two)[-3:] == ("32768:60999,61000", "proto", "tcp")
    without = SALT_MASTER._replace(ports=None)
    assert ufw.rule_words(without) == ("allow", "from", "10.77.0.1", "port", "4505,4506", "proto", "tcp")


UFW_PYTHON = "/usr/bin/python3"
# ufw's parser, then the tuple line ufw's backend writes for the rule (no firewall touched)
PARSE = """
import gettext, json, sys
gettext.install("ufw")
import ufw.frontend
lines = []
for words in json.load(sys.stdin):
    parsed = ufw.frontend.parse_command(["ufw", *words])
    rule = parsed.data["rule"]
    rule.normalize()
    lines.append("### tuple ### %s %s %s %s %s %s %s" % (
        rule.action, rule.protocol, rule.dport, rule.dst, rule.sport, rule.src, rule.direction))
print(json.dumps(lines))
"""


def ufw_tuple_lines(rules):
    out = subprocess.run(
        [UFW_PYTHON, "-c", PARSE], input=json.dumps(rules), capture_output=True, text=True, check=False, timeout=60
    )
    if out.returncode != 0 and "No module named 'ufw'" in out.stderr:
        pytest.skip("ufw's Python package is not installed")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_ufw_parses_the_salt_master_rule_and_reads_it_back_the_same():
    policy = policy_of(dict(SINGLE, ssh={"from": ["10.0.0.0/8"]}))
    rules = [SALT_WORDS, *(words for words in ufw.desired_rules(policy) if "Zimbra" not in words)]
    lines = ufw_tuple_lines([list(words) for words in rules])
    assert lines[0] == "### tuple ### allow tcp 32768:60999 0.0.0.0/0 4505,4506 10.77.0.1 in"
    assert [words for words, _ in ufw_files.rules_from_files(["\n".join(lines)])] == rules
