"""The Salt face and the states, loaded as Salt loads them, with Salt's
dunders (__salt__, __opts__, __pillar__, __grains__, __context__) given by the test."""

import gc
import importlib.util
import ipaddress
import json
import os
import re
import sys
import threading
import time
import types

import pytest
import zimbra_fw_backend
import zimbra_fw_firewalld as fwd
import zimbra_fw_rollback as rollback
import zimbra_fw_sessions as sessions
import zimbra_fw_ufw as ufw
from hypothesis import example, given, settings
from hypothesis import strategies as st
from salt.exceptions import CommandExecutionError
from zimbra_fw_audit import Rule
from zimbra_fw_catalogue import PortSpec
from zimbra_fw_commands import ApplyFailed
from zimbra_fw_sessions import Session

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SINGLE = {"roles": ["ldap", "mta", "proxy", "mailbox"], "trusted_subnets": ["192.168.1.0/24"]}


def load(path, **dunders):
    spec = importlib.util.spec_from_file_location(f"zfw_{path.replace('/', '_')}", os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, value in dunders.items():
        setattr(module, f"__{name}__", value)
    return module


class Calls(dict):
    """A __salt__ whose functions record their calls."""

    def __init__(self, **functions):
        super().__init__()
        self.log = []
        for name, function in functions.items():
            self[name.replace("__", ".")] = self._recorded(name.replace("__", "."), function)

    def _recorded(self, name, function):
        def call(*args, **kwargs):
            self.log.append(name)
            return function(*args, **kwargs)

        return call


def face(pillar, context=None, opts=None, grains=None, **functions):
    salt = Calls(**functions)
    module = load(
        "_modules/zimbra_fw.py",
        salt=salt,
        pillar={"zimbra_fw": pillar},
        opts=opts or {"id": "mail1", "file_client": "local"},
        grains=grains or {"os_family": "Debian"},
        context={} if context is None else context,
    )
    return module, salt


def test_only_user_functions_are_published():
    module, _ = face(SINGLE)
    assert module.__virtual__() == "zimbra_fw"
    assert sorted(module.__load__) == [
        "audit",
        "catalogue",
        "confirm",
        "converge",
        "drift",
        "identity",
        "open_ports",
        "plan",
        "prepare",
        "profile",
        "status",
    ]
    for name in module.__load__:
        assert "CLI Example:" in getattr(module, name).__doc__, name
        assert callable(getattr(module, name))
    assert not hasattr(module, "apply")


def test_packages_are_read_only_when_roles_are_not_in_pillar():
    module, salt = face(SINGLE, pkg__list_pkgs=lambda: {"zimbra-store": "10.1"})
    assert module.open_ports()["roles"] == {"roles": ["ldap", "mailbox", "mta", "proxy"], "source": "pillar"}
    assert salt.log == []
    module, salt = face({}, pkg__list_pkgs=lambda: {"zimbra-store": "10.1", "zimbra-core": "10.1"})
    assert module.open_ports()["roles"] == {"roles": ["mailbox"], "source": "packages"}
    assert salt.log == ["pkg.list_pkgs"]


def test_mine_is_read_with_the_compound_target_and_the_master_is_kept_reachable():
    targets = []

    def mine_get(target, function, tgt_type):
        targets.append((target, function, tgt_type))
        return {"mta1": {"roles": ["mta"], "addresses": ["10.0.0.12"]}}

    pillar = {"roles": ["mailbox"], "cluster": {"mine": True, "mine_target": "G@zimbra:*", "networks": ["10.0.0.0/24"]}}
    opts = {"id": "mail1", "master_ip": "10.77.0.1", "publish_port": 4505, "master_port": 4506}
    module, _ = face(pillar, opts=opts, mine__get=mine_get)
    ports = module.open_ports()
    assert targets == [("G@zimbra:*", "zimbra_fw.identity", "compound")]
    assert ports["peers"]["7025/tcp"] == ["mta1"]
    policy = module._policy()
    assert [access.kind for access in policy.accesses[:2]] == ["ssh", "salt-master"]


def test_policy_is_computed_once_per_state_run_only():
    context = {}
    module, salt = face({}, context=context, pkg__list_pkgs=lambda: {"zimbra-mta": "10.1"})
    module.open_ports()
    module.open_ports()
    assert salt.log == ["pkg.list_pkgs", "pkg.list_pkgs"]  # direct calls always read afresh
    context["zimbra_fw.state_run"] = {}
    first, second = module._policy(), module._policy()
    assert first is second
    assert salt.log.count("pkg.list_pkgs") == 3


def test_the_cycle_collector_is_off_while_the_policy_is_built_and_restored_after():
    seen = []

    def list_pkgs():
        seen.append(gc.isenabled())
        return {"zimbra-mta": "10.1"}

    module, _ = face({}, pkg__list_pkgs=list_pkgs)
    assert gc.isenabled()
    module.open_ports()
    assert seen == [False] and gc.isenabled()
    bad, _ = face({"trusted_subnets": ["any"]}, pkg__list_pkgs=list_pkgs)
    with pytest.raises(CommandExecutionError):
        bad.open_ports()
    assert seen == [False, False] and gc.isenabled()
    gc.disable()
    try:
        module.open_ports()
        assert not gc.isenabled()  # whoever turned it off turns it back on
    finally:
        gc.enable()


def test_bad_pillar_names_the_key_and_value():
    module, _ = face(dict(SINGLE, trusted_subnets=["any"], profile={22: "x"}))
    with pytest.raises(CommandExecutionError) as info:
        module.open_ports()
    problems = info.value.problems
    assert "zimbra_fw:trusted_subnets[0]: 'any' would give the whole internet access" in problems[0]
    assert any(problem.startswith("zimbra_fw:profile:22: 'x' is not a known key") for problem in problems), problems


def test_unknown_part_is_refused():
    module, _ = face(SINGLE)
    for part in ("/etc/cron.d/x", "disable", {"ufw": ["disable"]}):
        with pytest.raises(CommandExecutionError, match="is not one of profile, rules, firewall"):
            module.converge(part=part)


# ---------------------------------------------------------------- states


def states(outcomes, test=False):
    """The state module with a zimbra_fw.converge that answers from ``outcomes``."""
    context = {}

    def converge(part, test):
        outcome = outcomes[part]
        if isinstance(outcome, Exception):
            raise outcome
        return {part: outcome}

    salt = Calls(zimbra_fw__converge=converge, zimbra_fw__open_ports=lambda: outcomes["open_ports"])
    return load("_states/zimbra_fw.py", salt=salt, opts={"test": test}, context=context), salt, context


def test_state_reports_the_changes_and_the_comment_converge_gives():
    changes = {"added": ["allow 22/tcp", "allow Zimbra"], "removed": ["allow from 10.0.0.0/8"]}
    comment = "Added 2 rules; removed 1 rule"
    module, _, context = states({"rules": {"changes": changes, "applied": [], "comment": comment}})
    ret = module.rules_managed()
    assert ret == {"name": "zimbra_fw-rules", "changes": changes, "result": True, "comment": comment}
    assert context == {"zimbra_fw.state_run": {"parts": []}}  # not told by Salt: every part
    pending, _, _ = states({"rules": {"changes": changes, "applied": [], "comment": comment}}, test=True)
    assert pending.rules_managed()["result"] is None


def test_a_state_run_tells_the_module_which_parts_its_states_converge():
    module, _, context = states({"firewall": {"changes": {}, "applied": [], "comment": "done"}})
    module.__lowstate__ = [
        {"state": "zimbra_fw", "fun": "firewall_enabled", "name": "zimbra_fw-firewall"},
        {"state": "zimbra_fw", "fun": "pillar_valid", "name": "zimbra_fw-pillar"},
        {"state": "file", "fun": "managed", "name": "/etc/motd"},
    ]
    module.firewall_enabled()
    assert context == {"zimbra_fw.state_run": {"parts": ["firewall"]}}


def test_ufw_says_its_changes_in_words():
    changes = {"added": ["allow 22/tcp", "allow Zimbra"], "removed": ["allow from 10.0.0.0/8"]}
    assert ufw.describe(changes, test=False) == "Added 2 rules; removed 1 rule"
    assert ufw.describe(changes, test=True) == "2 rules would be added; 1 rule would be removed"
    assert ufw.describe({"active": {"old": False, "new": True}}, test=True) == "The firewall would be enabled"
    profile = {"ports": {"Zimbra-mta": {"old": None, "new": "7025/tcp"}}, "rules updated": {"allow Zimbra": "x"}}
    assert ufw.describe(profile, test=False) == "Added profile Zimbra-mta; updated 1 rule to their profile's ports"


def test_firewalld_changes_in_words_count_ipsets_and_their_entries_apart():
    profile = {
        "ports": {"zimbra-mta": {"old": None, "new": "7025/tcp"}},
        "ipsets": {"zimbra-mta-v4": {"old": None, "new": "hash:net inet"}},
    }
    entries = ["10.1.0.1 in ipset zimbra-mta-v4", "10.1.0.2 in ipset zimbra-mta-v4"]
    rules = {"runtime": {"added": ['rule priority="32000" accept', *entries]}, "permanent": {"removed": entries[:1]}}
    assert fwd.describe(profile, test=False) == "Added service zimbra-mta; added ipset zimbra-mta-v4"
    assert fwd.describe(rules, test=False) == (
        "Added 1 rule and 2 ipset entries (runtime); removed 1 ipset entry (permanent)"
    )
    assert fwd.describe({"runtime": {"reloaded": ["zimbra"]}}, test=False) == "Reloaded firewalld for zimbra"
    assert fwd.describe({"added": entries}, test=True) == "2 ipset entries would be added"
    pending_text = "Service zimbra-mta would be added; ipset zimbra-mta-v4 would be added"
    assert fwd.describe(profile, test=True) == pending_text


def test_state_without_changes_and_with_a_failure():
    module, _, _ = states(
        {
            "profile": {"changes": {}, "applied": [], "comment": "The ufw application profiles are as configured"},
            "firewall": CommandExecutionError("step 'ufw --force enable' failed: boom. Already applied: nothing"),
        }
    )
    assert module.profile_managed() == {
        "name": "zimbra_fw-profile",
        "changes": {},
        "result": True,
        "comment": "The ufw application profiles are as configured",
    }
    failed = module.firewall_enabled()
    assert failed["result"] is False and failed["changes"] == {}
    assert failed["comment"].startswith("step 'ufw --force enable' failed: boom")


def test_pillar_state_summarises_and_warns_about_the_open_admin_console():
    ports = {
        "public": ["25/tcp", "7071/tcp"],
        "roles": {"roles": ["mailbox", "mta"], "source": "pillar"},
        "peers": {"7025/tcp": ["mta1"], "8080/tcp": ["proxy1"]},
        "admin_console_open": True,
        "warnings": [
            "zimbra_fw:trusted_subnets: 10.0.0.0/7 is wider than /8, allowed by zimbra_fw:allow_wide_networks"
        ],
        "left_out": {"evil": ["198.51.100.7 is outside cluster:networks"]},
    }
    module, _, _ = states({"open_ports": ports})
    ret = module.pillar_valid()
    assert ret["result"] is True and ret["changes"] == {}
    assert ret["comment"] == (
        "The zimbra_fw pillar is valid: roles mailbox, mta (from pillar), 2 public ports, 2 peers"
        "; the admin console is open to anyone: set zimbra_fw:admin_subnets to restrict it"
        "; mine data left out: evil (see zimbra_fw.open_ports)"
        "; zimbra_fw:trusted_subnets: 10.0.0.0/7 is wider than /8, allowed by zimbra_fw:allow_wide_networks"
    )
    quiet = states({"open_ports": {**ports, "admin_console_open": False, "warnings": [], "left_out": {}}})[
        0
    ].pillar_valid()
    assert quiet["comment"] == (
        "The zimbra_fw pillar is valid: roles mailbox, mta (from pillar), 2 public ports, 2 peers"
    )


# ---------------------------------------------------------------- test mode and the Salt master rule


class FakeBackend:
    PARTS = ("profile", "rules")
    RULE_PARTS = ("rules",)
    DONE = types.MappingProxyType({"profile": "done", "rules": "done"})

    @staticmethod
    def describe(changes, test):
        return f"described {sorted(changes)} test={test}"

    def __init__(self):
        self.applied = []
        self.held = []  # the live rules of ours (own_rules)

    def own_rules(self, snapshot):
        return list(self.held)

    @staticmethod
    def ipv6_off():
        return None

    @staticmethod
    def name_taken(name):
        return None

    def apply(self, steps, run):
        self.applied.append(list(steps))
        return list(steps)


HOST = {"network__ip_addrs": lambda: ["192.168.1.1"], "network__ip_addrs6": lambda: ["fe80::1%eth0"]}


def converging(opts):
    module, _ = face(SINGLE, opts=opts, **HOST)
    backend = FakeBackend()
    plan = zimbra_fw_backend.Plan({"added": ["allow x"]}, ["allow x"], None)
    module._backend = lambda config=None, settings=None: backend
    module._plans = lambda policy, parts, snapshot=None: {part: plan for part in parts}
    module._snapshot = lambda policy, parts: types.SimpleNamespace(active=True, incoming="deny")
    module._sessions = lambda: []  # no session: nothing to cut
    return module, backend


@pytest.mark.parametrize("opts_test, arg_test", [(True, False), (True, True), (False, True)])
def test_converge_changes_nothing_when_the_minion_or_the_caller_says_test(opts_test, arg_test):
    module, backend = converging({"id": "mail1", "file_client": "local", "test": opts_test})
    result = module.converge(test=arg_test)
    done = {"changes": {"added": ["allow x"]}, "applied": [], "comment": "described ['added'] test=True"}
    assert result == {part: done for part in ("profile", "rules")}
    assert backend.applied == []


def test_converge_applies_without_test_anywhere():
    module, backend = converging({"id": "mail1", "file_client": "local", "test": False})
    done = {"changes": {"added": ["allow x"]}, "applied": ["allow x"], "comment": "described ['added'] test=False"}
    assert module.converge(part="rules") == {"rules": done}
    assert backend.applied == [["allow x"]]


def master_opts():
    return {"id": "mail1", "master_ip": "10.77.0.1", "publish_port": 4505, "master_port": 4506}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("32768\t60999\n", (32768, 60999)),
        ("40000 50000", (40000, 50000)),
        ("junk", (32768, 60999)),
        (None, (32768, 60999)),
    ],
)
def test_the_salt_master_rule_reaches_only_the_ephemeral_ports(tmp_path, text, expected):
    module, _ = face({"roles": ["mta"]}, opts=master_opts())
    path = tmp_path / "ip_local_port_range"
    if text is not None:
        path.write_text(text)
    module.LOCAL_PORT_RANGE = str(path)
    assert module._salt_master() == ("10.77.0.1", (4505, 4506), expected)
    access = module._policy().accesses[1]
    assert (access.kind, str(access.source), access.source_ports) == ("salt-master", "10.77.0.1/32", (4505, 4506))
    assert [(spec.first, spec.last, spec.proto) for spec in access.ports] == [(*expected, "tcp")]


