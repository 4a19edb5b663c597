"""The firewalld helper's logic (zimbra_fw_firewalld_client) against a fake
firewalld: a recording stand-in for firewall.client and for dbus. No
firewalld here; exact calls and messages, so that mutants die."""

import io
import ipaddress
import json
import os
import re
import stat
import sys
import types

import pytest
import zimbra_fw_firewalld as fwd
import zimbra_fw_firewalld_client as helper

P = 'rule priority="32000" '
SSH = P + 'port port="22" protocol="tcp" accept'
MASTER = P + 'family="ipv4" source address="10.0.0.5" source-port port="4505-4506" protocol="tcp" accept'


class Recorder:
    """Records every call made on it, by name and arguments, in ``log``."""

    def __init__(self, log):
        self.log = log

    def record(self, *call):
        self.log.append(call)


class FakeRuntime(Recorder):
    """firewall.client.FirewallClient as change_entries and run_step use it:
    runtime ipsets (refusing overlapping entries, as firewalld does) and
    runtime rich rules. ``moments`` holds what the ipsets and rules admit
    after each change; ``setEntries`` is two moments, as in firewalld 1.3
    (fw_ipset.set_entries: set_flush, then set_restore)."""

    def __init__(self, sets=None, rules=None, log=None, permanent=None):
        super().__init__([] if log is None else log)
        self.sets = {name: list(entries) for name, entries in (sets or {}).items()}
        self.rules = {zone: list(found) for zone, found in (rules or {}).items()}
        self.moments = []
        self.permanent = permanent

    def _moment(self):
        self.moments.append(({n: tuple(e) for n, e in self.sets.items()}, {z: tuple(r) for z, r in self.rules.items()}))

    def getEntries(self, name):
        self.record("getEntries", name)
        return list(self.sets[name])

    def addEntry(self, name, entry):
        self.record("addEntry", name, entry)
        new = ipaddress.ip_network(entry, strict=False)
        for old in self.sets[name]:
            if new.overlaps(ipaddress.ip_network(old, strict=False)):
                raise RuntimeError(f"INVALID_ENTRY: Entry '{entry}' overlaps with existing entry '{old}'")
        self.sets[name].append(entry)
        self._moment()

    def removeEntry(self, name, entry):
        self.record("removeEntry", name, entry)
        self.sets[name].remove(entry)
        self._moment()

    def setEntries(self, name, entries):
        self.record("setEntries", name, list(entries))
        self.sets[name] = []
        self._moment()
        self.sets[name] = list(entries)
        self._moment()

    def queryRichRule(self, zone, rule):
        self.record("queryRichRule", zone, rule)
        return rule in self.rules.get(zone, [])

    def addRichRule(self, zone, rule):
        self.record("addRichRule", zone, rule)
        self.rules.setdefault(zone, []).append(rule)
        self._moment()

    def removeRichRule(self, zone, rule):
        self.record("removeRichRule", zone, rule)
        self.rules[zone].remove(rule)
        self._moment()

    def reload(self):
        self.record("reload")

    def config(self):
        return self.permanent

    def getZoneSettings(self, zone):
        self.record("getZoneSettings", zone)
        return FakeZoneSettings(self.log, rules=self.rules.get(zone, []))

    def setZoneSettings(self, zone, settings):
        self.record("setZoneSettings", zone, settings)


def admitted(sets, rules, name, service):
    """The networks ipset ``name`` and the cover rules for ``service`` admit."""
    covered = [ipaddress.ip_network(e, strict=False) for e in sets[name]]
    pattern = rf'source address="([^"]+)" service name="{service}" accept'
    return covered + [ipaddress.ip_network(m, strict=False) for r in rules for m in re.findall(pattern, r)]


def assert_admitted_throughout(before, after, moments, name, service):
    """Every address the set admits before and after is admitted at every moment."""
    kept = []
    for old in map(ipaddress.ip_network, before):
        for new in map(ipaddress.ip_network, after):
            if old.overlaps(new):
                kept.append(old if old.prefixlen >= new.prefixlen else new)
    assert kept, "the case keeps nothing: it tests nothing"
    for number, (sets, rules) in enumerate(moments):
        wide = admitted(sets, rules.get("public", ()), name, service)
        lost = [str(net) for net in kept if not any(net.subnet_of(w) for w in wide if w.version == net.version)]
        assert lost == [], f"moment {number}: {sets[name]} {rules.get('public')}"


