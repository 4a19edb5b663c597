"""The nftables backend's pure parts: the policy as one table, ``nft -j``
output read back (a table nft 1.0.6 listed in the sandbox, data/), the
planners (no-op, peers joining and leaving, drift), persistence, the audit's
reading and the words. No nft here: the sandbox tests load what is rendered."""

import copy
import ipaddress
import json
import os
import re

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_nftables as nft
import zimbra_fw_nftables_files as files
import zimbra_fw_policy as policies
from hypothesis import given, settings
from salt.exceptions import CommandExecutionError
from test_hostile_inputs import SETTINGS, pillars_and_facts
from zimbra_fw_audit import Rule
from zimbra_fw_catalogue import PortSpec

HERE = os.path.dirname(os.path.abspath(__file__))
# The pillar whose table nft listed as data/nft-list-table.json (with the Salt master below).
LISTED = {
    "roles": ["ldap", "mta", "proxy", "mailbox"],
    "backend": "nftables",
    "trusted_subnets": ["192.168.1.0/24", "2001:db8:1::/64"],
    "admin_subnets": ["192.0.2.0/24"],
    "ssh": {"port": 2222, "from": ["192.168.1.0/24", "2001:db8:1::/64"], "limit": False},
    "only_from": {"993/tcp": ["198.51.100.0/24"]},
    "extra_ports": ["5060/udp", "6000:6010/tcp"],
    "cluster": {
        "peers": [
            {"name": "m1", "addresses": ["10.1.0.0/16", "10.1.2.3", "2001:db8:50::1"], "roles": ["mta"]},
            {"name": "m2", "addresses": ["10.2.0.7"], "roles": ["mta", "proxy"]},
        ]
    },
}
MASTER = ("192.0.2.9", (4505, 4506), (32768, 60999))


def policy_of(pillar=LISTED, master=MASTER):
    return policies.build(cfg.parse_config(pillar, cfg.Facts(salt_master=master)))


def listed_json():
    with open(os.path.join(HERE, "data", "nft-list-table.json"), encoding="utf-8") as handle:
        return handle.read()


def listed(persisted=None, included=True, boot=None, edit=None):
    """The listed table as a Snapshot; ``edit(document)`` changes nft's JSON first."""
    document = json.loads(listed_json())
    if edit is not None:
        edit(document["nftables"])
    return nft.snapshot_of(files.parse_table(json.dumps(document)), persisted, included, boot)


def converged(policy=None):
    policy = policy or policy_of()
    return listed(persisted=nft.persisted_text(policy, "drop"))


def converged_with(edit):
    """The converged snapshot with nft's JSON changed by ``edit(items)`` first."""
    return listed(persisted=nft.persisted_text(policy_of(), "drop"), edit=edit)


def rules_of(items):
    return [item["rule"] for item in items if "rule" in item]


def set_of(items, name):
    return next(item["set"] for item in items if "set" in item and item["set"]["name"] == name)


def with_peers(count, pillar=LISTED):
    pillar = copy.deepcopy(pillar)
    pillar["cluster"]["peers"] += [
        {"name": f"new{i}", "addresses": [f"10.3.0.{i + 1}"], "roles": ["mta"]} for i in range(count)
    ]
    return pillar


# ---------------------------------------------------------------- rendering


def test_management_comes_first_then_loopback_conntrack_and_icmp():
    rules = nft.desired(policy_of()).rules
    assert rules[:3] == (
        "ip saddr 192.168.1.0/24 tcp dport 2222 accept",
        "ip6 saddr 2001:db8:1::/64 tcp dport 2222 accept",
        "ip saddr 192.0.2.9 tcp sport 4505-4506 tcp dport 32768-60999 accept",
    )
    assert rules[3:8] == nft.BASE_RULES
    assert rules[3:5] == ('iif "lo" accept', "ct state established,related accept")
    assert "nd-neighbor-solicit" in rules[7] and rules[7].startswith("icmpv6 type {")
    assert rules[-2:] == (
        "tcp dport { 25, 80, 110, 143, 443, 465, 587, 995, 3443, 5222-5223, 6000-6010 } accept",
        "udp dport 5060 accept",
    )