def test_an_ephemeral_range_over_zimbra_ports_is_refused_naming_allow_salt_master(tmp_path):
    module, _ = face({"roles": ["mta"]}, opts=master_opts())
    path = tmp_path / "ip_local_port_range"
    path.write_text("1024\t65535\n")
    module.LOCAL_PORT_RANGE = str(path)
    with pytest.raises(CommandExecutionError) as info:
        module.open_ports()
    (problem,) = info.value.problems
    assert problem.startswith(
        "zimbra_fw:allow_salt_master: '1024-65535' is the minion's ephemeral port range, which the Salt master's "
        "rule opens to the master, and it holds 3310/tcp, 3443/tcp, "
    )


def test_identity_publishes_only_addresses_peers_accept():
    module, _ = face(
        {"roles": ["mta"]},
        network__ip_addrs=lambda: ["10.0.0.5", "169.254.1.1", "127.0.0.1"],
        network__ip_addrs6=lambda: ["fe80::1%eth0", "2001:db8::5", "::ffff:10.0.0.9", "::1", "ff02::1"],
    )
    assert module.identity() == {"roles": ["mta"], "addresses": ["10.0.0.5", "2001:db8::5"]}


@pytest.mark.parametrize(
    "opts_test, arg_test, expected", [(False, False, False), (True, False, True), (False, True, True)]
)
def test_prepare_hands_the_policy_to_the_backend_and_honours_test(opts_test, arg_test, expected):
    calls = []
    module, _ = face(
        {**SINGLE, "backend": "firewalld"}, opts={"id": "mail1", "file_client": "local", "test": opts_test}, **HOST
    )
    module._sessions = lambda: []
    backend = FakeBackend()
    backend.prepare_stopped = lambda policy, run, test: calls.append((policy, run, test)) or ["r"]
    module._backend = lambda config=None, settings=None: backend
    assert module.prepare(test=arg_test) == ["r"]
    ((policy, run, test),) = calls
    assert (policy.config.backend, run, test) == ("firewalld", module._run, expected)


