"""ufw's formats: profile text, multiport grouping, rules files, status and batch reports."""

import zimbra_fw_catalogue as catalogue
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
import zimbra_fw_ufw_files as ufw_files

SINGLE = {"roles": ["ldap", "mta", "proxy", "mailbox"], "trusted_subnets": ["192.168.1.0/24"]}


def policy_of(pillar):
    return policies.build(cfg.parse_config(pillar))


def test_profile_text_single_server():
    text = ufw.profile_text(policy_of(SINGLE))
    assert "[Zimbra]\n" in text
    assert "title=Zimbra Collaboration Server\n" in text
    assert text.endswith("ports=25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071/tcp\n")
    assert list(ufw_files.profile_file_ports(text)) == ["Zimbra"]


def test_groups_respect_the_multiport_limit():
    specs = [catalogue.PortSpec(p, p, "tcp") for p in range(1000, 1020)]
    specs += [catalogue.PortSpec(2000 + 10 * i, 2005 + 10 * i, "tcp") for i in range(3)]
    specs += [catalogue.PortSpec(514, 514, "udp")]
    groups = ufw_files.port_groups(specs)
    assert groups[-1] == "514/udp"
    for group in groups:
        entries = group.split("/")[0].split(",")
        assert sum(2 if ":" in e else 1 for e in entries) <= 15
    listed = [e for g in groups for e in g.split("/")[0].split(",")]
    assert len(listed) == len(specs)


def test_no_public_port_means_no_profile():
    policy = policy_of({"roles": ["ldap"], "trusted_subnets": ["10.0.0.0/8"]})
    assert ufw.profile_text(policy) is None
    assert ("allow", "Zimbra") not in ufw.desired_rules(policy)


def test_desired_rules_management_first():
    policy = policy_of(
        dict(SINGLE, trusted_subnets=["2001:DB8::/64", "192.168.1.0/24", "10.0.0.5"], ssh={"from": ["10.0.0.0/8"]})
    )
    assert ufw.desired_rules(policy) == [
        ("allow", "from", "10.0.0.0/8", "to", "any", "port", "22", "proto", "tcp"),
        ("allow", "from", "10.0.0.5"),
        ("allow", "from", "192.168.1.0/24"),
        ("allow", "from", "2001:db8::/64"),
        ("allow", "Zimbra"),
    ]


ZF = "7a696d6272615f6677"  # "zimbra_fw", hex as ufw stores comments
USER_RULES = f"""*filter
:ufw-user-input - [0:0]
### RULES ###

### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment={ZF}
-A ufw-user-input -p tcp --dport 22 -j ACCEPT

### tuple ### allow any any 0.0.0.0/0 any 192.168.1.0/24 in comment={ZF}
### tuple ### allow tcp 25,80,443 0.0.0.0/0 any 0.0.0.0/0 Zimbra - in comment={ZF}
### tuple ### allow tcp 25,389 0.0.0.0/0 any 10.1.0.5 Zimbra-mta - in comment={ZF}
### tuple ### allow udp 7026 0.0.0.0/0 any 10.1.0.5 Zimbra-mta - in comment={ZF}
### tuple ### allow any 8000 0.0.0.0/0 any 0.0.0.0/0 in
### tuple ### deny_log tcp 23 0.0.0.0/0 any 10.9.0.0/16 in_eth0 comment=736f6d656f6e6520656c7365
### tuple ### allow tcp 389 0.0.0.0/0 any 0.0.0.0/0 out
### tuple ### route:allow any any 10.0.0.0/8 any 0.0.0.0/0 in_eth0!out_eth1
### tuple ### limit tcp 22 0.0.0.0/0 any 0.0.0.0/0 My%20App - in
### tuple ### bad tuple
### END RULES ###
"""
USER6_RULES = f"""### tuple ### allow tcp 22 ::/0 any ::/0 in comment={ZF}
### tuple ### allow any any ::/0 any 2001:db8::1 in comment={ZF}
"""


def test_rules_from_files_as_ufw_show_added_lists_them():
    assert ufw_files.rules_from_files([USER_RULES, USER6_RULES]) == [
        (("allow", "22/tcp"), "zimbra_fw"),
        (("allow", "from", "192.168.1.0/24"), "zimbra_fw"),
        (("allow", "Zimbra"), "zimbra_fw"),
        (("allow", "from", "10.1.0.5", "to", "any", "app", "Zimbra-mta"), "zimbra_fw"),
        (("allow", "8000"), None),
        (("deny", "in", "on", "eth0", "log", "from", "10.9.0.0/16", "to", "any", "port", "23", "proto", "tcp"),
         "someone else"),
        (("allow", "out", "389/tcp"), None),
        (("route", "allow", "in", "on", "eth0", "out", "on", "eth1", "to", "10.0.0.0/8"), None),
        (("limit", "My App"), None),
        (("allow", "from", "2001:db8::1"), "zimbra_fw"),
    ]  # fmt: skip