def test_one_set_per_group_and_family_and_one_rule_per_set_and_protocol():
    wanted = nft.desired(policy_of())
    assert sorted(wanted.sets) == [f"zimbra-{g}-v{v}" for g in ("admin", "all", "mta", "proxy") for v in (4, 6)]
    assert wanted.sets["zimbra-mta-v4"] == files.NftSet("ipv4_addr", ("interval",), ("10.1.0.0/16", "10.2.0.7"))
    assert wanted.sets["zimbra-mta-v6"].elements == ("2001:db8:50::1",)
    assert wanted.sets["zimbra-proxy-v6"] == files.NftSet("ipv6_addr", ("interval",), ())
    assert sum("@zimbra-mta-v4" in rule for rule in wanted.rules) == 1


def test_n_peers_are_n_elements_and_no_more_rules():
    few, many = nft.desired(policy_of()), nft.desired(policy_of(with_peers(200)))
    assert many.rules == few.rules
    assert len(many.sets["zimbra-mta-v4"].elements) == len(few.sets["zimbra-mta-v4"].elements) + 200


def test_a_network_inside_another_of_the_set_is_left_out():
    assert "10.1.2.3" not in nft.desired(policy_of()).sets["zimbra-mta-v4"].elements


def test_the_file_replaces_the_table_whole_in_one_transaction():
    text = nft.persisted_text(policy_of(), "drop")
    head = "table inet zimbra_fw {}\ndelete table inet zimbra_fw\ntable inet zimbra_fw {\n"
    assert text.startswith(files.HEADER + head)
    assert text.count("table inet zimbra_fw") == 3 and "flush" not in text
    assert "\t\ttype filter hook input priority filter; policy drop;\n" in text
    assert "\t\telements = {\n\t\t\t10.1.0.0/16,\n\t\t\t10.2.0.7\n\t\t}\n" in text


def test_ssh_limit_is_refused_before_anything_changes():
    pillar = dict(LISTED, ssh={"port": 22, "from": ["any"], "limit": True})
    with pytest.raises(CommandExecutionError, match="zimbra_fw:ssh:limit cannot be applied with nftables"):
        nft.plan("rules", policy_of(pillar), converged())


RULE_LINE = re.compile(r'(?:[a-z0-9][a-z0-9:./,{} @_-]*|iif "lo" accept)', re.ASCII)


@settings(max_examples=150, **SETTINGS)
@given(pillars_and_facts("nftables", "Debian"))
def test_hostile_pillars_render_only_parsed_networks(case):
    """Whatever a pillar says, an accepted one renders rules of nft words,
    ports and networks only, and set elements that are the policy's own
    parsed sources (the sandbox checks the same tables with nft -c)."""
    pillar, facts = case
    try:
        policy = policies.build(cfg.parse_config(pillar, facts))
        wanted = nft.desired(policy)
    except (cfg.ConfigInvalid, CommandExecutionError):
        return
    assert all(RULE_LINE.fullmatch(rule) for rule in wanted.rules), wanted.rules
    sources = {access.source for access in policy.accesses if access.source is not None}
    for nft_set in wanted.sets.values():
        for element in nft_set.elements:
            assert ipaddress.ip_network(element) in sources
            assert element == cfg.source_text(ipaddress.ip_network(element))


# ---------------------------------------------------------------- reading nft -j


def test_nfts_json_reads_back_as_the_rules_and_sets_the_policy_renders():
    snapshot = listed()
    wanted = nft.desired(policy_of())
    assert snapshot.rules == wanted.rules
    assert snapshot.sets == wanted.sets
    assert snapshot.chain == files.Chain("filter", "input", 0, "drop")
    assert snapshot.active and snapshot.incoming == "deny" and snapshot.chains == ("input",)


def test_values_print_one_canonical_way():
    assert files.value_text({"set": [4506, 4505]}) == "4505-4506"  # nft merges neighbours in a set with a range
    assert files.value_text({"set": [25, {"range": [26, 30]}, 80]}) == "{ 25-30, 80 }"
    assert files.value_text({"set": [53]}) == "53"
    assert files.value_text({"set": ["time-exceeded", "echo-request"]}) == "{ echo-request, time-exceeded }"
    assert files.value_text({"prefix": {"addr": "2001:0db8::", "len": 32}}) == "2001:db8::/32"
    assert files.value_text({"elem": {"val": "10.0.0.1", "timeout": 30}}) == "10.0.0.1"
    assert files.value_text("lo", quoted=True) == '"lo"'
    assert files.value_text({"weird": 1}) == 'json:{"weird": 1}'
    assert files.expr_text({"counter": {"packets": 0, "bytes": 0}}).startswith("json:")
    assert files.expr_text(files.match(files.payload("tcp", "dport"), 22, "!=")) == "tcp dport != 22"


