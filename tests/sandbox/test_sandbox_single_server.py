"""The formula on one sandboxed server, against real ufw and iptables.

Each test gets its own minion network namespace with a private /etc/ufw and
/etc/default/ufw, plus "lan" (192.168.1.10, trusted) and "internet"
(203.0.113.10) clients; probes are real TCP connections.
"""

import concurrent.futures
import copy
import json
import os

import pytest

from harness.sandbox import SALT_CALL, Lab

PUBLIC = [25, 80, 110, 143, 443, 465, 587, 993, 995, 3443, 5222, 5223, 7071, 9071]
INTERNAL = [389, 636, 3310, 7025, 7072, 7171, 7306, 8080, 8443, 10024, 11211, 23232]
MANAGEMENT = [22]


def changes(results):
    return {state: result["changes"] for state, result in results.items() if result["changes"]}


def all_succeeded(results):
    return all(result["result"] is True for result in results.values())


@pytest.fixture
def converged(lab, example_pillar):
    lab.minion.set_pillar(example_pillar)
    results = lab.minion.apply()
    assert all_succeeded(results), results
    return lab, results


@pytest.fixture(scope="module")
def shared_lab(example_pillar):
    """One server converged to pillar.example, shared by the tests that change
    nothing on it (see ``unchanged``)."""
    with Lab() as lab:
        lab.minion.sync()
        lab.minion.set_pillar(example_pillar)
        assert all_succeeded(lab.minion.apply())
        yield lab


@pytest.fixture
def unchanged(shared_lab, example_pillar):
    """The shared converged server; afterwards its pillar is put back and its
    firewall must be byte for byte what it was before the test."""
    before = shared_lab.minion.snapshot()
    yield shared_lab
    shared_lab.minion.set_pillar(example_pillar)
    assert shared_lab.minion.snapshot() == before


def test_first_apply_opens_exactly_the_whitelist(converged):
    lab, results = converged
    assert results["zimbra_fw-rules"]["changes"] == {
        "added": ["allow 22/tcp", "allow from 192.168.1.0/24", "allow Zimbra"]
    }
    assert results["zimbra_fw-firewall"]["changes"]["active"] == {"old": False, "new": True}
    ports = PUBLIC + INTERNAL + MANAGEMENT
    lab.minion.listen(ports)
    from_internet = lab.internet.probe(lab.MINION_INTERNET, ports)
    from_lan = lab.lan.probe(lab.MINION_LAN, ports)
    assert [p for p in PUBLIC + MANAGEMENT if not from_internet[p]] == []
    assert [p for p in INTERNAL if from_internet[p]] == []
    assert [p for p in ports if not from_lan[p]] == []


def test_second_apply_changes_nothing_and_starts_no_ufw(unchanged):
    lab = unchanged
    before = lab.minion.snapshot()
    lab.minion.reset_ufw_counts()
    results = lab.minion.apply()
    assert all_succeeded(results)
    assert changes(results) == {}
    assert lab.minion.ufw_processes() == []  # the live state comes from iptables, as ufw status reads it
    assert lab.minion.snapshot() == before


def test_test_mode_on_a_fresh_server_changes_nothing(lab, example_pillar):
    lab.minion.set_pillar(example_pillar)
    before = lab.minion.snapshot()
    results = lab.minion.apply(test=True)
    assert lab.minion.snapshot() == before
    for state in ("zimbra_fw-profile", "zimbra_fw-rules", "zimbra_fw-firewall"):
        assert results[state]["result"] is None, results[state]
    assert results["zimbra_fw-rules"]["changes"]["added"] == [
        "allow 22/tcp",
        "allow from 192.168.1.0/24",
        "allow Zimbra",
    ]
    # What test mode announced is what a real run then does.
    applied = lab.minion.apply()
    for state in ("zimbra_fw-profile", "zimbra_fw-rules", "zimbra_fw-firewall"):
        assert applied[state]["changes"] == results[state]["changes"]


def test_test_mode_on_a_converged_server_reports_pending_pillar_change(unchanged, example_pillar):
    lab = unchanged
    pillar = copy.deepcopy(example_pillar)
    pillar["trusted_subnets"] = ["192.168.2.0/24"]
    lab.minion.set_pillar(pillar)
    before = lab.minion.snapshot()
    results = lab.minion.apply(test=True)
    assert lab.minion.snapshot() == before
    assert results["zimbra_fw-rules"]["result"] is None
    assert results["zimbra_fw-rules"]["changes"] == {
        "added": ["allow from 192.168.2.0/24"],
        "removed": ["allow from 192.168.1.0/24"],
    }
    assert results["zimbra_fw-firewall"]["result"] is True


