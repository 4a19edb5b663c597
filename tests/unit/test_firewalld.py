"""The firewalld backend (zimbra_fw_firewalld): the policy in firewalld's words,
the planners (functions of policy and snapshot), applying through its helper
and the helper's report, reading, status, the backend and zone pillar keys;
its audit findings (a zone whose rules apply to nothing, an interface in the
trusted zone) and its preparation of a stopped firewalld (the zone checked and
the management rules put in its permanent configuration with
firewall-offline-cmd before it starts); and the rich rules it writes, read back
by firewalld's own parser (firewall.core.rich.Rich_Rule, run with the Python
that has it): each one unchanged, never a ``NOT``, never pillar text. No
firewalld runs here."""

import ipaddress
import json
import os
import subprocess

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_firewalld as fwd
import zimbra_fw_firewalld_files as fwd_files
import zimbra_fw_policy as policies
from salt.exceptions import CommandExecutionError
from zimbra_fw_audit import Rule
from zimbra_fw_catalogue import PortSpec

SINGLE = {"roles": ["ldap", "mta", "proxy", "mailbox"], "trusted_subnets": ["192.168.1.0/24"], "backend": "firewalld"}


P = 'rule priority="32000" '


SSH = P + 'port port="22" protocol="tcp" accept'


TRUSTED = P + 'family="ipv4" source address="192.168.1.0/24" accept'


PEERS = [{"name": f"mta{i}", "addresses": [f"10.1.0.{i}"], "roles": ["mta"]} for i in (1, 2)]


def ipset_rules(service):
    return [P + f'source ipset="{service}-v{v}" service name="{service}" accept' for v in (4, 6)]


def policy_of(pillar, **facts):
    return policies.build(cfg.parse_config(pillar, cfg.Facts(**facts)))


def zone(services=(), rules=(), target="default", ports=()):
    return fwd.Zone(frozenset(services), tuple(rules), target, tuple(ports))


def snapshot(permanent=None, runtime=None, *, services=None, runtime_services=None, ipsets=None, runtime_ipsets=None):
    permanent = permanent or zone(["ssh", "dhcpv6-client"])
    return fwd.Snapshot(
        True,
        "public",
        "public",
        services or {},
        runtime_services or {},
        ipsets or {},
        runtime_ipsets or {},
        permanent,
        runtime or permanent,
    )


def ipsets_of(wanted):
    return {name: fwd.IPSet("hash:net", "inet6" if name.endswith("6") else "inet", e) for name, e in wanted.items()}


def converged(pillar=SINGLE):
    """A firewalld already holding the policy, permanent and runtime."""
    policy = policy_of(pillar)
    wanted = fwd.desired(policy)
    defs = {name: tuple(d["ports"]) for name, d in fwd.service_definitions(policy).items()}
    state = zone({"ssh", *wanted.services}, wanted.rules)
    sets = ipsets_of(wanted.entries)
    loaded = {"runtime_services": dict(defs), "runtime_ipsets": dict(sets)}
    return policy, snapshot(state, state, services=defs, ipsets=sets, **loaded)


def test_each_access_kind_as_rich_rules():
    pillar = dict(
        SINGLE,
        trusted_subnets=["192.168.1.0/24", "2001:db8:1::/64"],
        admin_subnets=["203.0.113.0/24"],
        ssh={"port": 2222, "from": ["10.9.0.1"]},
        only_from={"25/tcp": ["198.51.100.0/24"]},
        cluster={"peers": [{"name": "mta9", "addresses": ["10.1.0.9", "2001:db8:9::9"], "roles": ["mta"]}]},
    )
    policy = policy_of(pillar, salt_master=("10.0.0.5", (4505, 4506)))
    wanted = fwd.desired(policy)
    assert wanted.services == {"zimbra"}
    assert wanted.rules == (
        P + 'family="ipv4" source address="10.9.0.1" port port="2222" protocol="tcp" accept',
        P + 'family="ipv4" source address="10.0.0.5" port port="32768-60999" protocol="tcp" accept',
        TRUSTED,
        P + 'family="ipv6" source address="2001:db8:1::/64" accept',
        *ipset_rules("zimbra-admin"),
        P + 'family="ipv4" source address="198.51.100.0/24" port port="25" protocol="tcp" accept',
        *ipset_rules("zimbra-all"),  # ports every peer uses
        *ipset_rules("zimbra-mta"),
    )
    assert wanted.entries == {
        "zimbra-admin-v4": ("203.0.113.0/24",),
        "zimbra-admin-v6": (),
        "zimbra-all-v4": ("10.1.0.9",),
        "zimbra-all-v6": ("2001:db8:9::9",),
        "zimbra-mta-v4": ("10.1.0.9",),
        "zimbra-mta-v6": ("2001:db8:9::9",),
    }
    definitions = fwd.ipset_definitions(policy)
    assert set(definitions) == set(wanted.entries)
    assert definitions["zimbra-mta-v6"] == {
        "short": "Zimbra Collaboration Server (mta peers) IPv6",
        "description": f"Sources that may reach the zimbra-mta service. {fwd.MARK}",
        "family": "inet6",
    }
    assert all(d["description"].endswith(fwd.MARK) for d in definitions.values())


def test_an_address_inside_a_peers_subnet_is_left_out_of_the_ipset():
    peers = [
        {"name": "mtas", "addresses": ["10.1.0.0/16"], "roles": ["mta"]},
        {"name": "mta1", "addresses": ["10.1.2.3", "10.2.0.1"], "roles": ["mta"]},
    ]
    entries = fwd.desired(policy_of(dict(SINGLE, cluster={"peers": peers}))).entries
    assert entries["zimbra-mta-v4"] == ("10.1.0.0/16", "10.2.0.1")  # firewalld refuses overlapping entries


def test_salt_master_ports_that_are_not_consecutive_make_one_rule_each():
    access = policies.Access(policies.SALT_MASTER, cfg.ipaddress.ip_network("10.0.0.5"), None, None, (4505, 4507))
    assert fwd.rich_rules(access) == [
        P + 'family="ipv4" source address="10.0.0.5" source-port port="4505" protocol="tcp" accept',
        P + 'family="ipv4" source address="10.0.0.5" source-port port="4507" protocol="tcp" accept',
    ]
    access = access._replace(source_ports=(4505, 4506, 4507, 4600))
    assert [rule.split('port="')[1].split('"')[0] for rule in fwd.rich_rules(access)] == ["4505-4507", "4600"]


def test_services_carry_the_groups_ports_and_the_mark():
    pillar = dict(SINGLE, extra_ports=["6000:6010/tcp", "5140/udp"], exclude_ports=[110])
    definitions = fwd.service_definitions(policy_of(pillar))
    zimbra = definitions["zimbra"]
    assert zimbra["short"] == "Zimbra Collaboration Server"
    assert zimbra["description"].endswith(fwd.MARK)
    assert ("6000-6010", "tcp") in zimbra["ports"] and ("5140", "udp") in zimbra["ports"]
    assert ("110", "tcp") not in zimbra["ports"]
    shown = fwd.profiles(policy_of(pillar))
    assert shown["path"] == "/etc/firewalld/services" and shown["text"] is None
    assert shown["profiles"]["zimbra"].startswith("25/tcp,80/tcp,143/tcp")


def test_fresh_firewalld_gets_the_services_and_the_rules_in_the_permanent_configuration_and_one_reload():
    policy = policy_of(SINGLE)
    profile = fwd.plan_profile(policy, snapshot())
    assert [(s.action, s.args[1] if s.action == "zone" else None) for s in profile.steps] == [
        ("service", None),
        ("zone", "permanent"),
        ("reload", None),
    ]
    assert profile.changes["ports"]["zimbra"]["old"] is None
    assert profile.changes["added"] == ["service zimbra", SSH, TRUSTED]
    assert profile.steps[1].args[2] == {
        "add_services": ["zimbra"],
        "add_rules": [SSH, TRUSTED],
        "remove_services": [],
        "remove_rules": [],
    }
    # The rules part, planned before the reload (test=True), leaves them to it.
    assert fwd.plan_rules(policy, snapshot()) == fwd.Plan({}, [], fwd.LOADED_BY_PROFILE, "profile")