def test_a_listing_that_is_not_nfts_json_is_refused():
    for text in ("", "[]", '{"nftables": 1}'):
        with pytest.raises(ValueError):
            files.parse_table(text)


def test_a_missing_table_reads_as_absent_and_other_failures_are_errors():
    def run(argv, stdin=None):
        return 1, "", "Error: No such file or directory\nlist table inet zimbra_fw\n"

    assert nft._read_table(run) is None
    with pytest.raises(CommandExecutionError, match="exit 1"):
        nft._read_table(lambda argv, stdin=None: (1, "", "Error: Operation not permitted"))


@pytest.mark.parametrize("change", ["the table", "the persisted file", "the main configuration", "no table"])
def test_the_fingerprint_is_the_snapshots_and_changes_with_every_read(tmp_path, monkeypatch, change):
    where = nft.Layout(str(tmp_path / "nftables.conf"), str(tmp_path))
    monkeypatch.setattr(nft, "layout", lambda: where)
    monkeypatch.setattr(nft.salt.utils.path, "which", lambda name: f"/usr/sbin/{name}")
    (tmp_path / "nftables.conf").write_text(f'include "{tmp_path}/*.nft"\n')
    (tmp_path / nft.FILE_NAME).write_text("table inet zimbra_fw {}\n")
    listing = [listed_json()]

    def run(argv, stdin=None):
        if listing[0] is None:
            return 1, "", "Error: No such file or directory\n"
        return 0, listing[0], ""

    before = nft.read_fingerprint(run)
    snapshot = nft.read_snapshot(run)
    assert snapshot.fingerprint == before and snapshot.included and snapshot.table
    if change == "the table":
        listing[0] = listing[0].replace('"handle":3', '"handle":9', 1)
    elif change == "no table":
        listing[0] = None
    else:
        name = nft.FILE_NAME if change == "the persisted file" else "nftables.conf"
        with open(tmp_path / name, "a", encoding="utf-8") as handle:
            handle.write("\n")
    assert nft.read_fingerprint(run) != before


# ---------------------------------------------------------------- planning


def test_a_converged_table_plans_nothing_in_any_part():
    policy = policy_of()
    for part in nft.PARTS:
        found = nft.plan(part, policy, converged(policy))
        assert (found.changes, found.steps) == ({}, []), part
    assert "no init system here" in nft.plan("profile", policy, converged(policy)).comment


def test_peers_joining_are_elements_added_in_one_load_that_keeps_the_policy():
    plan = nft.plan("rules", policy_of(with_peers(3)), converged())
    added = [f"10.3.0.{i} in set zimbra-{group}-v4" for group in ("all", "mta") for i in (1, 2, 3)]
    assert plan.changes == {"added": added}  # every peer reaches the ports all peers use (LDAP) too
    (step,) = plan.steps
    assert step.action == "load" and "policy drop;" in step.args[0] and "\t\t\t10.3.0.3\n" in step.args[0]


def test_a_peer_leaving_takes_its_elements_and_its_groups_sets_and_rules():
    pillar = copy.deepcopy(LISTED)
    pillar["cluster"]["peers"] = pillar["cluster"]["peers"][:1]
    plan = nft.plan("rules", policy_of(pillar), converged())
    assert plan.changes["sets"] == {"zimbra-proxy-v4": {"old": "ipv4_addr interval", "new": None}} | {
        "zimbra-proxy-v6": {"old": "ipv6_addr interval", "new": None}
    }
    assert "10.2.0.7 in set zimbra-mta-v4" in plan.changes["removed"]
    assert "10.2.0.7 in set zimbra-proxy-v4" in plan.changes["removed"]
    assert sum("@zimbra-proxy" in item for item in plan.changes["removed"]) == 2
    assert "added" not in plan.changes