def test_pillar_change_removes_only_stale_managed_rules(converged, example_pillar):
    lab, _ = converged
    lab.minion.ufw("allow", "from", "192.168.1.0/24", "to", "any", "port", "7777", "proto", "tcp")
    pillar = copy.deepcopy(example_pillar)
    pillar["trusted_subnets"] = []
    lab.minion.set_pillar(pillar)
    results = lab.minion.apply()
    assert results["zimbra_fw-rules"]["changes"] == {"removed": ["allow from 192.168.1.0/24"]}
    status = lab.minion.salt("zimbra_fw.status")
    assert status["managed_rules"] == ["allow 22/tcp", "allow Zimbra"]
    assert status["other_rules"] == ["allow from 192.168.1.0/24 to any port 7777 proto tcp"]
    lab.minion.listen([389, 443, 7777])
    assert lab.lan.probe(lab.MINION_LAN, [389, 443, 7777]) == {389: False, 443: True, 7777: True}


def test_changed_ports_update_the_live_rules(converged, example_pillar):
    lab, _ = converged
    pillar = copy.deepcopy(example_pillar)
    pillar["extra_ports"] = [8448]
    pillar["exclude_ports"] = [5222, 5223]
    lab.minion.set_pillar(pillar)
    results = lab.minion.apply()
    assert results["zimbra_fw-profile"]["changes"]["ports"]["Zimbra"] == {
        "old": "25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071/tcp",
        "new": "25,80,110,143,443,465,587,993,995,3443,7071,8448,9071/tcp",
    }
    assert changes(results).keys() == {"zimbra_fw-profile"}
    lab.minion.listen([5222, 5223, 8448])
    assert lab.internet.probe(lab.MINION_INTERNET, [5222, 5223, 8448]) == {5222: False, 5223: False, 8448: True}
    assert changes(lab.minion.apply()) == {}


def test_ipv6_trusted_subnet_and_restricted_ssh(lab, example_pillar):
    pillar = copy.deepcopy(example_pillar)
    pillar["trusted_subnets"] = ["192.168.1.0/24", "2001:db8:1::/64"]
    pillar["ssh"] = {"port": 22, "from": ["192.168.1.0/24"]}
    lab.minion.set_pillar(pillar)
    results = lab.minion.apply()
    assert all_succeeded(results), results
    assert results["zimbra_fw-rules"]["changes"]["added"] == [
        "allow from 192.168.1.0/24 to any port 22 proto tcp",
        "allow from 192.168.1.0/24",
        "allow from 2001:db8:1::/64",
        "allow Zimbra",
    ]
    assert changes(lab.minion.apply()) == {}
    lab.minion.listen([22, 25])
    assert lab.internet.probe(lab.MINION_INTERNET, [22, 25]) == {22: False, 25: True}
    assert lab.lan.probe(lab.MINION_LAN, [22]) == {22: True}


def test_ipv6_subnet_with_ufw_ipv6_off_fails_before_any_change(lab, example_pillar):
    defaults = os.path.join(lab.minion.state, "default-ufw")
    with open(defaults, encoding="utf-8") as handle:
        text = handle.read()
    with open(defaults, "w", encoding="utf-8") as handle:
        handle.write(text.replace("IPV6=yes", "IPV6=no"))
    lab.minion.set_pillar(dict(example_pillar, trusted_subnets=["192.168.1.0/24", "2001:db8:1::/64"]))
    before = lab.minion.snapshot()
    results = lab.minion.apply()
    assert lab.minion.snapshot() == before
    comment = results["zimbra_fw-pillar"]["comment"]
    assert "zimbra_fw:trusted_subnets: '2001:db8:1::/64' is IPv6, but ufw has IPv6 off" in comment, comment
    assert changes(results) == {}


def test_enabled_false_leaves_ufw_alone(lab, example_pillar):
    pillar = dict(example_pillar, enabled=False)
    lab.minion.set_pillar(pillar)
    results = lab.minion.apply()
    assert all_succeeded(results), results
    assert "left alone" in results["zimbra_fw-firewall"]["comment"]
    assert "Status: inactive" in lab.minion.ufw("status").stdout
    assert lab.minion.salt("zimbra_fw.status")["managed_rules"] == [
        "allow 22/tcp",
        "allow from 192.168.1.0/24",
        "allow Zimbra",
    ]


# Every message is checked word for word by the unit tests (test_config*.py);
# these show, end to end, that a refused pillar stops the run before anything.
BAD_PILLARS = [
    ("roles", {"roles": ["ldap", "webserver"]}, "roles[1]: 'webserver'"),
    ("trusted_subnets", {"trusted_subnets": ["0.0.0.0/0"]}, "trusted_subnets[0]: '0.0.0.0/0'"),
    ("extra_ports", {"extra_ports": [11211]}, "extra_ports: '11211/tcp'"),
    ("profile", {"profile": {"name": "Zimbra'; reboot #"}}, "profile:name"),
]


