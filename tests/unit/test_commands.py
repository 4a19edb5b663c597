"""zimbra_fw_commands: what every backend uses to run commands and write files."""

import contextvars
import gc
import os
import stat
import threading
import time

import pytest
import zimbra_fw_commands as commands
from salt.exceptions import CommandExecutionError


def test_write_atomic_writes_text_or_bytes_with_the_mode_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "zimbra"
    commands.write_atomic(str(path), "[Zimbra]\n")
    assert path.read_text() == "[Zimbra]\n" and stat.S_IMODE(path.stat().st_mode) == 0o644
    commands.write_atomic(str(path), b"\x00bytes", 0o600)
    assert path.read_bytes() == b"\x00bytes" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["zimbra"]


def test_a_failed_check_keeps_the_old_file_and_removes_the_new_one(tmp_path):
    path = tmp_path / "zimbra_fw.nft"
    path.write_text("old\n")
    seen = []

    def check(temp):
        seen.append((os.path.basename(temp), open(temp, encoding="utf-8").read()))
        raise CommandExecutionError("nft -c said no")

    with pytest.raises(CommandExecutionError, match="nft -c said no"):
        commands.write_atomic(str(path), "new\n", check=check)
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["zimbra_fw.nft"]
    assert seen[0][0].startswith(".zimbra_fw-") and seen[0][1] == "new\n"  # hidden: include globs skip it


def test_checked_names_the_command_and_what_it_said():
    def run(argv):
        return 2, "", "no such zone\n"

    with pytest.raises(CommandExecutionError, match=r"'firewall-cmd --get-zones' failed \(exit 2\): no such zone"):
        commands.checked(run, ["firewall-cmd", "--get-zones"])
    assert commands.checked(run, ["x"], succeeded=(0, 2)) == 2


def test_the_collector_is_back_on_when_the_last_of_overlapping_pauses_ends():
    first, second = commands.collector_paused(), commands.collector_paused()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)  # threaded jobs: the first to start ends first
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_the_collector_is_back_on_after_an_error_and_stays_off_if_it_was_off():
    with pytest.raises(ValueError):
        with commands.collector_paused():
            raise ValueError("bad pillar")
    assert gc.isenabled()
    gc.disable()
    try:
        with commands.collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


LABEL = contextvars.ContextVar("label")


def test_in_background_gives_the_result_in_this_context_and_leaves_no_thread():
    LABEL.set("the caller's")
    seen = {}

    def work(value):
        seen["thread"], seen["label"] = threading.current_thread(), LABEL.get()
        time.sleep(0.05)
        return value * 2

    with commands.in_background(work, 21) as result:
        assert result() == 42
        assert result() == 42  # asked again: the same answer, no second run
    assert seen["label"] == "the caller's" and seen["thread"] is not threading.current_thread()
    assert not seen["thread"].is_alive()


def test_in_background_raises_the_threads_error_to_its_waiter():
    def fails():
        raise CommandExecutionError("iptables: no lock")

    with pytest.raises(CommandExecutionError, match="no lock"):
        with commands.in_background(fails) as result:
            result()


def test_when_both_fail_the_threads_error_is_raised_from_the_blocks():
    """As if run in turn: the command's error first, the block's as its cause."""

    def fails():
        raise CommandExecutionError("iptables: no lock")

    with pytest.raises(CommandExecutionError, match="no lock") as info:
        with commands.in_background(fails):
            raise PermissionError("user.rules")
    assert isinstance(info.value.__cause__, PermissionError)


def test_a_block_that_fails_alone_raises_its_own_error_after_the_thread_ends():
    seen = {}

    def slow():
        seen["thread"] = threading.current_thread()
        time.sleep(0.05)

    with pytest.raises(PermissionError):
        with commands.in_background(slow):
            raise PermissionError("user.rules")
    assert not seen["thread"].is_alive()


def test_write_atomic_writes_through_an_owner_only_file_and_never_through_one_planted_at_its_name(
    tmp_path, monkeypatch
):
    path = tmp_path / "record"
    modes = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: modes.append(os.fstat(fd).st_mode & 0o777) or real_fsync(fd))
    commands.write_atomic(str(path), "secret\n", 0o644)
    assert modes == [0o600] and oct(path.stat().st_mode & 0o777) == oct(0o644)  # private until written whole
    monkeypatch.setattr(commands.secrets, "token_hex", lambda size: "fixed")
    target = tmp_path / "elsewhere"
    target.write_text("untouched\n")
    (tmp_path / ".zimbra_fw-fixed").symlink_to(target)
    with pytest.raises(FileExistsError):
        commands.write_atomic(str(path), "new\n")
    assert target.read_text() == "untouched\n" and path.read_text() == "secret\n"
