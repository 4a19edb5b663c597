"""Whole runs of the firewalld backend: the planner's steps carried out by
the helper's own step code (zimbra_fw_firewalld_client.run_step) against an
in-memory firewalld, and the next snapshot read from it. Whatever the pillar
was before, one run leaves nothing to do, and a run that reloads loads the
rules and entries with that one reload."""

import ipaddress
import json

import zimbra_fw_config as cfg
import zimbra_fw_firewalld as fwd
import zimbra_fw_firewalld_client as helper
import zimbra_fw_policy as policies
from hypothesis import given, settings
from hypothesis import strategies as st

ZONE = "public"


class ModelFirewalld:
    """helper.Firewalld's methods over dictionaries: our permanent services
    and ipsets, the zone in both scopes, the runtime's services and ipsets
    (refusing overlapping entries, as firewalld does). ``reload`` makes the
    runtime what the permanent configuration holds."""

    def __init__(self, target="default"):
        fresh = {"services": ["ssh", "dhcpv6-client"], "rules_str": [], "ports": [], "target": target}
        self.zones = {"permanent": fresh, "runtime": json.loads(json.dumps(fresh))}
        self.services, self.ipsets = {}, {}
        self.runtime_services, self.runtime_ipsets = {}, {}
        self.reloads = 0

    # the permanent configuration
    def write_service(self, name, wanted):
        self.services[name] = tuple(tuple(port) for port in wanted["ports"])

    def write_ipset(self, name, wanted):
        self.ipsets[name] = (wanted["family"], [])

    def remove(self, kind, name):
        del (self.services if kind == "Service" else self.ipsets)[name]

    def permanent_entries(self, name):
        return list(self.ipsets[name][1])

    def set_permanent_entries(self, name, entries):
        self.ipsets[name] = (self.ipsets[name][0], list(entries))

    def permanent_has_rule(self, zone, rule):
        return rule in self.zones["permanent"]["rules_str"]

    # the runtime
    def entries(self, name):
        return list(self.runtime_ipsets[name][1])

    def set_entries(self, name, entries):
        self.runtime_ipsets[name] = (self.runtime_ipsets[name][0], list(entries))

    def add_entry(self, name, entry):
        held = self.runtime_ipsets[name][1]
        new = ipaddress.ip_network(entry)
        assert not any(new.overlaps(ipaddress.ip_network(old)) for old in held), (name, entry, held)
        held.append(entry)

    def remove_entry(self, name, entry):
        self.runtime_ipsets[name][1].remove(entry)

    def has_rule(self, zone, rule):
        return rule in self.zones["runtime"]["rules_str"]

    def add_rule(self, zone, rule):
        self.zones["runtime"]["rules_str"].append(rule)

    def remove_rule(self, zone, rule):
        self.zones["runtime"]["rules_str"].remove(rule)

    def reload(self):
        self.reloads += 1
        self.zones["runtime"] = json.loads(json.dumps(self.zones["permanent"]))
        self.runtime_services = dict(self.services)
        self.runtime_ipsets = {name: (family, list(entries)) for name, (family, entries) in self.ipsets.items()}

    # a zone
    def zone_settings(self, zone, scope):
        assert zone == ZONE
        return json.loads(json.dumps(self.zones[scope]))

    def update_zone(self, zone, scope, update):
        assert zone == ZONE and set(update) <= {"services", "rules_str", "ports", "target"}
        self.zones[scope].update(json.loads(json.dumps(update)))

    def snapshot(self):
        def ipsets(held):
            return {name: fwd.IPSet("hash:net", family, tuple(sorted(e))) for name, (family, e) in held.items()}

        def zone(settings):
            ports = tuple(tuple(port) for port in settings["ports"])
            return fwd.Zone(frozenset(settings["services"]), tuple(settings["rules_str"]), settings["target"], ports)

        return fwd.Snapshot(
            True,
            ZONE,
            ZONE,
            dict(self.services),
            dict(self.runtime_services),
            ipsets(self.ipsets),
            ipsets(self.runtime_ipsets),
            zone(self.zones["permanent"]),
            zone(self.zones["runtime"]),
            {},
            (),
            {},
        )


def carry_out(model, plan):
    for step in plan.steps:
        helper.run_step(model, json.loads(json.dumps([step.action, *step.args])))  # as apply sends them


def run(model, policy):
    """A state run: each part planned on the firewall as the previous part left it."""
    plans = {}
    for part in fwd.PARTS:
        plans[part] = fwd.plan(part, policy, model.snapshot())
        carry_out(model, plans[part])
    return plans


def policy_of(pillar):
    return policies.build(cfg.parse_config(dict(pillar, backend="firewalld")))


ADDRESSES = ["10.1.0.1", "10.1.0.2", "10.1.0.0/24", "10.2.0.9", "2001:db8::7", "2001:db8::/64", "10.1.0.0/16"]
PEER = st.fixed_dictionaries(
    {
        "addresses": st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=3, unique=True),
        "roles": st.lists(st.sampled_from(["mta", "proxy", "mailbox", "ldap"]), min_size=1, max_size=2, unique=True),
    }
)
PILLARS = st.fixed_dictionaries(
    {
        "roles": st.lists(st.sampled_from(["mailbox", "mta", "proxy", "ldap"]), min_size=1, max_size=4, unique=True),
        "peers": st.lists(PEER, max_size=4),
        "admin_subnets": st.lists(st.sampled_from(["203.0.113.0/24", "2001:db8:1::/48"]), max_size=2, unique=True),
    }
)


def pillar_of(drawn):
    peers = [dict(peer, name=f"peer{i}") for i, peer in enumerate(drawn["peers"])]
    return {
        "roles": drawn["roles"],
        "trusted_subnets": ["192.168.1.0/24"],
        "admin_subnets": drawn["admin_subnets"],
        "cluster": {"peers": peers},
    }