@pytest.mark.parametrize("key, bad, named", BAD_PILLARS, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_PILLARS)])
def test_bad_pillar_fails_and_changes_nothing(unchanged, example_pillar, key, bad, named):
    lab = unchanged
    pillar = dict(copy.deepcopy(example_pillar), **bad)
    pillar["trusted_subnets"] = bad.get("trusted_subnets", ["192.168.2.0/24"])  # also a pending change
    lab.minion.set_pillar(pillar)
    before = lab.minion.snapshot()
    results = lab.minion.apply()
    assert lab.minion.snapshot() == before
    check = results["zimbra_fw-pillar"]
    assert check["result"] is False and named in check["comment"], check["comment"]
    # Nothing after the check runs, not even the package install.
    for state in ("zimbra_fw-installed", "zimbra_fw-profile", "zimbra_fw-rules", "zimbra_fw-firewall"):
        assert results[state]["result"] is False
        assert results[state]["comment"].startswith("One or more requisite failed"), results[state]
    assert changes(results) == {}


def test_bad_pillar_on_a_fresh_server_leaves_it_untouched(lab, example_pillar):
    lab.minion.set_pillar(dict(example_pillar, trusted_subnets=["any"]))
    before = lab.minion.snapshot()
    results = lab.minion.apply()
    assert lab.minion.snapshot() == before
    assert "trusted_subnets[0]: 'any'" in results["zimbra_fw-pillar"]["comment"]
    assert "Status: inactive" in lab.minion.ufw("status").stdout


def test_roles_without_public_ports_write_no_profile(lab):
    lab.minion.set_pillar({"roles": ["ldap"], "trusted_subnets": ["192.168.1.0/24"]})
    results = lab.minion.apply()
    assert all_succeeded(results), results
    assert results["zimbra_fw-rules"]["changes"] == {"added": ["allow 22/tcp", "allow from 192.168.1.0/24"]}
    lab.minion.listen([389])
    assert lab.internet.probe(lab.MINION_INTERNET, [389]) == {389: False}
    assert lab.lan.probe(lab.MINION_LAN, [389]) == {389: True}


def test_role_change_retires_the_profile_and_its_rule(converged):
    lab, _ = converged
    lab.minion.set_pillar({"roles": ["ldap"], "trusted_subnets": ["192.168.1.0/24"]})
    results = lab.minion.apply()
    assert all_succeeded(results), results
    assert results["zimbra_fw-profile"]["changes"]["rules removed"] == ["allow Zimbra"]
    assert lab.minion.salt("zimbra_fw.status")["managed_rules"] == ["allow 22/tcp", "allow from 192.168.1.0/24"]
    assert changes(lab.minion.apply()) == {}


def test_execution_module_functions(unchanged):
    lab = unchanged
    minion = lab.minion
    assert minion.salt("zimbra_fw.open_ports")["public"] == [f"{p}/tcp" for p in PUBLIC]
    profile = minion.salt("zimbra_fw.profile")
    assert profile["profiles"] == {"Zimbra": "25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071/tcp"}
    assert profile["text"] == minion.guarded(["cat", "/etc/ufw/applications.d/zimbra"]).stdout
    plan = minion.salt("zimbra_fw.plan")
    assert {part: plan[part]["changes"] for part in plan} == {"profile": {}, "rules": {}, "firewall": {}}
    assert any(row["port"] == 11211 for row in minion.salt("zimbra_fw.catalogue"))
    info = minion.guarded(["ufw", "app", "info", "Zimbra"]).stdout
    assert "Zimbra Collaboration Server" in info and "9071/tcp" in info


def test_audit_reports_hand_opened_memcached_as_critical(converged):
    lab, _ = converged
    lab.minion.listen([22, 25, 389, 11211])
    report, code = lab.minion.salt_call("zimbra_fw.audit")
    assert code == 0, report
    assert report["summary"]["critical"] == 0
    ports = {entry["port"]: entry for entry in report["ports"]}
    assert ports["389/tcp"]["reachable_from"] == ["192.168.1.0/24"]
    assert ports["25/tcp"]["reachable_from"] == "anyone" and ports["25/tcp"]["expected"] == "public"
    lab.minion.ufw("allow", "11211")
    assert lab.internet.probe(lab.MINION_INTERNET, [11211]) == {11211: True}
    report, code = lab.minion.salt_call("zimbra_fw.audit")
    assert code != 0
    assert report["findings"][0]["severity"] == "critical"
    assert report["findings"][0]["port"] == "11211/tcp"
    text = lab.minion.salt_text("zimbra_fw.audit")
    assert "CRITICAL 11211/tcp: memcached (no authentication) is reachable from anyone" in text


