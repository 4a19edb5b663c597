"""Shared fixtures: the execution module under test and sandboxed minions."""

import importlib.util
import os
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from harness.sandbox import Lab  # noqa: E402


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def zfw():
    """The execution module, imported from _modules/ as Salt would sync it."""
    return _load("_modules/zimbra_fw.py", "zimbra_fw_module")


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