def test_drift_is_planned_back():
    policy = policy_of()

    def drop_element(items):
        set_of(items, "zimbra-mta-v4")["elem"].remove("10.2.0.7")

    def drop_rule(items):
        items.remove(next(i for i in items if "rule" in i and "@zimbra-all-v6" in json.dumps(i)))

    def foreign_chain(items):
        items.append({"chain": {"family": "inet", "table": "zimbra_fw", "name": "sneaky", "handle": 99}})

    def hook_moved(items):
        next(i for i in items if "chain" in i)["chain"]["prio"] = 10

    def swapped(items):
        rules = [i for i in items if "rule" in i]
        first, second = items.index(rules[0]), items.index(rules[1])
        items[first], items[second] = items[second], items[first]

    expected = {
        drop_element: {"added": ["10.2.0.7 in set zimbra-mta-v4"]},
        drop_rule: {"added": ["ip6 saddr @zimbra-all-v6 tcp dport { 389, 636 } accept"]},
        foreign_chain: {"chains removed": ["sneaky"]},
        hook_moved: {
            "chain": {"old": "type filter hook input priority 10", "new": "type filter hook input priority 0"}
        },
        swapped: {"order": {"old": list(listed(edit=swapped).rules), "new": list(nft.desired(policy).rules)}},
    }
    for edit, changes in expected.items():
        plan = nft.plan("rules", policy, listed(edit=edit))
        assert plan.changes == changes, edit.__name__
        assert [step.action for step in plan.steps] == ["load"]


def test_no_table_is_the_whole_table_added_with_policy_drop_in_one_load():
    policy, absent = policy_of(), nft.snapshot_of(None)
    plan = nft.plan("rules", policy, absent)
    assert plan.changes["table"] == {"old": None, "new": "inet zimbra_fw"}
    assert plan.changes["policy"] == {"old": None, "new": "drop"}
    wanted = nft.desired(policy)
    assert len(plan.changes["added"]) == len(wanted.rules) + sum(len(s.elements) for s in wanted.sets.values())
    [step] = plan.steps
    text = step.args[0]
    assert step.action == "load" and "policy drop;" in text and "policy accept;" not in text
    # the management rules are in the same transaction, before anything else in the chain
    chain = text.split("policy drop;")[1]
    assert chain.index(nft.management_rules(policy)[0]) < chain.index('iif "lo" accept')
    # Alone, the firewall part only checks: with no table of ours that refuses.
    firewall = nft.plan("firewall", policy, absent)
    assert firewall.changes == {} and "The rules part loads table" in firewall.comment
    assert [step.action for step in firewall.steps] == ["check"]
    assert "input chain's policy to drop" in nft.describe(plan.changes, False)


def no_hook(items):
    next(item["chain"] for item in items if "chain" in item).pop("hook")


def hooked_at_output(items):
    next(item["chain"] for item in items if "chain" in item)["hook"] = "output"


def dormant(items):
    next(item["table"] for item in items if "table" in item)["flags"] = ["dormant"]


@pytest.mark.parametrize("edit", [no_hook, hooked_at_output, dormant])
def test_a_drop_chain_that_filters_nothing_gets_the_policy_the_run_ends_with(edit):
    """enabled: false never turns default deny on by hooking a chain that
    dropped while it filtered nothing; enabled: true loads drop at once."""
    snapshot = converged_with(edit)
    assert not snapshot.active and snapshot.incoming == "deny"
    disabled = nft.plan("rules", policy_of(dict(LISTED, enabled=False)), snapshot)
    assert disabled.changes["policy"] == {"old": "drop", "new": "accept"}
    assert "policy accept;" in disabled.steps[0].args[0] and "policy drop;" not in disabled.steps[0].args[0]
    assert "input chain's policy would be accept" in nft.describe(disabled.changes, True)
    enabled = nft.plan("rules", policy_of(), snapshot)
    assert "policy" not in enabled.changes and "policy drop;" in enabled.steps[0].args[0]
    firewall = nft.plan("firewall", policy_of(), snapshot)
    assert firewall.changes == {} and [step.action for step in firewall.steps] == ["check"]


def test_no_table_with_enabled_false_is_loaded_with_policy_accept():
    plan = nft.plan("rules", policy_of(dict(LISTED, enabled=False)), nft.snapshot_of(None))
    assert "policy" not in plan.changes and "policy accept;" in plan.steps[0].args[0]


