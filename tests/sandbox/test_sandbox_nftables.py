"""The formula with ``backend: nftables`` against the kernel's nftables in the
sandbox: one lab for the module, its tests run in order on it. Probes over
IPv4 and IPv6, a second run reads nft once, test=True, a foreign table
survives every run, drift is reported (zimbra_fw.drift) and repaired, the
persisted file loads as the distribution's boot would load it, bad input
changes nothing, tables rendered from hostile pillars are what nft reads."""

import copy
import os
import sys

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_nftables as nft
import zimbra_fw_policy as policies
from hypothesis import given, settings
from salt.exceptions import CommandExecutionError

from harness.sandbox import REPO, Lab

sys.path.insert(0, os.path.join(REPO, "tests", "unit"))  # the hostile pillars of the unit tests
from test_hostile_inputs import KNOWN_ATTACKS, SETTINGS, pillars_and_facts

PUBLIC = [25, 80, 110, 143, 443, 465, 587, 993, 995, 3443, 5222, 5223, 7071, 9071]
INTERNAL = [389, 636, 3310, 7025, 7072, 7171, 7306, 8080, 8443, 10024, 11211, 23232]
MTA_PEERS = [
    {"name": "mta1", "addresses": ["10.1.0.1", "2001:db8:50::1"], "roles": ["mta"]},
    {"name": "mta2", "addresses": ["10.1.0.2"], "roles": ["mta"]},
]
# A table that is not ours (Docker's, fail2ban's, the admin's): every run leaves it as it is.
FOREIGN = """table ip admin_table {
	set blocked {
		type ipv4_addr
		elements = { 198.51.100.66 }
	}

	chain input {
		type filter hook input priority -10; policy accept;
		ip saddr @blocked drop
		tcp dport 9999 accept
	}
}
"""
PERSISTED = "etc/nftables.d/zimbra_fw.nft"
OURS = ("inet", "zimbra_fw")


@pytest.fixture(scope="module")
def lab():
    with Lab(nftables=True) as new_lab:
        new_lab.minion.sync()
        new_lab.minion.listen([*PUBLIC, *INTERNAL, 22])
        yield new_lab


@pytest.fixture(scope="module")
def pillar(example_pillar):
    return dict(
        copy.deepcopy(example_pillar),
        backend="nftables",
        trusted_subnets=["192.168.1.0/24", "2001:db8:1::/64"],
        cluster={"peers": MTA_PEERS},
    )


def changes(results):
    return {state: result["changes"] for state, result in results.items() if result["changes"]}


def our_table(minion):
    return minion.nft("list", "table", "inet", "zimbra_fw", check=False).stdout


def foreign_table(minion):
    return minion.nft("list", "table", "ip", "admin_table").stdout


def read(minion, path):
    with open(os.path.join(minion.state, path), encoding="utf-8") as handle:
        return handle.read()


def assert_least_privilege(lab):
    ports = [*PUBLIC, *INTERNAL, 22]
    for address in (lab.MINION_INTERNET, lab.MINION_INTERNET6):
        reached = lab.internet.probe(address, ports, timeout=0.5)
        assert [p for p in [*PUBLIC, 22] if not reached[p]] == [], address
        assert [p for p in INTERNAL if reached[p]] == [], address
    for address in (lab.MINION_LAN, lab.MINION_LAN6):
        reached = lab.lan.probe(address, ports, timeout=0.5)
        assert [p for p in ports if not reached[p]] == [], address


# Our table with a hooked input chain that accepts, and no rules yet.
BARE = """table inet zimbra_fw {
	chain input {
		type filter hook input priority filter; policy accept;
	}
}
"""


def test_the_firewall_part_alone_refuses_without_management_rules(lab, pillar):
    minion = lab.minion
    minion.nft("-f", "-", stdin=FOREIGN)
    minion.set_pillar(pillar)
    said = minion.salt_text("zimbra_fw.converge", "part=firewall")
    assert "refusing to set policy drop: management access is not allowed yet" in said
    assert our_table(minion) == ""
    minion.nft("-f", "-", stdin=BARE)  # a chain that accepts, without the management rules
    said = minion.salt_text("zimbra_fw.converge", "part=firewall")
    assert "refusing to set policy drop: management access is not allowed yet" in said
    assert "policy accept;" in our_table(minion)
    minion.nft("delete", "table", *OURS)


