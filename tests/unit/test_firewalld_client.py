"""The firewalld helper (zimbra_fw_firewalld_client): its steps against a
recording stand-in for its D-Bus adapter, the adapter against a fake bus. No
firewalld here; exact calls and messages, so that mutants die."""

import ipaddress
import os
import re
import stat

import pytest
import zimbra_fw_dbus as dbus
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


class FakeFirewalld(Recorder):
    """helper.Firewalld as the steps use it: runtime ipsets (refusing
    overlapping entries, as firewalld does), runtime rich rules, and the
    permanent ipsets, services and zones. ``moments`` holds what the runtime
    ipsets and rules admit after each change; ``set_entries`` is two
    moments, as in firewalld 1.3 (fw_ipset.set_entries: set_flush, then
    set_restore). The adapter itself is tested against a fake bus below."""

    def __init__(self, sets=None, rules=None, *, permanent_sets=None, zones=None):
        super().__init__([])
        self.sets = {name: list(entries) for name, entries in (sets or {}).items()}
        self.rules = {zone: list(found) for zone, found in (rules or {}).items()}
        self.permanent_sets = {name: list(entries) for name, entries in (permanent_sets or {}).items()}
        self.zones = {(zone, "permanent"): settings for zone, settings in (zones or {}).items()}
        self.moments = []

    def _moment(self):
        self.moments.append(({n: tuple(e) for n, e in self.sets.items()}, {z: tuple(r) for z, r in self.rules.items()}))

    def entries(self, name):
        self.record("entries", name)
        return list(self.sets[name])

    def add_entry(self, name, entry):
        self.record("add_entry", name, entry)
        new = ipaddress.ip_network(entry, strict=False)
        for old in self.sets[name]:
            if new.overlaps(ipaddress.ip_network(old, strict=False)):
                raise RuntimeError(f"INVALID_ENTRY: Entry '{entry}' overlaps with existing entry '{old}'")
        self.sets[name].append(entry)
        self._moment()

    def remove_entry(self, name, entry):
        self.record("remove_entry", name, entry)
        self.sets[name].remove(entry)
        self._moment()

    def set_entries(self, name, entries):
        self.record("set_entries", name, list(entries))
        self.sets[name] = []
        self._moment()
        self.sets[name] = list(entries)
        self._moment()

    def has_rule(self, zone, rule):
        self.record("has_rule", zone, rule)
        return rule in self.rules.get(zone, [])

    def add_rule(self, zone, rule):
        self.record("add_rule", zone, rule)
        self.rules.setdefault(zone, []).append(rule)
        self._moment()

    def remove_rule(self, zone, rule):
        self.record("remove_rule", zone, rule)
        self.rules[zone].remove(rule)
        self._moment()

    def reload(self):
        self.record("reload")

    def zone_settings(self, zone, scope):
        self.record("zone_settings", zone, scope)
        if scope == "runtime":
            return {"rules_str": list(self.rules.get(zone, []))}
        return self.zones[(zone, scope)]

    def update_zone(self, zone, scope, update):
        self.record("update_zone", zone, scope, update)

    def permanent_has_rule(self, zone, rule):
        self.record("permanent_has_rule", zone, rule)
        return rule in self.zones[(zone, "permanent")].get("rules_str", [])

    def permanent_entries(self, name):
        return list(self.permanent_sets[name])

    def set_permanent_entries(self, name, entries):
        self.record("set_permanent_entries", name, entries)

    def write_service(self, name, wanted):
        self.record("write_service", name, wanted)

    def write_ipset(self, name, wanted):
        self.record("write_ipset", name, wanted)

    def remove(self, kind, name):
        self.record("remove", kind, name)


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
    firewall = FakeFirewalld({MTA: before}, {"public": [SSH]})
    helper.change_entries(firewall, "runtime", change)
    assert sorted(firewall.sets[MTA]) == sorted(after)
    assert firewall.rules == {"public": [SSH]}  # the cover rules are gone
    assert_admitted_throughout(before, after, firewall.moments, MTA, "zimbra-mta")


