"""The face before a run changes anything: live sessions it would cut
refuse it (or are named, with allow_cut_sessions), a pending rollback
refuses it unless it carries confirm, and confirm arms a rollback that
``zimbra_fw.confirm`` ends. The firewall is a recorder here; the real
ones are in the sandbox (test_sandbox_confirm.py)."""

import ipaddress
import types

import pytest
import zimbra_fw_rollback as rollback
from salt.exceptions import CommandExecutionError
from test_salt_face import SINGLE, FakeBackend, face
from zimbra_fw_commands import ApplyFailed
from zimbra_fw_sessions import Session

ADMIN = Session(ipaddress.ip_address("192.168.1.1"), 22, ipaddress.ip_address("10.9.4.2"), 51000)
AWAY = {**SINGLE, "ssh": {"from": ["10.8.0.0/16"]}}
CUT = "would cut the ssh session from 10.9.4.2 to port 22 (zimbra_fw:ssh:from)"


@pytest.fixture(autouse=True)
def directory(tmp_path, monkeypatch):
    """The rollback's bookkeeping in a directory of the test's."""
    where = tmp_path / "zimbra_fw"
    monkeypatch.setattr(rollback, "DIRECTORY", str(where))
    for name, file_name in (("PENDING", "pending.json"), ("SAVED", "saved.json"), ("FAILED", "failed.json")):
        monkeypatch.setattr(rollback, name, str(where / file_name))
    monkeypatch.setattr(rollback, "LOCK", str(where / "rollback.lock"))
    return where


def gated(pillar, sessions=(ADMIN,), steps=("allow x",), active=True):
    """The face over a recording backend whose plans have ``steps``, on a host with ``sessions``."""
    commands = []

    def run_all(argv, **kwargs):
        commands.append(argv)
        return {"retcode": 0, "stdout": "", "stderr": ""}

    module, _ = face(pillar, cmd__run_all=run_all)
    backend = FakeBackend()
    backend.NAME = "ufw"
    backend.save = lambda run, config: {"saved": "before"}
    plan = types.SimpleNamespace(steps=list(steps), changes={"added": list(steps)} if steps else {}, comment=None)
    module._backend = lambda config=None, settings=None: backend
    module._plans = lambda policy, parts, snapshot=None: {part: plan for part in parts}
    module._snapshot = lambda policy, parts: types.SimpleNamespace(active=active, incoming="deny")
    module._sessions = lambda: list(sessions)
    return module, backend, commands


@pytest.mark.parametrize("test", [True, False])
def test_a_run_that_would_cut_a_live_session_is_refused_before_anything_changes(test):
    module, backend, _ = gated(AWAY)
    with pytest.raises(CommandExecutionError) as info:
        module.converge(test=test)
    assert str(info.value) == (
        f"Refused, nothing was changed:\n- {CUT}\n"
        "- set zimbra_fw:allow_cut_sessions: true to apply anyway (with zimbra_fw:confirm to be safe)"
    )
    assert backend.applied == []


def test_allow_cut_sessions_applies_and_the_first_part_that_changes_names_the_cut():
    module, backend, _ = gated({**AWAY, "allow_cut_sessions": True})
    result = module.converge()
    assert result["profile"]["notes"] == [
        "cuts the ssh session from 10.9.4.2 to port 22 (zimbra_fw:ssh:from), allowed by zimbra_fw:allow_cut_sessions"
    ]
    assert "notes" not in result["rules"]
    assert len(backend.applied) == 2


def test_a_run_that_changes_nothing_or_a_firewall_that_filters_nothing_is_not_refused():
    module, _, _ = gated(AWAY, steps=())
    assert module.converge() == {
        part: {"changes": {}, "applied": [], "comment": "done"} for part in ("profile", "rules")
    }
    module, backend, _ = gated({**AWAY, "enabled": False}, active=False)  # stays off: nothing is cut
    module.converge()
    assert len(backend.applied) == 2


def test_confirm_arms_a_rollback_that_refuses_other_runs_until_confirmed(directory):
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


def test_test_mode_with_confirm_arms_nothing_and_says_what_would_happen():
    module, _, commands = gated({**SINGLE, "confirm": 60})
    notes = module.converge(test=True)["profile"]["notes"]
    assert notes == ["would be rolled back 60 s after it is applied unless zimbra_fw.confirm is called"]
    assert commands == [] and rollback.pending() is None


def test_the_state_comment_carries_the_notes():
    module, _, _ = gated({**SINGLE, "confirm": 60})
    comment = module.converge()["profile"]["comment"]
    assert comment.startswith("described ['added'] test=False; rolled back at ")
    assert comment.endswith(" unless zimbra_fw.confirm is called")


def test_a_run_that_fails_half_way_says_when_the_rollback_puts_the_firewall_back():
    module, backend, _ = gated({**SINGLE, "confirm": 60})

    def fail(steps, run):
        raise ApplyFailed.at("ufw allow x", "exit 1", [])

    backend.apply = fail
    with pytest.raises(ApplyFailed) as info:
        module.converge()
    assert str(info.value).startswith("step 'ufw allow x' failed: exit 1. Already applied: nothing; ")
    assert "the saved firewall is put back at " in str(info.value) and "(in 60 s)" in str(info.value)
    assert info.value.info == {"applied": [], "failed": "ufw allow x"}