def test_ufw_has_nothing_to_prepare_and_no_findings_of_its_own():
    import zimbra_fw_ufw

    assert zimbra_fw_ufw.prepare_stopped(None, None, test=False) == []
    assert zimbra_fw_ufw.audit_findings(None) == []


def test_the_audit_reports_the_backends_own_findings(monkeypatch):
    module, _ = face(SINGLE)
    snapshot = types.SimpleNamespace(active=True, incoming="deny")
    backend = FakeBackend()
    backend.NAME = "firewalld"
    backend.read_snapshot = lambda run, config: snapshot
    backend.access_rules = lambda found: []
    backend.audit_findings = lambda found: [("high", "zone z holds no interface")] if found is snapshot else []
    module._backend = lambda config=None, settings=None: backend
    monkeypatch.setattr(module, "_read_proc", lambda name: "")
    report = module.audit()
    assert {"severity": "high", "port": None, "message": "zone z holds no interface"} in report["findings"]


def _plain_reference(value, depth=0, max_depth=8):
    """_plain as first written: a call for every value."""
    if isinstance(value, (dict, list)) and depth >= max_depth:
        return "<nested too deep>"
    if isinstance(value, dict):
        return {key: _plain_reference(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_reference(item, depth + 1) for item in value]
    return value


class Masked(dict):
    """A mapping as Salt may hand one over, wrapped."""


class Text(str):
    pass


PLAIN_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=3), st.builds(Text, st.text(max_size=3))
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=2), inner, max_size=3),
        st.builds(Masked, st.dictionaries(st.text(max_size=2), inner, max_size=3)),
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(PLAIN_VALUES, st.integers(0, 3))
@example(float("nan"), 0)
def test_plain_copies_as_a_call_for_every_value_would_and_keeps_the_depth_bound(value, wrap):
    for _ in range(wrap * 3):  # pushes some values past MAX_DEPTH
        value = [value]
    module, _ = face(SINGLE)
    copied = module._plain(value)
    assert [copied] == [_plain_reference(value)]  # in a list: a NaN leaf equals itself (the same object)
    assert _kinds(copied) == _kinds(_plain_reference(value))  # plain dicts, the same leaves
    assert module.MAX_DEPTH == 8  # the reference's bound