def test_a_subnet_replacing_hosts_is_covered_by_a_rule_while_they_swap():
    change = planned(MTA, ["10.9.9.9", "10.1.2.3", "10.1.2.4"], ["10.9.9.9", "10.1.0.0/16"])
    rule = cover_rule("10.1.0.0/16")
    assert change == {
        MTA: {"add": ["10.1.0.0/16"], "remove": ["10.1.2.3", "10.1.2.4"], "cover": {"zone": "public", "rules": [rule]}}
    }
    firewall = FakeFirewalld({MTA: ["10.9.9.9", "10.1.2.3", "10.1.2.4"]})
    helper.change_entries(firewall, "runtime", change)
    assert firewall.log == [
        ("has_rule", "public", rule),
        ("add_rule", "public", rule),
        ("entries", MTA),
        ("remove_entry", MTA, "10.1.2.3"),
        ("remove_entry", MTA, "10.1.2.4"),
        ("add_entry", MTA, "10.1.0.0/16"),
        ("remove_rule", "public", rule),
    ]


def test_a_leaving_entry_with_host_bits_is_read_as_its_subnet():
    before = ["10.4.0.9/24", "10.9.9.9"]  # firewalld keeps an entry as it was given
    change = planned(MTA, before, ["10.4.0.0/16", "10.9.9.9"])
    firewall = FakeFirewalld({MTA: before})
    helper.change_entries(firewall, "runtime", change)
    assert firewall.log[2:5] == [
        ("entries", MTA),
        ("remove_entry", MTA, "10.4.0.9/24"),
        ("add_entry", MTA, "10.4.0.0/16"),
    ]