def planned(name, before, after):
    """The runtime change the backend plans for ipset ``name``: before -> after."""
    current = {name: fwd.IPSet("hash:net", "inet", tuple(before))}
    return fwd._entries_change(current, {name: tuple(sorted(after))}, "public")


MTA = "zimbra-mta-v4"
JOINING = [f"10.2.0.{i}" for i in range(1, 41)]


def cover_rule(entry, service="zimbra-mta", version=4):
    return P + f'family="ipv{version}" source address="{entry}" service name="{service}" accept'


@pytest.mark.parametrize(
    "before, after",
    [
        (["10.9.9.9", "10.1.2.3", "10.1.2.4"], ["10.9.9.9", "10.1.0.0/16"]),  # a subnet replaces hosts, one stays
        (["10.9.9.9", "10.1.0.0/16"], ["10.9.9.9", "10.1.2.3", "10.1.2.4"]),  # hosts replace their subnet
        (["10.1.2.3", "10.1.2.4"], ["10.1.0.0/16"]),  # nothing stays: one setEntries
        (["10.1.0.0/16"], ["10.1.2.3", "10.2.0.1"]),
        (["10.1.2.3", "10.5.0.1"], ["10.1.2.3", "10.6.0.1"]),  # no overlap: one by one
        (["10.9.9.9"], ["10.9.9.9", *JOINING]),  # many join, one stays: refilled
        (["10.9.9.9", *JOINING], ["10.9.9.9"]),  # many leave, one stays: refilled
        (["10.9.9.9", "10.1.2.3", "10.1.2.4"], ["10.9.9.9", "10.1.0.0/16", *JOINING]),  # refilled, a subnet too
    ],
)
def test_runtime_entries_admit_what_stays_at_every_moment(before, after):
    change = planned(MTA, before, after)
    firewall = FakeRuntime({MTA: before}, {"public": [SSH]})
    helper.change_entries(firewall, None, "runtime", change)
    assert sorted(firewall.sets[MTA]) == sorted(after)
    assert firewall.rules == {"public": [SSH]}  # the cover rules are gone
    assert_admitted_throughout(before, after, firewall.moments, MTA, "zimbra-mta")


def test_a_subnet_replacing_hosts_is_covered_by_a_rule_while_they_swap():
    change = planned(MTA, ["10.9.9.9", "10.1.2.3", "10.1.2.4"], ["10.9.9.9", "10.1.0.0/16"])
    rule = cover_rule("10.1.0.0/16")
    assert change == {
        MTA: {"add": ["10.1.0.0/16"], "remove": ["10.1.2.3", "10.1.2.4"], "cover": {"zone": "public", "rules": [rule]}}
    }
    firewall = FakeRuntime({MTA: ["10.9.9.9", "10.1.2.3", "10.1.2.4"]})
    helper.change_entries(firewall, None, "runtime", change)
    assert firewall.log == [
        ("queryRichRule", "public", rule),
        ("addRichRule", "public", rule),
        ("getEntries", MTA),
        ("removeEntry", MTA, "10.1.2.3"),
        ("removeEntry", MTA, "10.1.2.4"),
        ("addEntry", MTA, "10.1.0.0/16"),
        ("removeRichRule", "public", rule),
    ]


def test_a_leaving_entry_with_host_bits_is_read_as_its_subnet():
    before = ["10.4.0.9/24", "10.9.9.9"]  # firewalld keeps an entry as it was given
    change = planned(MTA, before, ["10.4.0.0/16", "10.9.9.9"])
    firewall = FakeRuntime({MTA: before})
    helper.change_entries(firewall, None, "runtime", change)
    assert firewall.log[2:5] == [
        ("getEntries", MTA),
        ("removeEntry", MTA, "10.4.0.9/24"),
        ("addEntry", MTA, "10.4.0.0/16"),
    ]


def test_a_cover_rule_already_there_is_neither_added_nor_removed():
    rule = cover_rule("10.1.0.0/16")
    change = planned(MTA, ["10.1.2.3"], ["10.1.0.0/16"])
    firewall = FakeRuntime({MTA: ["10.1.2.3"]}, {"public": [rule]})
    helper.change_entries(firewall, None, "runtime", change)
    assert firewall.log == [
        ("queryRichRule", "public", rule),
        ("getEntries", MTA),
        ("setEntries", MTA, ["10.1.0.0/16"]),
    ]
    assert firewall.rules == {"public": [rule]}


