"""The formula with ``backend: firewalld``, against a real firewalld (nftables)
running in the sandbox with its own system bus: probes over IPv4 and IPv6,
after a ``firewall-cmd --reload`` too, runtime drift, only ours, bad input."""

import concurrent.futures
import copy
import fcntl
import json
import os
import sys
import time

import pytest

from harness.sandbox import SALT_CALL, Lab

PUBLIC = [25, 80, 110, 143, 443, 465, 587, 993, 995, 3443, 5222, 5223, 7071, 9071]
INTERNAL = [389, 636, 3310, 7025, 7072, 7171, 7306, 8080, 8443, 10024, 11211, 23232]
TRUSTED_RULE = 'rule priority="32000" family="ipv4" source address="192.168.1.0/24" accept'
SSH_RULE = 'rule priority="32000" port port="22" protocol="tcp" accept'
# A rule that is not ours, in the runtime only: a reload would drop it.
RUNTIME_MARK = 'rule family="ipv4" source address="198.51.100.99" port port="2" protocol="tcp" accept'


@pytest.fixture
def fw_lab():
    with Lab(firewalld=True) as lab:
        lab.minion.sync()
        yield lab


@pytest.fixture
def pillar(example_pillar):
    return dict(
        copy.deepcopy(example_pillar), backend="firewalld", trusted_subnets=["192.168.1.0/24", "2001:db8:1::/64"]
    )


def firewall_cmd(minion, *args, check=True):
    return minion.guarded(["firewall-cmd", *args], check=check).stdout


UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "_utils")
READ = """
import json, sys
sys.path.insert(0, {utils!r})
import zimbra_fw_firewalld_read as reader
{connect}
print(json.dumps(reader.read(firewalld, None, ["zimbra", "zimbra-mta", "ssh", "nothing"])))
"""
OURS = "import zimbra_fw_dbus\nfirewalld = reader.Firewalld(zimbra_fw_dbus.SystemBus())"
DBUS_PYTHON = """import dbus
class Firewalld:
    def __init__(self, bus):
        self.bus = bus
    def _method(self, path, interface, method):
        return self.bus.get_object(reader.BUS_NAME, path, introspect=False).get_dbus_method(method, interface)
    def running(self):
        return True  # the test starts firewalld
    def runtime(self, interface, method, *args):
        return self._method(reader.PATH, reader.BUS_NAME + interface, method)(*args)
    def zone_settings(self, zone, scope):
        if scope == "runtime":
            return self.runtime(".zone", "getZoneSettings2", zone)
        path = self._method(reader.PATH + "/config", reader.BUS_NAME + ".config", "getZoneByName")(zone)
        return self._method(path, reader.BUS_NAME + ".config.zone", "getSettings2")()
firewalld = Firewalld(dbus.SystemBus())"""


def assert_read_as_dbus_python_reads(minion):
    """firewalld read in Salt's Python by zimbra_fw_dbus is firewalld as
    dbus-python (firewalld's own library, in the system's Python) reads it."""
    ours, theirs = (
        json.loads(minion.guarded([python, "-I", "-c", READ.format(utils=UTILS, connect=connect)]).stdout)
        for python, connect in ((sys.executable, OURS), ("/usr/bin/python3", DBUS_PYTHON))
    )
    assert ours["running"] and ours["ipsets"] and ours["runtime"]["rich_rules"]
    assert ours == theirs


def changes(results):
    return {state: result["changes"] for state, result in results.items() if result["changes"]}


def assert_least_privilege(lab):
    ports = PUBLIC + INTERNAL + [22]  # listened on by the test
    for address in (lab.MINION_INTERNET, lab.MINION_INTERNET6):
        reached = lab.internet.probe(address, ports)
        assert [p for p in [*PUBLIC, 22] if not reached[p]] == [], address
        assert [p for p in INTERNAL if reached[p]] == [], address
    for address in (lab.MINION_LAN, lab.MINION_LAN6):
        reached = lab.lan.probe(address, ports)
        assert [p for p in ports if not reached[p]] == [], address