def test_a_table_without_management_rules_gets_drop_only_after_a_check():
    def bare(items):
        chain = next(i for i in items if "chain" in i)["chain"]
        chain["policy"] = "accept"
        items[:] = [i for i in items if "rule" not in i]

    policy, loose = policy_of(), listed(edit=bare)
    firewall = nft.plan("firewall", policy, loose)
    assert firewall.changes == {"policy": {"old": "accept", "new": "drop"}}
    assert [step.action for step in firewall.steps] == ["check", "policy"]
    assert firewall.steps[0].args == nft.desired(policy).rules[:3]


def test_enabled_false_leaves_the_policy_and_allow_no_management_skips_the_check():
    def accepting(items):
        next(i for i in items if "chain" in i)["chain"]["policy"] = "accept"

    loose = listed(edit=accepting)
    assert loose.incoming == "allow"
    plan = nft.plan("firewall", policy_of(dict(LISTED, enabled=False)), loose)
    assert (plan.changes, plan.steps) == ({}, []) and "left alone" in plan.comment
    assert "policy accept;" in nft.persisted_text(policy_of(), "accept")
    assert "policy accept;" in nft.plan("profile", policy_of(dict(LISTED, enabled=False)), loose).steps[0].args[1]
    pillar = dict(LISTED, ssh={"port": 22, "from": [], "limit": False}, allow_no_management=True)
    steps = nft.plan("firewall", policy_of(pillar, master=None), loose).steps
    assert [step.action for step in steps] == ["policy"]


def test_persistence_writes_the_file_includes_it_and_enables_the_unit():
    policy = policy_of()
    plan = nft.plan("profile", policy, listed(persisted=None, included=False, boot=False))
    assert [step.action for step in plan.steps] == ["write", "include", "enable"]
    assert plan.steps[0].args == ("/etc/nftables.d/zimbra_fw.nft", nft.persisted_text(policy, "drop"))
    assert plan.steps[1].args == ("/etc/nftables.conf", 'include "/etc/nftables.d/zimbra_fw.nft"')
    assert plan.changes["boot"] == {"old": "disabled", "new": "enabled"}
    assert "+table inet zimbra_fw {}" in plan.changes["file"]["diff"]
    assert "at boot" not in plan.changes["file"]
    stale = nft.plan("profile", policy, listed(persisted="old\n", included=True, boot=True))
    assert list(stale.changes) == ["file"] and stale.comment is None


def test_the_main_configuration_includes_by_name_or_glob_never_in_a_comment():
    path = "/etc/nftables.d/zimbra_fw.nft"
    assert nft.includes('include "/etc/nftables.d/*.nft"\n', path)
    assert nft.includes('  include "/etc/nftables.d/zimbra_fw.nft"\n', path)
    assert not nft.includes('# include "/etc/nftables.d/zimbra_fw.nft"\n', path)
    assert not nft.includes('include "/etc/nftables/*.nft"\n', path)
    assert not nft.includes('include "/etc/*.nft"\n', path)  # nft's glob: a wildcard never matches a '/'
    assert not nft.includes('include "/etc/*"\n', path) and not nft.includes(
        'include "/etc/nftables.d?zimbra_fw.nft"\n', path
    )
    assert nft.includes('include "/etc/*/zimbra_fw.nft"\n', path) and nft.includes('include "/etc/nft*.d/z*"\n', path)
    assert not nft.includes(None, path)


def test_the_include_line_is_added_once_and_the_file_keeps_its_mode(tmp_path):
    main = tmp_path / "nftables.conf"
    main.write_text("#!/usr/sbin/nft -f\nflush ruleset\n")
    main.chmod(0o755)
    line = f'include "{tmp_path}/zimbra_fw.nft"'
    nft._add_include(str(main), line)
    nft._add_include(str(main), line)
    assert main.read_text().count(line) == 1 and main.read_text().startswith("#!/usr/sbin/nft -f\nflush ruleset\n")
    assert main.stat().st_mode & 0o777 == 0o755
    missing = tmp_path / "new.conf"
    nft._add_include(str(missing), line)
    assert missing.read_text().endswith(line + "\n")


def test_the_distributions_layout():
    assert nft.persisted_path(nft.DEBIAN) == "/etc/nftables.d/zimbra_fw.nft"
    assert nft.include_line(nft.REDHAT) == 'include "/etc/nftables/zimbra_fw.nft"'
    assert nft.REDHAT.main == "/etc/sysconfig/nftables.conf"