def test_cover_rules_are_planned_for_the_runtime_only_and_per_family():
    v6 = "zimbra-all-v6"
    current = {v6: fwd.IPSet("hash:net", "inet6", ("2001:db8::1", "2001:db8:1::1"))}
    wanted = {v6: ("2001:db8::/64", "2001:db8:2::1")}
    assert fwd._entries_change(current, wanted, "dmz") == {
        v6: {
            "add": ["2001:db8::/64", "2001:db8:2::1"],
            "remove": ["2001:db8::1", "2001:db8:1::1"],
            "cover": {"zone": "dmz", "rules": [cover_rule("2001:db8::/64", "zimbra-all", 6)]},
        }
    }
    assert fwd._entries_change(current, wanted) == {
        v6: {"add": ["2001:db8::/64", "2001:db8:2::1"], "remove": ["2001:db8::1", "2001:db8:1::1"]}
    }
    vault = "mail-vault-mta-v4"  # a profile name with "-v" in it
    current = {vault: fwd.IPSet("hash:net", "inet", ("10.1.2.3",))}
    assert fwd._entries_change(current, {vault: ("10.1.0.0/16",)}, "public")[vault]["cover"] == {
        "zone": "public",
        "rules": [cover_rule("10.1.0.0/16", "mail-vault-mta")],
    }


def test_runtime_entries_without_overlap_go_one_by_one_adds_first_and_skip_what_is_done():
    firewall = FakeRuntime({MTA: ["10.1.0.1", "10.1.0.2"]})
    change = {MTA: {"add": ["10.1.0.1", "10.1.0.3"], "remove": ["10.1.0.2", "10.1.0.9"]}}
    helper.change_entries(firewall, None, "runtime", change)
    assert firewall.log == [
        ("getEntries", MTA),
        ("addEntry", MTA, "10.1.0.3"),
        ("removeEntry", MTA, "10.1.0.2"),
    ]
    gone = FakeRuntime({MTA: ["10.1.0.2"]})
    helper.change_entries(gone, None, "runtime", {MTA: {"add": ["10.1.0.4", "10.1.0.3"], "remove": ["10.1.0.2"]}})
    assert gone.log == [("getEntries", MTA), ("setEntries", MTA, ["10.1.0.3", "10.1.0.4"])]


class FakeIPSetSettings(Recorder):
    def __init__(self, log, entries):
        super().__init__(log)
        self.entries = entries

    def getEntries(self):
        return list(self.entries)


class FakeConfigIPSet(Recorder):
    def __init__(self, log, name, entries=()):
        super().__init__(log)
        self.name, self.entries = name, list(entries)

    def getSettings(self):
        return FakeIPSetSettings(self.log, self.entries)

    def setEntries(self, entries):
        self.record("setEntries", self.name, entries)

    def update(self, settings):
        self.record("update ipset", self.name, settings.fields)

    def remove(self):
        self.record("remove ipset", self.name)


class FakeConfigService(FakeConfigIPSet):
    def update(self, settings):
        self.record("update service", self.name, settings.fields)

    def remove(self):
        self.record("remove service", self.name)


class FakeZoneSettings(Recorder):
    """FirewallClientZoneSettings: services, rich rules, target."""

    def __init__(self, log, services=(), rules=()):
        super().__init__(log)
        self.services, self.rules = list(services), list(rules)

    def getServices(self):
        return list(self.services)

    def getRichRules(self):
        return list(self.rules)

    def queryRichRule(self, rule):
        self.record("permanent queryRichRule", rule)
        return rule in self.rules

    def addService(self, name):
        self.record("addService", name)

    def removeService(self, name):
        self.record("removeService", name)

    def addRichRule(self, rule):
        self.record("addRichRule", rule)

    def removeRichRule(self, rule):
        self.record("removeRichRule", rule)

    def setTarget(self, target):
        self.record("setTarget", target)


class FakeConfigZone(Recorder):
    def __init__(self, log, name, settings):
        super().__init__(log)
        self.name, self.settings = name, settings

    def getSettings(self):
        return self.settings

    def update(self, settings):
        self.record("update zone", self.name, settings)


