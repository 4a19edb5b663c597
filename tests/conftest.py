"""Shared fixtures: the core modules under test and sandboxed minions.

The core lives in ``_utils/``, flat modules that import each other by name,
as on a minion after ``saltutil.sync_all`` (extmods/utils is on sys.path).
"""

import os
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "_utils"))

from harness.sandbox import Lab, requirements_missing  # noqa: E402

# The longest test files start first, so that two workers (make test) end together.
LONGEST_FIRST = (
    "test_sandbox_ufw_batch.py",
    "test_sandbox_confirm.py",
    "test_sandbox_firewalld.py",
    "test_sandbox_running_change.py",
    "test_sandbox_faults.py",
    "test_sandbox_single_server.py",
    "test_sandbox_blind_spots.py",
    "test_sandbox_nftables.py",
)


SANDBOX_DIR = os.path.join(REPO, "tests", "sandbox")


def pytest_collection_modifyitems(config, items):
    """Mark every test under tests/sandbox ``sandbox``; skip those, saying why,
    where this machine cannot make sandboxes (under CI they run, and fail,
    anyway: CI must run them all)."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(item.location[0]), len(rank)))
    for item in items:
        if str(item.path).startswith(SANDBOX_DIR + os.sep):
            item.add_marker(pytest.mark.sandbox)
    reason = requirements_missing()
    if reason is None or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason=f"sandbox test: {reason}")
    for item in items:
        if "sandbox" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_host_netlink(monkeypatch):
    """Code under test in this process never asks the host's firewall: netlink
    answers "cannot tell" here, so a backend asks its (fake or sandboxed)
    command runner instead. Minions in sandboxes ask their own kernel."""
    import zimbra_fw_netlink

    monkeypatch.setattr(zimbra_fw_netlink, "chain_exists", lambda version, table, chain: None)


@pytest.fixture(autouse=True)
def _no_host_bus(monkeypatch):
    """Code under test in this process never talks to the host's system bus:
    the only bus zimbra_fw_dbus finds is one a test points it to
    (DBUS_SYSTEM_BUS_ADDRESS); by default it finds none (firewalld reads as
    not running). Minions in sandboxes talk to their sandbox's bus."""
    import zimbra_fw_dbus

    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    monkeypatch.setattr(zimbra_fw_dbus, "DEFAULT_ADDRESS", "unix:path=/proc/no-system-bus-in-tests")


@pytest.fixture(scope="session")
def example_pillar():
    with open(os.path.join(REPO, "pillar.example"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["zimbra_fw"]


@pytest.fixture
def lab():
    """A fresh sandboxed minion (own netns, private ufw) with LAN and internet clients."""
    with Lab() as new_lab:
        new_lab.minion.sync()
        yield new_lab
