"""Situations the other sandbox tests never reach, against real ufw: an ACCEPT
default policy, a management rule deleted by hand, ssh on another port, a
hand-added rule the formula adopts, the audit port by port, and UDP."""

import os

from harness.sandbox import SALT_CALL

INTERNAL = [389, 7025, 7306, 11211]


def changes(results):
    return {state: result["changes"] for state, result in results.items() if result["changes"]}


def succeeded(results):
    return all(result["result"] is True for result in results.values())


def set_default_input_policy(minion, policy):
    path = os.path.join(minion.state, "default-ufw")
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    lines = [f'DEFAULT_INPUT_POLICY="{policy}"' if line.startswith("DEFAULT_INPUT_POLICY=") else line for line in lines]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def test_an_accept_default_policy_becomes_deny(lab, example_pillar):
    set_default_input_policy(lab.minion, "ACCEPT")
    lab.minion.set_pillar(example_pillar)
    results = lab.minion.apply()
    assert succeeded(results), results
    assert results["zimbra_fw-firewall"]["changes"] == {
        "default incoming": {"old": "allow", "new": "deny"},
        "active": {"old": False, "new": True},
    }
    assert "Default: deny (incoming)" in lab.minion.ufw("status", "verbose").stdout
    lab.minion.listen([22, 25, *INTERNAL])
    assert lab.internet.probe(lab.MINION_INTERNET, [22, 25, *INTERNAL]) == {
        22: True,
        25: True,
        **{port: False for port in INTERNAL},
    }
    assert changes(lab.minion.apply()) == {}


def test_enabling_is_refused_after_the_ssh_rule_was_deleted_by_hand(lab, example_pillar):
    lab.minion.set_pillar(example_pillar)
    for part in ("profile", "rules"):
        _, code = lab.minion.salt_call("zimbra_fw.converge", f"part={part}")
        assert code == 0
    lab.minion.ufw("delete", "allow", "22/tcp")
    out = lab.minion.guarded(
        [SALT_CALL, "--local", "-c", lab.minion.config_dir, "zimbra_fw.converge", "part=firewall"], check=False
    )
    assert out.returncode != 0
    assert "refusing to enable default-deny: management access is not allowed yet (missing: allow 22/tcp)" in (
        out.stdout + out.stderr
    )
    assert "Status: inactive" in lab.minion.ufw("status").stdout


def test_ssh_on_another_port_is_the_one_kept_open(lab, example_pillar):
    lab.minion.set_pillar(dict(example_pillar, ssh={"port": 2222, "from": ["any"]}))
    results = lab.minion.apply()
    assert succeeded(results), results
    assert results["zimbra_fw-rules"]["changes"]["added"][0] == "allow 2222/tcp"
    lab.minion.listen([22, 2222])
    assert lab.internet.probe(lab.MINION_INTERNET, [22, 2222]) == {22: False, 2222: True}
    assert lab.lan.probe(lab.MINION_LAN, [22, 2222]) == {22: True, 2222: True}  # the LAN is trusted


def test_a_hand_added_identical_rule_is_adopted(lab, example_pillar):
    lab.minion.ufw("allow", "22/tcp")
    lab.minion.set_pillar(example_pillar)
    results = lab.minion.apply()
    assert succeeded(results), results
    rules = lab.minion.show_added()
    assert [rule for rule in rules if rule[0] == ("allow", "22/tcp")] == [(("allow", "22/tcp"), "zimbra_fw")]
    assert len(rules) == 3
    assert changes(lab.minion.apply()) == {}


def test_audit_finds_each_exposure_at_its_severity(lab, example_pillar):
    lab.minion.set_pillar(dict(example_pillar, trusted_subnets=[]))
    assert succeeded(lab.minion.apply())
    lab.minion.ufw("allow", "7306/tcp")  # the mailbox's MySQL, opened by hand
    lab.minion.ufw("allow", "9999/tcp")  # something that is not Zimbra's
    lab.minion.listen([22, 25, 389, 7171, 7306, 9998, 9999])
    report, code = lab.minion.salt_call("--retcode-passthrough", "zimbra_fw.audit")
    assert code == 2
    assert lab.minion.salt_call("zimbra_fw.audit")[1] == 1  # salt-call's own exit code for any job retcode
    assert [(f["severity"], f["port"]) for f in report["findings"]] == [
        ("critical", "7306/tcp"),
        ("medium", "9999/tcp"),
        ("low", "9998/tcp"),
        ("info", "7171/tcp"),
    ]
    assert report["summary"] == {"critical": 1, "high": 0, "medium": 1, "low": 1, "info": 1}
    reach = {entry["port"]: (entry["expected"], entry["reachable_from"]) for entry in report["ports"]}
    assert reach["22/tcp"] == ("management", "anyone")
    assert reach["25/tcp"] == ("public", "anyone")
    assert reach["389/tcp"] == ("cluster", "nobody")
    assert reach["7171/tcp"] == ("localhost", "nobody")
    assert reach["9998/tcp"] == ("unknown", "nobody")
    # What the audit says is what a connection finds.
    probed = lab.internet.probe(lab.MINION_INTERNET, [25, 389, 7306, 9998, 9999])
    assert probed == {25: True, 389: False, 7306: True, 9998: False, 9999: True}