class FakeConfig(Recorder):
    """firewall.client.FirewallClientConfig: permanent services, ipsets, zones."""

    def __init__(self, log, ipsets=None, services=(), zones=None):
        super().__init__(log)
        self.ipsets = {name: FakeConfigIPSet(log, name, entries) for name, entries in (ipsets or {}).items()}
        self.services = {name: FakeConfigService(log, name) for name in services}
        self.zones = {name: FakeConfigZone(log, name, settings) for name, settings in (zones or {}).items()}

    def getIPSetByName(self, name):
        return self.ipsets[name]

    def getIPSetNames(self):
        return list(self.ipsets)

    def addIPSet(self, name, settings):
        self.record("addIPSet", name, settings.fields)

    def getServiceByName(self, name):
        return self.services[name]

    def getServiceNames(self):
        return list(self.services)

    def addService(self, name, settings):
        self.record("addService", name, settings.fields)

    def getZoneByName(self, name):
        return self.zones[name]


def test_permanent_entries_are_one_update_of_the_list_only_when_it_changes():
    log = []
    config = FakeConfig(log, {MTA: ["10.1.0.1", "10.1.0.2"], "zimbra-mta-v6": ["2001:db8::1"]})
    changes = {
        "zimbra-mta-v6": {"add": ["2001:db8::1"], "remove": ["2001:db8::7"]},  # already as wanted
        MTA: {"add": ["10.1.0.3", "10.1.0.1"], "remove": ["10.1.0.2", "10.1.0.9"]},
        "zimbra-all-v4": {"add": ["10.1.0.5"], "remove": []},
    }
    config.ipsets["zimbra-all-v4"] = FakeConfigIPSet(log, "zimbra-all-v4")
    helper.change_entries(None, config, "permanent", changes)
    assert log == [("setEntries", MTA, ["10.1.0.1", "10.1.0.3"]), ("setEntries", "zimbra-all-v4", ["10.1.0.5"])]


def test_change_zone_adds_what_is_missing_removes_what_is_there_and_sets_the_target():
    log = []
    settings = FakeZoneSettings(log, services=["ssh", "zimbra-old"], rules=[SSH, "old rule"])
    change = {
        "add_services": ["zimbra", "ssh"],
        "add_rules": [SSH, MASTER],
        "remove_services": ["zimbra-old", "gone"],
        "remove_rules": ["old rule", "gone rule"],
    }
    assert helper.change_zone(settings, change) is settings
    assert log == [
        ("addService", "zimbra"),
        ("addRichRule", MASTER),
        ("removeService", "zimbra-old"),
        ("removeRichRule", "old rule"),
    ]
    log.clear()
    helper.change_zone(settings, {"target": "default"})
    assert log == [("setTarget", "default")]
    helper.change_zone(settings, {"target": ""})
    assert log == [("setTarget", "default")]


class FakeSettings:
    """FirewallClientServiceSettings / FirewallClientIPSetSettings: what was set."""

    def __init__(self):
        self.fields = {}

    def __getattr__(self, name):
        if not name.startswith("set"):
            raise AttributeError(name)
        return lambda value: self.fields.__setitem__(name[3:], value)


FAKE_CLIENT = types.SimpleNamespace(
    FirewallClientServiceSettings=FakeSettings, FirewallClientIPSetSettings=FakeSettings
)


def firewalld(log, **config):
    return FakeRuntime(log=log, permanent=FakeConfig(log, **config))


def test_run_step_writes_and_drops_services_and_ipsets():
    log = []
    firewall = firewalld(log, ipsets={"zimbra-mta-v4": []}, services=["zimbra"])
    service = {"short": "Zimbra", "description": "Z. mark", "ports": [["25", "tcp"], ["7000-7010", "udp"]]}
    ipset = {"short": "Zimbra IPv6", "description": "S. mark", "family": "inet6"}
    for step in (
        ["service", "zimbra", service],
        ["service", "zimbra-mta", service],
        ["drop-service", "zimbra"],
        ["ipset", "zimbra-mta-v4", ipset],
        ["ipset", "zimbra-mta-v6", ipset],
        ["drop-ipset", "zimbra-mta-v4"],
        ["reload"],
    ):
        helper.run_step(FAKE_CLIENT, firewall, step)
    service_fields = {"Short": "Zimbra", "Description": "Z. mark", "Ports": [("25", "tcp"), ("7000-7010", "udp")]}
    ipset_fields = {
        "Type": "hash:net",
        "Options": {"family": "inet6"},
        "Short": "Zimbra IPv6",
        "Description": "S. mark",
    }
    assert log == [
        ("update service", "zimbra", service_fields),
        ("addService", "zimbra-mta", service_fields),
        ("remove service", "zimbra"),
        ("update ipset", "zimbra-mta-v4", ipset_fields),
        ("addIPSet", "zimbra-mta-v6", ipset_fields),
        ("remove ipset", "zimbra-mta-v4"),
        ("reload",),
    ]
    with pytest.raises(RuntimeError) as info:
        helper.run_step(FAKE_CLIENT, firewall, ["restart"])
    assert str(info.value) == "unknown step ['restart']"