def test_managed_and_other_rules():
    snapshot = ufw.Snapshot(ufw_files.rules_from_files([USER_RULES, USER6_RULES]), None, {}, None, None)
    managed, other = ufw.managed_rules(snapshot), ufw.other_rules(snapshot)
    assert managed == [
        ("allow", "22/tcp"),
        ("allow", "from", "192.168.1.0/24"),
        ("allow", "Zimbra"),
        ("allow", "from", "10.1.0.5", "to", "any", "app", "Zimbra-mta"),
        ("allow", "from", "2001:db8::1"),
    ]
    assert other[0] == ("allow", "8000")
    assert other[1][-2:] == ("comment", "someone else")


def test_no_rules_files():
    assert ufw_files.rules_from_files([None, ""]) == []


def test_parse_status():
    active = "Status: active\nLogging: off\nDefault: deny (incoming), allow (outgoing), disabled (routed)\n"
    assert ufw_files.parse_status(active) == (True, "deny")
    assert ufw_files.parse_status("Status: inactive\n") == (False, None)


def test_parse_defaults_file():
    assert ufw_files.parse_defaults_file('IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\n') == "deny"
    assert ufw_files.parse_defaults_file('DEFAULT_INPUT_POLICY="ACCEPT"\n') == "allow"
    assert ufw_files.parse_defaults_file("") is None


COMMANDS = [["allow", "22/tcp"], ["allow", "from", "10.0.0.0/8"], ["allow", "Zimbra"]]


def test_batch_outcome_all_applied():
    report = '{"done": 0}\n{"done": 1}\n{"done": 2}\n'
    assert ufw.batch_outcome(COMMANDS, report, 0) == (3, None)


def test_batch_outcome_names_the_failed_command():
    report = '{"done": 0}\n{"failed": 1, "error": "ERROR: Bad source address"}\n'
    assert ufw.batch_outcome(COMMANDS, report, 1) == (
        1,
        "'ufw allow from 10.0.0.0/8' failed: ERROR: Bad source address",
    )


def test_batch_outcome_of_a_crash_counts_what_was_reported():
    applied, error = ufw.batch_outcome(COMMANDS, '{"done": 0}\nnot json\n', -9, "Killed")
    assert applied == 1
    assert error == "'ufw allow from 10.0.0.0/8' failed: exit -9: Killed"


def test_batch_outcome_without_ufw_library_asks_for_one_by_one():
    assert ufw.batch_outcome(COMMANDS, '{"unavailable": "No module named ufw"}\n', 3) is None


def test_consecutive_ufw_steps_form_one_batch():
    steps = [
        ufw.Step("ufw", ("delete", "allow", "Old"), ""),
        ufw.Step("write", ("x",), ""),
        ufw.Step("ufw", ("app", "update", "A"), ""),
        ufw.Step("ufw", ("app", "update", "B"), ""),
        ufw.Step("check", (), ""),
        ufw.Step("ufw", ("--force", "enable"), ""),
    ]
    assert [len(batch) for batch in ufw.step_batches(steps)] == [1, 1, 2, 1, 1]
    assert [step for batch in ufw.step_batches(steps) for step in batch] == steps


def test_ufw_python_from_the_programs_first_line(tmp_path):
    python = tmp_path / "python3"
    python.write_text("")
    python.chmod(0o755)
    program = tmp_path / "ufw"
    program.write_text(f"#! {python}\nimport ufw\n")
    assert ufw.ufw_python(str(program)) == str(python)
    program.write_text("#!/bin/sh\nexec true\n")
    assert ufw.ufw_python(str(program)) is None
    assert ufw.ufw_python(str(tmp_path / "missing")) is None
    assert ufw.ufw_python(None) is None


def test_batch_outcome_edges():
    # nothing reported, no stderr: the first command is the one that failed
    assert ufw.batch_outcome(COMMANDS, "", 1) == (0, "'ufw allow 22/tcp' failed: exit 1: ")
    assert ufw.batch_outcome(COMMANDS, "", 1, None) == (0, "'ufw allow 22/tcp' failed: exit 1: ")
    # a line that is not JSON does not hide the lines after it
    report = 'ufw says hello\n{"done": 0}\n{"done": 1}\n{"done": 2}\n'
    assert ufw.batch_outcome(COMMANDS, report, 0) == (3, None)