def test_test_mode_changes_nothing_and_says_what_the_run_does(lab, pillar):
    minion = lab.minion
    foreign = foreign_table(minion)
    predicted = minion.apply(test=True)
    assert {state: r["result"] for state, r in predicted.items() if r["changes"]} == {
        "zimbra_fw-profile": None,
        "zimbra_fw-rules": None,
    }
    assert predicted["zimbra_fw-rules"]["comment"].endswith("; the input chain's policy would be drop")
    assert our_table(minion) == "" and not os.path.exists(os.path.join(minion.state, PERSISTED))

    results = minion.apply()
    assert all(r["result"] for r in results.values()), results
    assert changes(results) == changes(predicted)
    assert results["zimbra_fw-rules"]["comment"].startswith("Created table inet zimbra_fw; added ")
    assert "no init system here" in results["zimbra_fw-profile"]["comment"]
    assert foreign_table(minion) == foreign


def test_the_table_holds_management_first_and_one_set_per_group_and_family(lab):
    table = our_table(lab.minion)
    rules = [line.strip() for line in table.split("policy drop;")[1].splitlines() if line.strip() not in ("", "}")]
    assert rules[0] == "tcp dport 22 accept"
    assert rules[1:3] == ['iif "lo" accept', "ct state established,related accept"]
    assert "ip saddr @zimbra-mta-v4 tcp dport { 7025, 7073, 8443 } accept" in rules
    assert "ip6 saddr @zimbra-mta-v6 tcp dport { 7025, 7073, 8443 } accept" in rules
    assert "elements = { 10.1.0.1, 10.1.0.2 }" in table and "elements = { 2001:db8:50::1 }" in table
    assert "type filter hook input priority filter; policy drop;" in table


def test_probes_over_ipv4_and_ipv6(lab):
    assert_least_privilege(lab)
    assert lab.internet.probe(lab.MINION_INTERNET, [9999])[9999] is False  # the foreign accept is not ours to widen


def test_a_second_run_reads_nft_once_and_changes_nothing(lab):
    minion = lab.minion
    minion.reset_nft_counts()
    results = minion.apply()
    assert changes(results) == {}
    assert results["zimbra_fw-rules"]["comment"] == "Table inet zimbra_fw is as configured"
    assert minion.nft_commands() == ["-j list table inet zimbra_fw"]
    report = minion.salt("zimbra_fw.drift")
    assert report["drifted"] is False and report["active"] is True, report


def test_status_and_audit(lab):
    status = lab.minion.salt("zimbra_fw.status")
    assert status["active"] is True and status["default_incoming"] == "deny"
    assert status["sets"]["zimbra-mta-v4"] == ["10.1.0.1", "10.1.0.2"]
    report = lab.minion.salt("zimbra_fw.audit")
    assert report["summary"]["critical"] == 0 and report["summary"]["high"] == 0, report["report"]
    assert not any("differs" in finding["message"] for finding in report["findings"]), report["report"]
    reach = {entry["port"]: entry["reachable_from"] for entry in report["ports"]}
    assert reach["443/tcp"] == "anyone"
    assert reach["11211/tcp"] == ["192.168.1.0/24", "2001:db8:1::/64"]
    assert reach["7025/tcp"] == ["10.1.0.1", "10.1.0.2", "192.168.1.0/24", "2001:db8:1::/64", "2001:db8:50::1"]


@pytest.mark.parametrize(
    "drift, repaired",
    [
        (["delete", "element", *OURS, "zimbra-mta-v4", "{ 10.1.0.2 }"], {"added": ["10.1.0.2 in set zimbra-mta-v4"]}),
        (["flush", "set", *OURS, "zimbra-mta-v6"], {"added": ["2001:db8:50::1 in set zimbra-mta-v6"]}),
        (["add", "rule", *OURS, "input", "tcp", "dport", "11211", "accept"], {"removed": ["tcp dport 11211 accept"]}),
    ],
)  # fmt: skip
def test_drift_in_the_table_is_repaired(lab, drift, repaired):
    minion = lab.minion
    before, foreign = our_table(minion), foreign_table(minion)
    minion.nft(*drift)
    results = minion.apply()
    assert changes(results) == {"zimbra_fw-rules": repaired}
    assert our_table(minion) == before and foreign_table(minion) == foreign