def test_run_step_changes_the_zone_in_the_scope_named_and_entries_through_change_entries():
    log = []
    permanent = FakeZoneSettings(log, services=["ssh"])
    firewall = firewalld(log, zones={"public": permanent}, ipsets={MTA: ["10.1.0.1"]})
    helper.run_step(FAKE_CLIENT, firewall, ["zone", "public", "permanent", {"add_services": ["zimbra"]}])
    assert log == [("addService", "zimbra"), ("update zone", "public", permanent)]
    log.clear()
    helper.run_step(FAKE_CLIENT, firewall, ["zone", "public", "runtime", {"target": "default"}])
    assert [call[0] for call in log] == ["getZoneSettings", "setTarget", "setZoneSettings"]
    assert log[0] == ("getZoneSettings", "public") and log[2][1] == "public"
    log.clear()
    helper.run_step(FAKE_CLIENT, firewall, ["entries", "permanent", {MTA: {"add": ["10.1.0.2"], "remove": []}}])
    assert log == [("setEntries", MTA, ["10.1.0.1", "10.1.0.2"])]
    log.clear()
    firewall.sets = {MTA: ["10.1.0.1"]}
    helper.run_step(FAKE_CLIENT, firewall, ["entries", "runtime", {MTA: {"add": ["10.1.0.2"], "remove": []}}])
    assert log == [("getEntries", MTA), ("addEntry", MTA, "10.1.0.2")]


def test_the_check_refuses_to_restrict_a_zone_whose_permanent_or_runtime_lacks_management():
    log = []
    permanent = FakeZoneSettings(log, rules=[SSH])
    firewall = firewalld(log, zones={"public": permanent})
    firewall.rules = {"public": [SSH, MASTER]}
    with pytest.raises(RuntimeError) as info:
        helper.run_step(FAKE_CLIENT, firewall, ["check", "public", [SSH, MASTER]])
    assert str(info.value) == (
        "refusing to restrict the zone public: management access is not allowed yet "
        f"(missing: {MASTER} (permanent)); apply the zimbra_fw rules first"
    )
    permanent.rules = [SSH, MASTER]
    firewall.rules = {"public": []}
    with pytest.raises(RuntimeError) as info:
        helper.run_step(FAKE_CLIENT, firewall, ["check", "public", [SSH, MASTER]])
    assert str(info.value) == (
        "refusing to restrict the zone public: management access is not allowed yet "
        f"(missing: {SSH} (runtime); {MASTER} (runtime)); apply the zimbra_fw rules first"
    )
    firewall.rules = {"public": [MASTER, SSH]}
    log.clear()
    helper.run_step(FAKE_CLIENT, firewall, ["check", "public", [SSH, MASTER]])
    assert log == [
        ("permanent queryRichRule", SSH),
        ("permanent queryRichRule", MASTER),
        ("queryRichRule", "public", SSH),
        ("queryRichRule", "public", MASTER),
    ]


# ---------------------------------------------------------------- the lock


@pytest.fixture
def lock_path(tmp_path, monkeypatch):
    path = tmp_path / "run" / "zimbra_fw" / "firewalld.lock"
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(helper, "LOCK", str(path))
    monkeypatch.setattr(helper, "LOCK_WAIT", 0.2)
    return path


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_lock_is_in_a_directory_only_its_owner_can_enter(lock_path, monkeypatch):
    fixed = []
    monkeypatch.setattr(helper.os, "chmod", lambda *args: fixed.append(args))
    monkeypatch.setattr(helper.os, "fchmod", lambda *args: fixed.append(args))
    handle = helper.locked()
    assert mode(lock_path.parent) == 0o700 and mode(lock_path) == 0o600
    assert fixed == []  # created so, not fixed after
    assert lock_path.parent.stat().st_uid == os.geteuid()
    handle.close()


class Clock:
    """time for locked(): a clock that moves one second per sleep; the
    other holder lets go at the sleep numbered ``release``."""

    def __init__(self, holder, release=None):
        self.now, self.sleeps, self.holder, self.release = 0, [], holder, release

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += 1
        if len(self.sleeps) == self.release:
            self.holder.close()