def others(model):
    """The runtime zone's items that are not zimbra_fw's, in the words of the plan's changes."""
    zone = model.zones["runtime"]
    return (
        {f"service {name}" for name in zone["services"] if not name.startswith("zimbra")}
        | {f"port {port}/{proto}" for port, proto in zone["ports"]}
        | {rule for rule in zone["rules_str"] if not rule.startswith('rule priority="32000" ')}
    )


def assert_converged(model, policy):
    for part in fwd.PARTS:
        assert fwd.plan(part, policy, model.snapshot()) == fwd.Plan({}, [], None), part


STRAY = 'rule priority="32000" family="ipv4" source address="198.51.100.6" accept'
DRIFT = st.lists(
    st.sampled_from(["stray rule", "stray entry", "lost rule", "lost entry", "their service", "their port"]),
    unique=True,
)


def drift(model, kinds):
    """Changes to the runtime only, as ``firewall-cmd`` without ``--permanent``
    makes them; and an admin's port in the permanent configuration only."""
    rules, sets = model.zones["runtime"]["rules_str"], model.runtime_ipsets
    if "their service" in kinds:
        model.zones["runtime"]["services"].append("memcache")
    if "their port" in kinds:
        model.zones["permanent"]["ports"].append(["11211", "tcp"])
    if "stray rule" in kinds:
        rules.append(STRAY)
    if "lost rule" in kinds and rules:
        rules.pop(0)
    ours = sorted(name for name in sets if name.endswith("-v4"))
    if "stray entry" in kinds and ours:
        sets[ours[0]][1].append("198.51.100.7")
    if "lost entry" in kinds and ours and sets[ours[-1]][1]:
        sets[ours[-1]][1].pop()


@settings(max_examples=150, deadline=None)
@given(PILLARS, PILLARS, st.sampled_from(["default", "ACCEPT"]), DRIFT)
def test_one_run_from_any_earlier_pillar_leaves_nothing_to_do(before, after, target, kinds):
    model = ModelFirewalld(target)
    run(model, policy_of(pillar_of(before)))
    assert_converged(model, policy_of(pillar_of(before)))
    drift(model, kinds)
    reloads, theirs = model.reloads, others(model)
    policy = policy_of(pillar_of(after))
    plans = run(model, policy)
    assert_converged(model, policy)
    if model.reloads > reloads:  # the profile part reloaded: the rules part had nothing left
        assert plans["rules"].steps == []
        # and its changes named what the reload loaded or dropped that is not ours
        found = {"loaded": sorted(others(model) - theirs), "dropped": sorted(theirs - others(model))}
        assert plans["profile"].changes.get("runtime", {}).get("others", {}) == {k: v for k, v in found.items() if v}
    assert model.reloads - reloads <= 1 + (target == "ACCEPT" and reloads == 0)


def one_mta():
    """A mailbox with one MTA peer, and a fresh firewalld."""
    pillar = {"roles": ["mailbox"], "peers": [{"addresses": ["10.1.0.1"], "roles": ["mta"]}], "admin_subnets": []}
    return policy_of(pillar_of(pillar)), ModelFirewalld()


def test_a_first_run_puts_rules_and_entries_in_the_permanent_configuration_then_reloads_once():
    policy, model = one_mta()
    profile = fwd.plan("profile", policy, model.snapshot())
    assert [s.action for s in profile.steps][-3:] == ["entries", "zone", "reload"]
    assert [s.args[0] for s in profile.steps if s.action == "entries"] == ["permanent"]
    assert [s.args[1] for s in profile.steps if s.action == "zone"] == ["permanent"]
    assert profile.changes["added"][-1] == "10.1.0.1 in ipset zimbra-mta-v4"
    assert fwd.describe(profile.changes, test=True).endswith("; 5 rules and 1 ipset entry would be added")
    # Under test=True the rules part is planned on the same snapshot: it says who loads them.
    assert fwd.plan("rules", policy, model.snapshot()) == fwd.Plan({}, [], fwd.LOADED_BY_PROFILE, "profile")
    carry_out(model, profile)
    assert model.reloads == 1
    assert model.runtime_ipsets["zimbra-mta-v4"] == ("inet", ["10.1.0.1"])
    assert_converged(model, policy)


def test_an_ipset_written_anew_gets_all_its_entries_back_before_the_reload():
    policy, model = one_mta()
    run(model, policy)
    model.ipsets["zimbra-mta-v4"] = ("inet6", ["10.1.0.1"])  # another family: the profile part rewrites it, empty
    profile = fwd.plan("profile", policy, model.snapshot())
    assert [s.action for s in profile.steps] == ["ipset", "entries", "reload"]
    assert profile.steps[1].args == ("permanent", {"zimbra-mta-v4": {"add": ["10.1.0.1"], "remove": []}})
    carry_out(model, profile)
    assert_converged(model, policy)


def test_a_run_that_failed_before_its_reload_is_reloaded_by_the_next():
    policy, model = one_mta()
    run(model, policy)
    model.ipsets["zimbra-mta-v4"] = ("inet6", [])  # edited by hand, and loaded
    model.reload()
    profile = fwd.plan("profile", policy, model.snapshot())
    carry_out(model, profile._replace(steps=profile.steps[:-1]))  # dies before its reload
    assert model.runtime_ipsets["zimbra-mta-v4"] == ("inet6", [])
    again = fwd.plan("profile", policy, model.snapshot())
    assert [s.action for s in again.steps] == ["reload"]
    assert again.changes["runtime"]["reloaded"] == ["zimbra-mta-v4"]
    carry_out(model, again)
    assert_converged(model, policy)
