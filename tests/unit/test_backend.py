"""The backend contract (zimbra_fw_backend): every registered backend keeps
it, the registry is the one the config check reads, and the words that
describe() is built from."""

import inspect
import sys
import threading

import pytest
import zimbra_fw_backend as contract
import zimbra_fw_config as config
from salt.exceptions import CommandExecutionError


@pytest.mark.parametrize("name", contract.NAMES)
def test_every_registered_backend_keeps_the_contract(name):
    backend = contract.load(name)
    assert [item for item in contract.CONTRACT if not hasattr(backend, item)] == []
    assert backend.NAME == name
    assert backend.PARTS == contract.PARTS
    assert set(backend.LIVE_PARTS) <= set(contract.PARTS)
    assert set(backend.DONE) == set(contract.PARTS)
    assert list(inspect.signature(backend.plan).parameters) == ["part", "policy", "snapshot"]
    assert list(inspect.signature(backend.describe).parameters) == ["changes", "test"]
    assert list(inspect.signature(backend.apply).parameters) == ["steps", "run"]


def test_a_backend_is_imported_when_first_asked_for_even_with_its_folder_off_sys_path(monkeypatch):
    """As in a salt-minion daemon, whose loader puts _utils on sys.path only
    while it loads modules: the backend and the helpers it imports load."""
    for module in ("zimbra_fw_nftables", "zimbra_fw_nftables_files"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(sys, "path", [path for path in sys.path if path != contract.HERE])
    before = list(sys.path)
    backend = contract.load("nftables")
    assert backend.NAME == "nftables" and "zimbra_fw_nftables_files" in sys.modules
    assert sys.path == before
    assert contract.load("nftables") is backend


def test_threads_loading_backends_at_once_each_get_a_whole_module(monkeypatch):
    """A salt-minion with threaded jobs: one thread never sees a backend
    another is still importing, nor loses the folder from sys.path midway."""
    for module in ("zimbra_fw_ufw", "zimbra_fw_ufw_files", "zimbra_fw_firewalld", "zimbra_fw_firewalld_files"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(sys, "path", [path for path in sys.path if path != contract.HERE])
    names = ["ufw", "firewalld", "ufw", "firewalld"]
    start, found = threading.Barrier(len(names)), {}

    def load(index, name):
        start.wait()
        try:
            module = contract.load(name)
            found[index] = [item for item in contract.CONTRACT if not hasattr(module, item)]
        except Exception as exc:  # pylint: disable=broad-except
            found[index] = repr(exc)

    threads = [threading.Thread(target=load, args=item) for item in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == {index: [] for index in range(len(names))}
    assert contract.HERE not in sys.path


def test_the_config_check_names_every_registered_backend():
    with pytest.raises(CommandExecutionError) as info:
        config.parse_config({"roles": ["mta"], "backend": "iptables"}, config.Facts())
    listed = ", ".join(contract.NAMES)
    assert any(f"is not a firewall zimbra_fw can manage: one of {listed}" in p for p in info.value.problems)
    assert config.backend_name(None, "RedHat") == "firewalld"
    assert config.backend_name(None, "Debian") == "ufw"
    assert config.backend_name("firewalld", "Debian") == "firewalld"


def test_dispatch_calls_the_part_planner():
    planners = {"rules": lambda policy, snapshot: contract.Plan({"p": policy, "s": snapshot}, [], None)}
    assert contract.dispatch(planners, "rules", 1, 2) == contract.Plan({"p": 1, "s": 2}, [], None)


def test_the_words_of_describe():
    assert contract.count(["a"], "rule") == "1 rule"
    assert contract.count(["a", "b"], "ipset entry", "ipset entries") == "2 ipset entries"
    assert contract.count([], "rule") == "0 rules"
    assert contract.said(False, "added 1 rule", "1 rule would be added") == "added 1 rule"
    assert contract.said(True, "added 1 rule", "1 rule would be added") == "1 rule would be added"
    groups = {"ports": {"a": {"old": None, "new": "1/tcp"}, "b": {"old": "1/tcp", "new": None}}}
    groups["ports"]["c"] = {"old": "1/tcp", "new": "2/tcp"}
    assert contract.group_changes(groups, "ports", "service", False) == [
        "added service a",
        "removed service b",
        "updated service c",
    ]
    assert contract.group_changes(groups, "ports", "profile", True)[0] == "profile a would be added"
    assert contract.group_changes({}, "ports", "profile", True) == []
    assert contract.sentence(["added 1 rule", "enabled the firewall"]) == "Added 1 rule; enabled the firewall"
    assert contract.sentence([]) == ""