def test_udp_reaches_a_logger_from_the_lan_only_and_a_published_udp_port_from_anyone(lab):
    lab.minion.set_pillar({"roles": ["logger"], "trusted_subnets": ["192.168.1.0/24"]})
    assert succeeded(lab.minion.apply())
    lab.minion.listen(["514/udp", "1194/udp"])
    assert lab.lan.probe(lab.MINION_LAN, ["514/udp"]) == {"514/udp": True}
    assert lab.internet.probe(lab.MINION_INTERNET, ["514/udp", "1194/udp"]) == {"514/udp": False, "1194/udp": False}
    # syslog is a cluster port: publishing it is refused and changes nothing
    lab.minion.set_pillar({"roles": ["logger"], "trusted_subnets": ["192.168.1.0/24"], "extra_ports": ["514/udp"]})
    refused = lab.minion.apply()
    assert refused["zimbra_fw-pillar"]["result"] is False and changes(refused) == {}
    assert "extra_ports: '514/udp' would publish 514/udp" in refused["zimbra_fw-pillar"]["comment"]
    lab.minion.set_pillar({"roles": ["logger"], "trusted_subnets": ["192.168.1.0/24"], "extra_ports": ["1194/udp"]})
    results = lab.minion.apply()
    assert results["zimbra_fw-rules"]["changes"] == {"added": ["allow Zimbra"]}
    assert lab.internet.probe(lab.MINION_INTERNET, ["514/udp", "1194/udp"]) == {"514/udp": False, "1194/udp": True}


def test_only_from_keeps_smtp_to_the_gateway_and_submission_open(lab, example_pillar):
    pillar = dict(example_pillar, trusted_subnets=[], only_from={"25": ["192.168.1.10"]})
    lab.minion.set_pillar(pillar)
    results = lab.minion.apply()
    assert succeeded(results), results
    assert "allow from 192.168.1.10 to any port 25 proto tcp" in results["zimbra_fw-rules"]["changes"]["added"]
    lab.minion.listen([25, 587])
    assert lab.internet.probe(lab.MINION_INTERNET, [25, 587]) == {25: False, 587: True}
    assert lab.lan.probe(lab.MINION_LAN, [25, 587]) == {25: True, 587: True}  # the mail gateway
    assert lab.minion.salt("zimbra_fw.open_ports")["only_from"] == {"25/tcp": ["192.168.1.10/32"]}
    assert changes(lab.minion.apply()) == {}


def test_ssh_limit_refuses_a_burst_and_lets_a_normal_login_in(lab, example_pillar):
    lab.minion.set_pillar(dict(example_pillar, ssh={"limit": True}))
    results = lab.minion.apply()
    assert succeeded(results), results
    assert results["zimbra_fw-rules"]["changes"]["added"][0] == "limit 22/tcp"
    lab.minion.listen([22])
    burst = lab.internet.probe_repeatedly(lab.MINION_INTERNET, 22, 10)
    assert burst == [True] * 5 + [False] * 5, burst  # ufw: the 6th connection within 30 s is refused
    assert lab.lan.probe(lab.MINION_LAN, [22]) == {22: True}  # anyone else still logs in


def rule_number(minion, text, v6=False):
    """The number ``ufw status numbered`` gives the rule whose line starts with ``text`` (IPv4 or IPv6 copy)."""
    for line in minion.ufw("status", "numbered").stdout.splitlines():
        number, _, rest = line.partition("]")
        if number.startswith("[") and rest.strip().startswith(text) and ("(v6)" in rest) == v6:
            return number[1:].strip()
    raise AssertionError(f"no rule {text!r} (v6={v6}) in ufw status numbered")


def test_an_ipv4_copy_deleted_by_hand_is_added_back_and_the_next_run_is_a_no_op(lab, example_pillar):
    lab.minion.set_pillar(example_pillar)
    assert succeeded(lab.minion.apply())
    lab.minion.ufw("--force", "delete", rule_number(lab.minion, "Zimbra "))
    lab.minion.listen([25])
    assert lab.internet.probe(lab.MINION_INTERNET, [25]) == {25: False}
    assert lab.internet.probe(lab.MINION_INTERNET6, [25]) == {25: True}
    results = lab.minion.apply()
    assert succeeded(results), results
    assert changes(results) == {"zimbra_fw-rules": {"added": ["allow Zimbra (IPv4)"]}}
    assert lab.internet.probe(lab.MINION_INTERNET, [25]) == {25: True}
    assert lab.internet.probe(lab.MINION_INTERNET6, [25]) == {25: True}
    assert changes(lab.minion.apply()) == {}
    added = lab.minion.show_added()
    assert added.count((("allow", "Zimbra"), "zimbra_fw")) == 1


