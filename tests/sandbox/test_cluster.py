"""A 4-node Zimbra cluster under a real salt-master, each minion sandboxed.

One bridge joins the master, the minions (each its own network namespace
with a private ufw, a private firewalld or private nftables files) and an
"internet" host that is on the LAN but no peer. The cluster is mixed: the
mailbox and the proxy run firewalld (pillar ``backend: firewalld``), the MTA
plain nftables (``backend: nftables``), the LDAP server ufw, from one
formula. Peers come from the Salt Mine (zimbra_fw.identity). TCP
probes prove the least-privilege matrix; a fifth node joins beside a
minion that publishes hostile mine data, and both leave.
"""

import time

import fleet
import pytest

from harness.cluster import SUBNET_PREFIX, Cluster

NODES = {
    "ldap": (11, ["ldap"]),
    "mta": (12, ["mta"]),
    "mailbox": (13, ["mailbox", "memcached"]),
    "proxy": (14, ["proxy"]),
}
# The mailbox keeps its admin console to an admin network (not on this LAN);
# the LDAP server's sshd moved to 2222, open to an admin network only.
EXTRA_PILLAR = {
    "mailbox": {"admin_subnets": ["192.0.2.0/24"], "backend": "firewalld"},
    "proxy": {"backend": "firewalld"},
    "mta": {"backend": "nftables"},
    "ldap": {"ssh": {"port": 2222, "from": ["192.0.2.0/24"]}},
}
FIREWALLD = ("mailbox", "proxy")
NFTABLES = ("mta",)
NETWORK = SUBNET_PREFIX + "0/24"  # cluster:networks: the mine is trusted inside it only
LISTEN = {
    "ldap": [22, 389, 636, 2222],
    "mta": [22, 25, 465, 587, 10024],
    "mailbox": [22, 7025, 7071, 7072, 7073, 7993, 8080, 8443, 11211, 5222, 7306],
    "proxy": [22, 80, 443, 993, 9071],
}


def pillar(roles, name=None):
    return {"roles": roles, "cluster": {"mine": True, "networks": [NETWORK]}, **EXTRA_PILLAR.get(name, {})}


def changed(results):
    return {
        node: sorted(state for state, result in states.items() if result["changes"])
        for node, states in results.items()
        if any(result["changes"] for result in states.values())
    }


def assert_all_succeeded(results, nodes):
    assert sorted(results) == sorted(nodes), results
    for node, states in results.items():
        assert isinstance(states, dict), (node, states)
        failed = {state: r["comment"] for state, r in states.items() if r["result"] is not True}
        assert failed == {}, (node, failed)


@pytest.fixture(scope="module")
def cluster():
    with Cluster() as new_cluster:
        for name, (host, roles) in NODES.items():
            new_cluster.add_minion(
                name, host, pillar(roles, name), firewalld=name in FIREWALLD, nftables=name in NFTABLES
            )
        new_cluster.wait_for_minions()
        started = time.monotonic()
        new_cluster.first_results = new_cluster.apply()
        new_cluster.first_apply_seconds = time.monotonic() - started
        for name, ports in LISTEN.items():
            new_cluster.minions[name].listen(ports)
        yield new_cluster


def reach(cluster, source, target, ports):
    client = cluster.internet if source == "internet" else cluster.minions[source]
    return client.probe(cluster.addresses[target], ports)


def test_first_apply_succeeds_everywhere(cluster):
    assert_all_succeeded(cluster.first_results, NODES)
    # firewalld: the profile state puts the rules and entries in before its one reload
    mailbox = cluster.first_results["mailbox"]["zimbra_fw-profile"]["changes"]["added"]
    assert cluster.first_results["mailbox"]["zimbra_fw-rules"]["changes"] == {}
    assert 'rule priority="32000" source ipset="zimbra-mta-v4" service name="zimbra-mta" accept' in mailbox
    assert "10.77.0.12 in ipset zimbra-mta-v4" in mailbox and "10.77.0.14 in ipset zimbra-proxy-v4" in mailbox
    ldap = cluster.first_results["ldap"]["zimbra_fw-rules"]["changes"]["added"]
    assert "allow from 10.77.0.13 to any app Zimbra-mailbox" in ldap
    assert cluster.first_results["mta"]["zimbra_fw-rules"]["comment"].startswith("Created table inet zimbra_fw")
    print(f"4-node first apply (sync_all, mine.update, state.apply): {cluster.first_apply_seconds:.1f} s")


