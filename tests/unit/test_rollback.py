"""The pending-rollback bookkeeping of commit-confirmed changes: the record
and its hostile forms, the commands that arm a rollback, files saved and
put back byte for byte, and arming, extending, confirming and rolling back
in a private directory (the backend's restore is a recorder here: what it
restores is the backends' own, shown in the sandbox)."""

import json
import os
import stat
import sys
import threading
import time
import types

import pytest
import zimbra_fw_backend
import zimbra_fw_rollback as rollback


@pytest.fixture
def directory(tmp_path, monkeypatch):
    """The bookkeeping in a directory of the test's."""
    where = tmp_path / "zimbra_fw"
    monkeypatch.setattr(rollback, "DIRECTORY", str(where))
    for name, file_name in (("PENDING", "pending.json"), ("SAVED", "saved.json"), ("FAILED", "failed.json")):
        monkeypatch.setattr(rollback, name, str(where / file_name))
    monkeypatch.setattr(rollback, "LOCK", str(where / "rollback.lock"))
    return where


class Commands(list):
    """A command runner that records the commands and answers ``retcode``."""

    def __init__(self, retcode=0):
        super().__init__()
        self.retcode = retcode

    def __call__(self, argv, stdin=None):
        self.append(argv)
        return self.retcode, "", "it failed" if self.retcode else ""


@pytest.fixture
def backend(monkeypatch):
    """A backend module whose restore records what it was given (or fails)."""
    module = types.ModuleType("zimbra_fw_test_backend")
    module.restored = []
    module.error = None

    def restore(saved, run):
        if module.error:
            raise module.error
        module.restored.append(saved)

    module.restore = restore
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(zimbra_fw_backend.REGISTRY, "ufw", module.__name__)
    return module


GOOD = {"token": "0123456789abcdef", "due": 1.5, "seconds": 10, "backend": "ufw", "unit": None, "log_file": None}


def test_a_record_is_read_only_when_it_is_one():
    assert rollback.parse_record(json.dumps(GOOD)) == GOOD


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        json.dumps({**GOOD, "token": "../../etc/passwd"}),
        json.dumps({**GOOD, "token": 7}),
        json.dumps({**GOOD, "token": ""}),
        json.dumps({**GOOD, "token": "\u0663\u0664" * 8}),  # digits, but not ASCII ones
        json.dumps({**GOOD, "token": "0123456789ABCDEF"}),
        json.dumps({**GOOD, "due": True}),
        json.dumps({**GOOD, "due": "soon"}),
        json.dumps({**GOOD, "backend": "iptables"}),
        json.dumps({**GOOD, "backend": ["ufw"]}),
        json.dumps({**GOOD, "unit": "sshd.service"}),
        json.dumps({**GOOD, "log_file": ["/var/log/salt/minion"]}),
        json.dumps({key: value for key, value in GOOD.items() if key != "unit"}),
    ],
)
def test_a_hostile_record_is_no_record(text):
    assert rollback.parse_record(text) is None


def test_due_text_says_when_in_utc_and_how_long_from_now():
    assert rollback.due_text(0, -120) == "1970-01-01 00:00:00 UTC (in 120 s)"
    assert rollback.due_text(0, 30.4) == "1970-01-01 00:00:00 UTC (30 s ago)"


def test_the_rollback_is_a_systemd_timer_or_this_script_detached():
    script = ["/py", "-I", rollback.SCRIPT]
    assert rollback.arm_argv("/py", "ab12", 120, systemd=False) == [*script, "--detach", "ab12"]
    assert rollback.arm_argv("/py", "ab12", 120, systemd=True) == [
        "systemd-run",
        "--quiet",
        "--unit=zimbra_fw-rollback-ab12",
        "--description=zimbra_fw: put the saved firewall back unless zimbra_fw.confirm is called",
        "--on-active=120s",
        "--timer-property=AccuracySec=100ms",
        "--",
        *script,
        "ab12",
    ]