def test_seed_policy_on_firewalld_survives_a_reload_and_a_second_run_changes_nothing(fw_lab, pillar):
    minion = fw_lab.minion
    minion.set_pillar(pillar)
    added = [
        "service zimbra",
        'rule priority="32000" port port="22" protocol="tcp" accept',
        TRUSTED_RULE,
        'rule priority="32000" family="ipv6" source address="2001:db8:1::/64" accept',
    ]
    untouched = minion.snapshot()
    for alone in (("zimbra_fw.converge", "part=rules"), ("state.single", "zimbra_fw.rules_managed", "name=rules")):
        refused = minion.salt_text(*alone)  # the rules wait for the profile part's reload
        assert "Refused, nothing was changed" in refused and "converge part=profile first" in refused, alone
    assert minion.snapshot() == untouched
    pending = minion.apply(test=True)
    assert pending["zimbra_fw-profile"]["changes"]["added"] == added
    assert pending["zimbra_fw-rules"]["changes"] == {}
    assert pending["zimbra_fw-rules"]["comment"].startswith("The rules and ipset entries are loaded with the services")
    results = minion.apply()
    assert all(r["result"] for r in results.values()), results
    assert results["zimbra_fw-profile"]["changes"]["ports"]["zimbra"]["old"] is None
    assert results["zimbra_fw-profile"]["changes"]["added"] == added  # loaded by its one reload
    assert results["zimbra_fw-rules"]["changes"] == {}
    assert "no init system here: firewalld must already run" in results["zimbra_fw-installed"]["comment"]
    with open(os.path.join(minion.state, "etc-firewalld", "services", "zimbra.xml"), encoding="utf-8") as handle:
        assert '<port port="7071" protocol="tcp"/>' in handle.read()
    minion.listen(PUBLIC + INTERNAL + [22])
    assert_least_privilege(fw_lab)

    firewall_cmd(minion, "--reload")  # runtime rebuilt from the permanent configuration: the same firewall
    assert_least_privilege(fw_lab)

    firewall_cmd(minion, "--add-rich-rule", RUNTIME_MARK)
    before = minion.snapshot()
    again = minion.apply()
    assert changes(again) == {}
    assert minion.snapshot() == before  # nothing rewritten, and no reload: the runtime-only rule is there
    assert RUNTIME_MARK in firewall_cmd(minion, "--list-rich-rules")


def test_runtime_drift_is_repaired_without_a_reload(fw_lab, pillar):
    """Even right after a verified no-op: the next run takes its word from
    the record, and the one after a runtime-only change still sees it."""
    minion = fw_lab.minion
    minion.set_pillar(pillar)
    minion.apply()
    record = os.path.join(minion.state, "salt-root", "var", "cache", "salt", "minion", "zimbra_fw", "noop.json")
    verified = minion.apply()  # planned in full: nothing to change, recorded
    written = os.stat(record).st_ino
    again = minion.apply()
    assert changes(verified) == changes(again) == {} and os.stat(record).st_ino == written
    assert [result["comment"] for result in again.values()] == [result["comment"] for result in verified.values()]
    firewall_cmd(minion, "--remove-rich-rule", TRUSTED_RULE)  # runtime only: the permanent config still has it
    firewall_cmd(minion, "--add-rich-rule", RUNTIME_MARK)
    minion.listen([389])
    assert fw_lab.lan.probe(fw_lab.MINION_LAN, [389]) == {389: False}

    pending = minion.apply(test=True)
    assert pending["zimbra_fw-rules"]["result"] is None
    assert pending["zimbra_fw-rules"]["changes"] == {"runtime": {"added": [TRUSTED_RULE]}}
    assert TRUSTED_RULE not in firewall_cmd(minion, "--list-rich-rules")

    results = minion.apply()
    assert results["zimbra_fw-rules"]["changes"] == {"runtime": {"added": [TRUSTED_RULE]}}
    assert "(runtime)" in results["zimbra_fw-rules"]["comment"]
    assert fw_lab.lan.probe(fw_lab.MINION_LAN, [389]) == {389: True}
    assert RUNTIME_MARK in firewall_cmd(minion, "--list-rich-rules")  # not reloaded