def test_peers_get_ipsets_and_their_entries_before_the_one_reload():
    policy = policy_of(dict(SINGLE, cluster={"peers": PEERS}))
    profile = fwd.plan_profile(policy, snapshot())
    assert [(s.action, s.args[0]) for s in profile.steps if s.action == "ipset"] == [
        ("ipset", name) for name in ("zimbra-all-v4", "zimbra-all-v6", "zimbra-mta-v4", "zimbra-mta-v6")
    ]
    assert profile.changes["ipsets"]["zimbra-mta-v6"] == {"old": None, "new": "hash:net inet6"}
    entries = profile.steps[-3]
    assert entries.action == "entries" and entries.args[0] == "permanent"
    assert entries.args[1]["zimbra-mta-v4"] == {"add": ["10.1.0.1", "10.1.0.2"], "remove": []}
    assert "zimbra-mta-v6" not in entries.args[1]  # nothing to put in it
    assert profile.changes["added"] == [
        "service zimbra",
        SSH,
        TRUSTED,
        *ipset_rules("zimbra-all"),
        *ipset_rules("zimbra-mta"),
        *[f"10.1.0.{i} in ipset zimbra-{group}-v4" for group in ("all", "mta") for i in (1, 2)],
    ]
    assert [s.describe for s in profile.steps][-5:] == [
        "write ipset zimbra-mta-v4",
        "write ipset zimbra-mta-v6",
        "permanent ipset entries: 4 added, 0 removed",
        "permanent zone public: 1 add services, 6 add rules",
        "firewall-cmd --reload (loads the services, ipsets and rules)",
    ]


def test_a_peer_leaving_is_one_entry_removed_in_both_scopes_and_no_rule():
    one_peer = policy_of(dict(SINGLE, cluster={"peers": PEERS[:1]}))
    _, state = converged(dict(SINGLE, cluster={"peers": PEERS}))
    assert fwd.plan_profile(one_peer, state).steps == []
    plan = fwd.plan_rules(one_peer, state)
    assert plan.changes == {"removed": ["10.1.0.2 in ipset zimbra-all-v4", "10.1.0.2 in ipset zimbra-mta-v4"]}
    assert [s.action for s in plan.steps] == ["entries", "entries"]
    assert plan.steps[0].args == (
        "runtime",
        {"zimbra-all-v4": {"add": [], "remove": ["10.1.0.2"]}, "zimbra-mta-v4": {"add": [], "remove": ["10.1.0.2"]}},
    )


def test_a_subnet_replacing_hosts_is_covered_by_a_rule_in_the_runtime_only():
    subnet = [{"name": "mtas", "addresses": ["10.1.0.0/16"], "roles": ["mta"]}]
    _, state = converged(dict(SINGLE, cluster={"peers": PEERS}))
    plan = fwd.plan_rules(policy_of(dict(SINGLE, cluster={"peers": subnet})), state)
    assert [s.args[0] for s in plan.steps] == ["runtime", "permanent"]
    runtime, permanent = (step.args[1] for step in plan.steps)
    cover = P + 'family="ipv4" source address="10.1.0.0/16" service name="zimbra-mta" accept'
    assert runtime["zimbra-mta-v4"] == {
        "add": ["10.1.0.0/16"],
        "remove": ["10.1.0.1", "10.1.0.2"],
        "cover": {"zone": "public", "rules": [cover]},
    }
    assert permanent["zimbra-mta-v4"] == {"add": ["10.1.0.0/16"], "remove": ["10.1.0.1", "10.1.0.2"]}
    assert plan.changes == {
        "added": ["10.1.0.0/16 in ipset zimbra-all-v4", "10.1.0.0/16 in ipset zimbra-mta-v4"],
        "removed": [f"10.1.0.{i} in ipset zimbra-{group}-v4" for group in ("all", "mta") for i in (1, 2)],
    }


def test_runtime_entries_that_drifted_are_put_back_without_a_reload():
    policy, state = converged(dict(SINGLE, cluster={"peers": PEERS}))
    drifted = dict(state.runtime_ipsets, **{"zimbra-mta-v4": fwd.IPSet("hash:net", "inet", ("10.1.0.1",))})
    plan = fwd.plan_rules(policy, state._replace(runtime_ipsets=drifted))
    assert plan.changes == {"runtime": {"added": ["10.1.0.2 in ipset zimbra-mta-v4"]}}
    assert fwd.plan_profile(policy, state._replace(runtime_ipsets=drifted)).steps == []


def test_an_ipset_firewalld_has_not_loaded_or_of_another_family_is_redone():
    policy, state = converged(dict(SINGLE, cluster={"peers": PEERS}))
    unloaded = {k: v for k, v in state.runtime_ipsets.items() if k != "zimbra-mta-v6"}
    plan = fwd.plan_profile(policy, state._replace(runtime_ipsets=unloaded))
    assert [s.action for s in plan.steps] == ["reload"]
    assert plan.changes == {"runtime": {"reloaded": ["zimbra-mta-v6"]}}
    wrong = dict(state.ipsets, **{"zimbra-mta-v6": fwd.IPSet("hash:ip", "inet6", ())})
    plan = fwd.plan_profile(policy, state._replace(ipsets=wrong))
    assert [s.action for s in plan.steps] == ["ipset", "reload"]
    assert plan.changes["ipsets"] == {"zimbra-mta-v6": {"old": "hash:ip inet6", "new": "hash:net inet6"}}
    # Written anew but not reloaded yet (a run that failed before its reload): the runtime's is another family.
    running = dict(state.runtime_ipsets, **{"zimbra-mta-v4": fwd.IPSet("hash:net", "inet6", ())})
    plan = fwd.plan_profile(policy, state._replace(runtime_ipsets=running))
    assert [s.action for s in plan.steps] == ["reload"]
    assert plan.changes == {
        "runtime": {
            "added": ["10.1.0.1 in ipset zimbra-mta-v4", "10.1.0.2 in ipset zimbra-mta-v4"],
            "reloaded": ["zimbra-mta-v4"],
        }
    }
    assert fwd.describe(plan.changes, test=False) == (
        "Added 2 ipset entries (runtime); reloaded firewalld for zimbra-mta-v4"
    )


def test_a_reload_names_what_it_changes_in_the_runtime_alone():
    policy, state = converged(dict(SINGLE, cluster={"peers": PEERS}))
    extra = fwd.IPSet("hash:net", "inet", ("10.1.0.1", "10.1.0.2", "198.51.100.6"))
    drifted = state._replace(runtime_ipsets=dict(state.runtime_ipsets, **{"zimbra-mta-v4": extra}), runtime_services={})
    plan = fwd.plan_profile(policy, drifted)
    assert [s.action for s in plan.steps] == ["reload"]
    assert plan.changes == {
        "runtime": {
            "removed": ["198.51.100.6 in ipset zimbra-mta-v4"],
            "reloaded": ["zimbra", "zimbra-all", "zimbra-mta"],
        }
    }