def _kinds(value):
    """``value``'s shape with the type of every part: equal shapes, equal types."""
    if isinstance(value, dict):
        return (type(value), {key: _kinds(item) for key, item in value.items()})
    if isinstance(value, list):
        return (type(value), [_kinds(item) for item in value])
    return (type(value), repr(value))


def test_mine_data_nested_deeper_than_any_identity_is_cut_before_anyone_reads_it():
    deep = "mta"
    for _ in range(5000):
        deep = [deep]
    mine = {"evil": {"roles": deep, "addresses": ["10.0.0.5"]}, "mta1": {"roles": ["mta"], "addresses": ["10.0.0.7"]}}
    pillar = {"roles": ["mailbox"], "cluster": {"mine": True, "networks": ["10.0.0.0/24"]}}
    module, _ = face(pillar, mine__get=lambda target, function, tgt_type: mine)
    ports = module.open_ports()
    assert ports["peers"]["7025/tcp"] == ["mta1"]
    (reason,) = ports["left_out"]["evil"]
    assert "'<nested too deep>'" in reason and len(reason) < 300


# ---------------------------------------------------------------- before a run changes anything: sessions, confirm
# The firewall is a recorder here; the real ones are in test_sandbox_confirm.py.

ADMIN = Session(ipaddress.ip_address("192.168.1.1"), 22, ipaddress.ip_address("10.9.4.2"), 51000)
AWAY = {**SINGLE, "ssh": {"from": ["10.8.0.0/16"]}}
CUT = "would cut the ssh session from 10.9.4.2 to port 22 (zimbra_fw:ssh:from)"
HEADER_AND_ONE_SESSION = "  sl  local_address rem_address   st\n   0: 0101A8C0:0016 0204090A:C738 01\n"


@pytest.fixture
def rollback_directory(tmp_path, monkeypatch):
    """The rollback's bookkeeping in a directory of the test's."""
    where = tmp_path / "zimbra_fw"
    monkeypatch.setattr(rollback, "DIRECTORY", str(where))
    for name, file_name in (("PENDING", "pending.json"), ("SAVED", "saved.json"), ("FAILED", "failed.json")):
        monkeypatch.setattr(rollback, name, str(where / file_name))
    monkeypatch.setattr(rollback, "LOCK", str(where / "rollback.lock"))
    return where


def gated(
    pillar, sessions=(ADMIN,), steps=("allow x",), *, active=True, incoming="deny", host=None, zone=None, opts=None
):
    """The face over a recording backend whose plans have ``steps``, on a host with ``sessions``."""
    commands = []

    def run_all(argv, **kwargs):
        commands.append(argv)
        return {"retcode": 0, "stdout": "", "stderr": ""}

    module, _ = face(pillar, opts=opts, cmd__run_all=run_all, **(host or HOST))
    backend = FakeBackend()
    backend.NAME = "ufw"
    backend.save = lambda run, config: {"saved": "before"}
    plan = zimbra_fw_backend.Plan({"added": list(steps)} if steps else {}, list(steps), None)
    module._backend = lambda config=None, settings=None: backend
    module._plans = lambda policy, parts, snapshot=None: {part: plan for part in parts}
    found = types.SimpleNamespace(active=active, incoming=incoming, **({"zone": zone} if zone else {}))
    module._snapshot = lambda policy, parts: found
    module._sessions = lambda: list(sessions)
    return module, backend, commands


@pytest.mark.parametrize("test", [True, False])
def test_a_run_that_would_cut_a_live_session_is_refused_before_anything_changes(test, rollback_directory):
    module, backend, _ = gated(AWAY)
    with pytest.raises(CommandExecutionError) as info:
        module.converge(test=test)
    assert str(info.value) == (
        f"Refused, nothing was changed:\n- {CUT}\n"
        "- set zimbra_fw:allow_cut_sessions: true to apply anyway (with zimbra_fw:confirm to be safe)"
    )
    assert backend.applied == []


def test_allow_cut_sessions_applies_and_the_first_part_that_changes_names_the_cut(rollback_directory):
    module, backend, _ = gated({**AWAY, "allow_cut_sessions": True})
    result = module.converge()
    assert result["profile"]["notes"] == [
        "cuts the ssh session from 10.9.4.2 to port 22 (zimbra_fw:ssh:from), allowed by zimbra_fw:allow_cut_sessions"
    ]
    assert "notes" not in result["rules"]
    assert len(backend.applied) == 2


def test_a_run_that_changes_nothing_or_a_firewall_that_filters_nothing_is_not_refused(rollback_directory):
    module, _, _ = gated(AWAY, steps=())
    assert module.converge() == {
        part: {"changes": {}, "applied": [], "comment": "done"} for part in ("profile", "rules")
    }
    module, backend, _ = gated({**AWAY, "enabled": False}, active=False)  # stays off: nothing is cut
    module.converge()
    assert len(backend.applied) == 2