def test_only_zimbra_fw_rules_change_and_stale_ones_go(fw_lab, pillar):
    minion = fw_lab.minion
    theirs = 'rule family="ipv4" source address="198.51.100.7" service name="http" accept'
    for scope in ((), ("--permanent",)):
        firewall_cmd(minion, *scope, "--add-rich-rule", theirs)
        firewall_cmd(minion, *scope, "--add-service", "imap")
    minion.set_pillar(pillar)
    minion.apply()
    pillar["trusted_subnets"] = ["192.168.1.0/25"]
    pillar["admin_subnets"] = ["203.0.113.0/24"]
    minion.set_pillar(pillar)
    results = minion.apply()
    rules = results["zimbra_fw-profile"]["changes"]  # a new service: its reload loads the rules too
    assert results["zimbra_fw-rules"]["changes"] == {}
    assert rules["removed"] == [
        'rule priority="32000" family="ipv4" source address="192.168.1.0/24" accept',
        'rule priority="32000" family="ipv6" source address="2001:db8:1::/64" accept',
    ]
    assert 'rule priority="32000" source ipset="zimbra-admin-v4" service name="zimbra-admin" accept' in rules["added"]
    assert "203.0.113.0/24 in ipset zimbra-admin-v4" in rules["added"]
    assert "zimbra-admin" in results["zimbra_fw-profile"]["changes"]["ports"]
    assert set(results["zimbra_fw-profile"]["changes"]["ipsets"]) == {"zimbra-admin-v4", "zimbra-admin-v6"}
    for scope in ((), ("--permanent",)):
        assert theirs in firewall_cmd(minion, *scope, "--list-rich-rules")
        assert "imap" in firewall_cmd(minion, *scope, "--list-services").split()
    minion.listen([7071, 7025])
    assert fw_lab.internet.probe(fw_lab.MINION_INTERNET, [7071, 7025]) == {7071: True, 7025: False}
    assert changes(minion.apply()) == {}


def mailbox_with_mta(pillar, addresses):
    """MTA peers with these addresses: one peer, or one per 50 (a peer has 64 at most)."""
    if len(addresses) <= 50:
        peers = [{"name": "mta", "addresses": addresses, "roles": ["mta"]}]
    else:
        chunks = [addresses[i : i + 50] for i in range(0, len(addresses), 50)]
        peers = [{"name": f"mta{i}", "addresses": chunk, "roles": ["mta"]} for i, chunk in enumerate(chunks)]
    return dict(pillar, roles=["mailbox"], cluster={"peers": peers})