def test_a_held_lock_is_waited_for_until_lock_wait_is_over(lock_path, monkeypatch):
    monkeypatch.setattr(helper, "LOCK_WAIT", 3)
    clock = Clock(helper.locked(), release=3)
    monkeypatch.setattr(helper, "time", clock)
    helper.locked().close()
    assert clock.sleeps == [0.05] * 3
    clock = Clock(helper.locked())
    monkeypatch.setattr(helper, "time", clock)
    with pytest.raises(RuntimeError) as info:
        helper.locked()
    assert str(info.value) == f"another zimbra_fw run held {lock_path} for 3 s"
    assert clock.sleeps == [0.05] * 4  # at 1, 2, 3 s it still waits; past 3 s it gives up
    clock.holder.close()


def test_a_lock_left_open_to_others_is_closed_and_a_held_one_waits_then_fails(lock_path):
    lock_path.parent.mkdir(mode=0o755)
    os.chmod(lock_path.parent, 0o755)
    lock_path.write_text("")
    os.chmod(lock_path, 0o644)
    first = helper.locked()
    assert mode(lock_path.parent) == 0o700 and mode(lock_path) == 0o600
    with pytest.raises(RuntimeError) as info:
        helper.locked()
    assert str(info.value) == f"another zimbra_fw run held {lock_path} for 0.2 s"
    first.close()
    helper.locked().close()  # free again


@pytest.mark.parametrize("kind", ["symlink", "file", "foreign"])
def test_a_lock_directory_that_is_not_ours_is_refused(lock_path, tmp_path, kind):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if kind == "symlink":
        lock_path.parent.symlink_to(elsewhere)
    elif kind == "file":
        lock_path.parent.write_text("")
    else:
        lock_path.parent.mkdir(mode=0o700)
        if os.geteuid() != 0:
            pytest.skip("needs root to give the directory away")
        os.chown(lock_path.parent, 65534, 65534)
    with pytest.raises(RuntimeError) as info:
        helper.locked()
    assert str(info.value) == f"{lock_path.parent} is not a directory owned by uid {os.geteuid()}: remove it"
    assert not (elsewhere / "firewalld.lock").exists()


def test_a_symlink_as_the_lock_file_is_not_followed(lock_path, tmp_path):
    lock_path.parent.mkdir(mode=0o700)
    target = tmp_path / "target"
    lock_path.symlink_to(target)
    with pytest.raises(OSError):
        helper.locked()
    assert not target.exists()


# ---------------------------------------------------------------- main: what the helper reports


class FakeConnection(FakeRuntime):
    connected = True
    fail = None

    def __init__(self, wait, quiet):
        super().__init__(log=[], permanent=FakeConfig([]))
        assert (wait, quiet) == (0, True)

    def reload(self):
        if self.fail:
            raise RuntimeError(self.fail)


@pytest.fixture
def fake_firewall(monkeypatch, lock_path):
    """firewall.client, importable by main()."""
    package = types.ModuleType("firewall")
    module = types.ModuleType("firewall.client")
    module.FirewallClient = FakeConnection
    module.FirewallClientServiceSettings = module.FirewallClientIPSetSettings = FakeSettings
    package.client = module
    monkeypatch.setitem(sys.modules, "firewall", package)
    monkeypatch.setitem(sys.modules, "firewall.client", module)
    monkeypatch.setattr(FakeConnection, "connected", True)
    monkeypatch.setattr(FakeConnection, "fail", None)
    return module


def run_main(monkeypatch, capsys, request):
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(request)))
    code = 0
    try:
        helper.main()
    except SystemExit as exc:
        code = exc.code
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_main_reports_each_step_done_and_the_first_failure(monkeypatch, capsys, fake_firewall):
    service = ["service", "zimbra", {"short": "Z", "description": "d", "ports": [["25", "tcp"]]}]
    assert run_main(monkeypatch, capsys, {"steps": [service, ["reload"]]}) == (0, [{"done": 0}, {"done": 1}])
    FakeConnection.fail = "COMMAND_FAILED: boom"
    steps = {"steps": [["drop-ipset", "x"], ["reload"], ["reload"]]}
    assert run_main(monkeypatch, capsys, steps) == (1, [{"failed": 0, "error": "'x'"}])
    FakeConnection.fail = None
    steps = {"steps": [["reload"], ["dance"], ["reload"]]}
    assert run_main(monkeypatch, capsys, steps) == (1, [{"done": 0}, {"failed": 1, "error": "unknown step ['dance']"}])


