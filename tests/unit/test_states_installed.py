"""The state zimbra_fw.firewall_installed, loaded as Salt loads it, with
Salt's dunders (__salt__, __states__, __opts__, __context__) given by the
test: a stopped firewalld is prepared (zone checked, management rules in its
permanent configuration) before it starts, never started when that fails,
and a firewalld that does not run once started fails the state."""

import importlib.util
import os

import pytest
from salt.exceptions import CommandExecutionError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIREWALLD = {"backend": "firewalld", "package": "firewalld", "program": "firewall-cmd", "service": "firewalld"}
UFW = {"backend": "ufw", "package": "ufw", "program": "ufw", "service": None}
CMD = "/usr/bin/firewall-cmd"
SSH = 'rule priority="32000" port port="22" protocol="tcp" accept'


class Minion:
    """Recorded calls of __salt__ and __states__, and a firewalld that runs or not."""

    def __init__(self, firewall=FIREWALLD, runs=(False, True), prepared=(SSH,), started=True, prepare=True):
        self.log, self.firewall, self.runs, self.prepared, self.started = [], firewall, list(runs), prepared, started
        self.salt = {
            "zimbra_fw.open_ports": self.open_ports,
            "zimbra_fw.converge": None,
            "cmd.run_all": self.run_all,
        }
        if prepare:
            self.salt["zimbra_fw.prepare"] = self.prepare
        self.states = {"service.running": self.service_running, "pkg.installed": self.pkg_installed}

    def open_ports(self):
        self.log.append(("open_ports",))
        if isinstance(self.firewall, Exception):
            raise self.firewall
        return {"firewall": self.firewall}

    def run_all(self, argv, **kwargs):
        self.log.append(("cmd.run_all", argv))
        assert kwargs == {"python_shell": False, "ignore_retcode": True, "output_loglevel": "debug"}
        runs = self.runs.pop(0) if len(self.runs) > 1 else self.runs[0]
        if runs is True:
            return {"retcode": 0, "stdout": "running", "stderr": ""}
        return {"retcode": 252, "stdout": runs or "not running", "stderr": ""}

    def prepare(self, test):
        self.log.append(("prepare", test))
        if isinstance(self.prepared, Exception):
            raise self.prepared
        return list(self.prepared)

    def service_running(self, name, enable):
        self.log.append(("service.running", name, enable))
        if self.started == "as it was":
            return {"name": name, "result": True, "changes": {}, "comment": "The service firewalld is already running"}
        if self.started is None:
            return {"name": name, "result": None, "changes": {}, "comment": "Service firewalld is set to start"}
        if not self.started:
            return {"name": name, "result": False, "changes": {}, "comment": "Service firewalld failed to start"}
        return {"name": name, "result": True, "changes": {name: True}, "comment": "Started service firewalld"}

    def pkg_installed(self, name):
        self.log.append(("pkg.installed", name))
        return {"name": name, "result": True, "changes": {name: {"new": "1.3"}}, "comment": f"{name} was installed"}