# ---------------------------------------------------------------- audit, status, words


def test_the_audit_reads_our_chain_with_the_sets_elements():
    rules = nft.access_rules(listed())
    tcp = lambda *ports: [PortSpec(p, p, "tcp") for p in ports]  # noqa: E731
    assert rules[:3] == [
        Rule("allow", "192.168.1.0/24", tcp(2222)),
        Rule("allow", "2001:db8:1::/64", tcp(2222)),
        Rule("allow", "192.0.2.9", [PortSpec(32768, 60999, "tcp")]),
    ]
    assert Rule("allow", "192.168.1.0/24", None) in rules
    assert Rule("allow", "10.1.0.0/16", tcp(7025, 7071, 7073, 8443)) in rules
    assert Rule("allow", "198.51.100.0/24", tcp(993)) in rules
    assert Rule("allow", "any", [PortSpec(5060, 5060, "udp")]) == rules[-1]
    assert not any(rule.source == "any" and rule.ports is None for rule in rules)  # lo, ct, icmp are not read
    assert nft.own_rules(listed()) == rules  # every rule of our table is ours


def test_the_audit_counts_a_rule_it_cannot_read_as_from_anyone():
    def odd(items):
        rule = rules_of(items)[-1]
        rule["expr"].insert(0, {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}})

    assert nft.access_rules(listed(edit=odd))[-1] == Rule("allow", "any", [PortSpec(5060, 5060, "udp")])

    def not_loopback(items):
        rule = next(r for r in rules_of(items) if "iif" in json.dumps(r))
        rule["expr"][0]["match"]["right"] = "eth0"

    assert Rule("allow", "any", None) in nft.access_rules(listed(edit=not_loopback))


def test_findings_when_the_table_would_not_survive_a_reboot():
    good = nft.persisted_text(policy_of(), "drop")
    assert nft.audit_findings(listed(persisted=good, included=True, boot=True)) == []
    assert nft.audit_findings(listed(persisted=None, boot=True))[0][0] == "medium"
    assert "not enabled" in nft.audit_findings(listed(persisted=good, included=True, boot=False))[0][1]
    assert nft.audit_findings(listed(persisted=good, included=True, boot=None)) == [
        ("low", "no init system here: nothing loads table inet zimbra_fw at boot")
    ]
    assert nft.audit_findings(nft.snapshot_of(None)) == []


def test_a_persisted_file_that_differs_from_the_running_table_is_a_finding():
    good = nft.persisted_text(policy_of(), "drop")
    tampered = good.replace("policy drop;", "policy accept;").replace('\t\tiif "lo" accept', '\t\taccept\n\t\tiif "lo"')
    for persisted in (tampered, nft.persisted_text(policy_of(dict(LISTED, ssh={"port": 22})), "drop")):
        findings = nft.audit_findings(listed(persisted=persisted, included=True, boot=True))
        assert [severity for severity, _ in findings] == ["medium"] and "differs from the running" in findings[0][1]
    disabled = policy_of(dict(LISTED, enabled=False))
    assert nft.audit_findings(listed(persisted=nft.persisted_text(disabled, "drop"), boot=True)) == []


def test_status():
    status = nft.status(listed(persisted="x"))
    assert status["active"] is True and status["default_incoming"] == "deny" and status["table"] == "inet zimbra_fw"
    assert status["sets"]["zimbra-mta-v4"] == ["10.1.0.0/16", "10.2.0.7"]
    assert status["managed_rules"][0] == "ip saddr 192.168.1.0/24 tcp dport 2222 accept"


def test_describe():
    changes = {"table": {"old": None, "new": "inet zimbra_fw"}, "added": ["tcp dport 22 accept", "10.0.0.1 in set s"]}
    assert nft.describe(changes, False) == "Created table inet zimbra_fw; added 1 rule and 1 set element"
    assert nft.describe({"removed": ["a in set s", "b in set s"]}, True) == "2 set elements would be removed"
    assert nft.describe({"policy": {"old": "accept", "new": "drop"}}, False) == "Set the input chain's policy to drop"
    persisted = {"file": {"path": "/p", "diff": "", "at boot": "no init system here"}, "boot": {}}
    assert (
        nft.describe(persisted, True)
        == "/p would be written; nftables.service would be enabled at boot; no init system here"
    )
    assert set(nft.DONE) == set(nft.PARTS)


