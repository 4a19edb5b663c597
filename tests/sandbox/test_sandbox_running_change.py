"""Changing a running firewall: 2,000 peers in, then out, on an active ufw,
firewalld or nftables table.

Probes run the whole time, over IPv4 and IPv6: from the internet to a
cluster port (it must never answer: no open window) and from the trusted
LAN to ssh (it must always answer: management access is never dropped).
Afterwards ufw's files, ``ufw show added`` and the loaded chains agree, and
a plain ufw command keeps every rule."""

import time

import pytest

from harness.sandbox import Lab

LMTP = 7025  # a mailbox port only MTA peers may reach


def peers(count):
    """MTA peers: every fourth one by IPv6."""
    addresses = [f"2001:db8:50::{i + 1:x}" if i % 4 == 0 else f"10.1.{i // 250}.{i % 250 + 1}" for i in range(count)]
    return [{"name": f"mta{i}", "addresses": [address], "roles": ["mta"]} for i, address in enumerate(addresses)]


def pillar(peer_count, backend="ufw"):
    return {
        "roles": ["mailbox"],
        "trusted_subnets": ["192.168.1.0/24", "2001:db8:1::/64"],
        "cluster": {"peers": peers(peer_count)},
        "backend": backend,
    }


def rules_changed(results):
    return results["zimbra_fw-rules"]["changes"]


def loaded_chains(minion):
    """The ufw chains as loaded, both families, without counters."""
    snapshot = minion.snapshot()
    return snapshot["iptables-save"], snapshot["ip6tables-save"]


@pytest.mark.parametrize("backend", ["ufw", "firewalld", "nftables"])
def test_peers_join_and_leave_a_running_firewall_with_no_window(backend, count=2000):
    with Lab(firewalld=backend == "firewalld", nftables=backend == "nftables") as lab:
        minion = lab.minion
        minion.sync()
        minion.set_pillar(pillar(1, backend))  # one MTA stays: its profile (and ipsets) stay
        first = minion.apply()
        assert all(result["result"] for result in first.values()), first
        if backend == "ufw":
            assert first["zimbra_fw-firewall"]["changes"]["active"] == {"old": False, "new": True}
        minion.listen([22, LMTP])
        watchers = {
            "lan ssh v4": lab.lan.watch(lab.MINION_LAN, 22),
            "lan ssh v6": lab.lan.watch(lab.MINION_LAN6, 22),
            "internet lmtp v4": lab.internet.watch(lab.MINION_INTERNET, LMTP),
            "internet lmtp v6": lab.internet.watch(lab.MINION_INTERNET6, LMTP),
        }
        try:
            start = time.time()
            minion.set_pillar(pillar(1 + count, backend))
            joined = minion.apply()
            minion.set_pillar(pillar(1, backend))
            left = minion.apply()
            end = time.time()
            time.sleep(0.7)  # a few more tries after the change
        finally:
            seen = {name: lab.lan.watched(watcher) for name, watcher in watchers.items()}

        assert len(rules_changed(joined)["added"]) == count  # a rule or an ipset entry a peer
        assert "removed" not in rules_changed(joined)
        assert len(rules_changed(left)["removed"]) == count
        if backend == "nftables":  # its profile part persists the table: the file changes with it
            assert set(joined["zimbra_fw-profile"]["changes"]) == set(left["zimbra_fw-profile"]["changes"]) == {"file"}
        else:
            assert joined["zimbra_fw-profile"]["changes"] == left["zimbra_fw-profile"]["changes"] == {}
        for name, outcome in seen.items():
            times = outcome["open"] + outcome["closed"]
            assert min(times) < start and max(times) > end, f"{name} did not cover the change"
        for name in ("lan ssh v4", "lan ssh v6"):
            assert seen[name]["closed"] == [], f"{name}: refused or dropped at {seen[name]['closed']}"
            assert len(seen[name]["open"]) > 20
        for name in ("internet lmtp v4", "internet lmtp v6"):
            assert seen[name]["open"] == [], f"{name}: reachable at {seen[name]['open']}"


def test_after_a_running_change_ufw_sees_and_keeps_every_rule():
    with Lab() as lab:
        minion = lab.minion
        minion.sync()
        minion.set_pillar(pillar(1))
        minion.apply()
        minion.set_pillar(pillar(41))
        assert len(rules_changed(minion.apply())["added"]) == 40
        added = minion.show_added()
        assert sum("to any app Zimbra-mta" in " ".join(words) for words, _ in added) == 41
        status = minion.ufw("status").stdout
        assert "2001:db8:50::1" in status and "10.1.0.2" in status

        loaded = loaded_chains(minion)
        minion.ufw("reload")  # ufw rebuilds its chains from its files: the same rules
        assert loaded_chains(minion) == loaded

        minion.ufw("allow", "from", "198.51.100.7")  # a plain ufw command on the running firewall
        v4, v6 = loaded_chains(minion)
        assert b"-A ufw-user-input -s 198.51.100.7/32 -j ACCEPT" in v4
        assert v4.count(b"10.1.0.") == loaded[0].count(b"10.1.0.") and v6 == loaded[1]
        plain = (("allow", "from", "198.51.100.7"), None)
        assert [rule for rule in minion.show_added() if rule != plain] == added
        assert minion.apply()["zimbra_fw-rules"]["changes"] == {}