def test_a_reload_says_what_it_loads_or_drops_that_is_not_ours():
    policy, state = converged()
    permanent = state.permanent._replace(ports=(("11211", "tcp"), ("25", "tcp")))  # firewall-cmd --permanent --add-port
    runtime = state.runtime._replace(services=state.runtime.services | {"memcache"})  # --add-service, runtime only
    pending = state._replace(permanent=permanent, runtime=runtime, runtime_services={})
    plan = fwd.plan_profile(policy, pending)
    others = {"loaded": ["port 11211/tcp", "port 25/tcp"], "dropped": ["service memcache"]}
    assert plan.changes["runtime"]["others"] == others
    assert fwd.describe(plan.changes, test=True) == (
        "Firewalld would be reloaded for zimbra; the reload would load port 11211/tcp, port 25/tcp (not "
        "zimbra_fw's) into the runtime; the reload would drop service memcache (not zimbra_fw's) from the runtime"
    )
    closing = fwd.plan_profile(policy_of(dict(SINGLE, close_foreign=True)), pending)
    # 11211 leaves the permanent configuration first; 25 is public anyway, so it stays
    assert closing.changes["runtime"]["others"] == {"loaded": ["port 25/tcp"], "dropped": ["service memcache"]}
    # A service rewritten (not only reloaded): the runtime's changes are the others alone.
    old = {"zimbra": state.services["zimbra"][:-1]}
    rewritten = fwd.plan_profile(policy, pending._replace(services=old, runtime_services=old))
    assert rewritten.changes["runtime"] == {"others": others}
    assert closing.changes["permanent"] == {"removed": ["port 11211/tcp"]}


def test_a_retired_ipset_loses_its_rules_before_it_goes():
    _, state = converged(dict(SINGLE, cluster={"peers": PEERS}))
    plan = fwd.plan_profile(policy_of(SINGLE), state)
    assert [s.action for s in plan.steps] == ["zone", "zone", *["drop-service"] * 2, *["drop-ipset"] * 4, "reload"]
    assert plan.steps[0].args[2]["remove_rules"] == sorted(ipset_rules("zimbra-all") + ipset_rules("zimbra-mta"))
    assert plan.changes["ipsets"]["zimbra-mta-v4"] == {"old": "hash:net inet", "new": None}


def test_a_converged_firewalld_plans_nothing():
    policy, state = converged()
    for part in fwd.PARTS:
        assert fwd.plan(part, policy, state) == fwd.Plan({}, [], None)


def test_runtime_drift_is_planned_for_the_runtime_only_without_a_reload():
    policy, state = converged()
    drifted = state._replace(runtime=state.runtime._replace(rules=(SSH,)))
    plan = fwd.plan_rules(policy, drifted)
    assert plan.changes == {"runtime": {"added": [TRUSTED]}}
    assert [(s.action, s.args[1]) for s in plan.steps] == [("zone", "runtime")]
    assert fwd.plan_profile(policy, drifted).steps == []


def test_other_rules_and_services_are_never_touched_and_stale_ones_go_after_new_ones():
    policy, state = converged()
    theirs = 'rule family="ipv4" source address="198.51.100.7" service name="http" accept'
    stale = P + 'family="ipv4" source address="10.0.0.0/8" accept'
    both = zone({"ssh", "imap", "zimbra"}, (theirs, SSH, stale))
    plan = fwd.plan_rules(policy, state._replace(permanent=both, runtime=both))
    assert plan.changes == {"added": [TRUSTED], "removed": [stale]}
    change = plan.steps[0].args[2]
    assert list(change) == ["add_services", "add_rules", "remove_services", "remove_rules"]  # adds first
    assert change["remove_rules"] == [stale] and change["remove_services"] == []


def test_changed_ports_rewrite_the_service_and_reload():
    policy, state = converged()
    old = state.services["zimbra"][:-1]
    plan = fwd.plan_profile(policy, state._replace(services={"zimbra": old}, runtime_services={"zimbra": old}))
    assert [s.action for s in plan.steps] == ["service", "reload"]
    assert plan.changes["ports"]["zimbra"]["new"].endswith("9071/tcp")
    assert plan.changes["ports"]["zimbra"]["old"] == plan.changes["ports"]["zimbra"]["new"][: -len(",9071/tcp")]


def test_a_service_firewalld_has_not_loaded_yet_only_reloads():
    policy, state = converged()
    plan = fwd.plan_profile(policy, state._replace(runtime_services={}))
    assert [s.action for s in plan.steps] == ["reload"]
    assert plan.changes == {"runtime": {"reloaded": ["zimbra"]}}
    old = state.services["zimbra"][:-1]
    plan = fwd.plan_profile(policy, state._replace(services={"zimbra": old}, runtime_services={}))
    assert list(plan.changes) == ["ports"]  # the reload is part of writing the service


def test_a_retired_service_still_in_the_zone_is_taken_out_of_both_scopes_before_it_goes():
    policy, state = converged()
    zone_with_old = state.runtime._replace(services=state.runtime.services | {"zimbra-old"})
    old = {**state.services, "zimbra-old": (("1", "tcp"),)}
    retired = state._replace(services=old, runtime=zone_with_old, permanent=zone_with_old)
    plan = fwd.plan_profile(policy, retired)
    assert plan.changes["rules removed"] == ["service zimbra-old"]
    assert [(s.action, s.args[1] if s.action == "zone" else s.args[:1]) for s in plan.steps] == [
        ("zone", "runtime"),
        ("zone", "permanent"),
        ("drop-service", ("zimbra-old",)),
        ("reload", ()),
    ]
    assert fwd.plan_rules(policy, retired) == fwd.Plan({}, [], fwd.LOADED_BY_PROFILE, "profile")


def test_a_retired_service_loses_its_rules_before_it_goes():
    pillar = dict(SINGLE, admin_subnets=["203.0.113.0/24"])
    _, state = converged(pillar)
    plan = fwd.plan_profile(policy_of(SINGLE), state)
    actions = [(s.action, s.args[1] if s.action == "zone" else s.args[:1]) for s in plan.steps]
    assert actions == [
        ("zone", "runtime"),
        ("zone", "permanent"),
        ("service", ("zimbra",)),  # the console's ports go back to the public service
        ("drop-service", ("zimbra-admin",)),
        ("drop-ipset", ("zimbra-admin-v4",)),
        ("drop-ipset", ("zimbra-admin-v6",)),
        ("reload", ()),
    ]
    assert [s.describe for s in plan.steps][2:] == [
        "write service zimbra",
        "remove service zimbra-admin",
        "remove ipset zimbra-admin-v4",
        "remove ipset zimbra-admin-v6",
        "firewall-cmd --reload (loads the services, ipsets and rules)",
    ]
    admin_rules = ipset_rules("zimbra-admin")
    assert plan.steps[0].args[2] == {"remove_services": [], "remove_rules": admin_rules}  # nothing else goes here
    assert plan.changes["rules removed"] == admin_rules
    assert plan.changes["ports"]["zimbra-admin"] == {"old": "7071/tcp,9071/tcp", "new": None}


def test_an_accept_target_is_set_to_default_after_checking_management_access():
    policy, state = converged()
    open_zone = state.permanent._replace(target="ACCEPT")
    plan = fwd.plan_firewall(policy, state._replace(permanent=open_zone, runtime=open_zone))
    assert plan.changes == {"target": {"old": "ACCEPT", "new": "default"}}
    assert plan.steps == [
        fwd.Step("check", ("public", [SSH]), "check that management access is allowed"),
        fwd.Step("zone", ("public", "permanent", {"target": "default"}), "zone public: target default"),
        fwd.Step("reload", (), "firewall-cmd --reload"),
    ]
    only_permanent = fwd.plan_firewall(policy, state._replace(permanent=open_zone))
    assert [s.action for s in only_permanent.steps] == ["check", "zone", "reload"]
    unmanaged = policy_of(dict(SINGLE, ssh={"from": []}, allow_no_management=True))
    assert [s.action for s in fwd.plan_firewall(unmanaged, state._replace(runtime=open_zone)).steps] == [
        "zone",
        "reload",
    ]


def test_enabled_false_leaves_the_zone_target_alone():
    policy, state = converged(dict(SINGLE, enabled=False))
    plan = fwd.plan_firewall(policy, state._replace(runtime=state.runtime._replace(target="ACCEPT")))
    assert plan == fwd.Plan({}, [], "zimbra_fw:enabled is false: firewalld's zone target is left alone")


class Client:
    """zimbra_fw_firewalld_client.run_steps as it answers: steps applied, error."""

    def __init__(self, applied, error=None):
        self.answer, self.requests = (applied, error), []

    def __call__(self, steps):
        self.requests.append(steps)
        return self.answer