def test_a_firewall_that_rejects_what_no_rule_allows_filters_too(rollback_directory):
    # enabled: false leaves the firewall as it is: one that rejects (ufw's REJECT) still filters
    module, backend, _ = gated({**AWAY, "enabled": False}, incoming="reject")
    with pytest.raises(CommandExecutionError, match=re.escape(CUT)):
        module.converge()
    assert backend.applied == []


def test_the_session_check_reads_our_rules_in_the_firewall_and_this_hosts_addresses(rollback_directory):
    elsewhere = Session(ipaddress.ip_address("192.168.1.1"), 2222, ipaddress.ip_address("10.9.4.2"), 51000)
    module, backend, _ = gated({**SINGLE, "ssh": {"port": 2223}}, sessions=[elsewhere])
    backend.held = [Rule("allow", "any", [PortSpec(2222, 2222, "tcp")])]  # ssh:port was 2222
    with pytest.raises(CommandExecutionError, match=r"would cut the session from 10\.9\.4\.2 to port 2222"):
        module.converge()
    own = {"network__ip_addrs": lambda: ["192.168.1.1", "10.9.4.2"], "network__ip_addrs6": lambda: []}
    module, backend, _ = gated(AWAY, host=own)  # the "admin" is this host's other address
    module.converge()
    assert len(backend.applied) == 2


def test_the_session_check_asks_for_this_hosts_addresses_only_when_a_session_would_be_cut(rollback_directory):
    asked = []
    host = {key: lambda key=key: asked.append(key) or [] for key in HOST}
    module, backend, _ = gated(SINGLE, host=host)  # the admin's session stays admitted
    module.converge()
    assert asked == [] and len(backend.applied) == 2
    module, backend, _ = gated(AWAY, host=host)
    with pytest.raises(CommandExecutionError, match=re.escape(CUT)):
        module.converge()
    assert sorted(asked) == sorted(HOST) and backend.applied == []


def test_more_sessions_than_the_check_reads_refuse_unless_cutting_is_allowed(rollback_directory, monkeypatch):
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 0)
    module, _, _ = gated(SINGLE)
    module._sessions = lambda: sessions.established(HEADER_AND_ONE_SESSION, "little")
    with pytest.raises(CommandExecutionError, match="more than 0 established TCP sessions: cannot tell"):
        module.converge()
    module, _, _ = gated({**SINGLE, "allow_cut_sessions": True})
    module._sessions = lambda: sessions.established(HEADER_AND_ONE_SESSION, "little")
    assert module.converge()["profile"]["notes"] == [
        "more than 0 established TCP sessions: not checked, allowed by zimbra_fw:allow_cut_sessions"
    ]


def test_confirm_arms_a_rollback_that_refuses_other_runs_until_confirmed(rollback_directory):
    module, _, commands = gated({**SINGLE, "confirm": 60})
    notes = module.converge()["profile"]["notes"]
    assert len(notes) == 1 and notes[0].startswith("rolled back at ") and "(in 60 s) unless zimbra_fw" in notes[0]
    record = rollback.pending()
    assert record["seconds"] == 60 and commands[-1][-1] == record["token"]
    assert module._rollback_status()["confirm_with"] == "zimbra_fw.confirm"

    plain, other, _ = gated(SINGLE)
    with pytest.raises(CommandExecutionError, match=r"a rollback is pending, due .*: confirm the last change first"):
        plain.converge()
    assert other.applied == []
    other_backend, _, _ = gated({**SINGLE, "confirm": 30})
    other_backend._backend().NAME = "firewalld"
    with pytest.raises(CommandExecutionError, match=r"a rollback of ufw is pending, .* this run is for firewalld"):
        other_backend.converge()
    again, _, _ = gated({**SINGLE, "confirm": 30})
    assert "saved before the earlier unconfirmed change" in again.converge()["profile"]["notes"][0]

    confirmed = module.confirm()
    assert confirmed["confirmed"] is True and confirmed["comment"].endswith("is cancelled; the firewall stays")
    assert module.confirm() == {"confirmed": False, "comment": "No rollback is pending: nothing to confirm"}
    assert module._rollback_status() is None


def test_test_mode_with_confirm_arms_nothing_and_says_what_would_happen(rollback_directory):
    module, _, commands = gated({**SINGLE, "confirm": 60})
    notes = module.converge(test=True)["profile"]["notes"]
    assert notes == ["would be rolled back 60 s after it is applied unless zimbra_fw.confirm is called"]
    assert commands == [] and rollback.pending() is None


def test_the_state_comment_carries_the_notes(rollback_directory):
    module, _, _ = gated({**SINGLE, "confirm": 60})
    comment = module.converge()["profile"]["comment"]
    assert comment.startswith("described ['added'] test=False; rolled back at ")
    assert comment.endswith(" unless zimbra_fw.confirm is called")


def test_a_run_that_fails_half_way_says_when_the_rollback_puts_the_firewall_back(rollback_directory):
    module, backend, _ = gated({**SINGLE, "confirm": 60})

    def fail(steps, run):
        raise ApplyFailed.at("ufw allow x", "exit 1", [])

    backend.apply = fail
    with pytest.raises(ApplyFailed) as info:
        module.converge()
    assert str(info.value).startswith("step 'ufw allow x' failed: exit 1. Already applied: nothing; ")
    assert "the saved firewall is put back at " in str(info.value) and "(in 60 s)" in str(info.value)
    assert info.value.info == {"applied": [], "failed": "ufw allow x"}


def test_a_direct_converge_of_one_part_is_checked_for_that_part_only(rollback_directory):
    module, backend, _ = gated(AWAY)
    changing = zimbra_fw_backend.Plan({"added": ["allow x"]}, ["allow x"], None)
    still = zimbra_fw_backend.Plan({}, [], None)
    module._plans = lambda policy, parts, snapshot=None: {p: changing if p == "profile" else still for p in parts}
    assert module.converge(part="rules")["rules"]["applied"] == []  # nothing to change there: not refused
    with pytest.raises(CommandExecutionError, match=r"would cut the ssh session from 10\.9\.4\.2"):
        module.converge(part="profile")
    assert [steps for steps in backend.applied if steps] == []  # the rules part applied no step


