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


def pytest_collection_modifyitems(config, items):
    """Skip sandbox tests, saying why, where this machine cannot make sandboxes;
    under CI they run (and fail) anyway: CI must run them all."""
    reason = requirements_missing()
    if reason is None or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason=f"sandbox test: {reason}")
    for item in items:
        if "sandbox" in item.keywords:
            item.add_marker(skip)


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