def test_main_without_firewalld_or_its_lock_fails_at_the_first_step(monkeypatch, capsys, fake_firewall, lock_path):
    FakeConnection.connected = False
    failed = {"failed": 0, "error": "firewalld is not running (firewall-cmd --state)"}
    assert run_main(monkeypatch, capsys, {"steps": [["reload"]]}) == (1, [failed])

    def no_bus(wait, quiet):
        raise RuntimeError("org.freedesktop.DBus.Error.FileNotFound: no system bus")

    monkeypatch.setattr(fake_firewall, "FirewallClient", no_bus)
    failed = {"failed": 0, "error": "org.freedesktop.DBus.Error.FileNotFound: no system bus"}
    assert run_main(monkeypatch, capsys, {"steps": [["reload"]]}) == (1, [failed])
    monkeypatch.setattr(fake_firewall, "FirewallClient", FakeConnection)
    FakeConnection.connected = True
    lock_path.parent.write_text("")  # not a directory
    failed = {"failed": 0, "error": f"{lock_path.parent} is not a directory owned by uid {os.geteuid()}: remove it"}
    assert run_main(monkeypatch, capsys, {"steps": [["reload"]]}) == (1, [failed])


def test_main_without_firewalds_library_says_it_is_unavailable(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "firewall", None)
    code, lines = run_main(monkeypatch, capsys, {"steps": [["reload"]]})
    assert code == 3
    assert lines == [
        {"unavailable": "firewalld's Python library cannot be loaded: import of firewall halted; None in sys.modules"}
    ]


def test_main_answers_a_read_with_one_line(monkeypatch, capsys):
    asked = []
    monkeypatch.setattr(helper, "read", lambda zone, names: asked.append((zone, names)) or {"running": False})
    assert run_main(monkeypatch, capsys, {"read": "dmz", "services": ["zimbra"]}) == (0, [{"running": False}])
    assert run_main(monkeypatch, capsys, {"read": None}) == (0, [{"running": False}])
    assert asked == [("dmz", ["zimbra"]), (None, [])]


# ---------------------------------------------------------------- read, over a fake D-Bus


class FakeBusObject:
    def __init__(self, bus, path):
        self.bus, self.path = bus, path

    def Get(self, name, prop, dbus_interface):
        assert (name, prop, dbus_interface) == (helper.BUS_NAME, "state", helper.PROPERTIES)
        return self.bus.state

    def get_dbus_method(self, method, interface):
        def call(*args):
            self.bus.calls.append((self.path, interface, method, *args))
            return self.bus.answers[(self.path, interface.removeprefix(helper.BUS_NAME), method, *args)]

        return call


class FakeBus:
    def __init__(self, answers, state="RUNNING", owned=True):
        self.answers, self.state, self.owned, self.calls = answers, state, owned, []

    def name_has_owner(self, name):
        assert name == helper.BUS_NAME
        return self.owned

    def get_object(self, name, path, introspect):
        assert name == helper.BUS_NAME and introspect is False
        return FakeBusObject(self, path)


def fake_dbus(monkeypatch, bus):
    module = types.ModuleType("dbus")
    module.exceptions = types.SimpleNamespace(DBusException=type("DBusException", (Exception,), {}))
    if isinstance(bus, Exception):

        def no_bus():
            raise module.exceptions.DBusException(str(bus))

        module.SystemBus = no_bus
    else:
        module.SystemBus = lambda: bus
    monkeypatch.setitem(sys.modules, "dbus", module)


ZONE_SETTINGS = {
    "services": ["zimbra", "ssh"],
    "rules_str": [SSH],
    "target": "default",
    "ports": [("5", "udp")],
    "interfaces": ["eth0"],
}


def test_a_zone_view_fills_in_what_firewalld_left_out():
    assert helper.zone_view({}) == {"services": [], "rich_rules": [], "target": "default", "ports": []}


