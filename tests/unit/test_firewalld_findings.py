"""The firewalld backend's audit findings (a zone whose rules apply to
nothing, an interface in the trusted zone) and its preparation of a stopped
firewalld (the zone checked and the management rules put in its permanent
configuration with firewall-offline-cmd before it starts). No firewalld here."""

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_firewalld as fwd
import zimbra_fw_policy as policies

P = 'rule priority="32000" '
SSH = P + 'family="ipv4" source address="10.9.0.1" port port="22" protocol="tcp" accept'
SSH6 = P + 'family="ipv6" source address="2001:db8::1" port port="22" protocol="tcp" accept'


def snapshot(zone="public", default="public", active=None, interfaces=("eth0",)):
    empty = fwd.Zone(frozenset(), (), "default", ())
    return fwd.Snapshot(True, zone, default, {}, {}, {}, {}, empty, empty, active or {}, tuple(interfaces))


def nothing(zone, where):
    return (
        "high",
        f"firewalld zone {zone} holds no interface or source: its rules apply to nothing ({where}); "
        f"add the interface to it (firewall-cmd --permanent --zone={zone} --change-interface=NAME) "
        "or set zimbra_fw:firewalld:zone",
    )


def trusted(interface, how=""):
    return (
        "high",
        f"interface {interface} is in firewalld's trusted zone{how}: everything arriving on it is accepted, "
        "whatever zimbra_fw's rules say",
    )


DEFAULT = " (the default zone, which holds every interface no zone holds)"


def test_the_default_zone_gets_the_interfaces_no_zone_holds():
    assert fwd.audit_findings(snapshot()) == []
    assert fwd.audit_findings(snapshot(active={"public": (("eth0",), ())})) == []
    assert fwd.audit_findings(snapshot(active={"internal": (("eth1",), ())}, interfaces=["eth0", "eth1"])) == []


def test_a_zone_that_holds_no_interface_or_source_is_reported():
    assert fwd.audit_findings(snapshot(zone="mail")) == [nothing("mail", "eth0 in public")]
    moved = snapshot(active={"internal": (("eth0",), ()), "dmz": (("eth1",), ())}, interfaces=["eth1", "eth0"])
    assert fwd.audit_findings(moved) == [nothing("public", "eth0 in internal, eth1 in dmz")]
    assert fwd.audit_findings(snapshot(zone="mail", interfaces=[])) == [nothing("mail", "no interface")]


def test_a_zone_with_a_source_or_an_interface_of_its_own_is_not_reported():
    assert fwd.audit_findings(snapshot(zone="mail", active={"mail": ((), ("10.0.0.0/8",))})) == []
    assert fwd.audit_findings(snapshot(zone="mail", active={"mail": (("eth0",), ())})) == []
    assert fwd.audit_findings(snapshot(zone="mail", active={"mail": (("wg0",), ())})) == []  # not seen, still held


def test_an_interface_in_the_trusted_zone_is_reported():
    active = {"trusted": (("eth1",), ("10.9.0.0/16",)), "public": (("eth0",), ())}
    assert fwd.audit_findings(snapshot(active=active, interfaces=["eth0", "eth1"])) == [
        trusted("eth1"),
        (
            "high",
            "source 10.9.0.0/16 is in firewalld's trusted zone: everything it sends is accepted on every "
            "interface, whatever zimbra_fw's rules say",
        ),
    ]
    by_default = snapshot(default="trusted", active={"public": (("eth0",), ())}, interfaces=["eth0", "eth2"])
    assert fwd.audit_findings(by_default) == [trusted("eth2", DEFAULT)]
    everything = snapshot(default="trusted", interfaces=["eth0"])
    assert fwd.audit_findings(everything) == [nothing("public", "eth0 in trusted"), trusted("eth0", DEFAULT)]


def test_no_findings_when_the_zones_were_not_read():
    assert fwd.audit_findings(snapshot()._replace(active_zones=None)) == []
    assert fwd.audit_findings(snapshot()._replace(interfaces=None)) == []