def test_files_are_put_back_byte_for_byte_with_their_mode_and_new_ones_removed(tmp_path):
    rules, profile, absent = tmp_path / "user.rules", tmp_path / "zimbra", tmp_path / "new"
    rules.write_bytes(b"*filter\n\xff\x00 not text\n")
    rules.chmod(0o640)
    profile.write_text("[Zimbra]\n")
    saved = rollback.save_files([str(rules), str(profile), str(absent)])
    assert saved[str(absent)] is None
    rules.write_text("changed")
    rules.chmod(0o644)
    os.unlink(profile)
    target = tmp_path / "elsewhere"
    target.write_text("not ours")
    os.symlink(target, profile)  # a link where the file was: replaced, never followed
    absent.write_text("made by the run")
    assert sorted(rollback.restore_files(saved)) == sorted([str(rules), str(profile), str(absent)])
    assert rules.read_bytes() == b"*filter\n\xff\x00 not text\n"
    assert stat.S_IMODE(rules.stat().st_mode) == 0o640
    assert not profile.is_symlink() and profile.read_text() == "[Zimbra]\n"
    assert target.read_text() == "not ours"
    assert not absent.exists()
    assert rollback.restore_files(saved) == []  # nothing left to put back
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".zimbra_fw-")] == []


def test_arming_keeps_the_saved_firewall_root_only_and_starts_the_rollback(directory):
    run = Commands()
    record = rollback.arm(run, "ufw", lambda: {"files": {}}, 30, systemd=False)
    assert rollback.pending() == record
    assert run == [rollback.arm_argv(sys.executable, record["token"], 30, systemd=False)]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("pending.json", "saved.json"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    assert json.loads((directory / "saved.json").read_text()) == {
        "backend": "ufw",
        "scope": None,
        "firewall": {"files": {}},
    }


def test_a_second_arming_keeps_the_oldest_saved_firewall_and_replaces_the_timer(directory):
    run = Commands()
    first = rollback.arm(run, "ufw", lambda: {"first": True}, 30, systemd=True)
    second = rollback.arm(run, "ufw", lambda: pytest.fail("saved again"), 60, systemd=True)
    assert second["token"] != first["token"] and rollback.pending() == second
    assert json.loads((directory / "saved.json").read_text())["firewall"] == {"first": True}
    assert run[-1] == ["systemctl", "stop", f"zimbra_fw-rollback-{first['token']}.timer"]


def test_a_rollback_that_cannot_be_armed_leaves_no_record(directory):
    with pytest.raises(RuntimeError, match=r"arming the rollback failed \(exit 1\): it failed"):
        rollback.arm(Commands(retcode=1), "ufw", dict, 30, systemd=False)
    assert rollback.pending() is None and not (directory / "saved.json").exists()


def test_confirm_ends_the_pending_rollback_and_then_has_nothing_to_confirm(directory, backend):
    run = Commands()
    record = rollback.arm(run, "ufw", lambda: {"saved": 1}, 0, systemd=True)
    assert rollback.confirm(run) == record
    assert run[-1] == ["systemctl", "stop", f"zimbra_fw-rollback-{record['token']}.timer"]
    assert rollback.pending() is None and not (directory / "saved.json").exists()
    assert rollback.confirm(run) is None
    assert "nothing to roll back" in rollback.roll_back(record["token"], run)
    assert backend.restored == []


def test_the_rollback_puts_the_saved_firewall_back_once(directory, backend):
    record = rollback.arm(Commands(), "ufw", lambda: {"saved": 1}, 0, systemd=False)
    assert "nothing to roll back" in rollback.roll_back("0000", Commands())  # another token: re-armed
    assert "was put back as it was before the change" in rollback.roll_back(record["token"], Commands())
    assert backend.restored == [{"saved": 1}]
    assert rollback.pending() is None and rollback.failed() is None
    assert "nothing to roll back" in rollback.roll_back(record["token"], Commands())


def test_a_rollback_that_fails_keeps_the_saved_copy_and_says_where(directory, backend):
    backend.error = RuntimeError("ufw reload failed")
    record = rollback.arm(Commands(), "ufw", lambda: {"saved": 1}, 0, systemd=False)
    kept = str(directory / f"saved-failed-{record['token']}.json")
    message = rollback.roll_back(record["token"], Commands())
    assert (
        message
        == f"zimbra_fw: putting the saved firewall back failed: ufw reload failed; the saved copy is kept in {kept}"
    )
    assert json.loads(open(kept, encoding="utf-8").read())["firewall"] == {"saved": 1}
    assert rollback.failed() == {"error": "ufw reload failed", "saved": kept, "due": record["due"]}
    assert rollback.pending() is None  # new runs are not held up by it


def test_a_symlink_in_place_of_the_directory_is_refused(directory, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (elsewhere / "pending.json").write_text(json.dumps(GOOD))
    directory.symlink_to(elsewhere)
    for read in (rollback.pending, rollback.failed):
        with pytest.raises(RuntimeError, match="is not a directory owned by uid"):
            read()


def test_no_directory_means_nothing_pending(directory):
    assert rollback.pending() is None and rollback.failed() is None
    assert not directory.exists()


def test_a_failed_re_arming_leaves_the_earlier_rollback_pending(directory):
    first = rollback.arm(Commands(), "ufw", lambda: {"first": True}, 30, systemd=True)
    with pytest.raises(RuntimeError, match="arming the rollback failed"):
        rollback.arm(Commands(retcode=1), "ufw", lambda: {"second": True}, 60, systemd=True)
    assert rollback.pending() == first
    assert json.loads((directory / "saved.json").read_text())["firewall"] == {"first": True}


def test_a_firewall_that_cannot_be_saved_arms_nothing(directory):
    with pytest.raises(rollback.Refused, match="the ufw firewall could not be saved"):
        rollback.arm(Commands(), "ufw", lambda: None, 30, systemd=False)
    assert rollback.pending() is None and not (directory / "saved.json").exists()


def test_a_re_arming_for_another_zone_is_refused_and_keeps_the_pending_one(directory):
    first = rollback.arm(Commands(), "firewalld", lambda: {"zone": "public"}, 30, systemd=False, scope="public")
    with pytest.raises(
        rollback.Refused,
        match="a rollback of firewalld zone 'public' is pending, and this run is for firewalld zone 'internal'",
    ):
        rollback.arm(Commands(), "firewalld", dict, 30, systemd=False, scope="internal")
    assert rollback.pending() == first


def test_a_saved_copy_that_holds_no_firewall_is_refused_before_restore(directory, backend):
    record = rollback.arm(Commands(), "ufw", lambda: {"saved": 1}, 30, systemd=False)
    empty = {"backend": "ufw", "scope": None, "firewall": None}
    rollback.write_atomic(rollback.SAVED, json.dumps(empty).encode(), 0o600)
    assert "is missing or not the ufw firewall" in rollback.roll_back(record["token"], Commands())
    assert backend.restored == []


def test_the_rollback_does_not_wait_for_the_wall_clock_under_the_lock(directory, backend):
    # the timer fired (its clock is monotonic) while the wall clock says it is not due yet
    record = rollback.arm(Commands(), "ufw", lambda: {"saved": 1}, 3600, systemd=True)
    started = time.monotonic()
    assert "was put back" in rollback.roll_back(record["token"], Commands())
    assert time.monotonic() - started < 5 and backend.restored == [{"saved": 1}]


def test_a_run_holds_the_rollback_off_while_it_applies_and_stops_if_it_came_due(directory, backend):
    record = rollback.arm(Commands(), "ufw", lambda: {"saved": 1}, 5, systemd=False)
    done = []
    with rollback.held(record["token"]):
        rolling = threading.Thread(target=lambda: done.append(rollback.roll_back(record["token"], Commands())))
        rolling.start()
        rolling.join(0.3)
        assert rolling.is_alive() and backend.restored == []  # it waits for the run
    rolling.join(5)
    assert "was put back" in done[0] and backend.restored == [{"saved": 1}]
    with pytest.raises(rollback.NoLongerPending, match="the rest of this run is not applied"):
        with rollback.held(record["token"]):
            pytest.fail("applied after the rollback")
    with rollback.held(None):  # a run without confirm holds nothing
        pass