def test_internet_reaches_only_public_ports(cluster):
    assert reach(cluster, "internet", "mta", [25, 465, 587, 10024]) == {25: True, 465: True, 587: True, 10024: False}
    assert reach(cluster, "internet", "proxy", [80, 443, 993]) == {80: True, 443: True, 993: True}
    assert reach(cluster, "internet", "ldap", [389, 636]) == {389: False, 636: False}
    assert reach(cluster, "internet", "mailbox", [7071, 8080, 8443, 7025, 11211, 7306, 5222]) == {
        7071: False, 8080: False, 8443: False, 7025: False, 11211: False, 7306: False, 5222: True,
    }  # fmt: skip


def test_peers_reach_what_their_roles_use(cluster):
    assert reach(cluster, "mta", "ldap", [389]) == {389: True}
    # LMTP, SASL, and for the nightly spam training admin SOAP and SOAP/REST (https mail mode)
    assert reach(cluster, "mta", "mailbox", [7025, 7071, 7073, 8443, 8080, 11211]) == {
        7025: True, 7071: True, 7073: True, 8443: True, 8080: False, 11211: False,
    }  # fmt: skip
    assert reach(cluster, "proxy", "mailbox", [7072, 7993, 8080, 8443, 11211, 7025]) == {
        7072: True, 7993: True, 8080: True, 8443: True, 11211: True, 7025: False,
    }  # fmt: skip
    assert reach(cluster, "proxy", "ldap", [389]) == {389: True}
    assert reach(cluster, "mailbox", "ldap", [389]) == {389: True}
    assert reach(cluster, "mailbox", "mta", [22, 25, 10024]) == {22: True, 25: True, 10024: False}
    assert reach(cluster, "ldap", "mailbox", [7025, 8080]) == {7025: False, 8080: False}
    # zmrcd follows the LDAP server's moved sshd: the mailbox gets in, no one else
    assert reach(cluster, "mailbox", "ldap", [2222, 22]) == {2222: True, 22: False}
    assert reach(cluster, "mta", "ldap", [2222]) == {2222: False}
    assert reach(cluster, "internet", "ldap", [2222]) == {2222: False}


def test_salt_keeps_reaching_every_minion(cluster):
    assert cluster.salt("*", "test.ping") == dict.fromkeys(NODES, True)


def test_open_ports_names_the_peers(cluster):
    ports = cluster.salt("mailbox", "zimbra_fw.open_ports")["mailbox"]
    assert ports["roles"] == {"roles": ["mailbox", "memcached"], "source": "pillar"}
    assert ports["peers"]["7025/tcp"] == ["mta"]
    assert ports["peers"]["11211/tcp"] == ["proxy"]
    assert ports["public"] == ["5222/tcp", "5223/tcp"]  # the proxy serves web and mail; 7071 is for admins
    assert ports["peers"]["7071/tcp"] == ["mta", "proxy"]
    ldap = cluster.salt("ldap", "zimbra_fw.open_ports")["ldap"]
    assert ldap["peers"]["389/tcp"] == ["mailbox", "mta", "proxy"]


def test_the_fleet_report_agrees_with_the_probes(cluster):
    cluster.run("saltutil.sync_all")  # the runner and its core, to the master
    started = time.monotonic()
    result = cluster.run("zimbra_fw.report")
    seconds = time.monotonic() - started
    with_drift = "zimbra_fw.drift" in cluster.salt("ldap", "sys.list_functions", "zimbra_fw")["ldap"]
    with open(result["html"], encoding="utf-8") as handle:
        tables = fleet.Tables(handle.read())
    header, *rows = result["report"]
    assert header.split() == ["minion", "backend", "drifted", "critical", "high", "medium", "roles", "note"]
    assert [row.split() for row in rows] == [
        [name, "firewalld" if name in FIREWALLD else "nftables" if name in NFTABLES else "ufw",
         "no" if with_drift else "unknown", "0", "0",
         "1" if name == "proxy" else "0",  # 9071, the proxy's admin console: open to anyone
         ",".join(roles), *([] if with_drift else ["drift:", "'zimbra_fw.drift'", "is", "not", "available."])]
        for name, (_, roles) in sorted(NODES.items())
    ]  # fmt: skip
    grid = {key: cell["text"].split() for key, cell in tables.grid(1).items()}
    assert not any(cell["class"] == "drift" for cell in tables.grid(1).values())  # nothing closed or extra
    # the matrix says what test_internet_reaches_only_public_ports and the peers' probes saw
    assert grid["internet", "mta"] == ["22/tcp", "25/tcp", "465/tcp", "587/tcp"]
    assert grid["internet", "ldap"] == ["\u2013"]  # sshd moved to 2222, open to an admin network only
    assert {"389/tcp", "2222/tcp"} <= set(grid["mailbox + memcached", "ldap"])
    assert "2222/tcp" not in grid["mta", "ldap"] and "11211/tcp" not in grid["mta", "mailbox"]
    assert {"7025/tcp", "7071/tcp", "7073/tcp", "8443/tcp"} <= set(grid["mta", "mailbox"])
    assert {"7072/tcp", "8080/tcp", "11211/tcp"} <= set(grid["proxy", "mailbox"])
    print(f"salt-run zimbra_fw.report, 4 minions: {seconds:.1f} s")