@pytest.fixture
def slow_restore(monkeypatch):
    """The ufw backend's restore, as the rollback loads it: it records what it
    was given, and is slow, so that a run can start while it puts the firewall back."""
    module = types.ModuleType("zimbra_fw_slow_backend")
    module.restoring, module.restored = threading.Event(), []

    def restore(saved, run):
        module.restoring.set()
        time.sleep(0.5)
        module.restored.append(saved)

    module.restore = restore
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(zimbra_fw_backend.REGISTRY, "ufw", module.__name__)
    return module


def test_a_run_that_arms_while_the_pending_rollback_ends_saves_the_firewall_itself(rollback_directory, slow_restore):
    first, _, _ = gated({**SINGLE, "confirm": 120})
    first.converge()
    token = rollback.pending()["token"]
    rolling = threading.Thread(target=rollback.roll_back, args=(token, lambda argv, stdin=None: (0, "", "")))
    rolling.start()
    slow_restore.restoring.wait(5)  # the first rollback holds the lock: the second run finds it pending
    second, backend, _ = gated({**SINGLE, "confirm": 60})
    second.converge()
    rolling.join(5)
    assert slow_restore.restored == [{"saved": "before"}] and len(backend.applied) == 2
    saved = json.loads(open(rollback.SAVED, encoding="utf-8").read())
    assert saved["firewall"] == {"saved": "before"}  # its own copy, not nothing


def test_a_rollback_due_while_the_run_applies_waits_for_it(rollback_directory, slow_restore):
    module, backend, _ = gated({**SINGLE, "confirm": 5})
    events = []

    def apply(steps, run):
        events.append("applied")
        if len(events) == 1:  # the rollback comes due while the first part is applied
            token = rollback.pending()["token"]
            rolling = threading.Thread(target=lambda: events.append(rollback.roll_back(token)))
            rolling.start()
            rolling.join(0.3)
        return list(steps)

    backend.apply = apply
    module.converge()
    for _ in range(50):
        if len(events) == 3:
            break
        time.sleep(0.1)
    assert events[:2] == ["applied", "applied"] and "was put back" in events[2]


def test_a_state_run_stops_when_its_rollback_came_due_between_two_parts(rollback_directory):
    module, backend, _ = gated({**SINGLE, "confirm": 5})
    module.__context__[module.RUN_CACHE] = {}
    module.converge(part="profile")
    rollback.confirm(lambda argv, stdin=None: (0, "", ""))  # or came due: no longer pending
    with pytest.raises(CommandExecutionError, match="the rollback this run armed is no longer pending"):
        module.converge(part="rules")
    assert len(backend.applied) == 1


def test_a_run_for_another_firewalld_zone_is_refused_while_a_rollback_is_pending(rollback_directory):
    first, _, _ = gated({**SINGLE, "confirm": 60}, zone="public")
    first.converge()
    second, backend, _ = gated({**SINGLE, "confirm": 60}, zone="internal")
    with pytest.raises(CommandExecutionError, match="a rollback of ufw zone 'public' is pending, and this run is for"):
        second.converge()
    assert backend.applied == []


def test_a_firewall_that_cannot_be_saved_refuses_the_run(rollback_directory):
    module, backend, _ = gated({**SINGLE, "confirm": 60})

    def save(run, config):
        raise CommandExecutionError("reading firewalld failed (exit 1): no D-Bus")

    backend.save = save
    with pytest.raises(CommandExecutionError, match="the rollback could not be armed: reading firewalld failed"):
        module.converge()
    assert backend.applied == [] and rollback.pending() is None


def test_a_stopped_firewall_is_not_started_over_a_session_its_management_rules_would_cut():
    # trusted_subnets would let the admin in, but only once the rules are in: the
    # started firewall admits the management rules put in before the start
    pillar = {**SINGLE, "backend": "firewalld", "trusted_subnets": ["10.9.0.0/16"], "ssh": {"from": ["10.8.0.0/16"]}}
    module, _ = face(pillar, **HOST)
    module._sessions = lambda: [ADMIN]
    backend = FakeBackend()
    backend.prepare_stopped = lambda policy, run, test: pytest.fail("prepared")
    module._backend = lambda config=None, settings=None: backend
    with pytest.raises(CommandExecutionError, match=re.escape(CUT)):
        module.prepare()


def test_a_converge_of_one_part_but_the_rules_is_checked_against_the_rules_it_leaves_live(rollback_directory):
    # trusted_subnets admits the admin once the rules part has run; a converge of
    # another part alone leaves the firewall's rules as they are
    pillar = {**SINGLE, "trusted_subnets": ["10.9.0.0/16"], "ssh": {"from": ["10.8.0.0/16"]}}
    module, backend, _ = gated(pillar)
    with pytest.raises(CommandExecutionError, match=re.escape(CUT)):
        module.converge(part="profile")
    assert backend.applied == []
    module.converge(part="rules")
    backend.held = [Rule("allow", "10.9.0.0/16", None)]  # the trusted subnet's rule is live now
    module.converge(part="profile")
    assert len(backend.applied) == 2


@pytest.mark.parametrize("rule_parts, refused", [(("rules",), False), (("profile", "rules"), True)])
def test_a_part_that_sets_rules_is_checked_against_the_whole_policy(rule_parts, refused, rollback_directory):
    # Our live rule admits the admin (10.9.4.2), the pillar does not. A profile
    # part that changes rules (firewalld's reload, ufw's deletes) is checked
    # as the rules part is; nftables' leaves the live rules as they are.
    module, backend, _ = gated(AWAY)
    backend.RULE_PARTS = rule_parts
    backend.held = [Rule("allow", "10.9.0.0/16", None)]
    if refused:
        with pytest.raises(CommandExecutionError, match=re.escape(CUT)):
            module.converge(part="profile")
        assert backend.applied == []
    else:
        module.converge(part="profile")
        assert len(backend.applied) == 1