@pytest.fixture
def firewall_cmd(monkeypatch):
    monkeypatch.setattr(fwd.salt.utils.path, "which", {"firewall-cmd": "/usr/bin/firewall-cmd"}.get)


def test_apply_sends_every_step_to_the_client_and_reports_the_failed_one(firewall_cmd, monkeypatch):
    steps = [fwd.Step("service", ("zimbra", {}), "write service zimbra"), fwd.Step("reload", (), "reload")]
    client = Client(1, "INVALID_SERVICE")
    monkeypatch.setattr(fwd.client, "run_steps", client)
    with pytest.raises(fwd.ApplyFailed) as info:
        fwd.apply(steps, None)
    assert str(info.value).startswith("step 'reload' failed: INVALID_SERVICE. Already applied: write service zimbra")
    assert info.value.info == {"applied": ["write service zimbra"], "failed": "reload"}
    assert client.requests == [[["service", "zimbra", {}], ["reload"]]]
    monkeypatch.setattr(fwd.client, "run_steps", Client(2))
    assert fwd.apply(steps, None) == ["write service zimbra", "reload"]
    monkeypatch.setattr(fwd.client, "run_steps", Client(0, "firewalld is not running (firewall-cmd --state)"))
    with pytest.raises(fwd.ApplyFailed) as info:
        fwd.apply(steps, None)
    assert info.value.info == {"applied": [], "failed": "write service zimbra"}
    assert fwd.apply([], None) == []


def test_applying_needs_firewalld_installed(monkeypatch):
    monkeypatch.setattr(fwd.salt.utils.path, "which", {}.get)
    client = Client(1)
    monkeypatch.setattr(fwd.client, "run_steps", client)
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.apply([fwd.Step("reload", (), "reload")], None)
    assert str(info.value) == "firewalld is not available on this minion: install the 'firewalld' package"
    assert client.requests == []


@pytest.fixture
def xml_dirs(tmp_path, monkeypatch):
    """firewalld's service and ipset directories (system, then /etc) in a
    temporary directory: ours, zimbra and zimbra-mta with an ipset, and ssh."""
    dirs = {name: tmp_path / name for name in ("lib-services", "etc-services", "lib-ipsets", "etc-ipsets")}
    for directory in dirs.values():
        directory.mkdir()
    mark = f"<description>{fwd.MARK}</description>"
    for name, port in (("zimbra", "25"), ("zimbra-mta", "7025")):
        service = f'<service>{mark}<port port="{port}" protocol="tcp"/></service>'
        (dirs["etc-services"] / f"{name}.xml").write_text(service)
    (dirs["etc-ipsets"] / "zimbra-mta-v4.xml").write_text(f'<ipset type="hash:net">{mark}</ipset>')
    (dirs["lib-services"] / "ssh.xml").write_text('<service><port port="22" protocol="tcp"/></service>')
    monkeypatch.setattr(fwd_files, "SERVICE_DIRS", (str(dirs["lib-services"]), str(dirs["etc-services"])))
    monkeypatch.setattr(fwd_files, "IPSET_DIRS", (str(dirs["lib-ipsets"]), str(dirs["etc-ipsets"])))
    return dirs


class FirewalldAnswers:
    """zimbra_fw_firewalld_read.state answering ``answer`` (raised when an
    exception) as a firewalld on the bus would; records what was asked."""

    def __init__(self, monkeypatch):
        self.answer, self.asked = None, []
        monkeypatch.setattr(fwd.reader, "state", self)

    def __call__(self, zone, names):
        self.asked.append((zone, names))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def firewalld(monkeypatch, firewall_cmd):
    return FirewalldAnswers(monkeypatch)


def test_reading_asks_firewalld_once_and_makes_the_snapshot(firewalld, xml_dirs):
    services = {"zimbra-mta": (("7025", "tcp"),), "zimbra": (("25", "tcp"),)}
    theirs = 'rule family="ipv4" source address="10.9.0.1" service name="http" accept'
    view = {"services": ["ssh", "zimbra"], "rich_rules": [SSH, theirs], "target": "default", "ports": [["5", "udp"]]}
    answer = {
        "running": True,
        "zone": "public",
        "default_zone": "public",
        "zones": ["public"],
        "permanent": view,
        "runtime": dict(view, target="ACCEPT"),
        "runtime_services": {"zimbra": [["25", "tcp"]]},
        "ipsets": {"zimbra-mta-v4": {"type": "hash:net", "family": "inet", "entries": ["10.0.0.2", "10.0.0.1"]}},
        "active_zones": {"public": {"interfaces": ["eth0"], "sources": ["10.9.0.0/16"]}},
        "interfaces": ["eth0", "eth1"],
    }
    firewalld.answer = answer
    read = fwd.read_snapshot(None)
    assert firewalld.asked == [(None, ["zimbra", "zimbra-mta"])]
    zone_read = fwd.Zone(frozenset({"ssh", "zimbra"}), (SSH, theirs), "default", (("5", "udp"),))
    assert read == fwd.Snapshot(
        True,
        "public",
        "public",
        services,
        {"zimbra": (("25", "tcp"),)},
        {"zimbra-mta-v4": fwd.IPSet("hash:net", "inet", ())},
        {"zimbra-mta-v4": fwd.IPSet("hash:net", "inet", ("10.0.0.1", "10.0.0.2"))},
        zone_read,
        zone_read._replace(target="ACCEPT"),
        {"public": (("eth0",), ("10.9.0.0/16",))},
        ("eth0", "eth1"),
        {"http": (), "ssh": (PortSpec(22, 22, "tcp"),)},
        read.fingerprint,
    )
    assert fwd.read_fingerprint(None) == read.fingerprint
    firewalld.answer = fwd.reader.dbus.BusError("org.freedesktop.DBus.Error.NoReply", "no reply")
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.read_snapshot(None)
    assert str(info.value) == "reading firewalld over D-Bus failed: org.freedesktop.DBus.Error.NoReply: no reply"
    firewalld.answer = OSError(105, "No buffer space available")  # listing the interfaces
    with pytest.raises(fwd.CommandExecutionError, match=r"reading firewalld over D-Bus failed: \[Errno 105\]"):
        fwd.read_snapshot(None)
    firewalld.answer = dict(answer, zone="gone", permanent=None, runtime=None)  # a reload between two calls
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.read_snapshot(None)
    assert str(info.value) == (
        "firewalld's default zone 'gone' is not one of its zones (public): was firewalld reloaded meanwhile? Run again"
    )


@pytest.mark.parametrize(
    "change", ["our ipset", "our service", "their service", "firewalld's answer", "the zone asked for"]
)
def test_the_fingerprint_changes_with_every_read(firewalld, xml_dirs, change):
    view = {"services": ["ssh"], "rich_rules": [], "target": "default", "ports": []}
    answer = {"running": True, "zone": "public", "default_zone": "public", "zones": ["public", "mail"]}
    answer.update(permanent=view, runtime=view, runtime_services={}, ipsets={}, active_zones={}, interfaces=[])
    firewalld.answer = answer
    before = fwd.read_fingerprint(None)
    assert fwd.read_snapshot(None).fingerprint == before
    zone, path = (
        None,
        {
            "our ipset": xml_dirs["etc-ipsets"] / "zimbra-mta-v4.xml",
            "our service": xml_dirs["etc-services"] / "zimbra.xml",
            "their service": xml_dirs["lib-services"] / "ssh.xml",
        }.get(change),
    )
    if path is not None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("\n")  # a byte more, the same settings
    elif change == "firewalld's answer":
        answer["interfaces"] = ["eth0"]
    else:
        zone = "mail"
    assert fwd.read_fingerprint(None, zone) != before


def test_reading_needs_firewall_cmd(monkeypatch):
    monkeypatch.setattr(fwd.salt.utils.path, "which", {}.get)
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.read_snapshot(None)
    assert str(info.value) == "firewalld is not available on this minion: install the 'firewalld' package"