def test_a_cover_rule_already_there_is_neither_added_nor_removed():
    rule = cover_rule("10.1.0.0/16")
    change = planned(MTA, ["10.1.2.3"], ["10.1.0.0/16"])
    firewall = FakeFirewalld({MTA: ["10.1.2.3"]}, {"public": [rule]})
    helper.change_entries(firewall, "runtime", change)
    assert firewall.log == [
        ("has_rule", "public", rule),
        ("entries", MTA),
        ("set_entries", MTA, ["10.1.0.0/16"]),
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
    firewall = FakeFirewalld({MTA: ["10.1.0.1", "10.1.0.2"]})
    change = {MTA: {"add": ["10.1.0.1", "10.1.0.3"], "remove": ["10.1.0.2", "10.1.0.9"]}}
    helper.change_entries(firewall, "runtime", change)
    assert firewall.log == [
        ("entries", MTA),
        ("add_entry", MTA, "10.1.0.3"),
        ("remove_entry", MTA, "10.1.0.2"),
    ]
    gone = FakeFirewalld({MTA: ["10.1.0.2"]})
    helper.change_entries(gone, "runtime", {MTA: {"add": ["10.1.0.4", "10.1.0.3"], "remove": ["10.1.0.2"]}})
    assert gone.log == [("entries", MTA), ("set_entries", MTA, ["10.1.0.3", "10.1.0.4"])]


def test_permanent_entries_are_one_update_of_the_list_only_when_it_changes():
    firewall = FakeFirewalld(permanent_sets={MTA: ["10.1.0.1", "10.1.0.2"], "zimbra-mta-v6": ["2001:db8::1"]})
    firewall.permanent_sets["zimbra-all-v4"] = []
    changes = {
        "zimbra-mta-v6": {"add": ["2001:db8::1"], "remove": ["2001:db8::7"]},  # already as wanted
        MTA: {"add": ["10.1.0.3", "10.1.0.1"], "remove": ["10.1.0.2", "10.1.0.9"]},
        "zimbra-all-v4": {"add": ["10.1.0.5"], "remove": []},
    }
    helper.change_entries(firewall, "permanent", changes)
    assert firewall.log == [
        ("set_permanent_entries", MTA, ["10.1.0.1", "10.1.0.3"]),
        ("set_permanent_entries", "zimbra-all-v4", ["10.1.0.5"]),
    ]


def test_a_zone_update_holds_only_the_settings_changed_each_list_whole():
    settings = {"services": ["ssh", "zimbra-old"], "rules_str": [SSH, "old rule"], "ports": [("5", "udp")]}
    change = {
        "add_services": ["zimbra", "ssh", "zimbra"],
        "add_rules": [SSH, MASTER],
        "remove_services": ["zimbra-old", "gone"],
        "remove_rules": ["old rule", "gone rule"],
    }
    assert helper.zone_update(settings, change) == {"services": ["ssh", "zimbra"], "rules_str": [SSH, MASTER]}
    ports = {"add_ports": [["7", "tcp"], ["5", "udp"]], "remove_ports": [["9", "tcp"]]}
    assert helper.zone_update(settings, ports) == {"ports": [("5", "udp"), ("7", "tcp")]}
    assert helper.zone_update(settings, {"remove_ports": [["5", "udp"]]}) == {"ports": []}
    assert helper.zone_update({}, {"add_rules": [SSH], "remove_rules": [SSH]}) == {"rules_str": []}
    assert helper.zone_update(settings, {"target": "default"}) == {"target": "default"}
    assert helper.zone_update(settings, {"target": "", "add_services": []}) == {}


def test_run_step_writes_and_drops_services_and_ipsets():
    firewall = FakeFirewalld()
    service = {"short": "Zimbra", "description": "Z. mark", "ports": [["25", "tcp"], ["7000-7010", "udp"]]}
    ipset = {"short": "Zimbra IPv6", "description": "S. mark", "family": "inet6"}
    for step in (
        ["service", "zimbra", service],
        ["drop-service", "zimbra"],
        ["ipset", "zimbra-mta-v6", ipset],
        ["drop-ipset", "zimbra-mta-v4"],
        ["reload"],
    ):
        helper.run_step(firewall, step)
    assert firewall.log == [
        ("write_service", "zimbra", service),
        ("remove", "Service", "zimbra"),
        ("write_ipset", "zimbra-mta-v6", ipset),
        ("remove", "IPSet", "zimbra-mta-v4"),
        ("reload",),
    ]
    with pytest.raises(RuntimeError) as info:
        helper.run_step(firewall, ["restart"])
    assert str(info.value) == "unknown step ['restart']"


def test_run_step_changes_the_zone_in_the_scope_named_and_entries_through_change_entries():
    firewall = FakeFirewalld({MTA: ["10.1.0.1"]}, {"public": [SSH]}, permanent_sets={MTA: ["10.1.0.1"]})
    firewall.zones[("public", "permanent")] = {"services": ["ssh"], "target": "ACCEPT"}
    helper.run_step(firewall, ["zone", "public", "permanent", {"add_services": ["zimbra"], "target": "default"}])
    assert firewall.log == [
        ("zone_settings", "public", "permanent"),
        ("update_zone", "public", "permanent", {"services": ["ssh", "zimbra"], "target": "default"}),
    ]
    firewall.log.clear()
    helper.run_step(firewall, ["zone", "public", "runtime", {"add_rules": [MASTER], "target": "default"}])
    assert firewall.log == [
        ("zone_settings", "public", "runtime"),
        ("update_zone", "public", "runtime", {"rules_str": [SSH, MASTER]}),  # a target is permanent only
    ]
    firewall.log.clear()
    helper.run_step(firewall, ["zone", "public", "runtime", {"target": "default"}])
    assert firewall.log == [("zone_settings", "public", "runtime")]  # nothing to update
    firewall.log.clear()
    helper.run_step(firewall, ["entries", "permanent", {MTA: {"add": ["10.1.0.2"], "remove": []}}])
    assert firewall.log == [("set_permanent_entries", MTA, ["10.1.0.1", "10.1.0.2"])]
    firewall.log.clear()
    helper.run_step(firewall, ["entries", "runtime", {MTA: {"add": ["10.1.0.2"], "remove": []}}])
    assert firewall.log == [("entries", MTA), ("add_entry", MTA, "10.1.0.2")]


def test_the_check_refuses_to_restrict_a_zone_whose_permanent_or_runtime_lacks_management():
    firewall = FakeFirewalld(rules={"public": [SSH, MASTER]}, zones={"public": {"rules_str": [SSH]}})
    with pytest.raises(RuntimeError) as info:
        helper.run_step(firewall, ["check", "public", [SSH, MASTER]])
    assert str(info.value) == (
        "refusing to restrict the zone public: management access is not allowed yet "
        f"(missing: {MASTER} (permanent)); apply the zimbra_fw rules first"
    )
    firewall.zones[("public", "permanent")] = {"rules_str": [SSH, MASTER]}
    firewall.rules = {"public": []}
    with pytest.raises(RuntimeError) as info:
        helper.run_step(firewall, ["check", "public", [SSH, MASTER]])
    assert str(info.value) == (
        "refusing to restrict the zone public: management access is not allowed yet "
        f"(missing: {SSH} (runtime); {MASTER} (runtime)); apply the zimbra_fw rules first"
    )
    firewall.rules = {"public": [MASTER, SSH]}
    firewall.log.clear()
    helper.run_step(firewall, ["check", "public", [SSH, MASTER]])
    assert firewall.log == [
        ("permanent_has_rule", "public", SSH),
        ("permanent_has_rule", "public", MASTER),
        ("has_rule", "public", SSH),
        ("has_rule", "public", MASTER),
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


# ---------------------------------------------------------------- D-Bus: the adapter on a fake bus


def frozen(value):
    """``value`` hashable: lists as tuples, dicts as sorted item tuples."""
    if isinstance(value, dict):
        return tuple(sorted((key, frozen(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(frozen(item) for item in value)
    return value


RUNNING = {
    ("/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", helper.BUS_NAME): [True],
    (helper.PATH, "org.freedesktop.DBus.Properties", "Get", helper.BUS_NAME, "state"): ["RUNNING"],
}
RUNNING_OWNER = next(iter(RUNNING))


class FakeBus:
    """zimbra_fw_dbus.SystemBus with firewalld on it. Each call is
    marshalled as zimbra_fw_dbus sends it and read back, as the bus reads
    it; ``answers`` maps (path, interface after firewalld's name, method,
    *arguments as read) to the reply's values, or to the error raised. A
    call not in it fails the test (KeyError). ``calls`` holds (path,
    interface, method, signature, arguments as read)."""

    def __init__(self, answers, running=True):
        self.answers = {**(RUNNING if running else {}), **answers}
        self.calls, self.closed = [], False

    def call(self, destination, path, interface, member, *args, signature=None):
        _, fields, body = dbus.read_message(
            dbus.method_call(7, (destination, path, interface), member, args, signature)
        )
        assert (fields[dbus.DESTINATION], fields[dbus.PATH], fields[dbus.MEMBER]) == (destination, path, member)
        assert destination in (helper.BUS_NAME, dbus.BUS[0])
        short = interface.removeprefix(helper.BUS_NAME) if destination == helper.BUS_NAME else interface
        self.calls.append((path, short, member, fields.get(dbus.SIGNATURE, ""), body))
        answer = self.answers[(path, short, member, *map(frozen, body))]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.closed = True


PATH, CONFIG = helper.PATH, helper.PATH + "/config"
ZONE_PATH, SERVICE_PATH, IPSET_PATH = CONFIG + "/zone/1", CONFIG + "/service/7", CONFIG + "/ipset/3"
REFUSED = helper.BUS_NAME + ".Exception"


def firewalld_on(answers):
    """helper.Firewalld on a fake bus answering ``answers``; (firewalld, bus)."""
    bus = FakeBus(answers)
    return helper.Firewalld(bus), bus


def test_the_adapter_makes_each_runtime_call_once_with_typed_arguments():
    zone = {"services": ["ssh"], "rules_str": [], "ports": [("25", "tcp")], "target": "default"}
    firewalld, bus = firewalld_on(
        {
            (PATH, ".ipset", "getEntries", MTA): [["10.0.0.1"]],
            (PATH, ".ipset", "setEntries", MTA, ("10.0.0.2", "10.0.0.3")): [],
            (PATH, ".ipset", "setEntries", MTA, ()): [],
            (PATH, ".ipset", "addEntry", MTA, "10.0.0.4"): [],
            (PATH, ".ipset", "removeEntry", MTA, "10.0.0.1"): [],
            (PATH, ".zone", "queryRichRule", "public", SSH): [True],
            (PATH, ".zone", "addRichRule", "public", SSH, 0): ["public"],
            (PATH, ".zone", "removeRichRule", "public", SSH): ["public"],
            (PATH, "", "reload"): [],
            (PATH, ".zone", "getZoneSettings2", "public"): [zone],
            (PATH, ".zone", "setZoneSettings2", "public", frozen({"rules_str": [SSH], "ports": [("7", "tcp")]})): [],
        },
    )
    assert firewalld.entries(MTA) == ["10.0.0.1"]
    firewalld.set_entries(MTA, ["10.0.0.2", "10.0.0.3"])
    firewalld.set_entries(MTA, [])
    firewalld.add_entry(MTA, "10.0.0.4")
    firewalld.remove_entry(MTA, "10.0.0.1")
    assert firewalld.has_rule("public", SSH) is True
    firewalld.add_rule("public", SSH)
    firewalld.remove_rule("public", SSH)
    firewalld.reload()
    assert firewalld.zone_settings("public", "runtime") == zone
    firewalld.update_zone("public", "runtime", {"rules_str": [SSH], "ports": [["7", "tcp"]]})
    assert [call[3] for call in bus.calls] == ["s", "sas", "sas", "ss", "ss", "ss", "ssi", "ss", "", "s", "sa{sv}"]
    assert len(bus.calls) == 11


def test_the_adapter_finds_permanent_objects_by_name_and_writes_whole_definitions():
    service = {"short": "Zimbra", "description": "Z. mark", "ports": [["25", "tcp"], ["7000-7010", "udp"]]}
    service_settings = {
        "version": "",
        "short": "Zimbra",
        "description": "Z. mark",
        "ports": [("25", "tcp"), ("7000-7010", "udp")],
        **{key: [] for key in ("modules", "protocols", "includes", "helpers", "source_ports")},
        "destination": {},
    }
    ipset = {"short": "Zimbra IPv6", "description": "S. mark", "family": "inet6"}
    ipset_settings = ("", "Zimbra IPv6", "S. mark", "hash:net", (("family", "inet6"),), ())
    firewalld, bus = firewalld_on(
        {
            (CONFIG, ".config", "getZoneByName", "public"): [ZONE_PATH],
            (ZONE_PATH, ".config.zone", "getSettings2"): [{"target": "ACCEPT"}],
            (ZONE_PATH, ".config.zone", "update2", (("target", "default"),)): [],
            (ZONE_PATH, ".config.zone", "queryRichRule", SSH): [True],
            (CONFIG, ".config", "getIPSetByName", MTA): [IPSET_PATH],
            (IPSET_PATH, ".config.ipset", "getEntries"): [["10.0.0.1"]],
            (IPSET_PATH, ".config.ipset", "setEntries", ("10.0.0.1", "10.0.0.2")): [],
            (IPSET_PATH, ".config.ipset", "update", ipset_settings): [],
            (IPSET_PATH, ".config.ipset", "remove"): [],
            (CONFIG, ".config", "getIPSetNames"): [[MTA]],
            (CONFIG, ".config", "addIPSet", "zimbra-mta-v6", ipset_settings): [IPSET_PATH],
            (CONFIG, ".config", "getServiceNames"): [["zimbra"]],
            (CONFIG, ".config", "getServiceByName", "zimbra"): [SERVICE_PATH],
            (SERVICE_PATH, ".config.service", "update2", frozen(service_settings)): [],
            (CONFIG, ".config", "addService2", "zimbra-mta", frozen(service_settings)): [SERVICE_PATH],
            (SERVICE_PATH, ".config.service", "remove"): [],
        },
    )
    assert firewalld.zone_settings("public", "permanent") == {"target": "ACCEPT"}
    firewalld.update_zone("public", "permanent", {"target": "default"})
    assert firewalld.permanent_has_rule("public", SSH) is True
    assert firewalld.permanent_entries(MTA) == ["10.0.0.1"]
    firewalld.set_permanent_entries(MTA, ["10.0.0.1", "10.0.0.2"])
    firewalld.write_ipset(MTA, ipset)
    firewalld.write_ipset("zimbra-mta-v6", ipset)
    firewalld.remove("IPSet", MTA)
    firewalld.write_service("zimbra", service)
    firewalld.write_service("zimbra-mta", service)
    firewalld.remove("Service", "zimbra")
    written = {call[2]: call[3] for call in bus.calls if call[2] in ("update2", "addService2", "addIPSet", "update")}
    assert written == {
        "update2": "a{sv}",
        "addService2": "sa{sv}",
        "addIPSet": "s(ssssa{ss}as)",
        "update": "(ssssa{ss}as)",
    }


@pytest.mark.parametrize(
    "call, answer, said",
    [
        (("entries", MTA), [[1]], "firewalld's ipset zimbra-mta-v4's entries is not as firewalld answers it: [1]"),
        (("has_rule", "public", SSH), [1], "firewalld's rich rule query is not as firewalld answers it: 1"),
        (("zone_settings", "public", "runtime"), [{"services": "ssh"}], "firewalld's runtime zone public's services"),
        (("zone_settings", "public", "runtime"), [{"ports": [("1",)]}], "firewalld's runtime zone public's ports"),
        (("entries", MTA), [], "firewalld's ipset zimbra-mta-v4's entries is not as firewalld answers it: None"),
        (("entries", MTA), [["a"], ["b"]], "getEntries answered 2 values"),
    ],
)
def test_an_answer_of_another_shape_is_an_error_not_a_value(call, answer, said):
    method = {"entries": "getEntries", "has_rule": "queryRichRule", "zone_settings": "getZoneSettings2"}[call[0]]
    interface = ".ipset" if call[0] == "entries" else ".zone"
    arguments = call[1:2] + ((SSH,) if call[0] == "has_rule" else ())
    firewalld, _ = firewalld_on({(PATH, interface, method, *arguments): answer})
    with pytest.raises(dbus.BrokenMessage, match="^" + re.escape(said)):
        getattr(firewalld, call[0])(*call[1:])


@pytest.mark.parametrize(
    "call, answers, said",
    [
        (("permanent_entries", MTA), {(CONFIG, ".config", "getIPSetByName", MTA): [7]}, "IPSet path"),
        (
            ("permanent_entries", MTA),
            {
                (CONFIG, ".config", "getIPSetByName", MTA): [IPSET_PATH],
                (IPSET_PATH, ".config.ipset", "getEntries"): [7],
            },
            "ipset zimbra-mta-v4's entries",
        ),
        (
            ("permanent_has_rule", "public", SSH),
            {
                (CONFIG, ".config", "getZoneByName", "public"): [ZONE_PATH],
                (ZONE_PATH, ".config.zone", "queryRichRule", SSH): ["yes"],
            },
            "rich rule query",
        ),
        (
            ("write_service", "zimbra", {"short": "Z", "description": "", "ports": []}),
            {(CONFIG, ".config", "getServiceNames"): [[1]]},
            "Service names",
        ),
    ],
)
def test_a_permanent_answer_of_another_shape_is_an_error_that_names_it(call, answers, said):
    firewalld, _ = firewalld_on(answers)
    with pytest.raises(dbus.BrokenMessage, match="^" + re.escape(f"firewalld's {said} is not as firewalld answers it")):
        getattr(firewalld, call[0])(*call[1:])


def test_a_permanent_object_path_that_is_not_one_is_never_called():
    firewalld, bus = firewalld_on({(CONFIG, ".config", "getZoneByName", "public"): ["/a/../b"]})
    with pytest.raises(ValueError, match=re.escape("not a D-Bus object path: '/a/../b'")):
        firewalld.permanent_has_rule("public", SSH)
    assert [call[2] for call in bus.calls] == ["getZoneByName"]


def test_values_no_d_bus_type_holds_are_refused_before_anything_is_sent():
    firewalld, bus = firewalld_on({})
    with pytest.raises(ValueError, match=re.escape("a D-Bus string cannot hold a NUL: 'a\\x00b'")):
        firewalld.add_entry(MTA, "a\0b")
    with pytest.raises(ValueError, match=r"^not a D-Bus string: 25$"):
        firewalld.update_zone("public", "runtime", {"ports": [[25, "tcp"]]})
    with pytest.raises(KeyError):
        firewalld.update_zone("public", "runtime", {"masquerade": True})  # a setting zimbra_fw never sends
    assert bus.calls == []


# ---------------------------------------------------------------- run_steps: the lock, the bus, the steps


@pytest.fixture
def system_bus(monkeypatch):
    """Make zimbra_fw_dbus.SystemBus answer with the FakeBus given (or raise the exception given)."""

    def use(bus):
        def connect(wait):
            assert wait == helper.CHANGE_WAIT
            if isinstance(bus, Exception):
                raise bus
            return bus

        monkeypatch.setattr(helper.dbus, "SystemBus", connect)
        return bus

    return use


def test_run_steps_reports_the_steps_done_and_the_first_failure(system_bus, lock_path):
    bus = system_bus(FakeBus({(PATH, "", "reload"): []}))
    assert helper.run_steps([["reload"], ["reload"]]) == (2, None)
    assert [call[2] for call in bus.calls] == ["NameHasOwner", "Get", "reload", "reload"]
    assert bus.closed
    system_bus(FakeBus({(PATH, "", "reload"): dbus.BusError(REFUSED, "COMMAND_FAILED: boom")}))
    assert helper.run_steps([["reload"], ["reload"]]) == (0, "COMMAND_FAILED: boom")
    other = dbus.BusError("org.freedesktop.DBus.Error.NoReply", "Connection was disconnected")
    system_bus(FakeBus({(PATH, "", "reload"): other}))
    said = "org.freedesktop.DBus.Error.NoReply: Connection was disconnected"
    assert helper.run_steps([["reload"]]) == (0, said)
    system_bus(FakeBus({(PATH, "", "reload"): dbus.BusError(REFUSED, "")}))  # firewalld said nothing
    assert helper.run_steps([["reload"]]) == (0, REFUSED)
    system_bus(FakeBus({(PATH, "", "reload"): []}))
    assert helper.run_steps([["reload"], ["dance"], ["reload"]]) == (1, "unknown step ['dance']")
    system_bus(FakeBus({(PATH, "", "reload"): dbus.Unreachable("the system bus closed the connection")}))
    assert helper.run_steps([["reload"]]) == (0, "the system bus closed the connection")


def test_run_steps_without_firewalld_or_its_lock_changes_nothing(system_bus, lock_path):
    bus = system_bus(FakeBus({}))
    lock_path.parent.write_text("")  # not a directory
    said = f"{lock_path.parent} is not a directory owned by uid {os.geteuid()}: remove it"
    assert helper.run_steps([["reload"]]) == (0, said)
    assert bus.calls == []  # nothing asked without the lock
    lock_path.parent.unlink()
    system_bus(FakeBus({RUNNING_OWNER: [False]}, running=False))
    assert helper.run_steps([["reload"]]) == (0, "firewalld is not running (firewall-cmd --state)")
    system_bus(dbus.NoBus("no system bus at /run/dbus/system_bus_socket: gone"))
    assert helper.run_steps([["reload"]]) == (0, "no system bus at /run/dbus/system_bus_socket: gone")


def test_run_steps_against_a_firewalld_that_is_starting_changes_nothing(system_bus, lock_path):
    bus = system_bus(FakeBus({(PATH, "org.freedesktop.DBus.Properties", "Get", helper.BUS_NAME, "state"): ["INIT"]}))
    assert helper.run_steps([["reload"]]) == (0, "firewalld is not running (firewall-cmd --state)")
    assert [call[2] for call in bus.calls] == ["NameHasOwner", "Get"]


def test_a_set_where_many_more_entries_change_than_stay_is_refilled_in_one_call():
    before, after = ["10.9.9.9", "10.9.9.8"], ["10.9.9.9", "10.9.9.8", *JOINING]
    change = planned(MTA, before, after)
    covers = [cover_rule("10.9.9.9"), cover_rule("10.9.9.8")]  # in the set's order
    assert change == {
        MTA: {"add": sorted(JOINING), "remove": [], "refill": True, "cover": {"zone": "public", "rules": covers}}
    }
    firewall = FakeFirewalld({MTA: before})
    helper.change_entries(firewall, "runtime", change)
    assert [call[0] for call in firewall.log] == [
        *["has_rule"] * 2,
        *["add_rule"] * 2,
        "entries",
        "set_entries",
        "remove_rule",
        "remove_rule",
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