def installed(minion, monkeypatch, test=False, booted=True, which=None):
    spec = importlib.util.spec_from_file_location("zfw_states_installed", os.path.join(REPO, "_states/zimbra_fw.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    context = {}
    module.__salt__, module.__states__, module.__opts__, module.__context__ = (
        minion.salt,
        minion.states,
        {"test": test},
        context,
    )
    monkeypatch.setattr(module.salt.utils.systemd, "booted", lambda ctx: ctx is context and booted)
    monkeypatch.setattr(
        module.salt.utils.path, "which", ({"firewall-cmd": CMD, "ufw": "/usr/sbin/ufw"} if which is None else which).get
    )
    monkeypatch.setattr(module, "START_CHECKS", 3)
    monkeypatch.setattr(module.time, "sleep", lambda seconds: minion.log.append(("sleep", seconds)))
    return module.firewall_installed()


STATE = ("cmd.run_all", [CMD, "--state"])


def test_a_stopped_firewalld_gets_its_management_rules_before_it_starts(monkeypatch):
    minion = Minion()
    ret = installed(minion, monkeypatch)
    assert minion.log == [("open_ports",), STATE, ("prepare", False), ("service.running", "firewalld", True), STATE]
    assert ret == {
        "name": "zimbra_fw-installed",
        "result": True,
        "changes": {"permanent": {"added": [SSH]}, "firewalld": {"firewalld": True}},
        "comment": f"firewalld is installed ({CMD}); 1 management rule added to firewalld's permanent "
        "configuration before it starts; Started service firewalld",
    }


def test_a_running_firewalld_is_not_prepared(monkeypatch):
    minion = Minion(runs=(True,))
    ret = installed(minion, monkeypatch)
    assert minion.log == [("open_ports",), STATE, ("service.running", "firewalld", True), STATE]
    assert ret["result"] is True and ret["comment"] == f"firewalld is installed ({CMD}); Started service firewalld"


def test_a_firewalld_that_runs_and_is_left_alone_is_asked_once(monkeypatch):
    minion = Minion(runs=(True,), started="as it was")
    ret = installed(minion, monkeypatch)
    assert minion.log == [("open_ports",), STATE, ("service.running", "firewalld", True)]
    assert ret["result"] is True and ret["changes"] == {}


def test_a_bad_zone_starts_nothing(monkeypatch):
    error = CommandExecutionError("zimbra_fw:firewalld:zone: 'mail' is not a firewalld zone (zones: public)")
    minion = Minion(prepared=error)
    ret = installed(minion, monkeypatch)
    assert minion.log == [("open_ports",), STATE, ("prepare", False)]
    assert ret == {
        "name": "zimbra_fw-installed",
        "result": False,
        "changes": {},
        "comment": f"firewalld is installed ({CMD}); firewalld was not started: "
        "zimbra_fw:firewalld:zone: 'mail' is not a firewalld zone (zones: public)",
    }


def test_without_the_prepare_function_a_stopped_firewalld_is_not_started(monkeypatch):
    minion = Minion(prepare=False)
    ret = installed(minion, monkeypatch)
    assert minion.log == [("open_ports",), STATE]
    assert ret["result"] is False
    assert ret["comment"] == (
        f"firewalld is installed ({CMD}); firewalld is not running and zimbra_fw cannot prepare it before it "
        "starts (zimbra_fw.prepare is missing: run saltutil.sync_all); it was not started"
    )


def test_a_firewalld_that_does_not_run_once_started_fails_the_state(monkeypatch):
    minion = Minion(runs=(False, "failed"), prepared=())
    ret = installed(minion, monkeypatch)
    assert ret["result"] is False
    assert ret["comment"] == (
        f"firewalld is installed ({CMD}); Started service firewalld; but firewalld does not run: "
        f"'{CMD} --state' says failed (journalctl -u firewalld)"
    )
    assert ret["changes"] == {"firewalld": {"firewalld": True}}
    assert minion.log[:4] == [("open_ports",), STATE, ("prepare", False), ("service.running", "firewalld", True)]
    assert minion.log[4:] == [STATE, *[("sleep", 0.5), STATE] * 3]  # it waits, then gives up


def test_a_firewalld_that_takes_a_moment_to_run_passes(monkeypatch):
    minion = Minion(runs=(False, False, False, True), prepared=())
    ret = installed(minion, monkeypatch)
    assert ret["result"] is True
    assert minion.log[3:] == [
        ("service.running", "firewalld", True),
        STATE,
        ("sleep", 0.5),
        STATE,
        ("sleep", 0.5),
        STATE,
    ]


def test_a_service_that_fails_to_start_fails_the_state(monkeypatch):
    minion = Minion(started=False, prepared=())
    ret = installed(minion, monkeypatch)
    assert ret["result"] is False
    assert ret["comment"] == f"firewalld is installed ({CMD}); Service firewalld failed to start"
    assert minion.log[-1] == ("service.running", "firewalld", True)


def test_test_mode_says_what_would_be_added_and_changes_nothing(monkeypatch):
    minion = Minion(started=None)
    ret = installed(minion, monkeypatch, test=True)
    assert minion.log == [("open_ports",), STATE, ("prepare", True), ("service.running", "firewalld", True)]
    assert ret["result"] is None
    assert ret["changes"] == {"permanent": {"added": [SSH]}}
    assert "1 management rule would be added to firewalld's permanent configuration before it starts" in ret["comment"]


def test_the_package_is_installed_first_and_a_container_is_left_alone(monkeypatch):
    minion = Minion(runs=(True,))
    ret = installed(minion, monkeypatch, which={})
    assert minion.log[:2] == [("open_ports",), ("pkg.installed", "firewalld")]
    assert ret["result"] is False  # installed, yet no firewall-cmd to be found
    assert ret["comment"] == "firewalld was installed; firewalld's program is not found: reinstall it"
    minion = Minion()
    ret = installed(minion, monkeypatch, booted=False)
    assert minion.log == [("open_ports",)]
    assert ret["result"] is True
    assert ret["comment"] == f"firewalld is installed ({CMD}); no init system here: firewalld must already run"


@pytest.mark.parametrize("firewall", [UFW, CommandExecutionError("zimbra_fw:roles: bad")])
def test_ufw_has_no_daemon_and_a_bad_pillar_fails(monkeypatch, firewall):
    minion = Minion(firewall=firewall)
    ret = installed(minion, monkeypatch)
    assert minion.log == [("open_ports",)]
    if firewall is UFW:
        assert ret == {
            "name": "zimbra_fw-installed",
            "changes": {},
            "result": True,
            "comment": "ufw is installed (/usr/sbin/ufw)",
        }
    else:
        assert ret == {"name": "zimbra_fw-installed", "changes": {}, "result": False, "comment": "zimbra_fw:roles: bad"}