def test_the_first_state_of_a_state_run_is_checked_against_every_part(rollback_directory):
    # The profile state runs first: it refuses for the rules part to come,
    # which takes away our live rule that admits the admin now.
    module, backend, _ = gated(AWAY)
    backend.held = [Rule("allow", "10.9.0.0/16", None)]
    module.__context__[module.RUN_CACHE] = {}
    with pytest.raises(CommandExecutionError, match=re.escape(CUT)):
        module.converge(part="profile")
    assert backend.applied == []


def test_a_state_run_of_some_states_is_checked_and_armed_for_those_parts_only(rollback_directory):
    # Only the firewall state (state.single): the trusted subnet that admits the
    # admin is not live, and this run does not put it in, so it is refused.
    pillar = {**SINGLE, "trusted_subnets": ["10.9.0.0/16"], "ssh": {"from": ["10.8.0.0/16"]}}
    module, backend, _ = gated(pillar)
    module.__context__[module.RUN_CACHE] = {"parts": ["firewall"]}
    backend.PARTS = ("profile", "rules", "firewall")
    with pytest.raises(CommandExecutionError, match=re.escape(CUT)):
        module.converge(part="firewall")
    module.__context__[module.RUN_CACHE] = {"parts": ["firewall", "profile", "rules"]}  # the whole formula
    module.converge(part="profile")
    assert len(backend.applied) == 1
    # Only the profile state, which has nothing to do: no rollback is armed for the others' steps.
    quiet, quiet_backend, _ = gated({**SINGLE, "confirm": 60})
    quiet_backend.PARTS = ("profile", "rules")
    still = zimbra_fw_backend.Plan({}, [], None)
    changing = zimbra_fw_backend.Plan({"added": ["allow x"]}, ["allow x"], None)
    quiet._plans = lambda policy, parts, snapshot=None: {p: still if p == "profile" else changing for p in parts}
    quiet.__context__[quiet.RUN_CACHE] = {"parts": ["profile"]}
    assert quiet.converge(part="profile")["profile"]["comment"] == "done"
    assert rollback.pending() is None


def test_a_part_waiting_for_another_is_refused_alone_and_planned_in_a_state_run(rollback_directory):
    module, backend, _ = gated(AWAY)
    waiting = zimbra_fw_backend.Plan({}, [], "The rules go in with the profile part's reload", waits_for="profile")
    changing = zimbra_fw_backend.Plan({"added": ["allow x"]}, ["allow x"], None)
    module._plans = lambda policy, parts, snapshot=None: {p: waiting if p == "rules" else changing for p in parts}
    module._sessions = lambda: []
    with pytest.raises(CommandExecutionError) as info:
        module.converge(part="rules")
    assert str(info.value) == (
        "Refused, nothing was changed:\n- part rules: The rules go in with the profile part's reload: "
        "converge part=profile first"
    )
    assert backend.applied == []
    results = module.converge()  # both parts: the profile part carries the rules
    assert results["rules"]["comment"] == "The rules go in with the profile part's reload"
    assert backend.applied == [["allow x"], []]
    # A state run: the rules state alone (state.single) is refused; after the profile state it is not.
    module.__context__[module.RUN_CACHE] = {"parts": ["rules"]}
    with pytest.raises(CommandExecutionError, match="part rules: The rules go in with the profile part's reload"):
        module.converge(part="rules")
    assert len(backend.applied) == 2
    module.__context__[module.RUN_CACHE] = {"parts": ["profile", "rules"]}
    module.converge(part="profile")
    assert module.converge(part="rules")["rules"]["comment"] == "The rules go in with the profile part's reload"
    assert module.__context__[module.RUN_CACHE]["converged"] == {"profile", "rules"}


def test_a_rollback_directory_that_is_not_ours_refuses_the_run(rollback_directory, tmp_path):
    rollback_directory.symlink_to(tmp_path)
    module, backend, _ = gated(SINGLE)
    with pytest.raises(CommandExecutionError, match=r"Refused, nothing was changed:\n- .* is not a directory owned"):
        module.converge()
    assert backend.applied == []


def test_the_salt_master_connection_is_checked_only_when_the_firewall_starts_filtering(rollback_directory):
    # the minion's connection from a port outside the range the master's rule opens (source_ret_port)
    opts = {"id": "mail1", "master_ip": "10.77.0.1", "publish_port": 4505, "master_port": 4506}
    master = Session(ipaddress.ip_address("192.168.1.1"), 1000, ipaddress.ip_address("10.77.0.1"), 4506)
    module, backend, _ = gated(SINGLE, sessions=[master], opts=opts)  # it runs: the replies are ESTABLISHED
    module.converge()
    assert len(backend.applied) == 2
    module, backend, _ = gated(SINGLE, sessions=[master], opts=opts, active=False)  # it starts: they are judged
    with pytest.raises(CommandExecutionError, match=r"cut the Salt master connection from 10\.77\.0\.1 port 4506"):
        module.converge()
    assert backend.applied == []


def test_in_a_state_run_each_part_is_planned_once_per_read_of_the_firewall():
    module, _ = face(SINGLE, **HOST)
    backend, reads, planned = FakeBackend(), [], []
    backend.LIVE_PARTS = ()

    def read_snapshot(run, live=True, config=None):
        reads.append(live)
        return types.SimpleNamespace(active=True, incoming="deny")

    def plan(part, policy, snapshot):
        planned.append(part)
        steps = ["allow x"] if part == "rules" and len(reads) == 1 else []
        return zimbra_fw_backend.Plan({"added": steps} if steps else {}, steps, None)

    backend.read_snapshot, backend.plan = read_snapshot, plan
    module._backend = lambda config=None, settings=None: backend
    module._sessions = lambda: []
    module.__context__[module.RUN_CACHE] = {}
    for part in backend.PARTS:
        module.converge(part=part)
    # the check before any change planned both parts; their states used those plans
    assert (reads, planned, backend.applied) == ([True], ["profile", "rules"], [[], ["allow x"]])
    module.converge(part="profile")  # after a change: a new read, a new plan
    assert (reads, planned) == ([True, True], ["profile", "rules", "profile"])