def test_pillar_peer_and_admin_subnet(lab):
    lab.minion.set_pillar(
        {
            "roles": ["mailbox"],
            "admin_subnets": ["203.0.113.0/24"],
            "cluster": {"peers": [{"name": "mta1", "addresses": ["192.168.1.10"], "roles": ["mta"]}]},
        }
    )
    results = lab.minion.apply()
    assert all_succeeded(results), results
    assert results["zimbra_fw-rules"]["changes"]["added"] == [
        "allow 22/tcp",
        "allow from 203.0.113.0/24 to any app Zimbra-admin",
        "allow from 192.168.1.10 to any app Zimbra-mta",
        "allow Zimbra",
    ]
    assert changes(lab.minion.apply()) == {}
    ports = [443, 7025, 7071, 8080]
    lab.minion.listen(ports)
    # The LAN client is the MTA peer: LMTP and admin SOAP (spam training) yes, the HTTP backend no.
    assert lab.lan.probe(lab.MINION_LAN, ports) == {443: True, 7025: True, 7071: True, 8080: False}
    # The "internet" side is the admin subnet here: the console yes, LMTP no.
    assert lab.internet.probe(lab.MINION_INTERNET, ports) == {443: True, 7025: False, 7071: True, 8080: False}


EXPOSED = ["audit", "catalogue", "confirm", "converge", "drift", "identity", "open_ports", "plan", "prepare", "profile"]
EXPOSED += ["status"]


def test_only_user_functions_are_published(unchanged):
    lab = unchanged
    assert lab.minion.salt("sys.list_functions", "zimbra_fw") == [f"zimbra_fw.{name}" for name in EXPOSED]


def crafted_calls(target):
    """Calls that would write ``target`` or switch ufw off, if any function took a plan, path or command."""
    write = json.dumps({"steps": [{"write": target, "text": "x"}]})
    return [
        ("zimbra_fw.apply", write),
        ("zimbra_fw.apply", '{"steps": [{"ufw": ["disable"]}]}'),
        ("zimbra_fw.plan", write),
        ("zimbra_fw.plan", f"part={target}"),
        ("zimbra_fw.converge", "part=disable"),
        ("zimbra_fw.converge", 'part={"ufw": ["disable"]}'),
        ("zimbra_fw.profile", f"path={target}"),
        ("zimbra_fw.status", "disable"),
        ("zimbra_fw.audit", target),
        ("zimbra_fw.open_ports", "steps=[{ufw: [disable]}]"),
    ]


def test_crafted_plans_paths_and_commands_change_nothing(unchanged):
    lab = unchanged
    target = os.path.join(lab.minion.state, "crafted")  # inside the sandbox's own directory
    before = lab.minion.snapshot()
    calls = crafted_calls(target)

    def call(function_argument):  # each its own salt-call, all refused: side by side
        return lab.minion.guarded([SALT_CALL, "--local", "-c", lab.minion.config_dir, *function_argument], check=False)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(pool.map(call, calls))
    for (function, argument), out in zip(calls, outs, strict=True):
        assert out.returncode != 0, (function, argument, out.stdout)
    assert lab.minion.snapshot() == before
    assert not os.path.exists(target)
    assert "Status: active" in lab.minion.ufw("status").stdout


def test_a_verified_noop_is_recorded_and_the_firewall_changed_behind_it_is_mended(converged):
    """The second run like a verified no-op takes its word from the record;
    a rule deleted by hand, or ufw stopped, is still seen and mended."""
    lab, _ = converged
    cache = os.path.join(lab.minion.state, "salt-root", "var", "cache", "salt", "minion")
    record = os.path.join(cache, "zimbra_fw", "noop.json")
    verified = lab.minion.apply()  # planned in full: nothing to change, recorded
    assert all_succeeded(verified) and changes(verified) == {}
    written = os.stat(record)
    assert written.st_mode & 0o777 == 0o600
    lab.minion.reset_ufw_counts()
    again = lab.minion.apply()
    assert {state: result["comment"] for state, result in again.items()} == {
        state: result["comment"] for state, result in verified.items()
    }
    assert all_succeeded(again) and changes(again) == {} and lab.minion.ufw_processes() == []
    assert os.stat(record).st_ino == written.st_ino  # from the record: not planned, not written again
    lab.minion.listen([389])
    lab.minion.ufw("delete", "allow", "from", "192.168.1.0/24")
    assert lab.lan.probe(lab.MINION_LAN, [389]) == {389: False}
    mended = lab.minion.apply()
    assert mended["zimbra_fw-rules"]["changes"] == {"added": ["allow from 192.168.1.0/24"]}
    assert lab.lan.probe(lab.MINION_LAN, [389]) == {389: True}
    lab.minion.apply()  # verified again, recorded
    lab.minion.ufw("disable")
    enabled = lab.minion.apply()
    assert enabled["zimbra_fw-firewall"]["changes"]["active"] == {"old": False, "new": True}
    assert lab.internet.probe(lab.MINION_INTERNET, [389]) == {389: False}