def test_reading_a_stopped_firewalld_says_how_to_start_it(firewalld, xml_dirs):
    firewalld.answer = {"running": False}
    with pytest.raises(fwd.FirewallStopped) as info:
        fwd.read_snapshot(None)
    assert str(info.value) == (
        "firewalld is not running: start it (systemctl enable --now firewalld); 'firewall-cmd --state' must say running"
    )


def test_reading_an_unknown_zone_names_the_pillar_key(firewalld, xml_dirs):
    view = {"services": [], "rich_rules": [], "target": "default", "ports": []}
    state = {"running": True, "zone": "mail", "default_zone": "public", "zones": ["public", "trusted"], "ipsets": {}}
    config = cfg.parse_config(dict(SINGLE, firewalld={"zone": "mail"}))
    with pytest.raises(fwd.CommandExecutionError) as info:
        firewalld.answer = dict(state, permanent=None, runtime=None)
        fwd.read_snapshot(None, config=config)
    assert str(info.value) == "zimbra_fw:firewalld:zone: 'mail' is not a firewalld zone (zones: public, trusted)"
    ipsets = {"blocked": {"type": "hash:ip", "family": "inet", "entries": ["10.0.0.2", "10.0.0.1"]}}
    answer = dict(state, zone="public", permanent=view, runtime=view, runtime_services={}, ipsets=ipsets)
    answer.update(active_zones={}, interfaces=[])
    firewalld.answer = answer
    read = fwd.read_snapshot(None)
    assert read.zone == "public" and read.incoming == "deny"
    assert read.runtime_ipsets == {"blocked": fwd.IPSet("hash:ip", "inet", ("10.0.0.1", "10.0.0.2"))}


def test_status_shows_ours_apart_from_the_rest_and_our_ipsets_entries():
    _, state = converged(dict(SINGLE, cluster={"peers": PEERS}))
    theirs = 'rule family="ipv4" source address="198.51.100.7" accept'
    runtime = state.runtime._replace(rules=(*state.runtime.rules, theirs), target="DROP")
    runtime_ipsets = {**state.runtime_ipsets, "blocklist": fwd.IPSet("hash:ip", "inet", ("10.9.9.9",))}
    shown = fwd.status(state._replace(runtime=runtime, runtime_ipsets=runtime_ipsets))
    assert shown == {
        "backend": "firewalld",
        "active": True,
        "zone": "public",
        "target": "DROP",
        "managed_rules": ["service zimbra", *fwd.desired(policy_of(dict(SINGLE, cluster={"peers": PEERS}))).rules],
        "other_rules": ["service ssh", theirs],
        "ipsets": {
            "zimbra-all-v4": ["10.1.0.1", "10.1.0.2"],
            "zimbra-all-v6": [],
            "zimbra-mta-v4": ["10.1.0.1", "10.1.0.2"],
            "zimbra-mta-v6": [],
        },
    }


def test_access_rules_follow_firewalds_order(tmp_path, monkeypatch):
    (tmp_path / "ssh.xml").write_text('<service><port port="22" protocol="tcp"/></service>')
    monkeypatch.setattr(fwd_files, "SERVICE_DIRS", (str(tmp_path),))
    rules = (
        P + 'port port="10" protocol="tcp" accept',
        'rule priority="5" port port="6" protocol="tcp" accept',
        'rule priority="1" port port="7" protocol="tcp" accept',
        'rule port port="2" protocol="tcp" accept',
        'rule port port="3" protocol="tcp" reject',
        'rule priority="-1" port port="4" protocol="tcp" drop',
        'rule priority="-7" port port="8" protocol="udp" drop',
        'rule priority="-7" port port="9" protocol="udp" accept',
        P + 'source ipset="peers" port port="1" protocol="tcp" accept',  # same priority as port 10: after it
    )
    state = snapshot(zone(["ssh"], rules, ports=[("5", "tcp")]))
    state = state._replace(runtime_ipsets={"peers": fwd.IPSet("hash:net", "inet", ("10.1.0.1",))})

    def tcp(port, proto="tcp"):
        return [PortSpec(port, port, proto)]

    assert fwd.access_rules(state) == [
        Rule("deny", "any", tcp(8, "udp")),  # same priority: firewalld's order
        Rule("allow", "any", tcp(9, "udp")),
        Rule("deny", "any", tcp(4)),
        Rule("reject", "any", tcp(3)),
        Rule("allow", "any", tcp(22)),
        Rule("allow", "any", tcp(5)),
        Rule("allow", "any", tcp(2)),
        Rule("allow", "any", tcp(7)),
        Rule("allow", "any", tcp(6)),
        Rule("allow", "any", tcp(10)),
        Rule("allow", "10.1.0.1", tcp(1)),
    ]
    assert state._replace(runtime=zone(target="ACCEPT")).incoming == "allow"


@pytest.mark.parametrize(
    "value, os_family, chosen", [(None, "RedHat", "firewalld"), (None, "Debian", "ufw"), ("ufw", "RedHat", "ufw")]
)
def test_the_backend_defaults_by_os_family(value, os_family, chosen):
    pillar = dict(SINGLE, backend=value)
    assert cfg.parse_config(pillar, cfg.Facts(os_family=os_family)).backend == chosen


def test_bad_backend_and_zone_are_named():
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config(dict(SINGLE, backend="nft", firewalld={"zone": "a b", "zones": 1}))
    assert info.value.problems == [
        "zimbra_fw:backend: 'nft' is not a firewall zimbra_fw can manage: one of ufw, firewalld, nftables",
        "zimbra_fw:firewalld:zones: 1 is not a known key (did you mean 'zone'?)",
        "zimbra_fw:firewalld:zone: 'a b' is not a firewalld zone name (letters, digits, _ + -; up to 17)",
    ]
    assert cfg.parse_config(dict(SINGLE, firewalld={"zone": "mail-dmz"})).zone == "mail-dmz"
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config(dict(SINGLE, firewalld="public"))
    assert info.value.problems == ["zimbra_fw:firewalld: 'public' must be a mapping with zone"]


SSH_FROM_ONE = P + 'family="ipv4" source address="10.9.0.1" port port="22" protocol="tcp" accept'


SSH6 = P + 'family="ipv6" source address="2001:db8::1" port port="22" protocol="tcp" accept'


def zones_snapshot(zone="public", default="public", active=None, interfaces=("eth0",)):
    empty = fwd.Zone(frozenset(), (), "default", ())
    return fwd.Snapshot(True, zone, default, {}, {}, {}, {}, empty, empty, active or {}, tuple(interfaces))


def nothing(zone, where):
    return (
        "high",
        f"firewalld zone {zone} holds no interface or source: its rules apply to nothing ({where}); "
        f"add the interface to it (firewall-cmd --permanent --zone={zone} --change-interface=NAME) "
        "or set zimbra_fw:firewalld:zone",
    )


def trusted(interface, how=""):
    return (
        "high",
        f"interface {interface} is in firewalld's trusted zone{how}: everything arriving on it is accepted, "
        "whatever zimbra_fw's rules say",
    )


DEFAULT = " (the default zone, which holds every interface no zone holds)"


def test_the_default_zone_gets_the_interfaces_no_zone_holds():
    assert fwd.audit_findings(zones_snapshot()) == []
    assert fwd.audit_findings(zones_snapshot(active={"public": (("eth0",), ())})) == []
    assert fwd.audit_findings(zones_snapshot(active={"internal": (("eth1",), ())}, interfaces=["eth0", "eth1"])) == []


def test_a_zone_that_holds_no_interface_or_source_is_reported():
    assert fwd.audit_findings(zones_snapshot(zone="mail")) == [nothing("mail", "eth0 in public")]
    moved = zones_snapshot(active={"internal": (("eth0",), ()), "dmz": (("eth1",), ())}, interfaces=["eth1", "eth0"])
    assert fwd.audit_findings(moved) == [nothing("public", "eth0 in internal, eth1 in dmz")]
    assert fwd.audit_findings(zones_snapshot(zone="mail", interfaces=[])) == [nothing("mail", "no interface")]


