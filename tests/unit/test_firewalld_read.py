"""Reading firewalld over D-Bus in this process (zimbra_fw_firewalld_read),
against a fake bus answering each call as firewalld would. The calls are the
exact ones firewalld's API takes; test_sandbox_firewalld.py reads a real
firewalld and compares with dbus-python's reading."""

import pytest
import zimbra_fw_dbus as dbus
import zimbra_fw_firewalld_read as reader

SSH = 'rule family="ipv4" source address="10.0.0.0/8" service name="ssh" accept'
PATH, CONFIG = reader.PATH, reader.PATH + "/config"
ZONE_PATH = CONFIG + "/zone/1"
PROPERTIES = "org.freedesktop.DBus.Properties"
ZONE_SETTINGS = {
    "services": ["zimbra", "ssh"],
    "rules_str": [SSH],
    "target": "default",
    "ports": [("5", "udp")],
    "interfaces": ["eth0"],
}


class FakeBus:
    """zimbra_fw_dbus.SystemBus's ``call``: (path, interface after
    firewalld's bus name, member, *arguments) -> the one value it answers
    (an exception is raised); records the calls."""

    def __init__(self, answers, owned=True, state="RUNNING"):
        self.answers, self.calls = dict(answers), []
        self.answers[(*dbus.BUS[1:], "NameHasOwner", reader.BUS_NAME)] = owned
        self.answers[(PATH, PROPERTIES, "Get", reader.BUS_NAME, "state")] = state

    def call(self, destination, path, interface, member, *args):
        self.calls.append((destination, path, interface, member, *args))
        assert destination == (dbus.BUS[0] if path == dbus.BUS[1] else reader.BUS_NAME)
        if interface.startswith(reader.BUS_NAME):
            interface = interface[len(reader.BUS_NAME) :]
        answer = self.answers[(path, interface, member, *args)]
        if isinstance(answer, Exception):
            raise answer
        return [answer]


def firewalld_answers():
    return {
        (PATH, "", "getDefaultZone"): "public",
        (PATH, ".zone", "getZones"): ["public", "trusted"],
        (PATH, "", "listServices"): ["zimbra", "ssh", "zimbra-mta"],
        (PATH, "", "getServiceSettings2", "zimbra"): {"ports": [("25", "tcp")]},
        (PATH, "", "getServiceSettings2", "zimbra-mta"): {},
        (PATH, ".ipset", "getIPSets"): ["zimbra-mta-v4", "zimbra-mta-v6"],
        (PATH, ".ipset", "getIPSetSettings", "zimbra-mta-v4"): ("", "", "", "hash:net", {}, ["10.0.0.2", "10.0.0.1"]),
        (PATH, ".ipset", "getIPSetSettings", "zimbra-mta-v6"): ("", "", "", "hash:net", {"family": "inet6"}, []),
        (CONFIG, ".config", "getZoneByName", "public"): ZONE_PATH,
        (ZONE_PATH, ".config.zone", "getSettings2"): dict(ZONE_SETTINGS, target="ACCEPT"),
        (PATH, ".zone", "getZoneSettings2", "public"): ZONE_SETTINGS,
        (PATH, ".zone", "getActiveZones"): {
            "public": {"interfaces": ["eth1", "eth0"]},
            "trusted": {"sources": ["10.9.0.0/16"]},
        },
    }


def test_a_zone_view_fills_in_what_firewalld_left_out():
    assert reader.zone_view({}, "zone") == {"services": [], "rich_rules": [], "target": "default", "ports": []}