def test_a_rule_removed_by_hand_and_the_table_deleted_are_repaired(lab):
    minion = lab.minion
    before, foreign = our_table(minion), foreign_table(minion)
    listed = minion.nft("-a", "list", "chain", "inet", "zimbra_fw", "input").stdout
    handle = next(line.split("# handle ")[1] for line in listed.splitlines() if "@zimbra-mta-v4" in line)
    minion.nft("delete", "rule", "inet", "zimbra_fw", "input", "handle", handle)
    report = minion.salt("zimbra_fw.drift")
    assert report["drifted"] is True and list(report["parts"]) == ["rules"], report
    results = minion.apply()
    assert changes(results) == {
        "zimbra_fw-rules": {"added": ["ip saddr @zimbra-mta-v4 tcp dport { 7025, 7073, 8443 } accept"]}
    }
    assert our_table(minion) == before

    minion.nft("delete", "table", "inet", "zimbra_fw")
    results = minion.apply()
    assert set(changes(results)) == {"zimbra_fw-rules"}
    assert changes(results)["zimbra_fw-rules"]["policy"] == {"old": None, "new": "drop"}
    assert our_table(minion) == before and foreign_table(minion) == foreign
    assert_least_privilege(lab)


def test_bad_input_is_refused_before_anything_changes(lab, pillar):
    minion = lab.minion
    before = minion.snapshot()
    for bad in ({"trusted_subnets": ["10.0.0.0/33"]}, {"ssh": {"port": 22, "from": ["any"], "limit": True}}):
        minion.set_pillar(dict(pillar, **bad))
        results = minion.apply()
        failed = [state for state, result in results.items() if result["result"] is False]
        assert failed, results
        assert minion.snapshot() == before
    assert "zimbra_fw:ssh:limit cannot be applied with nftables" in results["zimbra_fw-profile"]["comment"]
    minion.set_pillar(pillar)


def test_the_persisted_file_loads_as_the_distribution_boots_it(lab):
    minion = lab.minion
    before = our_table(minion)
    persisted = read(minion, PERSISTED)
    assert persisted.startswith("# Managed by Salt (zimbra_fw formula).")
    assert "table inet zimbra_fw {}\ndelete table inet zimbra_fw\n" in persisted
    assert read(minion, "etc/nftables.conf").endswith('include "/etc/nftables.d/zimbra_fw.nft"\n')
    minion.nft("-c", "-f", "/etc/nftables.d/zimbra_fw.nft")
    minion.nft("-f", "/etc/nftables.conf")  # what nftables.service does at boot (Debian's flushes the ruleset first)
    assert our_table(minion) == before
    assert changes(minion.apply()) == {}


def hostile_tables(count):
    """Tables rendered from the known attacks and ``count`` generated hostile
    pillars that the config accepts: {table text: its policy}."""
    tables = {}

    def render(pillar, facts):
        try:
            policy = policies.build(cfg.parse_config(pillar, facts))
            tables.setdefault(nft.table_text(policy, "drop"), policy)
        except (cfg.ConfigInvalid, CommandExecutionError):
            pass

    for attack in KNOWN_ATTACKS:
        pillar, mine = attack if isinstance(attack, tuple) else (attack, None)
        render(dict(pillar, backend="nftables"), cfg.Facts(mine_data=mine, minion_id="me"))

    @settings(max_examples=count, **SETTINGS)
    @given(pillars_and_facts("nftables", "Debian"))
    def generated(case):
        render(*case)

    generated()
    return tables


def test_tables_rendered_from_hostile_pillars_are_what_nft_reads(lab):
    """nft itself is the oracle: every table checks (nft -c) as one batch, and
    the largest ones load and read back as converged."""
    minion = lab.minion
    tables = hostile_tables(150)
    assert len(tables) >= 10
    batch = "".join(f"table inet zimbra_fw {{}}\ndelete table inet zimbra_fw\n{text}" for text in tables)
    checked = minion.nft("-c", "-f", "-", stdin=batch, check=False)
    assert checked.returncode == 0, checked.stderr[-2000:]
    try:
        for text in sorted(tables, key=len)[-3:]:
            minion.nft("-f", "-", stdin=f"table inet zimbra_fw {{}}\ndelete table inet zimbra_fw\n{text}")
            listed = nft.snapshot_of(nft.files.parse_table(minion.nft("-j", "list", "table", *OURS).stdout))
            assert nft.plan("rules", tables[text], listed).changes == {}, text
    finally:
        minion.nft("delete", "table", *OURS)