def test_a_zone_with_a_source_or_an_interface_of_its_own_is_not_reported():
    assert fwd.audit_findings(zones_snapshot(zone="mail", active={"mail": ((), ("10.0.0.0/8",))})) == []
    assert fwd.audit_findings(zones_snapshot(zone="mail", active={"mail": (("eth0",), ())})) == []
    assert (
        fwd.audit_findings(zones_snapshot(zone="mail", active={"mail": (("wg0",), ())})) == []
    )  # not seen, still held


def test_an_interface_in_the_trusted_zone_is_reported():
    active = {"trusted": (("eth1",), ("10.9.0.0/16",)), "public": (("eth0",), ())}
    assert fwd.audit_findings(zones_snapshot(active=active, interfaces=["eth0", "eth1"])) == [
        trusted("eth1"),
        (
            "high",
            "source 10.9.0.0/16 is in firewalld's trusted zone: everything it sends is accepted on every "
            "interface, whatever zimbra_fw's rules say",
        ),
    ]
    by_default = zones_snapshot(default="trusted", active={"public": (("eth0",), ())}, interfaces=["eth0", "eth2"])
    assert fwd.audit_findings(by_default) == [trusted("eth2", DEFAULT)]
    everything = zones_snapshot(default="trusted", interfaces=["eth0"])
    assert fwd.audit_findings(everything) == [nothing("public", "eth0 in trusted"), trusted("eth0", DEFAULT)]


def test_no_findings_when_the_zones_were_not_read():
    assert fwd.audit_findings(zones_snapshot()._replace(active_zones=None)) == []
    assert fwd.audit_findings(zones_snapshot()._replace(interfaces=None)) == []


OFFLINE = "/usr/bin/firewall-offline-cmd"


class Offline:
    """A command runner that answers as firewall-offline-cmd would."""

    def __init__(self, zones="block dmz public trusted", default="public\n", present=(), fail=None):
        self.zones, self.default, self.present, self.fail, self.calls = zones, default, present, fail, []

    def __call__(self, argv, stdin=None):
        self.calls.append(argv)
        assert argv[0] == OFFLINE and stdin is None
        if self.fail and self.fail in argv:
            return 2, "", "Error: INVALID_ZONE"
        if argv[1:] == ["--get-zones"]:
            return 0, self.zones + "\n", ""
        if argv[1:] == ["--get-default-zone"]:
            return 0, self.default, ""
        if argv[2].startswith("--query-rich-rule="):
            return (0, "yes", "") if argv[2].split("=", 1)[1] in self.present else (1, "no", "")
        return 0, "success", ""


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(fwd.salt.utils.path, "which", {"firewall-offline-cmd": OFFLINE}.get)


def policy_with(**pillar):
    ssh = {"from": ["10.9.0.1", "2001:db8::1"]}
    return policies.build(cfg.parse_config({"roles": ["mta"], "backend": "firewalld", "ssh": ssh, **pillar}))


def test_a_stopped_firewalld_gets_the_management_rules_it_lacks_in_its_default_zone(offline):
    run = Offline(present=[SSH_FROM_ONE])
    assert fwd.prepare_stopped(policy_with(), run) == [SSH6]
    assert run.calls == [
        [OFFLINE, "--get-zones"],
        [OFFLINE, "--get-default-zone"],
        [OFFLINE, "--zone=public", f"--query-rich-rule={SSH_FROM_ONE}"],
        [OFFLINE, "--zone=public", f"--query-rich-rule={SSH6}"],
        [OFFLINE, "--zone=public", f"--add-rich-rule={SSH6}"],
    ]


def test_the_zone_of_the_pillar_and_test_mode_change_nothing(offline):
    run = Offline()
    assert fwd.prepare_stopped(policy_with(firewalld={"zone": "dmz"}), run, test=True) == [SSH_FROM_ONE, SSH6]
    assert run.calls == [
        [OFFLINE, "--get-zones"],
        [OFFLINE, "--zone=dmz", f"--query-rich-rule={SSH_FROM_ONE}"],
        [OFFLINE, "--zone=dmz", f"--query-rich-rule={SSH6}"],
    ]


def test_an_unknown_zone_is_refused_before_anything_changes(offline):
    run = Offline()
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.prepare_stopped(policy_with(firewalld={"zone": "mail"}), run)
    assert (
        str(info.value)
        == "zimbra_fw:firewalld:zone: 'mail' is not a firewalld zone (zones: block, dmz, public, trusted)"
    )
    assert run.calls == [[OFFLINE, "--get-zones"]]
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.prepare_stopped(policy_with(), Offline(default="work\n"))
    assert (
        str(info.value)
        == "zimbra_fw:firewalld:zone: 'work' is not a firewalld zone (zones: block, dmz, public, trusted)"
    )


def test_a_failing_offline_command_is_named(offline):
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.prepare_stopped(policy_with(), Offline(fail="--get-zones"))
    assert str(info.value) == f"'{OFFLINE} --get-zones' failed (exit 2): Error: INVALID_ZONE"
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.prepare_stopped(policy_with(), Offline(fail=f"--add-rich-rule={SSH_FROM_ONE}"))
    assert (
        str(info.value)
        == f"'{OFFLINE} --zone=public --add-rich-rule={SSH_FROM_ONE}' failed (exit 2): Error: INVALID_ZONE"
    )


def test_without_firewall_offline_cmd_nothing_is_prepared(monkeypatch):
    monkeypatch.setattr(fwd.salt.utils.path, "which", {}.get)
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.prepare_stopped(policy_with(), Offline())
    assert str(info.value) == "firewall-offline-cmd is not available on this minion: install 'firewalld'"


FIREWALLD_PYTHON = "/usr/bin/python3"


PARSE = """
import json, sys
from firewall.core.rich import Rich_Rule
found = []
for rule in json.load(sys.stdin):
    try:
        found.append(str(Rich_Rule(rule_str=rule)))
    except Exception as exc:
        found.append("refused: " + str(exc))
print(json.dumps(found))
"""