def test_a_peer_is_an_ipset_entry_that_reaches_its_ports_and_survives_a_reload(fw_lab, pillar):
    minion = fw_lab.minion
    internet = ["203.0.113.10", "2001:db8:113::10"]  # the internet client plays an MTA peer
    minion.set_pillar(mailbox_with_mta(pillar, internet))
    results = minion.apply()
    assert all(r["result"] for r in results.values()), results
    added = results["zimbra_fw-profile"]["changes"]["added"]
    assert "203.0.113.10 in ipset zimbra-mta-v4" in added and "2001:db8:113::10 in ipset zimbra-mta-v6" in added
    firewall_cmd(minion, "--add-rich-rule", RUNTIME_MARK)
    assert_read_as_dbus_python_reads(minion)
    firewall_cmd(minion, "--remove-rich-rule", RUNTIME_MARK)
    for scope in ((), ("--permanent",)):
        assert firewall_cmd(minion, *scope, "--ipset=zimbra-mta-v4", "--get-entries").split() == ["203.0.113.10"]
    minion.listen([7025, 11211])
    for address in (fw_lab.MINION_INTERNET, fw_lab.MINION_INTERNET6):
        assert fw_lab.internet.probe(address, [7025, 11211]) == {7025: True, 11211: False}, address

    firewall_cmd(minion, "--reload")
    assert fw_lab.internet.probe(fw_lab.MINION_INTERNET6, [7025]) == {7025: True}
    report = minion.salt("zimbra_fw.audit")
    lmtp = next(entry for entry in report["ports"] if entry["port"] == "7025/tcp")
    assert set(internet) <= set(lmtp["reachable_from"])
    status = minion.salt("zimbra_fw.status")
    assert status["ipsets"]["zimbra-mta-v4"] == ["203.0.113.10"] and status["ipsets"]["zimbra-mta-v6"] == internet[1:]
    assert (
        'rule priority="32000" source ipset="zimbra-mta-v6" service name="zimbra-mta" accept'
        in (status["managed_rules"])
    )

    minion.set_pillar(mailbox_with_mta(pillar, ["10.9.9.9"]))
    left = minion.apply()
    assert left["zimbra_fw-rules"]["changes"] == {
        "added": ["10.9.9.9 in ipset zimbra-mta-v4"],
        "removed": ["203.0.113.10 in ipset zimbra-mta-v4", "2001:db8:113::10 in ipset zimbra-mta-v6"],
    }
    assert left["zimbra_fw-profile"]["changes"] == {}  # no reload
    for address in (fw_lab.MINION_INTERNET, fw_lab.MINION_INTERNET6):
        assert fw_lab.internet.probe(address, [7025]) == {7025: False}, address


def test_a_peer_subnet_takes_the_place_of_its_hosts_in_the_running_ipset(fw_lab, pillar):
    minion = fw_lab.minion
    minion.set_pillar(mailbox_with_mta(pillar, ["10.9.9.9", "10.1.2.3", "10.1.2.4"]))
    minion.apply()
    minion.set_pillar(mailbox_with_mta(pillar, ["10.9.9.9", "10.1.0.0/16"]))  # 10.9.9.9 stays: one by one
    results = minion.apply()
    assert results["zimbra_fw-rules"]["result"] is True, results["zimbra_fw-rules"]
    assert results["zimbra_fw-rules"]["changes"] == {
        "added": ["10.1.0.0/16 in ipset zimbra-mta-v4"],
        "removed": ["10.1.2.3 in ipset zimbra-mta-v4", "10.1.2.4 in ipset zimbra-mta-v4"],
    }
    for scope in ((), ("--permanent",)):
        entries = firewall_cmd(minion, *scope, "--ipset=zimbra-mta-v4", "--get-entries").split()
        assert sorted(entries) == ["10.1.0.0/16", "10.9.9.9"], scope
        # the rule that admitted the subnet while it replaced its hosts is gone
        assert 'source address="10.1.0.0/16"' not in firewall_cmd(minion, *scope, "--list-rich-rules"), scope
    minion.set_pillar(mailbox_with_mta(pillar, ["10.1.2.3", "10.1.2.4"]))  # hosts replace their subnet: one call
    results = minion.apply()
    assert results["zimbra_fw-rules"]["result"] is True, results["zimbra_fw-rules"]
    for scope in ((), ("--permanent",)):
        entries = firewall_cmd(minion, *scope, "--ipset=zimbra-mta-v4", "--get-entries").split()
        assert sorted(entries) == ["10.1.2.3", "10.1.2.4"], scope
        assert "10.1.2.3" not in firewall_cmd(minion, *scope, "--list-rich-rules"), scope