# ---------------------------------------------------------------- a stopped firewalld, before it starts

OFFLINE = "/usr/bin/firewall-offline-cmd"


class Offline:
    """A command runner that answers as firewall-offline-cmd would."""

    def __init__(self, zones="block dmz public trusted", default="public\n", present=(), fail=None):
        self.zones, self.default, self.present, self.fail, self.calls = zones, default, present, fail, []

    def __call__(self, argv, stdin=None):
        self.calls.append(argv)
        assert argv[0] == OFFLINE and stdin is None
        if self.fail and self.fail in argv:
            return 2, "", "Error: INVALID_ZONE"
        if argv[1:] == ["--get-zones"]:
            return 0, self.zones + "\n", ""
        if argv[1:] == ["--get-default-zone"]:
            return 0, self.default, ""
        if argv[2].startswith("--query-rich-rule="):
            return (0, "yes", "") if argv[2].split("=", 1)[1] in self.present else (1, "no", "")
        return 0, "success", ""


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(fwd.salt.utils.path, "which", {"firewall-offline-cmd": OFFLINE}.get)


def policy_of(**pillar):
    ssh = {"from": ["10.9.0.1", "2001:db8::1"]}
    return policies.build(cfg.parse_config({"roles": ["mta"], "backend": "firewalld", "ssh": ssh, **pillar}))


def test_a_stopped_firewalld_gets_the_management_rules_it_lacks_in_its_default_zone(offline):
    run = Offline(present=[SSH])
    assert fwd.prepare_stopped(policy_of(), run) == [SSH6]
    assert run.calls == [
        [OFFLINE, "--get-zones"],
        [OFFLINE, "--get-default-zone"],
        [OFFLINE, "--zone=public", f"--query-rich-rule={SSH}"],
        [OFFLINE, "--zone=public", f"--query-rich-rule={SSH6}"],
        [OFFLINE, "--zone=public", f"--add-rich-rule={SSH6}"],
    ]


def test_the_zone_of_the_pillar_and_test_mode_change_nothing(offline):
    run = Offline()
    assert fwd.prepare_stopped(policy_of(firewalld={"zone": "dmz"}), run, test=True) == [SSH, SSH6]
    assert run.calls == [
        [OFFLINE, "--get-zones"],
        [OFFLINE, "--zone=dmz", f"--query-rich-rule={SSH}"],
        [OFFLINE, "--zone=dmz", f"--query-rich-rule={SSH6}"],
    ]


def test_an_unknown_zone_is_refused_before_anything_changes(offline):
    run = Offline()
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.prepare_stopped(policy_of(firewalld={"zone": "mail"}), run)
    assert (
        str(info.value)
        == "zimbra_fw:firewalld:zone: 'mail' is not a firewalld zone (zones: block, dmz, public, trusted)"
    )
    assert run.calls == [[OFFLINE, "--get-zones"]]
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.prepare_stopped(policy_of(), Offline(default="work\n"))
    assert (
        str(info.value)
        == "zimbra_fw:firewalld:zone: 'work' is not a firewalld zone (zones: block, dmz, public, trusted)"
    )


def test_a_failing_offline_command_is_named(offline):
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.prepare_stopped(policy_of(), Offline(fail="--get-zones"))
    assert str(info.value) == f"'{OFFLINE} --get-zones' failed (exit 2): Error: INVALID_ZONE"
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.prepare_stopped(policy_of(), Offline(fail=f"--add-rich-rule={SSH}"))
    assert str(info.value) == f"'{OFFLINE} --zone=public --add-rich-rule={SSH}' failed (exit 2): Error: INVALID_ZONE"


def test_without_firewall_offline_cmd_nothing_is_prepared(monkeypatch):
    monkeypatch.setattr(fwd.salt.utils.path, "which", {}.get)
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.prepare_stopped(policy_of(), Offline())
    assert str(info.value) == "firewall-offline-cmd is not available on this minion: install 'firewalld'"
