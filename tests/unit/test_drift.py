"""zimbra_fw.drift and the zimbra_fw beacon: the real execution module and
beacon, with the real backends' planners and the audit, fed snapshots of
ufw and firewalld as their readers would return them (the only thing
replaced is the read of the firewall and of /proc/net)."""

import importlib.util
import os

import pytest
import zimbra_fw_audit as audit
import zimbra_fw_commands as commands
import zimbra_fw_config as cfg
import zimbra_fw_firewalld as fwd
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
import zimbra_fw_ufw_files as ufw_files
from salt.exceptions import CommandExecutionError
from zimbra_fw_audit import Rule
from zimbra_fw_catalogue import PortSpec

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SINGLE = {"roles": ["ldap", "mta", "proxy", "mailbox"], "trusted_subnets": ["192.168.1.0/24"]}
# 0.0.0.0:11211 listening (memcached), as /proc/net/tcp shows it
MEMCACHED = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:2BCB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4568966 1 0 100 0 0 10 0
"""
KEYS = {"drifted", "backend", "active", "parts", "comment", "findings", "roles"}


def load(path, **dunders):
    spec = importlib.util.spec_from_file_location(f"zfw_drift_{path.replace('/', '_')}", os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, value in dunders.items():
        setattr(module, f"__{name}__", value)
    return module


class Minion:
    """The execution module on a minion whose firewall reads as ``self.firewall``
    (a backend Snapshot, or an exception) and whose /proc/net/tcp is ``self.tcp``."""

    def __init__(self, monkeypatch, pillar, backend=ufw):
        self.context = {}
        self.face = load(
            "_modules/zimbra_fw.py",
            salt={},
            pillar={"zimbra_fw": pillar},
            opts={"id": "mail1", "file_client": "local"},
            grains={"os_family": "Debian"},
            context=self.context,
        )
        self.firewall, self.tcp = None, ""
        monkeypatch.setattr(backend, "read_snapshot", self._read)
        monkeypatch.setattr(self.face, "_read_proc", lambda name: self.tcp if name == "tcp" else "")
        self.policy = self.face._policy()

    def _read(self, run, live=True, config=None):
        assert live
        if isinstance(self.firewall, Exception):
            raise self.firewall
        return self.firewall

    def drift(self):
        self.context.pop("retcode", None)
        return self.face.drift()


def ufw_snapshot(policy, other=(), active=True, incoming="deny"):
    """ufw holding the policy (and ``other`` rules someone added)."""
    text = ufw.profile_text(policy)
    rules = [(words, ufw.RULE_COMMENT) for words in ufw.desired_rules(policy)] + [(tuple(w), None) for w in other]
    return ufw.Snapshot(rules, text, ufw_files.parse_app_profiles([text]), active, incoming)


def firewalld_snapshot(policy, runtime_ports=()):
    """firewalld holding the policy, permanent and runtime (with ``runtime_ports`` added at runtime)."""
    wanted = fwd.desired(policy)
    services = {name: tuple(d["ports"]) for name, d in fwd.service_definitions(policy).items()}
    ipsets = {
        name: fwd.IPSet("hash:net", "inet6" if name.endswith("6") else "inet", e) for name, e in wanted.entries.items()
    }
    permanent = fwd.Zone(frozenset({"ssh", *wanted.services}), wanted.rules, "default", ())
    runtime = permanent._replace(ports=tuple(runtime_ports))
    return fwd.Snapshot(True, "public", "public", services, dict(services), ipsets, dict(ipsets), permanent, runtime)


@pytest.fixture
def ufw_minion(monkeypatch):
    minion = Minion(monkeypatch, SINGLE)
    minion.firewall = ufw_snapshot(minion.policy)
    return minion


# ---------------------------------------------------------------- zimbra_fw.drift


def test_drift_is_published_with_a_cli_example(ufw_minion):
    assert "drift" in ufw_minion.face.__load__
    assert "CLI Example:" in ufw_minion.face.drift.__doc__


def test_a_converged_firewall_has_no_drift_and_keeps_retcode_zero(ufw_minion):
    report = ufw_minion.drift()
    assert report == {
        "drifted": False,
        "backend": "ufw",
        "active": True,
        "parts": {},
        "comment": "ufw matches the zimbra_fw policy and nothing reaches further than it allows",
        "findings": [],
        "roles": ["ldap", "mailbox", "mta", "proxy"],
    }
    assert "retcode" not in ufw_minion.context


def test_a_hand_made_allow_11211_is_a_critical_finding_and_retcode_2(ufw_minion):
    ufw_minion.firewall = ufw_snapshot(ufw_minion.policy, other=[("allow", "11211/tcp")])
    ufw_minion.tcp = MEMCACHED
    report = ufw_minion.drift()
    assert set(report) == KEYS
    assert report["drifted"] is True and report["parts"] == {}  # the rule is not the formula's
    assert [(f["severity"], f["port"]) for f in report["findings"]] == [("critical", "11211/tcp")]
    assert "critical 11211/tcp: memcached (no authentication) is reachable from anyone" in report["comment"]
    assert ufw_minion.context["retcode"] == 2


ADMIN_CONSOLE = MEMCACHED.replace("00000000:2BCB", "00000000:1B9F")  # 0.0.0.0:7071


def test_what_the_policy_itself_opens_to_anyone_is_a_finding_not_drift(ufw_minion):
    ufw_minion.tcp = ADMIN_CONSOLE  # public: no admin_subnets in this pillar
    audit_report = ufw_minion.face.audit()
    assert [(f["severity"], f["port"]) for f in audit_report["findings"]] == [("medium", "7071/tcp")]
    assert ufw_minion.drift()["drifted"] is False


def test_a_hand_opened_admin_console_is_drift_once_admin_subnets_close_it(monkeypatch):
    minion = Minion(monkeypatch, dict(SINGLE, admin_subnets=["198.51.100.0/24"]))
    minion.firewall = ufw_snapshot(minion.policy, other=[("allow", "7071/tcp")])
    minion.tcp = ADMIN_CONSOLE
    report = minion.drift()
    assert [(f["severity"], f["port"]) for f in report["findings"]] == [("medium", "7071/tcp")]
    assert report["drifted"] is True and report["parts"] == {}  # not a cluster port: close_foreign keeps it


def test_with_close_foreign_the_rules_part_would_remove_it(monkeypatch):
    minion = Minion(monkeypatch, dict(SINGLE, close_foreign=True))
    minion.firewall = ufw_snapshot(minion.policy, other=[("allow", "11211/tcp"), ("allow", "8448/tcp")])
    report = minion.drift()
    assert report["drifted"] is True and report["findings"] == []  # nothing listens on 11211 here
    assert report["parts"] == {"rules": {"removed": ["allow 11211/tcp"]}}  # 8448 is no Zimbra port: kept
    assert report["comment"].startswith("ufw drifted from the zimbra_fw policy: rules: ")


def test_an_inactive_ufw_is_drift_with_what_enabling_would_change(ufw_minion):
    ufw_minion.firewall = ufw_snapshot(ufw_minion.policy, active=False, incoming="allow")
    report = ufw_minion.drift()
    assert report["active"] is False and report["drifted"] is True
    assert report["parts"] == {
        "firewall": {"default incoming": {"old": "allow", "new": "deny"}, "active": {"old": False, "new": True}}
    }
    assert {f["message"] for f in report["findings"]} == {
        "ufw is inactive: every listening port is reachable from anyone"
    }


def test_a_missing_managed_rule_is_drift_in_the_rules_part(ufw_minion):
    converged = ufw_minion.firewall
    ufw_minion.firewall = converged._replace(rules=[r for r in converged.rules if r[0] != ("allow", "22/tcp")])
    assert ufw_minion.drift()["parts"] == {"rules": {"added": ["allow 22/tcp"]}}


def test_firewalld_runtime_only_port_is_runtime_drift(monkeypatch):
    pillar = dict(SINGLE, backend="firewalld", close_foreign=True)
    minion = Minion(monkeypatch, pillar, backend=fwd)
    minion.firewall = firewalld_snapshot(minion.policy)
    assert minion.drift()["drifted"] is False
    minion.firewall = firewalld_snapshot(minion.policy, runtime_ports=[("11211", "tcp")])
    minion.tcp = MEMCACHED
    report = minion.drift()
    assert report["backend"] == "firewalld" and report["active"] is True
    assert report["parts"] == {"rules": {"runtime": {"removed": ["port 11211/tcp"]}}}
    assert [(f["severity"], f["port"]) for f in report["findings"]] == [("critical", "11211/tcp")]
    assert minion.context["retcode"] == 2


def test_a_stopped_firewalld_is_drift_not_an_error(monkeypatch):
    minion = Minion(monkeypatch, dict(SINGLE, backend="firewalld"), backend=fwd)
    minion.firewall = commands.FirewallStopped("firewalld is not running: start it")
    report = minion.drift()
    assert report == {
        "drifted": True,
        "backend": "firewalld",
        "active": False,
        "parts": {},
        "comment": "firewalld is not running: start it",
        "findings": [],
        "roles": ["ldap", "mailbox", "mta", "proxy"],
    }
    assert minion.context["retcode"] == 2


# ---------------------------------------------------------------- close_foreign: what widens access


def policy_of(pillar):
    return policies.build(cfg.parse_config(pillar))


@pytest.mark.parametrize(
    "rule, widens",
    [
        (Rule("allow", "any", [PortSpec(11211, 11211, "tcp")]), True),
        (Rule("limit", "any", [PortSpec(11000, 12000, "udp")]), True),
        (Rule("allow", "0.0.0.0/1", [PortSpec(389, 389, "tcp")]), True),  # a large part of the internet
        (Rule("allow", "any", None), True),  # every port
        (Rule("allow", "198.51.100.7", [PortSpec(11211, 11211, "tcp")]), False),  # one host: the admin's choice
        (Rule("deny", "any", [PortSpec(11211, 11211, "tcp")]), False),
        (Rule("allow", "any", [PortSpec(8448, 8448, "tcp")]), False),  # no Zimbra port
        (Rule("allow", "any", [PortSpec(25, 25, "tcp")]), False),  # public
        (Rule("allow", "any", [PortSpec(22, 22, "tcp")]), False),  # ssh: from any in this policy
    ],
)
def test_what_a_foreign_rule_widens(rule, widens):
    assert audit.widens(rule, policy_of(SINGLE)) is widens


def test_ssh_from_anyone_widens_once_ssh_from_is_restricted():
    policy = policy_of(dict(SINGLE, ssh={"from": ["192.168.1.0/24"]}))
    assert audit.widens(Rule("allow", "any", [PortSpec(22, 22, "tcp")]), policy) is True


def test_firewalld_close_foreign_removes_a_zone_port_and_rich_rule_in_their_scope():
    policy = policy_of(dict(SINGLE, backend="firewalld", close_foreign=True))
    snapshot = firewalld_snapshot(policy)
    theirs = 'rule family="ipv4" port port="389" protocol="tcp" accept'
    kept = 'rule family="ipv4" source address="198.51.100.7" port port="389" protocol="tcp" accept'
    permanent = snapshot.permanent._replace(rules=(*snapshot.permanent.rules, theirs, kept), ports=(("11211", "tcp"),))
    snapshot = snapshot._replace(permanent=permanent, runtime=permanent)
    plan = fwd.plan_rules(policy, snapshot)
    assert plan.changes == {"removed": ["port 11211/tcp", theirs]}  # the same in both scopes
    zone_steps = {step.args[1]: step.args[2] for step in plan.steps}
    assert sorted(zone_steps) == ["permanent", "runtime"]
    for change in zone_steps.values():
        assert change["remove_ports"] == [["11211", "tcp"]] and change["remove_rules"] == [theirs]
        assert not change["add_rules"] and not change["remove_services"]
    off = policy_of(dict(SINGLE, backend="firewalld"))
    assert fwd.plan_rules(off, snapshot).changes == {}


def test_firewalld_close_foreign_removes_a_zone_service_someone_added_from_the_runtime():
    policy = policy_of(dict(SINGLE, backend="firewalld", close_foreign=True))
    snapshot = firewalld_snapshot(policy)
    by_service = 'rule family="ipv4" service name="memcache" accept'
    runtime = snapshot.runtime._replace(
        services=snapshot.runtime.services | {"memcache", "dhcpv6-client"}, rules=(*snapshot.runtime.rules, by_service)
    )
    others = {
        "memcache": (PortSpec(11211, 11211, "tcp"),),
        "dhcpv6-client": (PortSpec(546, 546, "udp"),),
        "ssh": (PortSpec(22, 22, "tcp"),),
    }
    snapshot = snapshot._replace(runtime=runtime, other_services=others)
    plan = fwd.plan_rules(policy, snapshot)
    assert plan.changes == {"runtime": {"removed": ["service memcache", by_service]}}  # ssh and dhcpv6 stay
    assert fwd.describe(plan.changes, True) == "2 rules would be removed (runtime)"


# ---------------------------------------------------------------- the beacon


@pytest.fixture
def beacon(ufw_minion):
    module = load("_beacons/zimbra_fw.py", salt={"zimbra_fw.drift": ufw_minion.drift})
    module._TOLD.clear()

    def tick():
        return module.beacon([{"_beacon_name": "zimbra_fw"}])

    tick.minion = ufw_minion
    tick.module = module
    return tick


def test_the_beacon_says_nothing_while_the_firewall_matches(beacon):
    assert beacon() == [] and beacon() == []


def test_the_beacon_fires_once_per_drift_again_when_it_changes_and_says_repaired(beacon):
    minion = beacon.minion
    converged = minion.firewall
    assert beacon() == []
    minion.firewall = ufw_snapshot(minion.policy, other=[("allow", "11211/tcp")])
    minion.tcp = MEMCACHED
    (event,) = beacon()
    assert event["tag"] == "drift" and set(event) == KEYS | {"tag"}
    assert event["findings"][0]["port"] == "11211/tcp"
    assert beacon() == [] and beacon() == []  # the same drift: told once
    minion.firewall = ufw_snapshot(minion.policy, other=[("allow", "11211/tcp")], active=False)
    (changed,) = beacon()
    assert changed["tag"] == "drift" and changed["active"] is False
    assert beacon() == []
    minion.firewall = converged
    (repaired,) = beacon()
    assert repaired["tag"] == "repaired" and repaired["drifted"] is False
    assert beacon() == []


def test_a_bad_pillar_is_one_error_event_not_one_per_tick(beacon):
    face = beacon.minion.face
    face.__pillar__ = {"zimbra_fw": dict(SINGLE, trusted_subnets=["any"])}
    (event,) = beacon()
    assert event["tag"] == "error"
    assert "zimbra_fw:trusted_subnets[0]: 'any' would give the whole internet access" in event["error"]
    assert beacon() == [] and beacon() == []
    face.__pillar__ = {"zimbra_fw": SINGLE}
    assert [event["tag"] for event in beacon()] == ["repaired"]


def test_a_stopped_firewall_is_told_once(monkeypatch):
    minion = Minion(monkeypatch, dict(SINGLE, backend="firewalld"), backend=fwd)
    module = load("_beacons/zimbra_fw.py", salt={"zimbra_fw.drift": minion.drift})
    minion.firewall = CommandExecutionError("reading firewalld failed (exit 1): no bus")
    ticks = [module.beacon([]) for _ in range(3)]
    assert [len(events) for events in ticks] == [1, 0, 0]
    assert ticks[0][0] == {"tag": "error", "error": "reading firewalld failed (exit 1): no bus"}
    minion.firewall = commands.FirewallStopped("firewalld is not running: start it")
    ticks = [module.beacon([]) for _ in range(3)]
    assert [len(events) for events in ticks] == [1, 0, 0]
    assert ticks[0][0]["tag"] == "drift" and ticks[0][0]["active"] is False


def test_an_unsynced_module_is_one_error_event():
    module = load("_beacons/zimbra_fw.py", salt={})
    (event,) = module.beacon([])
    assert event == {"tag": "error", "error": "zimbra_fw.drift is not loaded on this minion: run saltutil.sync_all"}
    assert module.beacon([]) == []


@pytest.mark.parametrize(
    "config, valid, said",
    [
        ([{"interval": 10}, {"disable_during_state_run": True}], True, "Valid beacon configuration"),
        ([], True, "Valid beacon configuration"),
        ({"interval": 10}, False, "must be a list of options such as '- interval: 30'"),
        ([{"interval": 0}], False, "interval 0 must be a positive number of seconds"),
        ([{"interval": True}], False, "interval True must be a positive number of seconds"),
        ([{"interval": "10"}], False, "interval '10' must be a positive number of seconds"),
        ([{"tag": "x"}], False, "'tag' is not an option; it takes Salt's own (interval, disable_during_state_run"),
    ],
)
def test_validate(config, valid, said):
    module = load("_beacons/zimbra_fw.py", salt={})
    ok, message = module.validate(config)
    assert ok is valid and said in message