def test_a_step_that_fails_half_way_is_named_with_what_was_applied_and_the_next_run_repairs(fw_lab, pillar):
    minion = fw_lab.minion
    minion.set_pillar(mailbox_with_mta(pillar, ["10.9.9.9"]))
    minion.apply()
    minion.set_pillar(mailbox_with_mta(pillar, ["10.9.9.9", "203.0.113.10"]))
    minion.fail_firewalld_call("FirewallDConfigIPSet.setEntries")  # the permanent entries
    failed = minion.apply()["zimbra_fw-rules"]
    assert failed["result"] is False
    assert failed["comment"].startswith(
        "step 'permanent ipset entries: 1 added, 0 removed' failed: COMMAND_FAILED: injected failure. "
        "Already applied: runtime ipset entries: 1 added, 0 removed"
    )
    minion.fail_firewalld_call(None)
    pending = minion.apply(test=True)["zimbra_fw-rules"]["changes"]
    assert pending == {"permanent": {"added": ["203.0.113.10 in ipset zimbra-mta-v4"]}}
    assert minion.apply()["zimbra_fw-rules"]["changes"] == pending
    firewall_cmd(minion, "--reload")
    minion.listen([7025])
    assert fw_lab.internet.probe(fw_lab.MINION_INTERNET, [7025]) == {7025: True}


