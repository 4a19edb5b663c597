"""Fault injection against real ufw: failed commands, read-only profile
directory, missing ufw and parallel runs. After each, a clean run converges
and TCP probes show the expected ports."""

import concurrent.futures
import fcntl
import glob
import os
import time

import pytest

PORTS = [22, 25, 389, 443, 11211]
EXPECTED_FROM_INTERNET = {22: True, 25: True, 389: False, 443: True, 11211: False}


def assert_converged(lab):
    results = lab.minion.apply()
    assert all(r["result"] is True for r in results.values()), results
    assert {s: r["changes"] for s, r in results.items() if r["changes"]} == {}
    status = lab.minion.salt("zimbra_fw.status")
    assert status["active"] is True and status["default_incoming"] == "deny"
    assert status["managed_rules"] == ["allow 22/tcp", "allow from 192.168.1.0/24", "allow Zimbra"]
    lab.minion.listen(PORTS)
    assert lab.internet.probe(lab.MINION_INTERNET, PORTS) == EXPECTED_FROM_INTERNET
    assert all(lab.lan.probe(lab.MINION_LAN, PORTS).values())


@pytest.fixture
def staged(lab, example_pillar):
    lab.minion.set_pillar(example_pillar)
    return lab


def test_ufw_failing_half_way_through_the_rules(staged):
    lab = staged
    lab.minion.fail_ufw_command(2)  # 1: allow 22/tcp, 2: allow from ... (in one batch)
    results = lab.minion.apply()
    rules = results["zimbra_fw-rules"]
    assert rules["result"] is False
    assert "step 'ufw allow from 192.168.1.0/24' failed" in rules["comment"]
    assert "injected failure" in rules["comment"]
    assert "Already applied: ufw allow 22/tcp" in rules["comment"]
    assert results["zimbra_fw-firewall"]["result"] is False  # never enabled half-way
    assert "Status: inactive" in lab.minion.ufw("status").stdout
    lab.minion.fail_ufw_command(None)
    rerun = lab.minion.apply()
    assert rerun["zimbra_fw-rules"]["changes"] == {"added": ["allow from 192.168.1.0/24", "allow Zimbra"]}
    assert_converged(lab)


def test_ufw_failing_at_enable(staged):
    lab = staged
    # 1-3 the three rules, 4 enable (the live state is read with iptables, not ufw)
    lab.minion.fail_ufw_command(4)
    results = lab.minion.apply()
    firewall = results["zimbra_fw-firewall"]
    assert firewall["result"] is False
    assert "step 'ufw --force enable' failed" in firewall["comment"]
    assert "Already applied: check that management access is allowed" in firewall["comment"]
    assert results["zimbra_fw-rules"]["result"] is True
    lab.minion.fail_ufw_command(None)
    assert lab.minion.apply()["zimbra_fw-firewall"]["changes"] == {"active": {"old": False, "new": True}}
    assert_converged(lab)


def test_read_only_profile_directory(staged):
    lab = staged
    lab.minion.set_fault("readonly-apps")
    before = lab.minion.snapshot()
    results = lab.minion.apply()
    profile = results["zimbra_fw-profile"]
    assert profile["result"] is False
    assert "step 'write /etc/ufw/applications.d/zimbra' failed" in profile["comment"]
    assert "Read-only file system" in profile["comment"]
    assert "Already applied: nothing" in profile["comment"]
    assert lab.minion.snapshot() == before
    lab.minion.set_fault("readonly-apps", on=False)
    lab.minion.apply()
    assert_converged(lab)


def test_missing_ufw_is_reported_not_a_traceback(staged):
    lab = staged
    lab.minion.set_fault("no-ufw")
    results = lab.minion.apply()
    profile = results["zimbra_fw-profile"]
    assert profile["result"] is False
    assert profile["comment"] == "ufw is not available on this minion: install the 'ufw' package"
    assert "Traceback" not in str(results)
    lab.minion.set_fault("no-ufw", on=False)
    lab.minion.apply()
    assert_converged(lab)


def timed_apply(minion):
    start = time.monotonic()
    result = minion.salt("state.apply", "zimbra_fw", "concurrent=True")
    return start, time.monotonic(), result


def test_parallel_applies_neither_duplicate_nor_lose_rules(staged):
    lab = staged
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        timed = list(pool.map(lambda _: timed_apply(lab.minion), range(2)))
    starts, ends, runs = zip(*timed, strict=True)
    assert max(starts) < min(ends), timed  # the two runs overlapped
    for run in runs:
        assert all(state["result"] is True for state in run.values()), run
    added = ufw_rules = lab.minion.ufw("show", "added").stdout.splitlines()[1:]
    assert sorted(ufw_rules) == sorted(
        [
            "ufw allow 22/tcp comment 'zimbra_fw'",
            "ufw allow from 192.168.1.0/24 comment 'zimbra_fw'",
            "ufw allow Zimbra comment 'zimbra_fw'",
        ]
    ), added
    assert_converged(lab)


def test_held_ufw_lock_delays_but_does_not_break_a_run(staged):
    lab = staged
    lock_path = f"{lab.minion.state}/run/ufw.lock"  # the sandbox's private /run/ufw.lock
    with open(lock_path, "w", encoding="utf-8") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            run = pool.submit(lab.minion.apply)
            time.sleep(3)
            assert not run.done()  # ufw waits for the lock
            fcntl.lockf(lock, fcntl.LOCK_UN)
            results = run.result(timeout=120)
    assert all(r["result"] is True for r in results.values()), results
    assert_converged(lab)


def test_without_the_batch_helper_each_ufw_command_runs_alone(staged):
    lab = staged
    helpers = glob.glob(f"{lab.minion.state}/salt-root/**/extmods/utils/zimbra_fw_ufw_batch.py", recursive=True)
    assert len(helpers) == 1
    os.unlink(helpers[0])  # as if only zimbra_fw.py had been copied to the minion
    lab.minion.reset_ufw_counts()
    results = lab.minion.apply()
    assert all(r["result"] is True for r in results.values()), results
    # 3 rules and enable: one process each
    assert len(lab.minion.ufw_processes()) == 4, lab.minion.ufw_processes()
    assert_converged(lab)