def firewalld_reads(rules):
    """Each rule as firewalld's parser writes it back (or why it refused it)."""
    try:
        done = subprocess.run(
            [FIREWALLD_PYTHON, "-I", "-c", PARSE], input=json.dumps(rules), capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        pytest.skip(f"no {FIREWALLD_PYTHON}")
    if "No module named 'firewall'" in done.stderr:
        pytest.skip("firewalld's Python library (python3-firewall) is not installed")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def network(text):
    return ipaddress.ip_network(text, strict=False)


def master(address, ports=None, source_ports=(4505, 4506)):
    return policies.Access(policies.SALT_MASTER, network(address), ports, None, source_ports)


EPHEMERAL = (PortSpec(32768, 60999, "tcp"),)


def test_ssh_limit_is_refused_with_firewalld():
    access = policies.Access(policies.MANAGEMENT, None, (PortSpec(22, 22, "tcp"),), None, (), True)
    with pytest.raises(fwd.CommandExecutionError) as info:
        fwd.rich_rules(access)
    assert str(info.value) == (
        "zimbra_fw:ssh:limit cannot be applied with firewalld: a rich rule's limit is one rate "
        "shared by every source; set ssh:limit to false"
    )
    assert fwd.rich_rules(access._replace(limit=False)) == [P + 'port port="22" protocol="tcp" accept']


def test_the_salt_master_reaching_the_minions_ports_is_one_destination_port_rule():
    assert fwd.rich_rules(master("10.0.0.5", EPHEMERAL)) == [
        P + 'family="ipv4" source address="10.0.0.5" port port="32768-60999" protocol="tcp" accept'
    ]
    assert fwd.rich_rules(master("2001:db8::5", (*EPHEMERAL, PortSpec(5000, 5000, "tcp")))) == [
        P + 'family="ipv6" source address="2001:db8::5" port port="32768-60999" protocol="tcp" accept',
        P + 'family="ipv6" source address="2001:db8::5" port port="5000" protocol="tcp" accept',
    ]
    assert fwd.rich_rules(master("10.0.0.5")) == [  # without the minion's ports: the master's source ports
        P + 'family="ipv4" source address="10.0.0.5" source-port port="4505-4506" protocol="tcp" accept'
    ]


# Pillar text for addresses, as an admin may write them: long IPv6 forms,
# upper case, host bits, IPv4-mapped and NAT64 forms, the widest subnets.
TRICKY = [
    "2001:0DB8:0000:0000:0000:0000:0000:0001",
    "2001:db8:0:0:1::/80",
    "2001:0db8:0001::/48",
    "2001:db8::1:0:0:1/128",
    "::ffff:10.0.0.1",
    "::ffff:0a00:0001",
    "64:ff9b::10.0.0.1",
    "fe80::1",
    "10.0.0.0/8",
    "10.1.2.3/32",
    "0.0.0.0/1",
]


def accepted(text):
    """``text`` as an ip_network, if the config accepts it as a trusted subnet."""
    try:
        cfg.parse_config({"roles": ["mta"], "backend": "firewalld", "trusted_subnets": [text]})
    except cfg.ConfigInvalid:
        return None
    return network(text)


def rendered(net):
    """Every kind of rich rule with an address, for ``net``."""
    port = (PortSpec(25, 25, "tcp"),)
    return [
        *fwd.rich_rules(policies.Access(policies.TRUSTED, net, None, None, ())),
        *fwd.rich_rules(policies.Access(policies.ONLY_FROM, net, port, None, ())),
        *fwd.rich_rules(policies.Access(policies.MANAGEMENT, net, (PortSpec(22, 22, "tcp"),), None, ())),
        *fwd.rich_rules(policies.Access(policies.SALT_MASTER, net, EPHEMERAL, None, (4505, 4506))),
        *fwd.rich_rules(policies.Access(policies.SALT_MASTER, net, None, None, (4505, 4506))),
        *fwd._cover_rules(f"zimbra-mta-v{net.version}", [cfg.source_text(net)]),
    ]


def test_rich_rules_with_tricky_addresses_are_read_back_unchanged_and_never_carry_pillar_text():
    networks = {text: accepted(text) for text in TRICKY}
    assert any(networks.values())
    rules = [rule for net in filter(None, networks.values()) for rule in rendered(net)]
    assert firewalld_reads(rules) == rules
    for text, net in networks.items():
        if net is None:
            continue
        address = net.compressed if net.prefixlen < net.max_prefixlen else net.network_address.compressed
        for rule in rendered(net):
            assert f'source address="{address}" ' in rule, (text, rule)
            assert " NOT " not in rule, rule
            if text != address:
                assert text not in rule, (text, rule)


def test_every_rule_of_a_full_policy_is_read_back_unchanged():
    pillar = {
        "roles": ["ldap", "mta", "proxy", "mailbox"],
        "backend": "firewalld",
        "trusted_subnets": ["192.168.1.0/24", "2001:db8:1::/64"],
        "admin_subnets": ["203.0.113.0/24"],
        "ssh": {"port": 2222, "from": ["10.9.0.1", "2001:db8:9::1"]},
        "only_from": {"25/tcp": ["198.51.100.0/24"]},
        "cluster": {"peers": [{"name": "mta9", "addresses": ["10.1.0.9", "2001:db8:9::9"], "roles": ["mta"]}]},
    }
    policy = policies.build(cfg.parse_config(pillar, cfg.Facts(salt_master=("10.0.0.5", (4505, 4506)))))
    rules = list(fwd.desired(policy).rules) + fwd.rich_rules(master("10.0.0.5", EPHEMERAL))
    assert firewalld_reads(rules) == rules
    assert firewalld_reads(
        [
            P + 'family="ipv4" source address="10.0.0.5" source-port port="4505" protocol="tcp" '
            'port port="1" protocol="tcp" accept'
        ]
    )[0].startswith("refused: ")  # one element only


# ---------------------------------------------------------------- rollback: save and restore

SERVICES, IPSETS, ZONES = "/etc/firewalld/services", "/etc/firewalld/ipsets", "/etc/firewalld/zones"


def test_firewalld_saves_the_zone_and_our_services_and_ipsets_with_their_old_copies():
    assert fwd.saved_paths("public", {"zimbra-mta", "zimbra"}, {"zimbra-mta-v4"}) == [
        f"{ZONES}/public.xml",
        f"{ZONES}/public.xml.old",
        f"{SERVICES}/zimbra.xml",
        f"{SERVICES}/zimbra.xml.old",
        f"{SERVICES}/zimbra-mta.xml",
        f"{SERVICES}/zimbra-mta.xml.old",
        f"{IPSETS}/zimbra-mta-v4.xml",
        f"{IPSETS}/zimbra-mta-v4.xml.old",
    ]


def test_only_files_of_that_directory_name_saved_services_or_ipsets():
    saved = dict.fromkeys(
        [
            f"{SERVICES}/zimbra.xml",
            f"{SERVICES}/zimbra.xml.old",
            f"{SERVICES}/sub/evil.xml",
            f"{IPSETS}/zimbra-mta-v4.xml",
            "/etc/passwd",
            f"{SERVICES}/../../../etc/shadow.xml",
        ]
    )
    assert fwd._names_in(saved, SERVICES) == {"zimbra"}
    assert fwd._names_in(saved, IPSETS) == {"zimbra-mta-v4"}


RULE = 'rule family="ipv4" source address="198.51.100.99" port port="2" protocol="tcp" accept'
OURS = 'rule priority="32000" port port="22" protocol="tcp" accept'


def test_the_runtime_zone_goes_back_to_the_saved_services_rules_and_ports():
    saved = {"services": ["ssh", "zimbra"], "rules": [RULE, OURS], "ports": [["8443", "tcp"]], "entries": {}}
    now = zone(services=("zimbra", "zimbra-mta"), rules=(OURS,), ports=(("9000", "udp"),))
    assert fwd._runtime_change(now, saved) == {
        "add_services": ["ssh"],
        "remove_services": ["zimbra-mta"],
        "add_rules": [RULE],
        "remove_rules": [],
        "add_ports": [["8443", "tcp"]],
        "remove_ports": [["9000", "udp"]],
    }
    same = zone(services=("ssh", "zimbra"), rules=(OURS, RULE), ports=(("8443", "tcp"),))
    assert fwd._runtime_change(same, saved) is None


def test_an_ipset_of_ours_not_loaded_at_runtime_is_saved_without_runtime_entries():
    # a run that failed between writing the ipset and the reload
    ipsets = ipsets_of({"zimbra-mta-v4": (), "zimbra-mta-v6": ()})
    loaded = {"zimbra-mta-v6": fwd.IPSet("hash:net", "inet6", ("2001:db8::/64",))}
    view = fwd._runtime_view(snapshot(ipsets=ipsets, runtime_ipsets=loaded))
    assert view["entries"] == {"zimbra-mta-v6": ["2001:db8::/64"]}


@pytest.mark.parametrize("name", ["../../etc/passwd", "", None, "a" * 18, ["public"]])
def test_a_saved_copy_naming_no_zone_is_refused_before_anything_is_touched(name):
    commands = []
    with pytest.raises(CommandExecutionError, match="the saved firewall names no firewalld zone"):
        fwd.restore({"zone": name, "files": {}, "runtime": {}}, lambda argv, stdin=None: commands.append(argv))
    assert commands == []


def test_a_zone_that_is_not_a_plain_name_is_not_saved(monkeypatch):
    odd = snapshot()._replace(zone="../../etc/x")  # what a hostile D-Bus answer could say
    monkeypatch.setattr(fwd, "read_snapshot", lambda run, config=None: odd)
    with pytest.raises(CommandExecutionError, match="cannot be saved: not a plain zone name"):
        fwd.save(lambda argv, stdin=None: (0, "", ""))


def service_xml(name, port):
    return (
        f"<service><short>{name}</short><description>{fwd_files.MARK}</description>"
        f'<port protocol="tcp" port="{port}"/></service>'
    ).encode()


def ipset_xml(name):
    return (
        f'<ipset type="hash:net"><short>{name}</short><description>{fwd_files.MARK}</description>'
        '<option name="family" value="inet"/></ipset>'
    ).encode()


def test_a_rollback_puts_back_the_files_and_the_runtime_it_saved(tmp_path, monkeypatch, xml_dirs):
    """save, then a run that changes files and the runtime, then restore:
    every saved file byte for byte (a service and an ipset of ours removed
    since come back, those made since go), one reload, then the
    runtime-only rule and port and the ipset entries as saved."""
    zones, services, ipsets = tmp_path / "zones", xml_dirs["etc-services"], xml_dirs["etc-ipsets"]
    zones.mkdir()
    monkeypatch.setattr(fwd, "ZONE_DIR", str(zones))
    (zones / "public.xml").write_bytes(b"<zone>before</zone>")
    (zones / "public.xml").chmod(0o640)
    mta = "zimbra-mta-v4"
    as_saved = {
        path: path.read_bytes()
        for path in (services / "zimbra.xml", services / "zimbra-mta.xml", ipsets / f"{mta}.xml")
    }
    before = snapshot(
        zone(["ssh", "zimbra"], [OURS]),
        zone(["ssh", "zimbra"], [OURS, RULE], ports=[("8443", "tcp")]),  # RULE and the port: runtime only
        services={"zimbra": (("25", "tcp"),), "zimbra-mta": (("7025", "tcp"),)},
        ipsets=ipsets_of({mta: ()}),
        runtime_ipsets=ipsets_of({mta: ("10.1.0.1", "10.1.0.2")}),
    )
    reloaded = snapshot(  # what the reload of the saved files leaves: the permanent configuration
        zone(["ssh", "zimbra"], [OURS]),
        services={"zimbra": (("25", "tcp"),), "zimbra-mta": (("7025", "tcp"),)},
        ipsets=ipsets_of({mta: ()}),
        runtime_ipsets=ipsets_of({mta: ("10.1.0.1", "10.1.0.9")}),
    )
    run, reads, applied, asked = object(), [before], [], []
    monkeypatch.setattr(fwd, "read_snapshot", lambda *args, **named: asked.append((args, named)) or reads.pop(0))
    saved = fwd.save(run, config=fwd.ZoneOf("public"))
    assert asked == [((run,), {"config": fwd.ZoneOf("public")})]
    assert saved["zone"] == "public" and saved["runtime"] == {
        "services": ["ssh", "zimbra"],
        "rules": [OURS, RULE],
        "ports": [["8443", "tcp"]],
        "entries": {mta: ["10.1.0.1", "10.1.0.2"]},
    }
    assert sorted(path for path, kept in saved["files"].items() if kept) == [
        str(ipsets / f"{mta}.xml"),
        str(services / "zimbra-mta.xml"),
        str(services / "zimbra.xml"),
        str(zones / "public.xml"),
    ]
    # A run since: the zone and a service rewritten, a service and an ipset
    # of ours removed, others made.
    (zones / "public.xml").write_bytes(b"<zone>after</zone>")
    (services / "zimbra.xml").write_bytes(service_xml("zimbra", 26))
    (services / "zimbra-mta.xml").unlink()
    (ipsets / f"{mta}.xml").unlink()
    (services / "zimbra-proxy.xml").write_bytes(service_xml("zimbra-proxy", 443))
    (ipsets / "zimbra-proxy-v4.xml").write_bytes(ipset_xml("zimbra-proxy-v4"))

    def recorded(steps, given):
        assert given is run
        applied.append([(step.action, step.args, step.describe) for step in steps])

    monkeypatch.setattr(fwd, "apply", recorded)
    reads.append(reloaded)
    asked.clear()
    fwd.restore(json.loads(json.dumps(saved)), run)  # as the rollback keeps it: JSON
    assert asked == [((run,), {"config": fwd.ZoneOf("public")})]
    assert (zones / "public.xml").read_bytes() == b"<zone>before</zone>"
    assert (zones / "public.xml").stat().st_mode & 0o777 == 0o640
    assert {path: path.read_bytes() for path in as_saved} == as_saved
    assert sorted(os.listdir(services)) == ["zimbra-mta.xml", "zimbra.xml"]
    assert sorted(os.listdir(ipsets)) == [f"{mta}.xml"]
    runtime = {
        "add_services": [],
        "remove_services": [],
        "add_rules": [RULE],
        "remove_rules": [],
        "add_ports": [["8443", "tcp"]],
        "remove_ports": [],
    }
    assert applied == [
        [("reload", (), "firewall-cmd --reload")],
        [
            (
                "entries",
                ("runtime", {mta: {"add": ["10.1.0.2"], "remove": ["10.1.0.9"]}}),
                "runtime ipset entries as saved",
            ),
            ("zone", ("public", "runtime", runtime), "runtime zone public: 1 add rules, 1 add ports"),
        ],
    ]
    assert reads == []


def test_own_rules_are_the_zones_rich_rules_of_ours_as_the_audit_reads_them():
    policy = policy_of({"roles": ["mta"], "ssh": {"port": 2222, "from": ["10.9.0.0/16"]}})
    ours = fwd.desired(policy).rules
    other = 'rule family="ipv4" source address="10.7.0.0/16" port port="2223" protocol="tcp" accept'
    found = fwd.own_rules(snapshot(runtime=zone(rules=[*ours, other])))
    assert Rule("allow", "10.9.0.0/16", [PortSpec(2222, 2222, "tcp")]) in found
    assert all(rule.source != "10.7.0.0/16" for rule in found)


def test_every_change_is_said_in_words_done_and_pending():
    changes = {
        "ports": {"zimbra": {"old": None, "new": "25/tcp"}},
        "ipsets": {"zimbra-mta-v4": {"old": "hash:ip inet", "new": "hash:net inet"}},
        "rules removed": [SSH, "service zimbra-old"],
        "added": [TRUSTED, "10.1.0.1 in ipset zimbra-mta-v4"],
        "runtime": {
            "removed": ["10.9.0.9 in ipset zimbra-mta-v4"],
            "reloaded": ["zimbra", "zimbra-mta-v4"],
            "others": {"loaded": ["port 11211/tcp", "service memcache"], "dropped": ["service http"]},
        },
        "permanent": {"added": [SSH]},
        "target": {"old": "ACCEPT", "new": "default"},
    }
    assert fwd.describe(changes, test=False).split("; ") == [
        "Added service zimbra",
        "updated ipset zimbra-mta-v4",
        "removed 2 rules of a retired service",
        "added 1 rule and 1 ipset entry",
        "removed 1 ipset entry (runtime)",
        "added 1 rule (permanent)",
        "reloaded firewalld for zimbra, zimbra-mta-v4",
        "the reload loaded port 11211/tcp, service memcache (not zimbra_fw's) into the runtime",
        "the reload dropped service http (not zimbra_fw's) from the runtime",
        "set the zone's target to default",
    ]
    assert fwd.describe({"rules removed": [SSH]}, test=False) == "Removed 1 rule of a retired service"
    assert fwd.describe(changes, test=True).split("; ") == [
        "Service zimbra would be added",
        "ipset zimbra-mta-v4 would be updated",
        "2 rules of a retired service would be removed",
        "1 rule and 1 ipset entry would be added",
        "1 ipset entry would be removed (runtime)",
        "1 rule would be added (permanent)",
        "firewalld would be reloaded for zimbra, zimbra-mta-v4",
        "the reload would load port 11211/tcp, service memcache (not zimbra_fw's) into the runtime",
        "the reload would drop service http (not zimbra_fw's) from the runtime",
        "the zone's target would be set to default",
    ]