def test_enabling_is_refused_while_the_ipv4_ssh_copy_is_missing(lab, example_pillar):
    lab.minion.set_pillar(example_pillar)
    assert succeeded(lab.minion.apply())
    lab.minion.ufw("--force", "delete", rule_number(lab.minion, "22/tcp "))
    lab.minion.ufw("disable")
    out = lab.minion.guarded(
        [SALT_CALL, "--local", "-c", lab.minion.config_dir, "zimbra_fw.converge", "part=firewall"], check=False
    )
    assert out.returncode != 0
    assert "management access is not allowed yet (missing: allow 22/tcp (IPv4))" in out.stdout + out.stderr
    assert "Status: inactive" in lab.minion.ufw("status").stdout
    results = lab.minion.apply()
    assert succeeded(results), results
    assert results["zimbra_fw-rules"]["changes"] == {"added": ["allow 22/tcp (IPv4)"]}
    lab.minion.listen([22])
    assert lab.internet.probe(lab.MINION_INTERNET, [22]) == {22: True}
    assert changes(lab.minion.apply()) == {}


def test_an_app_rule_opening_more_than_its_profile_is_updated(lab, example_pillar):
    """``ufw app update`` failed after the profile file was written: the file
    is right, the live rule still opens a port the profile no longer has."""
    lab.minion.set_pillar(example_pillar)
    assert succeeded(lab.minion.apply())
    profile = os.path.join(lab.minion.state, "etc-ufw", "applications.d", "zimbra")
    with open(profile, encoding="utf-8") as handle:
        wanted = handle.read()
    with open(profile, "w", encoding="utf-8") as handle:
        handle.write(wanted.replace(",9071/tcp", ",9071,8888/tcp"))
    lab.minion.ufw("app", "update", "Zimbra")
    with open(profile, "w", encoding="utf-8") as handle:
        handle.write(wanted)
    lab.minion.listen([25, 8888])
    assert lab.internet.probe(lab.MINION_INTERNET, [25, 8888]) == {25: True, 8888: True}
    report = lab.minion.salt("zimbra_fw.audit")
    assert {entry["port"]: entry["reachable_from"] for entry in report["ports"]}["8888/tcp"] == "anyone"
    results = lab.minion.apply()
    assert succeeded(results), results
    updated = results["zimbra_fw-profile"]["changes"]["rules updated"]
    assert sorted(updated) == ["allow Zimbra (IPv4)", "allow Zimbra (IPv6)"]
    assert updated["allow Zimbra (IPv4)"]["old"].endswith(",8888,9071/tcp")
    assert lab.internet.probe(lab.MINION_INTERNET, [25, 8888]) == {25: True, 8888: False}
    assert lab.internet.probe(lab.MINION_INTERNET6, [25, 8888]) == {25: True, 8888: False}
    assert changes(lab.minion.apply()) == {}


def test_enabling_is_refused_when_one_of_two_ssh_sources_lost_its_rule(lab, example_pillar):
    lab.minion.set_pillar(dict(example_pillar, ssh={"from": ["192.168.1.0/24", "203.0.113.0/24"]}))
    for part in ("profile", "rules"):
        _, code = lab.minion.salt_call("zimbra_fw.converge", f"part={part}")
        assert code == 0
    ssh = [words for words, _ in lab.minion.show_added() if words[-3:] == ("22", "proto", "tcp")]
    assert ssh == [
        ("allow", "from", "192.168.1.0/24", "to", "any", "port", "22", "proto", "tcp"),
        ("allow", "from", "203.0.113.0/24", "to", "any", "port", "22", "proto", "tcp"),
    ]
    lab.minion.ufw("delete", *ssh[1])
    out = lab.minion.guarded(
        [SALT_CALL, "--local", "-c", lab.minion.config_dir, "zimbra_fw.converge", "part=firewall"], check=False
    )
    assert out.returncode != 0
    assert "(missing: allow from 203.0.113.0/24 to any port 22 proto tcp)" in out.stdout + out.stderr
    assert "Status: inactive" in lab.minion.ufw("status").stdout


def test_running_or_not_is_decided_as_ufw_status_decides_in_states_made_by_hand(lab, example_pillar):
    minion = lab.minion
    minion.set_pillar(example_pillar)
    assert succeeded(minion.apply())
    assert minion.salt("zimbra_fw.status")["active"] is True
    # By hand: the user chain stays loaded, nothing jumps to it; ufw still says active.
    jump = ["ufw-before-input", "-j", "ufw-user-input"]
    minion.guarded(["iptables", "-D", *jump])
    assert minion.guarded(["iptables", "-C", *jump], check=False).returncode != 0
    assert "Status: active" in minion.ufw("status").stdout
    assert minion.salt("zimbra_fw.status")["active"] is True
    minion.ufw("disable")
    # A rule whose comment spells the jump out (a listing of the chain shows it) is no jump.
    minion.guarded(["iptables", "-N", "ufw-before-input"], check=False)
    spelled = "x\n-A ufw-before-input -j ufw-user-input\n"
    minion.guarded(["iptables", "-A", "ufw-before-input", "-m", "comment", "--comment", spelled, "-j", "RETURN"])
    assert "Status: inactive" in minion.ufw("status").stdout
    assert minion.salt("zimbra_fw.status")["active"] is False