# ---------------------------------------------------------------- the verified no-op (zimbra_fw_noop)


class RecordedRuns:
    """State runs of the face on the real ufw backend, whose reads and plans
    the test gives: ``firewall`` is what the firewall reads as (its
    fingerprint), ``changes`` what the plans hold. Counts the parses and plans."""

    def __init__(self, monkeypatch, cachedir):
        self.cachedir, self.firewall, self.changes, self.taken = cachedir, "F1", {}, None
        self.parses, self.plans, self.reads = 0, [], []
        import zimbra_fw_config
        import zimbra_fw_noop

        parse = zimbra_fw_config.parse_config

        def counted_parse(pillar, facts):
            self.parses += 1
            return parse(pillar, facts)

        def plan(part, policy, snapshot):
            self.plans.append(part)
            changes = self.changes.get(part, {})
            return zimbra_fw_backend.Plan(changes, ["step"] if changes else [], None)

        def read_snapshot(run, live=True, config=None):
            self.reads.append("snapshot")
            return ufw.Snapshot([], None, {}, True, "deny", fingerprint=self.firewall)

        def read_fingerprint(run, zone=None):
            self.reads.append("fingerprint")
            return self.firewall

        monkeypatch.setattr(zimbra_fw_config, "parse_config", counted_parse)
        monkeypatch.setattr(zimbra_fw_noop, "_MIXED", [])  # this process's core, as the test leaves it
        for name, value in {
            "plan": plan,
            "read_snapshot": read_snapshot,
            "read_fingerprint": read_fingerprint,
            "name_taken": lambda name: self.taken,
            "ipv6_off": lambda defaults=None: None,
            "apply": lambda steps, run: [str(step) for step in steps],
        }.items():
            monkeypatch.setattr(ufw, name, value)

    def run(self, pillar=SINGLE, parts=("profile", "rules", "firewall")):
        """One state run of ``parts``: {state: (changes, comment)}."""
        self.parses, self.plans, self.reads = 0, [], []
        opts = {"id": "mail1", "file_client": "local", "cachedir": self.cachedir}
        module, _ = face(dict(pillar, backend="ufw"), opts=opts, **HOST)
        module._sessions = lambda: []
        module.__context__[module.RUN_CACHE] = {"parts": list(parts)}
        ports = module.open_ports()
        results = {"pillar": ({}, f"{len(ports['public'])} public ports")}
        for part in parts:
            outcome = module.converge(part=part)[part]
            results[part] = (outcome["changes"], outcome["comment"])
        return results

    @property
    def record_path(self):
        return os.path.join(self.cachedir, "zimbra_fw", "noop.json")


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    return RecordedRuns(monkeypatch, str(tmp_path))


def test_a_verified_noop_is_recorded_and_a_run_like_it_neither_parses_nor_plans(recorded):
    first = recorded.run()
    assert (recorded.parses, recorded.plans, recorded.reads) == (1, ["profile", "rules", "firewall"], ["snapshot"])
    assert stat_mode(recorded.record_path) == 0o600 and stat_mode(os.path.dirname(recorded.record_path)) == 0o700
    assert recorded.run() == first  # the same words, from the record
    assert (recorded.parses, recorded.plans, recorded.reads) == (0, [], ["fingerprint"])


def stat_mode(path):
    return os.stat(path).st_mode & 0o777


@pytest.mark.parametrize(
    "change",
    ["pillar", "firewall", "asked", "code", "one state", "record mode", "record text"],
)
def test_a_run_unlike_the_verified_noop_parses_reads_and_plans(recorded, change, tmp_path, monkeypatch):
    recorded.run()
    pillar, parts = SINGLE, ("profile", "rules", "firewall")
    if change == "pillar":
        pillar = dict(SINGLE, trusted_subnets=["192.168.2.0/24"])
    elif change == "firewall":
        recorded.firewall = "F2"
    elif change == "asked":  # ufw's answer to the profile name changed (another file now defines it)
        recorded.taken = None if recorded.taken else "is the application profile 'Zimbra' of another file"
    elif change == "code":  # as after saltutil.sync_all: the core on disk is not the one running
        import zimbra_fw_noop

        extra = tmp_path / "zimbra_fw_extra.py"
        extra.write_text("VALUE = 1\n")
        monkeypatch.setattr(zimbra_fw_noop, "HERE", str(tmp_path))
        monkeypatch.setattr(zimbra_fw_noop, "CORE_AT_IMPORT", zimbra_fw_noop.files_digest([str(extra)]))
        recorded.run()  # recorded with this code
        extra.write_text("VALUE = 2\n")
    elif change == "one state":
        parts = ("rules",)
    elif change == "record mode":
        os.chmod(recorded.record_path, 0o644)
    elif change == "record text":
        with open(recorded.record_path, "a", encoding="utf-8") as handle:
            handle.write("x")
    if change == "asked":  # parsed again: the pillar check now fails
        with pytest.raises(CommandExecutionError, match="profile:name: 'Zimbra' is the application profile"):
            recorded.run(pillar, parts)
        return
    before = os.stat(recorded.record_path).st_mtime_ns if os.path.exists(recorded.record_path) else None
    recorded.run(pillar, parts)
    assert recorded.parses == 1 and recorded.plans and "snapshot" in recorded.reads
    if change in ("code", "one state"):  # nor is such a run recorded
        assert os.stat(recorded.record_path).st_mtime_ns == before


def test_a_run_that_changes_something_is_not_recorded(recorded):
    recorded.changes = {"rules": {"added": ["allow from 192.168.1.0/24"]}}
    recorded.run()
    assert not os.path.exists(recorded.record_path)
    recorded.changes = {}
    recorded.run()  # verified: nothing to change
    recorded.changes = {"rules": {"added": ["allow from 192.168.1.0/24"]}}
    recorded.firewall = "F2"  # changed behind our back: the next run sees it, and the record stays F1's
    results = recorded.run()
    assert results["rules"][0] == {"added": ["allow from 192.168.1.0/24"]}
    with open(recorded.record_path, encoding="utf-8") as handle:
        assert json.load(handle)["firewall"] == "F1"
