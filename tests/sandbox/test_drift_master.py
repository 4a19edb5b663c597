"""Drift seen by a real salt-master within seconds, and repaired by its reactor.

A master and two sandboxed salt-minion daemons, one on ufw, one on
firewalld, each with the zimbra_fw beacon (``interval`` 2 s). The master
reacts to ``salt/beacon/*/zimbra_fw/drift`` with both reactor files of the
formula: ``reapply.sls`` (state.apply zimbra_fw on that minion) and
``record.sls`` (a line in the master's log). Someone opens memcached's
port by hand on each minion (``ufw allow 11211/tcp``; ``firewall-cmd
--add-port=11211/tcp``, runtime only); the master hears each drift within
interval + 5 s, and probes from the internet show 11211 closed again.
"""

import json
import time

import pytest

from harness.cluster import Cluster

INTERVAL = 2  # seconds between beacon ticks
REACTORS = ["salt://zimbra_fw/reactor/reapply.sls", "salt://zimbra_fw/reactor/record.sls"]
BEACON = json.dumps([{"interval": INTERVAL}, {"disable_during_state_run": True}])
NODES = {"web": (21, {"roles": ["mta"]}), "store": (22, {"roles": ["mailbox"], "backend": "firewalld"})}
MEMCACHED = 11211


@pytest.fixture(scope="module")
def cluster():
    with Cluster(master_config={"reactor": [{"salt/beacon/*/zimbra_fw/drift": REACTORS}]}) as new_cluster:
        for name, (host, pillar) in NODES.items():
            new_cluster.add_minion(name, host, dict(pillar, close_foreign=True), firewalld="backend" in pillar)
        new_cluster.wait_for_minions()
        new_cluster.first_results = new_cluster.apply()
        for minion in new_cluster.minions.values():
            minion.listen([25, MEMCACHED])
        new_cluster.events = new_cluster.watch_events("salt/beacon/*/zimbra_fw/*")
        new_cluster.beacons = new_cluster.salt("*", "beacons.add", "zimbra_fw", BEACON)
        yield new_cluster


def internet_reaches(cluster, name):
    return cluster.internet.probe(cluster.addresses[name], [MEMCACHED])[MEMCACHED]


def test_converged_minions_have_no_drift(cluster):
    failed = {
        name: states
        if not isinstance(states, dict)
        else {s: r["comment"] for s, r in states.items() if not r["result"]}
        for name, states in cluster.first_results.items()
    }
    assert failed == {name: {} for name in NODES}, json.dumps(failed, indent=1)
    assert {name: added["result"] for name, added in cluster.beacons.items()} == dict.fromkeys(NODES, True)
    drift = cluster.salt("*", "zimbra_fw.drift")
    assert {name: (d["drifted"], d["backend"], d["active"]) for name, d in drift.items()} == {
        "web": (False, "ufw", True),
        "store": (False, "firewalld", True),
    }
    assert drift["store"]["roles"] == ["mailbox"]
    assert not internet_reaches(cluster, "web") and not internet_reaches(cluster, "store")


def test_hand_opened_memcached_is_seen_by_the_master_and_closed_by_the_reactor(cluster):
    web, store = cluster.minions["web"], cluster.minions["store"]
    # Each moment is taken before its hand change: a beacon tick can see the
    # change, and the master report it, before the command that made it returns.
    changed = {"web": time.monotonic()}
    web.ufw("allow", f"{MEMCACHED}/tcp")
    changed["store"] = time.monotonic()
    store.guarded(["firewall-cmd", f"--add-port={MEMCACHED}/tcp"])  # runtime only
    assert internet_reaches(cluster, "store")  # the hand change opened it

    seen = {
        name: cluster.events.wait_for(f"salt/beacon/{name}/zimbra_fw/drift", INTERVAL + 5, since)
        for name, since in changed.items()
    }
    for name, (at, _, _) in seen.items():
        assert at - changed[name] <= INTERVAL + 5, name
    web_drift, store_drift = seen["web"][2], seen["store"][2]
    assert web_drift["id"] == "web" and web_drift["backend"] == "ufw"
    assert web_drift["parts"] == {"rules": {"removed": [f"allow {MEMCACHED}/tcp"]}}
    assert store_drift["parts"] == {"rules": {"runtime": {"removed": [f"port {MEMCACHED}/tcp"]}}}
    for drift in (web_drift, store_drift):
        assert drift["drifted"] is True and drift["active"] is True
        assert [(f["severity"], f["port"]) for f in drift["findings"]] == [("critical", f"{MEMCACHED}/tcp")]

    closed = {}
    deadline = time.monotonic() + 60
    while len(closed) < len(changed) and time.monotonic() < deadline:
        for name in changed:
            if name not in closed and not internet_reaches(cluster, name):
                closed[name] = time.monotonic()
        time.sleep(0.2)
    assert sorted(closed) == sorted(changed), "11211 still open to the internet after 60 s"
    for name, since in changed.items():
        repaired = cluster.events.wait_for(f"salt/beacon/{name}/zimbra_fw/repaired", 30, since)
        assert repaired[2]["drifted"] is False and repaired[2]["findings"] == []
    assert cluster.internet.probe(cluster.addresses["web"], [25]) == {25: True}  # the MTA's public port stays open
    for name in NODES:
        print(
            f"{name}: drift seen by the master {seen[name][0] - changed[name]:.1f} s after the hand change, "
            f"11211 closed to the internet after {closed[name] - changed[name]:.1f} s"
        )
    log = cluster.master_log
    assert "zimbra_fw drift on web: ufw drifted from the zimbra_fw policy" in log
    assert "zimbra_fw drift on store: firewalld drifted from the zimbra_fw policy" in log


def test_the_reactor_left_nothing_to_change(cluster):
    drift = cluster.salt("*", "zimbra_fw.drift")
    assert {name: d["drifted"] for name, d in drift.items()} == dict.fromkeys(NODES, False)
    assert "allow 11211/tcp" not in cluster.salt("web", "zimbra_fw.status")["web"]["other_rules"]