def test_second_apply_changes_nothing(cluster):
    results = cluster.apply()
    assert_all_succeeded(results, NODES)
    assert changed(results) == {}


def test_a_fifth_node_joins_beside_a_hostile_one_and_both_leave(cluster):
    # Every role, and for addresses a network and one outside cluster:networks.
    evil_identity = {"roles": ["proxy", "mta", "mailbox"], "addresses": ["0.0.0.0/1", "198.51.100.7"]}
    extra = {
        # A mine alias: the minion publishes whatever this grain says.
        "mine_functions": {"zimbra_fw.identity": [{"mine_function": "grains.get"}, "zfw_identity"]},
        "grains": {"zfw_identity": evil_identity},
    }
    cluster.add_minion("evil", 16, {"roles": ["mta"]}, extra_config=extra)
    mta2 = cluster.add_minion("mta2", 15, pillar(["mta"]))
    cluster.wait_for_minions()
    results = {node: states for node, states in cluster.apply().items() if node != "evil"}  # evil's own aside
    assert_all_succeeded(results, [*NODES, "mta2"])  # one bad minion does not stop the others' states
    assert sorted(changed(results)) == ["ldap", "mailbox", "mta2"]  # mta and proxy open nothing to an MTA
    # what opened is mta2's address only: nothing of evil's networks or outside address
    assert results["mailbox"]["zimbra_fw-rules"]["changes"] == {"added": ["10.77.0.15 in ipset zimbra-mta-v4"]}
    assert results["ldap"]["zimbra_fw-rules"]["changes"] == {"added": ["allow from 10.77.0.15 to any app Zimbra-all"]}
    left_out = cluster.salt("mailbox", "zimbra_fw.open_ports")["mailbox"]["left_out"]
    assert list(left_out) == ["evil"] and "0.0.0.0/1" in left_out["evil"][0], left_out
    assert reach(cluster, "internet", "mailbox", [7025, 7071, 8080, 8443, 11211, 7306]) == {
        7025: False, 7071: False, 8080: False, 8443: False, 11211: False, 7306: False,
    }  # fmt: skip
    assert reach(cluster, "evil", "mailbox", [7025, 8080, 11211]) == {7025: False, 8080: False, 11211: False}
    assert reach(cluster, "mta2", "mailbox", [7025, 8080]) == {7025: True, 8080: False}
    assert reach(cluster, "mta2", "ldap", [389]) == {389: True}

    cluster.salt("evil", "mine.flush")
    cluster.stop_minion("evil")
    cluster.stop_minion("mta2")
    results = cluster.apply()
    assert_all_succeeded(results, NODES)
    assert sorted(changed(results)) == ["ldap", "mailbox"]
    removed = results["mailbox"]["zimbra_fw-rules"]["changes"]["removed"]
    assert removed == ["10.77.0.15 in ipset zimbra-mta-v4"]  # firewalld: an entry, not a rule
    assert results["ldap"]["zimbra_fw-rules"]["changes"]["removed"] == ["allow from 10.77.0.15 to any app Zimbra-all"]
    # mta2's namespace is still there: its old address is shut out again.
    assert mta2.probe(cluster.addresses["mailbox"], [7025]) == {7025: False}
    assert mta2.probe(cluster.addresses["ldap"], [389]) == {389: False}
    assert changed(cluster.apply()) == {}