def test_two_runs_at_once_and_a_held_lock_end_in_the_same_firewall(fw_lab, pillar):
    minion = fw_lab.minion
    minion.set_pillar(mailbox_with_mta(pillar, ["10.9.9.9"]))
    minion.apply()
    addresses = [f"10.8.{i // 250}.{i % 250 + 1}" for i in range(100)] + ["203.0.113.10"]
    minion.set_pillar(mailbox_with_mta(pillar, addresses))

    def timed_apply(_):
        start = time.monotonic()
        result = minion.salt("state.apply", "zimbra_fw", "concurrent=True")
        return start, time.monotonic(), result

    lock_dir = os.path.join(minion.state, "run", "zimbra_fw")  # in the sandbox's private /run
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    with open(os.path.join(lock_dir, "firewalld.lock"), "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held while both runs start: they wait for it, then take turns
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            runs = pool.map(timed_apply, range(2))
            time.sleep(3)
            fcntl.flock(lock, fcntl.LOCK_UN)
            starts, ends, results = zip(*runs, strict=True)
    assert max(starts) < min(ends)  # the two runs overlapped
    for result in results:
        failed = {key: state["comment"] for key, state in result.items() if state["result"] is not True}
        assert failed == {}, "; ".join(f"{k.split('_|-')[1]}: {v}" for k, v in failed.items())
        assert min(ends) - max(starts) > 2  # waited for the lock
    for scope in ((), ("--permanent",)):
        entries = firewall_cmd(minion, *scope, "--ipset=zimbra-mta-v4", "--get-entries").split()
        assert sorted(entries) == sorted(addresses), scope
    assert changes(minion.apply()) == {}
    minion.listen([7025])
    assert fw_lab.internet.probe(fw_lab.MINION_INTERNET, [7025]) == {7025: True}


@pytest.mark.parametrize(
    "key, bad, named",
    [
        ("backend", "iptables", "zimbra_fw:backend: 'iptables' is not a firewall zimbra_fw can manage"),
        ("firewalld", {"zone": "no such zone!"}, "zimbra_fw:firewalld:zone: 'no such zone!' is not a firewalld zone"),
        ("trusted_subnets", ["10.0.0.0/33"], "zimbra_fw:trusted_subnets"),
    ],
)
def test_bad_pillar_changes_nothing(fw_lab, pillar, key, bad, named):
    minion = fw_lab.minion
    minion.set_pillar(pillar)
    minion.apply()
    before = minion.snapshot()
    minion.set_pillar(dict(pillar, **{key: bad}))
    results = minion.apply()
    assert named in results["zimbra_fw-pillar"]["comment"]
    assert changes(results) == {}
    assert minion.snapshot() == before


def test_an_unknown_zone_is_refused_before_anything_changes(fw_lab, pillar):
    minion = fw_lab.minion
    before = minion.snapshot()
    minion.set_pillar(dict(pillar, firewalld={"zone": "mailzone"}))
    results = minion.apply()
    assert "zimbra_fw:firewalld:zone: 'mailzone' is not a firewalld zone" in results["zimbra_fw-profile"]["comment"]
    assert minion.snapshot() == before


def test_an_accept_zone_target_becomes_default_once_management_is_allowed(fw_lab, pillar):
    minion = fw_lab.minion
    firewall_cmd(minion, "--permanent", "--set-target", "ACCEPT")
    firewall_cmd(minion, "--reload")
    minion.listen([11211])
    assert fw_lab.internet.probe(fw_lab.MINION_INTERNET, [11211]) == {11211: True}
    minion.set_pillar(pillar)
    results = minion.apply()
    assert results["zimbra_fw-firewall"]["changes"] == {"target": {"old": "ACCEPT", "new": "default"}}
    assert fw_lab.internet.probe(fw_lab.MINION_INTERNET, [11211]) == {11211: False}
    assert changes(minion.apply()) == {}


def test_a_management_rule_missing_from_the_permanent_zone_keeps_the_target_open(fw_lab, pillar):
    minion = fw_lab.minion
    firewall_cmd(minion, "--permanent", "--set-target", "ACCEPT")
    firewall_cmd(minion, "--reload")
    minion.set_pillar(pillar)
    for part in ("profile", "rules"):
        minion.salt("zimbra_fw.converge", f"part={part}")
    firewall_cmd(minion, "--permanent", "--remove-rich-rule", SSH_RULE)  # the running zone still has it
    out = minion.guarded(
        [SALT_CALL, "--local", "-c", minion.config_dir, "zimbra_fw.converge", "part=firewall"], check=False
    )
    assert out.returncode != 0
    said = " ".join((out.stdout + out.stderr).split())
    assert "refusing to restrict the zone public: management access is not allowed yet" in said
    assert f"(missing: {SSH_RULE} (permanent)); apply the zimbra_fw rules first" in said
    assert firewall_cmd(minion, "--permanent", "--get-target").strip() == "ACCEPT"
    firewall_cmd(minion, "--reload")  # what a reload after the target change would have loaded: ssh still open
    minion.listen([22])
    assert fw_lab.internet.probe(fw_lab.MINION_INTERNET, [22]) == {22: True}


def test_audit_reads_firewalld_and_finds_hand_opened_memcached(fw_lab, pillar):
    minion = fw_lab.minion
    minion.set_pillar(pillar)
    minion.apply()
    minion.listen([25, 389, 11211])
    firewall_cmd(minion, "--add-port", "11211/tcp")
    report = minion.salt("zimbra_fw.audit")
    by_port = {entry["port"]: entry for entry in report["ports"]}
    assert by_port["11211/tcp"]["reachable_from"] == "anyone"
    assert by_port["389/tcp"]["reachable_from"] == ["192.168.1.0/24", "2001:db8:1::/64"]
    assert by_port["25/tcp"]["reachable_from"] == "anyone"
    assert report["summary"]["critical"] >= 1
    assert fw_lab.internet.probe(fw_lab.MINION_INTERNET, [11211]) == {11211: True}


def test_a_stopped_firewalld_fails_the_run_before_any_change(fw_lab, pillar):
    minion = fw_lab.minion
    minion.set_pillar(pillar)
    minion.apply()
    before = {name: text for name, text in minion.snapshot().items() if name != "nft"}
    minion.stop_firewalld()
    results = minion.apply()
    profile = results["zimbra_fw-profile"]
    assert profile["result"] is False, profile  # no init system here to start it
    assert "firewalld is not running: start it (systemctl enable --now firewalld)" in profile["comment"]
    assert all(results[state]["result"] is False for state in ("zimbra_fw-rules", "zimbra_fw-firewall"))
    assert {name: text for name, text in minion.snapshot().items() if name != "nft"} == before
    status = minion.guarded([SALT_CALL, "--local", "-c", minion.config_dir, "zimbra_fw.status"], check=False)
    assert status.returncode != 0
    assert "firewalld is not running: start it (systemctl enable --now firewalld)" in status.stdout + status.stderr