# ---------------------------------------------------------------- hostile listings


def test_a_dormant_table_is_inactive_drift_reloaded_and_an_audit_finding():
    def dormant(items):
        next(item["table"] for item in items if "table" in item)["flags"] = ["dormant"]

    snapshot = converged_with(dormant)
    assert snapshot.flags == ("dormant",) and snapshot.active is False
    plan = nft.plan("rules", policy_of(), snapshot)
    assert plan.changes == {"table flags": {"old": ["dormant"], "new": []}}
    assert "table inet zimbra_fw {}\ndelete table inet zimbra_fw\n" in plan.steps[0].args[0]
    assert nft.status(snapshot)["active"] is False
    assert nft.audit_findings(snapshot)[0][0] == "high" and "dormant" in nft.audit_findings(snapshot)[0][1]
    assert nft.describe(plan.changes, True) == "The table's flags (dormant) would be cleared"
    assert nft.plan("firewall", policy_of(), snapshot).changes == {}  # the reload keeps policy drop

    def one_flag_as_text(items):
        next(item["table"] for item in items if "table" in item)["flags"] = "owner"

    owned = converged_with(one_flag_as_text)
    assert owned.active is True and "table flags" in nft.plan("rules", policy_of(), owned).changes
    assert converged().flags == () and not any("flags" in message for _, message in nft.audit_findings(converged()))


HOSTILE_POLICY = "accept; }\n}\nflush ruleset\ntable inet zimbra_fw {\n\tchain input {\n\t\tpolicy accept"


def hostile_policy(items):
    next(item["chain"] for item in items if "chain" in item)["policy"] = HOSTILE_POLICY


def test_a_chain_policy_nft_cannot_have_is_drift_and_never_rendered():
    snapshot = converged_with(hostile_policy)
    plan = nft.plan("rules", policy_of(), snapshot)
    assert plan.changes == {"chain policy": {"old": "unreadable", "new": "drop"}}  # the policy the run ends with
    assert "flush ruleset" not in plan.steps[0].args[0] and "policy drop;" in plan.steps[0].args[0]
    assert "flush ruleset" not in plan.steps[0].describe
    firewall = nft.plan("firewall", policy_of(), snapshot)  # the rules part sets it: said once
    assert firewall.changes == {} and [step.action for step in firewall.steps] == ["check"]
    disabled = policy_of(dict(LISTED, enabled=False))
    assert nft.plan("rules", disabled, snapshot).changes["chain policy"]["new"] == "accept"
    profile = nft.plan("profile", disabled, snapshot)
    assert not any("flush ruleset" in str(step.args) for step in profile.steps)
    assert nft.describe(plan.changes, True) == "The chain policy would be drop"


def inner_tunnel_sources(items):
    for rule in rules_of(items):
        for expr in rule["expr"]:
            if expr.get("match", {}).get("left", {}).get("payload", {}).get("field") == "saddr":
                expr["match"]["left"]["payload"]["tunnel"] = "vxlan"  # nft -j's `vxlan ip saddr ...`


def exact_ct_compare(items):
    for rule in rules_of(items):
        for expr in rule["expr"]:
            if expr.get("match", {}).get("right") == ["established", "related"]:
                expr["match"]["op"] = "=="  # `ct state == established|related`: never matches


def test_a_match_the_printer_cannot_print_exactly_is_drift_and_fails_the_management_check():
    policy = policy_of()
    for edit in (inner_tunnel_sources, exact_ct_compare):
        snapshot = converged_with(edit)
        plan = nft.plan("rules", policy, snapshot)
        assert plan.changes["added"] and plan.changes["removed"], edit.__name__
    management = set(nft.management_rules(policy))
    assert not management & set(converged_with(inner_tunnel_sources).rules)
    assert "ct state established,related accept" not in converged_with(exact_ct_compare).rules