def test_read_answers_with_the_zone_ipsets_and_where_interfaces_and_sources_are(monkeypatch):
    path, config_path, zone_path = helper.PATH, helper.PATH + "/config", helper.PATH + "/config/zone/1"
    answers = {
        (path, "", "getDefaultZone"): "public",
        (path, ".zone", "getZones"): ["public", "trusted"],
        (path, "", "listServices"): ["zimbra", "ssh", "zimbra-mta"],
        (path, "", "getServiceSettings2", "zimbra"): {"ports": [("25", "tcp")]},
        (path, "", "getServiceSettings2", "zimbra-mta"): {},
        (path, ".ipset", "getIPSets"): ["zimbra-mta-v4", "zimbra-mta-v6"],
        (path, ".ipset", "getIPSetSettings", "zimbra-mta-v4"): ("", "", "", "hash:net", {}, ["10.0.0.2", "10.0.0.1"]),
        (path, ".ipset", "getIPSetSettings", "zimbra-mta-v6"): ("", "", "", "hash:net", {"family": "inet6"}, []),
        (config_path, ".config", "getZoneByName", "public"): zone_path,
        (zone_path, ".config.zone", "getSettings2"): dict(ZONE_SETTINGS, target="ACCEPT"),
        (path, ".zone", "getZoneSettings2", "public"): ZONE_SETTINGS,
        (path, ".zone", "getActiveZones"): {
            "public": {"interfaces": ["eth1", "eth0"]},
            "trusted": {"sources": ["10.9.0.0/16"]},
        },
    }
    fake_dbus(monkeypatch, FakeBus(answers))
    monkeypatch.setattr(helper.socket, "if_nameindex", lambda: [(1, "lo"), (2, "eth1"), (3, "eth0")])
    view = {"services": ["ssh", "zimbra"], "rich_rules": [SSH], "target": "default", "ports": [["5", "udp"]]}
    assert helper.read(None, ["zimbra", "zimbra-mta"]) == {
        "running": True,
        "default_zone": "public",
        "zone": "public",
        "zones": ["public", "trusted"],
        "permanent": dict(view, target="ACCEPT"),
        "runtime": view,
        "runtime_services": {"zimbra": [["25", "tcp"]], "zimbra-mta": []},
        "ipsets": {
            "zimbra-mta-v4": {"type": "hash:net", "family": "inet", "entries": ["10.0.0.1", "10.0.0.2"]},
            "zimbra-mta-v6": {"type": "hash:net", "family": "inet6", "entries": []},
        },
        "active_zones": {
            "public": {"interfaces": ["eth0", "eth1"], "sources": []},
            "trusted": {"interfaces": [], "sources": ["10.9.0.0/16"]},
        },
        "interfaces": ["eth0", "eth1"],
    }
    assert helper.read("mail", [])["permanent"] is None  # not a zone: the backend says so


@pytest.mark.parametrize("bus", [FakeBus({}, owned=False), FakeBus({}, state="INIT"), RuntimeError("no bus")])
def test_read_of_a_firewalld_that_does_not_run(monkeypatch, bus):
    fake_dbus(monkeypatch, bus)
    assert helper.read(None, []) == {"running": False}


def test_a_set_where_many_more_entries_change_than_stay_is_refilled_in_one_call():
    before, after = ["10.9.9.9", "10.9.9.8"], ["10.9.9.9", "10.9.9.8", *JOINING]
    change = planned(MTA, before, after)
    covers = [cover_rule("10.9.9.9"), cover_rule("10.9.9.8")]  # in the set's order
    assert change == {
        MTA: {"add": sorted(JOINING), "remove": [], "refill": True, "cover": {"zone": "public", "rules": covers}}
    }
    firewall = FakeRuntime({MTA: before})
    helper.change_entries(firewall, None, "runtime", change)
    assert [call[0] for call in firewall.log] == [
        *["queryRichRule"] * 2,
        *["addRichRule"] * 2,
        "getEntries",
        "setEntries",
        "removeRichRule",
        "removeRichRule",
    ]
    assert sorted(firewall.sets[MTA]) == sorted(after)
    few = planned(MTA, ["10.9.9.9", "10.9.9.8"], ["10.9.9.9", "10.9.9.8", *JOINING[:39]])  # 39 < 2 x 20: one by one
    assert "refill" not in few[MTA] and "cover" not in few[MTA]


def test_entries_that_leave_count_toward_a_refill_as_those_that_join():
    leaving = [f"10.3.0.{i}" for i in range(1, 11)]
    change = planned(MTA, ["10.9.9.9", *leaving], ["10.9.9.9", *JOINING[:10]])  # 10 join + 10 leave = 20 x 1 stays
    assert change == {
        MTA: {
            "add": sorted(JOINING[:10]),
            "remove": leaving,  # in the set's order
            "refill": True,
            "cover": {"zone": "public", "rules": [cover_rule("10.9.9.9")]},
        }
    }
    few = planned(MTA, ["10.9.9.9", *leaving], ["10.9.9.9", *JOINING[:9]])  # 19 < 20: one by one
    assert "refill" not in few[MTA]