def test_read_answers_with_the_zone_ipsets_and_where_interfaces_and_sources_are(monkeypatch):
    bus = FakeBus(firewalld_answers())
    monkeypatch.setattr(reader.socket, "if_nameindex", lambda: [(1, "lo"), (2, "eth1"), (3, "eth0")])
    view = {"services": ["ssh", "zimbra"], "rich_rules": [SSH], "target": "default", "ports": [["5", "udp"]]}
    assert reader.read(reader.Firewalld(bus), None, ["zimbra", "zimbra-mta"]) == {
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
    assert reader.read(reader.Firewalld(bus), "mail", [])["permanent"] is None  # not a zone: the backend says so
    assert (
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "NameHasOwner",
        reader.BUS_NAME,
    ) in (bus.calls)


@pytest.mark.parametrize(
    "owned, state, asked", [(False, "RUNNING", ["NameHasOwner"]), (True, "INIT", ["NameHasOwner", "Get"])]
)
def test_read_of_a_firewalld_that_does_not_run_asks_nothing_more(owned, state, asked):
    bus = FakeBus({}, owned=owned, state=state)
    assert reader.read(reader.Firewalld(bus), None, []) == {"running": False}
    assert [call[3] for call in bus.calls] == asked


def test_state_without_a_system_bus_is_a_firewalld_that_does_not_run(monkeypatch, tmp_path):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/none")
    assert reader.state(None, []) == {"running": False}


def test_state_of_a_bus_that_cannot_be_talked_to_is_an_error_not_a_stopped_firewalld(monkeypatch):
    def refused():
        raise dbus.Unreachable("the system bus refused us: b'REJECTED EXTERNAL'")

    monkeypatch.setattr(reader.dbus, "SystemBus", refused)
    with pytest.raises(dbus.Unreachable, match="refused us"):
        reader.state(None, [])


def test_state_reads_on_one_connection_and_closes_it(monkeypatch):
    bus = FakeBus(firewalld_answers())
    closed = []
    monkeypatch.setattr(reader.dbus, "SystemBus", lambda: Closing(bus, closed))
    bus.answers[(PATH, "", "getDefaultZone")] = "trusted"
    assert reader.state("public", ["zimbra"])["zone"] == "public"  # the zone asked for, not the default
    assert closed == [True]


class Closing:
    def __init__(self, bus, closed):
        self.bus, self.closed = bus, closed

    def call(self, *args):
        return self.bus.call(*args)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.closed.append(True)


def test_a_failed_call_is_raised_as_a_dbus_failure(monkeypatch):
    answers = firewalld_answers()
    answers[(PATH, ".ipset", "getIPSets")] = dbus.BusError("org.fedoraproject.FirewallD1.Exception", "NOT_RUNNING")
    monkeypatch.setattr(reader.dbus, "SystemBus", lambda: Closing(FakeBus(answers), []))
    with pytest.raises(dbus.DBusFailure, match="NOT_RUNNING"):
        reader.state(None, [])


@pytest.mark.parametrize(
    "call, answer, why",
    [
        ((*dbus.BUS[1:], "NameHasOwner", reader.BUS_NAME), "yes", "NameHasOwner answered 'yes'"),
        ((PATH, "", "getDefaultZone"), ["public"], "default zone"),
        ((PATH, ".zone", "getZones"), ["public", 7], "zones"),
        ((PATH, "", "getServiceSettings2", "zimbra"), {"ports": ["25/tcp"]}, "service zimbra's ports"),
        ((PATH, ".ipset", "getIPSetSettings", "zimbra-mta-v4"), ("", "", "", "hash:net", {}), "ipset zimbra-mta-v4"),
        ((PATH, ".ipset", "getIPSetSettings", "zimbra-mta-v6"), ("", "", "", 1, {}, []), "ipset zimbra-mta-v6's type"),
        (
            (ZONE_PATH, ".config.zone", "getSettings2"),
            dict(ZONE_SETTINGS, target=["ACCEPT"]),
            "permanent zone public's target",
        ),
        (
            (PATH, ".zone", "getZoneSettings2", "public"),
            dict(ZONE_SETTINGS, rules_str=[7]),
            "runtime zone public's rich rules",
        ),
        (
            (PATH, ".zone", "getZoneSettings2", "public"),
            dict(ZONE_SETTINGS, ports=[("25",)]),
            "runtime zone public's ports",
        ),
        ((PATH, ".zone", "getActiveZones"), {"public": ["eth0"]}, "active zone public"),
        ((PATH, ".zone", "getActiveZones"), {"public": {1: ["eth0"]}}, "active zone public"),
        ((PATH, ".zone", "getZoneSettings2", "public"), {1: "DROP", 2: ["ssh"]}, "runtime zone public"),
        (
            (PATH, ".ipset", "getIPSetSettings", "zimbra-mta-v6"),
            ("", "", "", "hash:net", {1: "inet6"}, []),
            "ipset zimbra-mta-v6's options",
        ),
        ((CONFIG, ".config", "getZoneByName", "public"), 7, "zone path"),
        ((PATH, "", "listServices"), "zimbra", "services"),
        ((PATH, ".ipset", "getIPSets"), [1], "ipsets"),
        ((PATH, ".zone", "getActiveZones"), ["public"], "active zones"),
        ((PATH, ".zone", "getActiveZones"), {7: {}}, "active zones"),
        ((PATH, ".zone", "getActiveZones"), {"public": {"interfaces": "eth0"}}, "active zone public's interfaces"),
        (
            (PATH, ".zone", "getZoneSettings2", "public"),
            dict(ZONE_SETTINGS, services="ssh"),
            "runtime zone public's services",
        ),
        (
            (PATH, ".ipset", "getIPSetSettings", "zimbra-mta-v6"),
            ("", "", "", "hash:net", {"family": 6}, []),
            "ipset zimbra-mta-v6's family",
        ),
        (
            (PATH, ".ipset", "getIPSetSettings", "zimbra-mta-v4"),
            ("", "", "", "hash:net", {}, "10.0.0.1"),
            "ipset zimbra-mta-v4's entries",
        ),
        ((PATH, "", "getServiceSettings2", "zimbra"), ["25"], "service zimbra"),
    ],
)
def test_an_answer_of_another_shape_than_firewalld_gives_is_an_error_not_a_snapshot(call, answer, why):
    answers = firewalld_answers()
    bus = FakeBus(answers)
    bus.answers[call] = answer
    with pytest.raises(dbus.BrokenMessage) as info:
        reader.read(reader.Firewalld(bus), None, ["zimbra"])
    expected = why if why.startswith("NameHasOwner") else f"firewalld's {why} is not as firewalld answers it: "
    assert str(info.value).startswith(expected) and not str(info.value).endswith(": None")  # the value shown


class Answering(FakeBus):
    """A FakeBus whose getDefaultZone answers ``values``, however many."""

    def __init__(self, values):
        super().__init__(firewalld_answers())
        self.values = values

    def call(self, destination, path, interface, member, *args):
        return self.values if member == "getDefaultZone" else super().call(destination, path, interface, member, *args)


@pytest.mark.parametrize("values", [[], ["public", "extra"]])
def test_a_call_answered_with_no_value_or_two_is_an_error(values):
    with pytest.raises(dbus.BrokenMessage, match=f"getDefaultZone answered {len(values)} values, not one"):
        reader.read(reader.Firewalld(Answering(values)), None, [])