def test_the_ops_print_apart_as_nft_writes_them():
    ct, tcp = {"ct": {"key": "state"}}, files.payload("tcp", "dport")
    texts = {
        files.expr_text(files.match(ct, "invalid", "in")): "ct state invalid",
        files.expr_text(files.match(ct, "invalid")): "ct state == invalid",
        files.expr_text(files.match(ct, "invalid", "!=")): "ct state != invalid",
        files.expr_text(files.match(tcp, 22)): "tcp dport 22",
        files.expr_text(files.match(tcp, 22, "in")): "tcp dport in 22",
        files.expr_text(files.match(tcp, 22, "!=")): "tcp dport != 22",
    }
    assert all(found == wanted for found, wanted in texts.items()), texts
    assert files.expr_text(files.match({"ct": {"key": "state", "dir": "original"}}, "new")).startswith("json:")
    assert files.expr_text(files.match({"meta": {"key": 5}}, "lo")).startswith("json:")
    assert files.expr_text(files.match(tcp, 22, "<")).startswith("json:")
    assert files.value_text({"prefix": {"addr": "10.0.0.0", "len": 8, "x": 1}}).startswith("json:")


def test_the_audit_counts_an_accept_it_cannot_read_exactly_as_from_anyone_to_every_port():
    ct, iif = {"ct": {"key": "state"}}, {"meta": {"key": "iif"}}
    tcp, saddr = files.payload("tcp", "dport"), files.payload("ip", "saddr")
    accept = {"accept": None}
    opening = {
        "ct state new accept": [files.match(ct, "new", "in"), accept],
        "ct state new tcp dport 11211 accept": [files.match(ct, "new", "in"), files.match(tcp, 11211), accept],
        "ct state == established,related": [files.match(ct, ["established", "related"]), accept],
        'iif != "lo" accept': [files.match(iif, "lo", "!="), accept],
        "ip saddr != 10.9.9.9 accept": [files.match(saddr, "10.9.9.9", "!="), files.match(tcp, 11211), accept],
        "tcp dport != 22 accept": [files.match(tcp, 22, "!="), accept],
        "vmap": [{"vmap": {"key": {"payload": tcp["payload"]}, "data": {"set": [[11211, accept]]}}}],
        "jump": [{"jump": {"target": "evil"}}],
        "goto": [files.match(saddr, "10.9.9.9"), {"goto": {"target": "evil"}}],
        "no verdict": [files.match(tcp, 11211)],
        "inner tunnel": [files.match({"payload": dict(saddr["payload"], tunnel="vxlan")}, "10.9.9.9"), accept],
    }
    for name, exprs in opening.items():
        assert nft._rule_access(exprs, {}) == [Rule("allow", "any", None)], name
    judged_apart = {
        "ct state established,related accept": [files.match(ct, ["related", "established"], "in"), accept],
        "ct state invalid drop": [files.match(ct, "invalid", "in"), {"drop": None}],
        'iif "lo" accept': [files.match(iif, "lo"), accept],
        "ct state new drop": [files.match(ct, "new", "in"), {"drop": None}],  # a deny it cannot read keeps no one out
    }
    for name, exprs in judged_apart.items():
        assert nft._rule_access(exprs, {}) == [], name
    counted = [files.match(saddr, "10.9.9.9"), files.match(tcp, 11211), {"counter": None}, accept]
    assert nft._rule_access(counted, {}) == [Rule("allow", "10.9.9.9", [PortSpec(11211, 11211, "tcp")])]


def test_a_chain_or_set_whose_name_is_no_string_is_refused_as_no_table():
    for kind in ("chain", "set"):
        document = json.loads(listed_json())
        document["nftables"].append({kind: {"family": "inet", "table": "zimbra_fw", "name": 5, "type": "filter"}})
        with pytest.raises(ValueError, match="name is not a string"):
            files.parse_table(json.dumps(document))
        text = json.dumps(document)
        with pytest.raises(CommandExecutionError, match="printed no table"):
            nft._read_table(lambda argv, stdin=None, text=text: (0, text, ""))


def test_thousands_of_trusted_subnets_give_each_rule_once_management_first():
    # Duplicates go by a dict, not a list search (2.8 s at 16,000; the benchmark times the plan).
    pillar = dict(LISTED, trusted_subnets=[f"10.{i // 250}.{i % 250}.0/24" for i in range(16000)])
    policy = policy_of(pillar)
    wanted = nft._desired(policy)
    assert len(wanted.rules) == len(set(wanted.rules)) > 16000
    assert wanted.rules[: len(nft.management_rules(policy))] == tuple(nft.management_rules(policy))
