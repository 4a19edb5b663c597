"""The ufw backend (zimbra_fw_ufw): its planners, pure functions of (policy,
snapshot); its reading and writing, on files in a temporary directory and with a
recording command runner; its two families (a rule is read per rules file, a
copy missing from one family is added back, the lockout check wants every
management rule in every family, an application rule is judged by the ports its
tuples open); the Salt master's rule read back by ufw's own parser (ufw's Python
package, when there). No ufw runs here."""

import glob
import importlib
import ipaddress
import json
import os
import stat
import subprocess

import pytest
import zimbra_fw_audit as audit
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
import zimbra_fw_ufw_files as ufw_files
from conftest import REPO
from test_ufw_files import EVERY_FORM_RULES, EVERY_FORM_RULES6
from zimbra_fw_catalogue import PortSpec

SINGLE = {"roles": ["ldap", "mta", "proxy", "mailbox"], "trusted_subnets": ["192.168.1.0/24"]}


SEED_RULES = [("allow", "22/tcp"), ("allow", "from", "192.168.1.0/24"), ("allow", "Zimbra")]


def policy_of(pillar, **facts):
    return policies.build(cfg.parse_config(pillar, cfg.Facts(**facts)))


def snapshot(managed=(), other=(), profile_text=None, active=False, incoming="deny"):
    rules = [(tuple(words), ufw.RULE_COMMENT) for words in managed] + [(tuple(words), None) for words in other]
    return ufw.Snapshot(rules, profile_text, {}, active, incoming)


def ufw_args(plan):
    return [step.args for step in plan.steps if step.action == "ufw"]


def converged(pillar):
    policy = policy_of(pillar)
    return policy, snapshot(ufw.desired_rules(policy), profile_text=ufw.profile_text(policy), active=True)


def test_fresh_server_gets_management_first_then_trusted_then_public():
    plan = ufw.plan_rules(policy_of(SINGLE), snapshot())
    assert plan.changes == {"added": ["allow 22/tcp", "allow from 192.168.1.0/24", "allow Zimbra"]}
    assert ufw_args(plan) == [(*words, "comment", "zimbra_fw") for words in SEED_RULES]


def test_stale_rules_go_only_after_every_new_rule_is_in():
    policy = policy_of(dict(SINGLE, trusted_subnets=["10.1.0.0/16", "10.2.0.0/16"]))
    current = [*SEED_RULES, ("allow", "from", "172.16.0.0/12")]
    plan = ufw.plan_rules(policy, snapshot(current))
    kinds = ["delete" if args[0] == "delete" else "add" for args in ufw_args(plan)]
    assert kinds == ["add", "add", "delete", "delete"]
    assert plan.changes == {
        "added": ["allow from 10.1.0.0/16", "allow from 10.2.0.0/16"],
        "removed": ["allow from 192.168.1.0/24", "allow from 172.16.0.0/12"],
    }


def test_converged_rules_plan_nothing():
    policy, current = converged(SINGLE)
    assert ufw.plan_rules(policy, current) == ufw.Plan({}, [], None)


def test_a_hand_added_identical_rule_is_adopted_not_duplicated():
    policy = policy_of(SINGLE)
    plan = ufw.plan_rules(policy, snapshot(SEED_RULES[1:], other=[("allow", "22/tcp")]))
    # ufw, given the same rule with a comment, updates the comment of the one it has.
    assert ufw_args(plan) == [("allow", "22/tcp", "comment", "zimbra_fw")]
    assert "removed" not in plan.changes


def test_rules_without_the_mark_are_never_removed():
    policy, current = converged(SINGLE)
    current = current._replace(rules=[*current.rules, (("allow", "8000"), None), (("deny", "23"), "mine")])
    assert ufw.plan_rules(policy, current).steps == []


def test_ssh_on_another_port_and_from_a_subnet():
    policy = policy_of(dict(SINGLE, ssh={"port": 2222, "from": ["10.0.0.0/8"]}))
    assert ufw.desired_rules(policy)[0] == ("allow", "from", "10.0.0.0/8", "to", "any", "port", "2222", "proto", "tcp")
    assert ufw.desired_rules(policy_of(dict(SINGLE, ssh={"port": 2222})))[0] == ("allow", "2222/tcp")


def test_default_deny_is_set_when_the_policy_is_accept():
    policy, current = converged(SINGLE)
    plan = ufw.plan_firewall(policy, current._replace(incoming="allow"))
    assert plan.changes == {"default incoming": {"old": "allow", "new": "deny"}}
    assert [step.action for step in plan.steps] == ["check", "ufw"]
    assert plan.steps[1].args == ("default", "deny", "incoming")


def test_enabling_checks_management_access_first():
    policy = policy_of(dict(SINGLE, ssh={"port": 2222, "from": ["10.0.0.0/8"]}))
    plan = ufw.plan_firewall(policy, snapshot(active=False, incoming="allow"))
    assert [step.action for step in plan.steps] == ["check", "ufw", "ufw"]
    assert plan.steps[0].args == (("allow", "from", "10.0.0.0/8", "to", "any", "port", "2222", "proto", "tcp"),)
    assert [step.args for step in plan.steps[1:]] == [("default", "deny", "incoming"), ("--force", "enable")]
    assert plan.changes == {"default incoming": {"old": "allow", "new": "deny"}, "active": {"old": False, "new": True}}


def test_the_check_includes_the_salt_master_rule():
    policy = policy_of(SINGLE, salt_master=("10.77.0.1", (4505, 4506)))
    plan = ufw.plan_firewall(policy, snapshot(active=False))
    assert plan.steps[0].args == (
        ("allow", "22/tcp"),
        ("allow", "from", "10.77.0.1", "port", "4505,4506", "to", "any", "port", "32768:60999", "proto", "tcp"),
    )


def test_no_check_when_no_management_is_wanted():
    policy = policy_of(dict(SINGLE, ssh={"from": []}, allow_no_management=True))
    plan = ufw.plan_firewall(policy, snapshot(active=False))
    assert [step.args for step in plan.steps] == [("--force", "enable")]


def test_active_deny_firewall_plans_nothing_and_enabled_false_leaves_ufw_alone():
    policy, current = converged(SINGLE)
    assert ufw.plan_firewall(policy, current) == ufw.Plan({}, [], None)
    off = ufw.plan_firewall(policy_of(dict(SINGLE, enabled=False)), snapshot(active=False, incoming="allow"))
    assert off.steps == [] and off.changes == {} and "left alone" in off.comment


def test_new_profile_is_written():
    plan = ufw.plan_profile(policy_of(SINGLE), snapshot())
    assert [step.action for step in plan.steps] == ["write"]
    assert plan.steps[0].args == (ufw.profile_text(policy_of(SINGLE)),)
    assert plan.changes == {
        "ports": {"Zimbra": {"old": None, "new": "25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071/tcp"}}
    }


def test_changed_ports_rewrite_the_file_then_update_rules_that_use_it():
    _, current = converged(SINGLE)
    plan = ufw.plan_profile(policy_of(dict(SINGLE, exclude_ports=[5222, 5223])), current)
    assert [(step.action, step.args[:2]) for step in plan.steps] == [
        ("write", plan.steps[0].args[:2]),
        ("ufw", ("app", "update")),
    ]
    assert plan.steps[1].args == ("app", "update", "Zimbra")
    assert plan.changes["ports"]["Zimbra"]["new"] == "25,80,110,143,443,465,587,993,995,3443,7071,9071/tcp"


def test_a_renamed_profile_loses_its_rules_before_it_goes():
    _, current = converged(SINGLE)
    plan = ufw.plan_profile(policy_of(dict(SINGLE, profile={"name": "Mail"})), current)
    assert [step.action for step in plan.steps] == ["ufw", "write"]
    assert plan.steps[0].args == ("delete", "allow", "Zimbra")
    assert plan.changes["rules removed"] == ["allow Zimbra"]
    assert plan.changes["ports"]["Zimbra"]["new"] is None and plan.changes["ports"]["Mail"]["old"] is None


def test_no_public_port_removes_the_profile_file():
    _, current = converged(SINGLE)
    plan = ufw.plan_profile(policy_of({"roles": ["ldap"]}), current)
    assert [step.action for step in plan.steps] == ["ufw", "remove"]
    assert ufw.plan_profile(policy_of({"roles": ["ldap"]}), snapshot()) == ufw.Plan({}, [], None)


def test_a_range_counts_two_in_a_profile_group():
    policy = policy_of({"roles": ["snmp"], "extra_ports": [f"{p}:{p + 1}/tcp" for p in range(2000, 2016, 2)]})
    groups = ufw_files.port_groups(policy.public)
    assert [len(group.split(",")) for group in groups] == [7, 1]  # 7 ranges weigh 14; the 8th starts a group


def test_same_text_is_a_no_op():
    policy, current = converged(SINGLE)
    assert ufw.plan_profile(policy, current) == ufw.Plan({}, [], None)


class Runner:
    """Records every command; answers as ufw or the batch helper would, failing the Nth ufw command."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at, self.commands = [], fail_at, 0

    def __call__(self, argv, stdin=None):
        self.calls.append((tuple(argv), stdin))
        if argv[0] == "ufw":
            return self._one()
        lines = []
        for index, _ in enumerate(json.loads(stdin)):
            retcode, _, error = self._one()
            if retcode:
                lines.append(json.dumps({"failed": index, "error": error}))
                return 1, "\n".join(lines), ""
            lines.append(json.dumps({"done": index}))
        return 0, "\n".join(lines), ""

    def _one(self):
        self.commands += 1
        if self.commands == self.fail_at:
            return 1, "", "ERROR: injected"
        return 0, "", ""


@pytest.fixture
def ufw_files_in(tmp_path, monkeypatch):
    """The backend's files in a temporary directory, and ufw seen as installed."""
    monkeypatch.setattr(ufw, "PROFILE_PATH", str(tmp_path / "zimbra"))
    monkeypatch.setattr(ufw, "RULES_FILES", (str(tmp_path / "user.rules"), str(tmp_path / "user6.rules")))
    monkeypatch.setattr(ufw, "DEFAULTS_PATH", str(tmp_path / "default-ufw"))
    (tmp_path / "default-ufw").write_text("IPV6=no\n")
    return tmp_path


@pytest.mark.parametrize("batched", [True, False])
def test_apply_runs_consecutive_ufw_steps_together_and_names_a_failure(ufw_files_in, monkeypatch, batched):
    monkeypatch.setattr(ufw, "ufw_python", lambda program: "/usr/bin/python3" if batched else None)
    plan = ufw.plan_rules(policy_of(SINGLE), snapshot())
    runner = Runner(fail_at=2)
    with pytest.raises(ufw.ApplyFailed) as info:
        ufw.apply(plan.steps, runner)
    message = info.value.strerror
    assert message.startswith("step 'ufw allow from 192.168.1.0/24' failed: ")
    assert "ERROR: injected" in message
    assert "Already applied: ufw allow 22/tcp. " in message
    assert info.value.info == {"applied": ["ufw allow 22/tcp"], "failed": "ufw allow from 192.168.1.0/24"}
    assert len(runner.calls) == (1 if batched else 2)  # the batch stops at the failure; one by one stops too


def test_apply_writes_the_profile_atomically(ufw_files_in):
    plan = ufw.plan_profile(policy_of(SINGLE), snapshot())
    assert ufw.apply(plan.steps, Runner()) == [f"write {ufw.PROFILE_PATH}"]
    assert (ufw_files_in / "zimbra").read_text() == ufw.profile_text(policy_of(SINGLE))
    assert [p.name for p in ufw_files_in.iterdir() if p.name.startswith(".")] == []


def test_enabling_is_refused_while_management_rules_are_missing(ufw_files_in):
    (ufw_files_in / "user.rules").write_text(
        "### tuple ### allow any any 0.0.0.0/0 any 192.168.1.0/24 in comment=7a696d6272615f6677\n"
    )
    plan = ufw.plan_firewall(policy_of(SINGLE), snapshot(active=False, incoming="allow"))
    runner = Runner()
    with pytest.raises(ufw.ApplyFailed, match=r"refusing to enable default-deny.*missing: allow 22/tcp"):
        ufw.apply(plan.steps, runner)
    assert runner.calls == []  # neither default deny nor enable ran


def test_enabling_goes_ahead_once_management_rules_are_in(ufw_files_in):
    (ufw_files_in / "user.rules").write_text(
        "### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=7a696d6272615f6677\n"
    )
    plan = ufw.plan_firewall(policy_of(SINGLE), snapshot(active=False, incoming="allow"))
    runner = Runner()
    applied = ufw.apply(plan.steps, runner)
    assert applied == [
        "check that management access is allowed",
        "ufw default deny incoming",
        "ufw --force enable",
    ]
    assert runner.commands == 2


def test_plans_of_a_profile_change_step_by_step():
    _, current = converged(SINGLE)
    retitled = ufw.plan_profile(policy_of(dict(SINGLE, profile={"title": "Mail"})), current)
    new_text = ufw.profile_text(policy_of(dict(SINGLE, profile={"title": "Mail"})))
    assert retitled == ufw.Plan(
        {"file": {"old": current.profile_text, "new": new_text}},
        [ufw.Step("write", (new_text,), "write /etc/ufw/applications.d/zimbra")],
        None,
    )
    gone = ufw.plan_profile(policy_of({"roles": ["ldap"]}), current)
    assert gone == ufw.Plan(
        {
            "rules removed": ["allow Zimbra"],
            "ports": {"Zimbra": {"old": "25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071/tcp", "new": None}},
        },
        [
            ufw.Step("ufw", ("delete", "allow", "Zimbra"), "ufw delete allow Zimbra"),
            ufw.Step("remove", (), "remove /etc/ufw/applications.d/zimbra"),
        ],
        None,
    )
    assert "profile" in ufw.RULE_PARTS  # it deletes rules: the session check reads the whole policy


def test_the_plan_for_enabled_false_says_so():
    assert ufw.plan_firewall(policy_of(dict(SINGLE, enabled=False)), snapshot()).comment == (
        "zimbra_fw:enabled is false: ufw's state is left alone"
    )


def test_refusal_names_every_missing_management_rule(ufw_files_in):
    policy = policy_of(SINGLE, salt_master=("10.77.0.1", (4505, 4506)))
    plan = ufw.plan_firewall(policy, snapshot(active=False))
    with pytest.raises(ufw.ApplyFailed) as info:
        ufw.apply(plan.steps, Runner())
    assert info.value.strerror.startswith(
        "step 'check that management access is allowed' failed: refusing to enable default-deny: management access "
        "is not allowed yet (missing: allow 22/tcp, allow from 10.77.0.1 port 4505,4506 to any port 32768:60999 "
        "proto tcp); apply the zimbra_fw rules first. Already applied: nothing"
    )


def test_a_failure_lists_everything_applied_before_it(ufw_files_in, monkeypatch):
    monkeypatch.setattr(ufw, "ufw_python", lambda program: None)
    steps = [ufw.Step("write", ("x",), "write it"), *ufw.plan_rules(policy_of(SINGLE), snapshot()).steps]
    with pytest.raises(ufw.ApplyFailed) as info:
        ufw.apply(steps, Runner(fail_at=3))
    assert "Already applied: write it; ufw allow 22/tcp; ufw allow from 192.168.1.0/24. " in info.value.strerror
    assert info.value.info["applied"] == ["write it", "ufw allow 22/tcp", "ufw allow from 192.168.1.0/24"]


def test_a_crashed_batch_names_the_first_unreported_command(ufw_files_in, monkeypatch):
    monkeypatch.setattr(ufw, "ufw_python", lambda program: "/usr/bin/python3")
    steps = ufw.plan_rules(policy_of(SINGLE), snapshot()).steps

    def killed(argv, stdin=None):
        return -9, '{"done": 0}\n', "Killed\n"

    with pytest.raises(ufw.ApplyFailed) as info:
        ufw.apply(steps, killed)
    assert info.value.strerror.startswith(
        "step 'ufw allow from 192.168.1.0/24' failed: 'ufw allow from 192.168.1.0/24 comment zimbra_fw' failed: "
        "exit -9: Killed. Already applied: ufw allow 22/tcp"
    )


ZF = "7a696d6272615f6677"  # "zimbra_fw" as ufw stores comments


USER_RULES = f"""### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment={ZF}
### tuple ### allow any any 0.0.0.0/0 any 192.168.1.0/24 in comment={ZF}
### tuple ### allow tcp 25,80 0.0.0.0/0 any 0.0.0.0/0 Zimbra - in comment={ZF}
### tuple ### deny tcp 11211 0.0.0.0/0 any 0.0.0.0/0 in
"""


USER6_RULES = f"### tuple ### allow any any ::/0 any 2001:db8::/64 in comment={ZF}\n"


PROFILE = "[Zimbra]\ntitle=Z\ndescription=Z\nports=25,80/tcp\n"


OTHER_APP = "[OpenSSH]\ntitle=ssh\ndescription=ssh\nports=22/tcp\n"


LIST = ("iptables", "-n", "-L")  # ufw's own test of "active": its user chain is loaded


CHAIN = "Chain ufw-user-input (1 references)\ntarget     prot opt source               destination\n"


@pytest.fixture
def etc(tmp_path, monkeypatch):
    """ufw's files in a temporary directory, ufw seen as installed at /usr/sbin/ufw."""
    apps = tmp_path / "applications.d"
    apps.mkdir()
    (apps / "zimbra").write_text(PROFILE)
    (apps / "openssh-server").write_text(OTHER_APP)
    (apps / ".zimbra_fw-half-written").write_text("[Broken]\nports=1/tcp\n")
    (tmp_path / "user.rules").write_text(USER_RULES)
    (tmp_path / "user6.rules").write_text(USER6_RULES)
    (tmp_path / "default-ufw").write_text('IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\n')
    monkeypatch.setattr(ufw, "APPS_DIR", str(apps))
    monkeypatch.setattr(ufw, "PROFILE_PATH", str(apps / "zimbra"))
    monkeypatch.setattr(ufw, "RULES_FILES", (str(tmp_path / "user.rules"), str(tmp_path / "user6.rules")))
    monkeypatch.setattr(ufw, "DEFAULTS_PATH", str(tmp_path / "default-ufw"))
    monkeypatch.setattr(ufw.salt.utils.path, "which", lambda name: f"/usr/sbin/{name}" if name == "ufw" else None)
    return tmp_path


class Answers:
    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __call__(self, argv, stdin=None):
        self.calls.append((tuple(argv), stdin))
        return self.answers[tuple(argv[:3])]


def test_snapshot_reads_the_files_and_one_status(etc):
    runner = Answers({LIST: (0, CHAIN, "")})
    snap = ufw.read_snapshot(runner)
    assert runner.calls == [(("iptables", "-n", "-L", "ufw-user-input", "1"), None)]
    assert (snap.active, snap.incoming, snap.profile_text) == (True, "deny", PROFILE)
    assert sorted(snap.app_profiles) == ["OpenSSH", "Zimbra"]  # the hidden half-written file is skipped
    assert ufw.managed_rules(snap) == [
        ("allow", "22/tcp"),
        ("allow", "from", "192.168.1.0/24"),
        ("allow", "Zimbra"),
        ("allow", "from", "2001:db8::/64"),
    ]
    assert ufw.other_rules(snap) == [("deny", "11211/tcp")]


def test_snapshot_without_live_state_starts_no_process(etc):
    runner = Answers({})
    snap = ufw.read_snapshot(runner, live=False)
    assert runner.calls == [] and snap.active is None and snap.incoming == "deny"  # files only


def test_inactive_ufw_takes_the_default_policy_from_its_config(etc):
    (etc / "default-ufw").write_text('DEFAULT_INPUT_POLICY="ACCEPT"\n')
    snap = ufw.read_snapshot(Answers({LIST: (1, "", "iptables: No chain/target/match by that name.\n")}))
    assert (snap.active, snap.incoming) == (False, "allow")


def test_ipv6_off_leaves_user6_rules_unread_and_is_a_fact(etc):
    assert ufw.ipv6_off() is None
    (etc / "default-ufw").write_text("IPV6=no\n")
    assert ufw.ipv6_off() == "ufw has IPv6 off (IPV6=no in /etc/default/ufw)"
    snap = ufw.read_snapshot(Answers({}), live=False)
    assert ("allow", "from", "2001:db8::/64") not in ufw.managed_rules(snap)


@pytest.mark.parametrize(
    "change",
    ["user.rules", "user6.rules", "default-ufw", "applications.d/zimbra", "applications.d/openssh-server", "status"],
)
def test_the_fingerprint_is_the_snapshots_and_changes_with_every_read(etc, change):
    loaded = Answers({LIST: (0, CHAIN, "")})
    before = ufw.read_fingerprint(loaded)
    assert ufw.read_snapshot(loaded).fingerprint == before
    assert ufw.read_fingerprint(loaded) == before  # the same reads, the same fingerprint
    if change == "status":
        after = ufw.read_fingerprint(Answers({LIST: (1, "", "iptables: No chain/target/match by that name.\n")}))
    else:
        with open(etc / change, "a", encoding="utf-8") as handle:
            handle.write("\n")  # a byte more, the same rules
        after = ufw.read_fingerprint(loaded)
    assert after != before


def test_where_iptables_keeps_nf_tables_the_chain_alone_is_asked_over_netlink(etc, monkeypatch):
    (etc / "xtables-nft-multi").write_text("")
    os.symlink(etc / "xtables-nft-multi", etc / "iptables")
    monkeypatch.setattr(ufw.salt.utils.path, "which", lambda name: str(etc / name))
    asked, answers = [], iter([True, False, None])
    monkeypatch.setattr(ufw.netlink, "chain_exists", lambda *chain: asked.append(chain) or next(answers))
    runner = Answers({LIST: (0, CHAIN, "")})
    assert [ufw.read_snapshot(runner).active for _ in range(3)] == [True, False, True]
    assert asked == [(4, "filter", "ufw-user-input")] * 3
    assert runner.calls == [(("iptables", "-n", "-L", "ufw-user-input", "1"), None)]  # netlink could not tell


def test_a_failing_status_names_the_command(etc):
    failed = r"'iptables -n -L ufw-user-input 1' failed \(exit 4\): no perm"
    with pytest.raises(ufw.CommandExecutionError, match=failed):
        ufw.read_snapshot(Answers({LIST: (4, "", "no perm\n")}))


def test_the_status_is_read_while_the_files_are_and_its_error_comes_first(etc):
    """iptables runs in the background while the files are read; when both
    fail, its error is raised, as when it ran first."""
    (etc / "user.rules").write_bytes(b"\xff not utf-8\n")
    with pytest.raises(ufw.CommandExecutionError, match="no perm") as info:
        ufw.read_snapshot(Answers({LIST: (4, "", "no perm\n")}))
    assert isinstance(info.value.__cause__, UnicodeDecodeError)
    with pytest.raises(UnicodeDecodeError):  # the files' error alone
        ufw.read_snapshot(Answers({LIST: (0, CHAIN, "")}))


def test_missing_ufw_is_said_plainly(etc, monkeypatch):
    monkeypatch.setattr(ufw.salt.utils.path, "which", lambda name: None)
    assert ufw.unavailable() == "ufw is not available on this minion: install the 'ufw' package"
    with pytest.raises(ufw.CommandExecutionError, match="install the 'ufw' package"):
        ufw.read_snapshot(Answers({}))


def test_service_names_cannot_be_profile_names():
    assert ufw.name_taken("smtp") == "is a service name in /etc/services; ufw would take the service, not the profile"
    assert ufw.name_taken("Zimbra") is None


def test_status_and_access_rules(etc):
    snap = ufw.read_snapshot(Answers({LIST: (0, CHAIN, "")}))
    assert ufw.status(snap) == {
        "backend": "ufw",
        "active": True,
        "default_incoming": "deny",
        "managed_rules": ["allow 22/tcp", "allow from 192.168.1.0/24", "allow Zimbra", "allow from 2001:db8::/64"],
        "other_rules": ["deny 11211/tcp"],
    }
    rules = ufw.access_rules(snap)
    assert [(r.action, r.source, [str(p) for p in r.ports or []]) for r in rules] == [
        ("allow", "any", ["22/tcp"]),
        ("allow", "192.168.1.0/24", []),
        ("allow", "any", ["25/tcp", "80/tcp"]),
        ("deny", "any", ["11211/tcp"]),
        ("allow", "2001:db8::/64", []),
    ]
    assert rules[1].ports is None


def test_plan_picks_the_part():
    policy = policies.build(cfg.parse_config({"roles": ["mta"]}))
    snap = ufw.Snapshot([], None, {}, True, "deny")
    for part in ufw.PARTS:
        assert ufw.plan(part, policy, snap) == ufw.PLANNERS[part](policy, snap)
    assert ufw.plan("rules", policy, snap).changes == {"added": ["allow 22/tcp", "allow Zimbra"]}


def test_profiles_view():
    policy = policies.build(
        cfg.parse_config(
            {"roles": ["mailbox"], "cluster": {"peers": [{"name": "m", "addresses": ["10.0.0.2"], "roles": ["mta"]}]}}
        )
    )
    view = ufw.profiles(policy)
    assert view["path"] == ufw.PROFILE_PATH == "/etc/ufw/applications.d/zimbra"
    assert view["profiles"] == {
        "Zimbra": "80,110,143,443,993,995,5222,5223,7071/tcp",
        "Zimbra-mta": "7025,7073,8443/tcp",
    }
    assert view["text"] == ufw.profile_text(policy)
    assert view["text"].startswith(ufw.PROFILE_HEADER + "[Zimbra]\ntitle=Zimbra Collaboration Server\n")
    assert (
        "[Zimbra-mta]\ntitle=Zimbra Collaboration Server (mta peers)\n"
        "description=Zimbra ports that mta peers connect to\n" in view["text"]
    )


def test_write_is_atomic_with_mode_0644_and_remove_is_idempotent(etc):
    ufw.apply([ufw.Step("write", ("[Zimbra]\nports=25/tcp\n",), "write")], Answers({}))
    path = etc / "applications.d" / "zimbra"
    assert path.read_text() == "[Zimbra]\nports=25/tcp\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == [".zimbra_fw-half-written", "openssh-server", "zimbra"]
    assert ufw.apply([ufw.Step("remove", (), "rm"), ufw.Step("remove", (), "rm again")], Answers({})) == [
        "rm",
        "rm again",
    ]
    assert not path.exists()


def test_a_failed_write_leaves_no_temporary_file(etc, monkeypatch):
    def no_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ufw.os, "replace", no_replace)
    with pytest.raises(ufw.ApplyFailed, match=r"step 'write it' failed: disk full\. Already applied: nothing"):
        ufw.apply([ufw.Step("write", ("x",), "write it")], Answers({}))
    assert (etc / "applications.d" / "zimbra").read_text() == PROFILE
    assert sorted(p.name for p in (etc / "applications.d").iterdir()) == [
        ".zimbra_fw-half-written",
        "openssh-server",
        "zimbra",
    ]


def test_an_unknown_step_is_an_error():
    with pytest.raises(ufw.ApplyFailed, match="unknown plan step"):
        ufw.apply([ufw.Step("shell", ("reboot",), "reboot")], Answers({}))


def test_the_batch_runs_with_ufws_python_and_the_commands_on_stdin(etc, monkeypatch, tmp_path):
    python = tmp_path / "python3"
    python.write_text("")
    python.chmod(0o755)
    monkeypatch.setattr(ufw, "ufw_python", lambda program: str(python) if program == "/usr/sbin/ufw" else None)
    runner = Answers({(str(python), "-I", ufw.BATCH_SCRIPT): (0, '{"done": 0}\n{"done": 1}\n', "")})
    steps = [ufw.Step("ufw", ("allow", "22/tcp"), "a"), ufw.Step("ufw", ("app", "update", "Zimbra"), "b")]
    assert ufw.apply(steps, runner) == ["a", "b"]
    ((argv, stdin),) = runner.calls
    assert argv == (str(python), "-I", ufw.BATCH_SCRIPT, "/usr/sbin/ufw")
    assert json.loads(stdin) == [["allow", "22/tcp"], ["app", "update", "Zimbra"]]
    assert os.path.basename(ufw.BATCH_SCRIPT) == "zimbra_fw_ufw_batch.py" and os.path.exists(ufw.BATCH_SCRIPT)


def test_without_the_batch_helper_each_command_runs_alone(etc, monkeypatch):
    monkeypatch.setattr(ufw, "BATCH_SCRIPT", str(etc / "missing.py"))
    monkeypatch.setattr(ufw, "ufw_python", lambda program: "/usr/bin/python3")
    runner = Answers({("ufw", "allow", "22/tcp"): (0, "", ""), ("ufw", "app", "update"): (0, "", "")})
    steps = [ufw.Step("ufw", ("allow", "22/tcp"), "a"), ufw.Step("ufw", ("app", "update", "Zimbra"), "b")]
    assert ufw.apply(steps, runner) == ["a", "b"]
    assert [argv for argv, _ in runner.calls] == [("ufw", "allow", "22/tcp"), ("ufw", "app", "update", "Zimbra")]


def test_ufw_python_follows_env(tmp_path, monkeypatch):
    python = tmp_path / "python3.11"
    python.write_text("")
    python.chmod(0o755)
    program = tmp_path / "ufw"
    program.write_text("#!/usr/bin/env python3.11\n")
    monkeypatch.setattr(ufw.salt.utils.path, "which", lambda name: str(python) if name == "python3.11" else None)
    assert ufw.ufw_python(str(program)) == str(python)
    program.write_text("#!/usr/bin/env nosuchpython\n")
    assert ufw.ufw_python(str(program)) is None
    python.chmod(0o644)
    program.write_text(f"#!{python}\n")
    assert ufw.ufw_python(str(program)) is None  # not executable


HELPER_SCRIPTS = ("zimbra_fw_ufw_batch",)


# _utils/, or the top level where make mutation stages the core
UTILS = glob.glob(os.path.join(REPO, "_utils", "zimbra_fw_*.py")) or glob.glob(os.path.join(REPO, "zimbra_fw_*.py"))


@pytest.mark.parametrize("name", sorted(os.path.basename(path)[:-3] for path in UTILS))
def test_every_utils_module_keeps_out_of_salts_loaders(name):
    loaded, reason = importlib.import_module(name).__virtual__()
    assert loaded is False
    if name in HELPER_SCRIPTS:
        assert reason == f"{name} is a helper script run by zimbra_fw, not an execution module"
    else:
        assert reason == f"{name} is a library of the zimbra_fw module, not a Salt util"


def test_the_write_renames_a_hidden_temporary_file_from_the_same_directory(etc, monkeypatch):
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(ufw.os, "replace", spy)
    ufw.apply([ufw.Step("write", ("[Zimbra]\nports=25/tcp\n",), "write")], Answers({}))
    ((src, dst),) = renames
    assert dst == ufw.PROFILE_PATH
    assert os.path.dirname(src) == os.path.dirname(dst)  # a rename within one file system
    assert os.path.basename(src).startswith(".zimbra_fw-")  # hidden: ufw skips it meanwhile


def test_udp_only_service_names_are_taken_too():
    assert ufw.name_taken("tftp") == "is a service name in /etc/services; ufw would take the service, not the profile"


def test_a_failing_command_with_output_on_stdout_or_none():
    with pytest.raises(ufw.CommandExecutionError) as info:
        ufw.read_snapshot(Answers({LIST: (2, "ERROR: on stdout\n", "")}))
    assert info.value.strerror == "'iptables -n -L ufw-user-input 1' failed (exit 2): ERROR: on stdout"
    with pytest.raises(ufw.CommandExecutionError) as info:
        ufw.read_snapshot(Answers({LIST: (3, "", "")}))
    assert info.value.strerror == "'iptables -n -L ufw-user-input 1' failed (exit 3): "


def test_many_ports_make_several_groups_in_the_profiles_view():
    ports = [f"{p}/tcp" for p in range(20000, 20020)]
    policy = policies.build(cfg.parse_config({"roles": ["snmp"], "extra_ports": ports}))
    first = ",".join(str(p) for p in range(20000, 20015))
    assert ufw.profiles(policy)["profiles"] == {"Zimbra": f"{first}/tcp|20015,20016,20017,20018,20019/tcp"}
    assert f"ports={first}/tcp|20015,20016,20017,20018,20019/tcp\n" in ufw.profile_text(policy)


@pytest.mark.parametrize(
    "first_line, found",
    [
        ("#!{python}\n", True),
        ("#! {python} -I\n", True),
        ("  {python}\n", False),  # no #!
        ("#!/usr/bin/env\n", False),
        ("#!\\xff\\xfe{python}\n", False),
    ],
)
def test_ufw_python_reads_only_a_proper_first_line(tmp_path, first_line, found):
    python = tmp_path / "python3"
    python.write_text("")
    python.chmod(0o755)
    program = tmp_path / "ufw"
    program.write_bytes(first_line.format(python=python).encode("latin-1").decode("unicode_escape").encode("latin-1"))
    assert ufw.ufw_python(str(program)) == (str(python) if found else None)


def test_one_by_one_a_failing_command_is_named_with_its_exit_code(etc, monkeypatch):
    monkeypatch.setattr(ufw, "ufw_python", lambda program: None)
    runner = Answers({("ufw", "allow", "22/tcp"): (1, "", "ERROR: Bad port\n")})
    with pytest.raises(ufw.ApplyFailed) as info:
        ufw.apply([ufw.Step("ufw", ("allow", "22/tcp"), "a")], runner)
    assert info.value.strerror.startswith("step 'a' failed: 'ufw allow 22/tcp' failed (exit 1): ERROR: Bad port. ")


def test_a_profile_name_another_file_in_applications_d_defines_is_taken(etc):
    apps = etc / "applications.d"
    (apps / "smtp-extra").write_text("[Mail Relay]\ntitle=r\ndescription=r\nports=2525/tcp\n")
    (apps / "old.dpkg-old").write_text("[Backup]\nports=1/tcp\n")  # ufw skips it
    assert ufw.name_taken("OpenSSH") == (
        f"is the application profile 'OpenSSH' of {apps / 'openssh-server'}; ours would shadow it (or it ours)"
    )
    # ufw finds a profile by its name in any case when none matches exactly
    assert ufw.name_taken("OPENSSH").startswith("is the application profile 'OpenSSH' of ")
    assert ufw.name_taken("mail relay").startswith("is the application profile 'Mail Relay' of ")
    assert ufw.name_taken("Zimbra") is None  # our own file
    assert ufw.name_taken("Backup") is None
    assert ufw.name_taken("Broken") is None  # a hidden file
    (apps / "zimbra").write_text("[OpenSSH2]\nports=22/tcp\n")
    assert ufw.name_taken("OpenSSH2") is None
    (apps / "zz-local").write_text("[Local]\nports=8080/tcp\n")  # read after our own file
    assert ufw.name_taken("local").startswith("is the application profile 'Local' of ")


def test_without_applications_d_no_profile_name_is_taken(etc, monkeypatch):
    monkeypatch.setattr(ufw, "APPS_DIR", str(etc / "missing"))
    assert ufw.name_taken("OpenSSH") is None


ZIMBRA_PORTS = "25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071"


def tuple_line(rule, comment=ZF):
    return f"### tuple ### {rule} in comment={comment}\n"


SSH = "allow tcp 22 0.0.0.0/0 any 0.0.0.0/0"


SSH6 = "allow tcp 22 ::/0 any ::/0"


LAN = "allow any any 0.0.0.0/0 any 192.168.1.0/24"


ZIMBRA = f"allow tcp {ZIMBRA_PORTS} 0.0.0.0/0 any 0.0.0.0/0 Zimbra -"


ZIMBRA6 = f"allow tcp {ZIMBRA_PORTS} ::/0 any ::/0 Zimbra -"


@pytest.fixture
def policy_etc(tmp_path, monkeypatch):
    """ufw's files in a temporary directory (IPv6 on), the profile file as the policy wants it."""
    apps = tmp_path / "applications.d"
    apps.mkdir()
    (apps / "zimbra").write_text(ufw.profile_text(policy_of(SINGLE)))
    (tmp_path / "default-ufw").write_text('IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\n')
    monkeypatch.setattr(ufw, "APPS_DIR", str(apps))
    monkeypatch.setattr(ufw, "PROFILE_PATH", str(apps / "zimbra"))
    monkeypatch.setattr(ufw, "RULES_FILES", (str(tmp_path / "user.rules"), str(tmp_path / "user6.rules")))
    monkeypatch.setattr(ufw, "DEFAULTS_PATH", str(tmp_path / "default-ufw"))
    monkeypatch.setattr(
        ufw.os.path, "exists", lambda path, real=os.path.exists: path == "/proc/sys/net/ipv6" or real(path)
    )
    monkeypatch.setattr(ufw.salt.utils.path, "which", lambda name: f"/usr/sbin/{name}" if name == "ufw" else None)
    return tmp_path


def write_rules(policy_etc, v4, v6):
    (policy_etc / "user.rules").write_text("".join(tuple_line(rule) for rule in v4))
    (policy_etc / "user6.rules").write_text("".join(tuple_line(rule) for rule in v6))


def read(policy_etc):
    return ufw.read_snapshot(lambda argv, stdin=None: (0, "", ""), live=True)


def test_converged_files_in_both_families_plan_nothing(policy_etc):
    write_rules(policy_etc, [SSH, LAN, ZIMBRA], [SSH6, ZIMBRA6])
    snap = read(policy_etc)
    policy = policy_of(SINGLE)
    assert ufw.plan_rules(policy, snap) == ufw.Plan({}, [], None)
    assert ufw.plan_profile(policy, snap) == ufw.Plan({}, [], None)
    assert ufw.plan_firewall(policy, snap) == ufw.Plan({}, [], None)


def test_the_ipv4_copy_of_allow_zimbra_deleted_by_hand_is_added_back(policy_etc):
    write_rules(policy_etc, [SSH, LAN], [SSH6, ZIMBRA6])  # ufw delete N of the IPv4 copy
    plan = ufw.plan_rules(policy_of(SINGLE), read(policy_etc))
    assert plan.changes == {"added": ["allow Zimbra (IPv4)"]}
    assert [step.args for step in plan.steps] == [("allow", "Zimbra", "comment", "zimbra_fw")]


def test_the_ipv4_ssh_copy_deleted_by_hand_is_added_back_and_named(policy_etc):
    write_rules(policy_etc, [LAN, ZIMBRA], [SSH6, ZIMBRA6])
    plan = ufw.plan_rules(policy_of(SINGLE), read(policy_etc))
    assert plan.changes == {"added": ["allow 22/tcp (IPv4)"]}
    assert [step.args for step in plan.steps] == [("allow", "22/tcp", "comment", "zimbra_fw")]


def test_a_rule_missing_from_both_families_is_named_plainly(policy_etc):
    write_rules(policy_etc, [LAN, ZIMBRA], [ZIMBRA6])
    assert ufw.plan_rules(policy_of(SINGLE), read(policy_etc)).changes == {"added": ["allow 22/tcp"]}


def test_an_ipv4_source_belongs_to_ipv4_only_and_an_ipv6_source_to_ipv6_only(policy_etc):
    pillar = dict(SINGLE, trusted_subnets=["192.168.1.0/24", "2001:db8::/64"])
    v6_lan = "allow any any ::/0 any 2001:db8::/64"
    write_rules(policy_etc, [SSH, LAN, ZIMBRA], [SSH6, v6_lan, ZIMBRA6])
    assert ufw.plan_rules(policy_of(pillar), read(policy_etc)).steps == []
    write_rules(
        policy_etc,
        [SSH, ZIMBRA, v6_lan.replace("::/0", "0.0.0.0/0")],
        [SSH6, LAN.replace("0.0.0.0/0", "::/0"), ZIMBRA6],
    )
    # each subnet's rule sits in the other family's file only: both are missing
    assert ufw.plan_rules(policy_of(pillar), read(policy_etc)).changes["added"] == [
        "allow from 192.168.1.0/24",
        "allow from 2001:db8::/64",
    ]
    assert ufw.families(("allow", "from", "10.77.0.1", "port", "4505,4506", "proto", "tcp")) == ("IPv4",)
    assert ufw.families(("allow", "from", "2001:db8::1")) == ("IPv6",)
    assert ufw.families(("allow", "Zimbra")) == ("IPv4", "IPv6")
    assert ufw.families(("allow", "Zimbra"), ipv6=False) == ("IPv4",)


def test_with_ipv6_off_a_rule_from_anyone_needs_its_ipv4_copy_only(policy_etc):
    (policy_etc / "default-ufw").write_text('IPV6=no\nDEFAULT_INPUT_POLICY="DROP"\n')
    write_rules(policy_etc, [SSH, LAN, ZIMBRA], [])
    snap = read(policy_etc)
    assert snap.ipv6 is False
    assert ufw.plan_rules(policy_of(SINGLE), snap).steps == []


def test_a_copy_of_ours_in_one_family_and_a_hand_made_one_in_the_other_is_adopted(policy_etc):
    (policy_etc / "user.rules").write_text(tuple_line(SSH) + tuple_line(LAN) + tuple_line(ZIMBRA))
    (policy_etc / "user6.rules").write_text(f"### tuple ### {SSH6} in\n" + tuple_line(ZIMBRA6))
    plan = ufw.plan_rules(policy_of(SINGLE), read(policy_etc))
    assert plan.changes == {"added": ["allow 22/tcp (IPv6)"]}  # ufw gives the IPv6 copy our comment


def test_the_lockout_check_wants_the_ipv4_ssh_copy(policy_etc, monkeypatch):
    monkeypatch.setattr(ufw, "ufw_python", lambda program: None)
    write_rules(policy_etc, [LAN, ZIMBRA], [SSH6, ZIMBRA6])
    snap = read(policy_etc)._replace(active=False)
    plan = ufw.plan_firewall(policy_of(SINGLE), snap)
    assert plan.steps[0].action == "check"
    ran = []
    with pytest.raises(ufw.ApplyFailed) as info:
        ufw.apply(plan.steps, lambda argv, stdin=None: ran.append(argv) or (0, "", ""))
    assert "(missing: allow 22/tcp (IPv4)); apply the zimbra_fw rules first" in info.value.strerror
    assert ran == []
    write_rules(policy_etc, [SSH, LAN, ZIMBRA], [SSH6, ZIMBRA6])
    assert ufw.apply(plan.steps, lambda argv, stdin=None: ran.append(argv) or (0, "", "")) == [
        "check that management access is allowed",
        "ufw --force enable",
    ]
    assert ran == [["ufw", "--force", "enable"]]


def test_the_lockout_check_fails_when_one_of_two_ssh_sources_lost_its_rule(policy_etc, monkeypatch):
    monkeypatch.setattr(ufw, "ufw_python", lambda program: None)
    policy = policy_of(dict(SINGLE, ssh={"from": ["10.0.0.0/8", "172.16.0.0/12"]}))
    ssh_rules = [words for words in ufw.desired_rules(policy) if words[-3:] == ("22", "proto", "tcp")]
    assert ssh_rules == [
        ("allow", "from", "10.0.0.0/8", "to", "any", "port", "22", "proto", "tcp"),
        ("allow", "from", "172.16.0.0/12", "to", "any", "port", "22", "proto", "tcp"),
    ]
    assert ufw.plan_firewall(policy, read(policy_etc)._replace(active=False)).steps[0].args == tuple(ssh_rules)
    first, second = (f"allow tcp 22 0.0.0.0/0 any {net}" for net in ("10.0.0.0/8", "172.16.0.0/12"))
    write_rules(policy_etc, [first, LAN, ZIMBRA], [ZIMBRA6])
    plan = ufw.plan_firewall(policy, read(policy_etc)._replace(active=False))
    with pytest.raises(ufw.ApplyFailed, match=r"missing: allow from 172\.16\.0\.0/12 to any port 22 proto tcp\)"):
        ufw.apply(plan.steps, lambda argv, stdin=None: (0, "", ""))
    write_rules(policy_etc, [first, second, LAN, ZIMBRA], [ZIMBRA6])
    assert len(ufw.apply(plan.steps, lambda argv, stdin=None: (0, "", ""))) == len(plan.steps)


def test_rules_files_are_read_per_family():
    v4 = tuple_line(SSH) + tuple_line(LAN)
    v6 = tuple_line(SSH6)
    rules, copies = ufw_files.read_rules([v4, v6])
    assert rules == [(("allow", "22/tcp"), "zimbra_fw"), (("allow", "from", "192.168.1.0/24"), "zimbra_fw")]
    assert sorted(copies[rules[0]]) == ["IPv4", "IPv6"]
    assert list(copies[rules[1]]) == ["IPv4"]
    assert ufw_files.read_rules([None, v6]) == ([rules[0]], {rules[0]: {"IPv6": copies[rules[0]]["IPv6"]}})
    assert ufw_files.read_rules([v4]) == (
        rules,
        {rules[0]: {"IPv4": copies[rules[0]]["IPv4"]}, rules[1]: copies[rules[1]]},
    )


class CountedWords(tuple):
    """A rule's words that count how often they are compared: a list scan per
    rule compares each with every rule (N^2), a set lookup only on a hash match."""

    compared = 0

    def __eq__(self, other):
        CountedWords.compared += 1
        return tuple.__eq__(self, other)

    __hash__ = tuple.__hash__


def test_planning_is_linear_in_the_rules():
    """8,000 managed rules, as many wanted: a set lookup per rule, not a list scan
    (the benchmark times it; this counts the comparisons)."""
    addresses = [f"10.{i // 250}.{i % 250}.1" for i in range(8000)]
    accesses = [
        policies.Access(policies.TRUSTED, ipaddress.ip_network(address), None, None, ()) for address in addresses
    ]
    policy = policy_of(SINGLE)._replace(accesses=accesses)
    current = [(CountedWords(("allow", "from", address)), "zimbra_fw") for address in reversed(addresses[1:])]
    snap = ufw.Snapshot(current, None, {}, True, "deny")
    CountedWords.compared = 0
    plan = ufw.plan_rules(policy, snap)
    assert plan.changes == {"added": ["allow from 10.0.0.1"]}
    assert CountedWords.compared < 5 * len(addresses), CountedWords.compared


def test_a_stale_app_rule_is_updated_though_the_profile_file_is_right(policy_etc):
    """The live allow Zimbra still opens 7071 after admin_subnets moved it to
    Zimbra-admin (ufw app update failed after the file was written)."""
    pillar = dict(SINGLE, admin_subnets=["10.9.0.0/24"])
    policy = policy_of(pillar)
    (policy_etc / "applications.d" / "zimbra").write_text(ufw.profile_text(policy))
    admin = "allow tcp 7071,9071 0.0.0.0/0 any 10.9.0.0/24 Zimbra-admin -"
    write_rules(policy_etc, [SSH, LAN, admin, ZIMBRA], [SSH6, ZIMBRA6])
    snap = read(policy_etc)
    assert ufw.plan_rules(policy, snap).steps == []
    plan = ufw.plan_profile(policy, snap)
    assert [step.args for step in plan.steps] == [("app", "update", "Zimbra")]
    wanted = ZIMBRA_PORTS.replace(",7071,9071", "") + "/tcp"
    assert plan.changes == {
        "rules updated": {
            "allow Zimbra (IPv4)": {"old": ZIMBRA_PORTS + "/tcp", "new": wanted},
            "allow Zimbra (IPv6)": {"old": ZIMBRA_PORTS + "/tcp", "new": wanted},
        }
    }


def test_an_app_rule_split_over_several_tuples_counts_all_of_them(policy_etc):
    ports = [f"{p}/tcp" for p in range(20000, 20020)] + ["1194/udp"]
    policy = policy_of({"roles": ["snmp"], "extra_ports": ports})
    (policy_etc / "applications.d" / "zimbra").write_text(ufw.profile_text(policy))
    first = ",".join(str(p) for p in range(20000, 20015))
    tuples = [
        f"allow tcp {first} 0.0.0.0/0 any 0.0.0.0/0 Zimbra -",
        "allow tcp 20015,20016,20017,20018,20019 0.0.0.0/0 any 0.0.0.0/0 Zimbra -",
        "allow udp 1194 0.0.0.0/0 any 0.0.0.0/0 Zimbra -",
    ]
    write_rules(policy_etc, [SSH, *tuples], [SSH6, *(t.replace("0.0.0.0/0", "::/0") for t in tuples)])
    snap = read(policy_etc)
    assert ufw.plan_profile(policy, snap) == ufw.Plan({}, [], None)
    write_rules(policy_etc, [SSH, *tuples[:2]], [SSH6, *(t.replace("0.0.0.0/0", "::/0") for t in tuples)])
    plan = ufw.plan_profile(policy, read(policy_etc))
    assert [step.args for step in plan.steps] == [("app", "update", "Zimbra")]
    assert plan.changes["rules updated"] == {
        "allow Zimbra (IPv4)": {
            "old": f"{first}/tcp|20015,20016,20017,20018,20019/tcp",
            "new": ufw.profiles(policy)["profiles"]["Zimbra"],
        },
    }
    assert plan.changes["rules updated"]["allow Zimbra (IPv4)"]["new"].endswith("/tcp|1194/udp")


def test_a_changed_profile_is_reported_as_ports_not_again_as_stale_rules(policy_etc):
    write_rules(policy_etc, [SSH, LAN, ZIMBRA], [SSH6, ZIMBRA6])
    plan = ufw.plan_profile(policy_of(dict(SINGLE, exclude_ports=[5222, 5223])), read(policy_etc))
    assert [step.action for step in plan.steps] == ["write", "ufw"]
    assert plan.steps[1].args == ("app", "update", "Zimbra")
    assert sorted(plan.changes) == ["ports"]


def test_the_audit_reads_an_app_rules_ports_from_its_tuples_not_its_profile(policy_etc):
    """The profile file says Zimbra has no 7071; the live rule still opens it."""
    policy = policy_of(dict(SINGLE, admin_subnets=["10.9.0.0/24"]))
    (policy_etc / "applications.d" / "zimbra").write_text(ufw.profile_text(policy))
    write_rules(policy_etc, [SSH, ZIMBRA], [SSH6, ZIMBRA6])
    snap = read(policy_etc)
    assert PortSpec(7071, 7071, "tcp") not in snap.app_profiles["Zimbra"]
    rules = ufw.access_rules(snap)
    listener = audit.Listener(ipaddress.ip_address("0.0.0.0"), 7071, "tcp")
    assert audit.reachability(listener, rules, True, "deny") == "anyone"
    assert audit.reachability(listener._replace(port=7072), rules, True, "deny") == "nobody"


def test_an_app_rule_of_a_hand_made_snapshot_opens_its_profiles_ports():
    profiles = {"Zimbra": [PortSpec(25, 25, "tcp")]}
    snap = ufw.Snapshot([(("allow", "Zimbra"), "zimbra_fw"), (("allow", "22/tcp"), None)], None, profiles, True, "deny")
    assert ufw.access_rules(snap) == [
        audit.Rule("allow", "any", [PortSpec(25, 25, "tcp")]),
        audit.Rule("allow", "any", [PortSpec(22, 22, "tcp")]),
    ]


def test_a_tuple_for_any_protocol_opens_its_ports_over_tcp_and_udp():
    rule = (("allow", "Dns"), None)
    line = "### tuple ### allow any 53 0.0.0.0/0 any 0.0.0.0/0 Dns - in\n"
    assert ufw_files.read_rules([line]) == (
        [rule],
        {rule: {"IPv4": {PortSpec(53, 53, "tcp"), PortSpec(53, 53, "udp")}}},
    )


def test_the_audit_of_an_app_rule_with_its_tuples_as_the_profile_says(policy_etc):
    write_rules(policy_etc, [SSH, "allow tcp 7071 0.0.0.0/0 any 10.9.0.0/24 Zimbra -"], [SSH6])
    rule = ufw.access_rules(read(policy_etc))[1]
    assert rule == audit.Rule("allow", "10.9.0.0/24", [PortSpec(7071, 7071, "tcp")])


SALT_MASTER = policies.Access(
    policies.SALT_MASTER,
    ipaddress.ip_network("10.77.0.1/32"),
    (PortSpec(32768, 60999, "tcp"),),
    None,
    (4505, 4506),
)


SALT_WORDS = ("allow", "from", "10.77.0.1", "port", "4505,4506", "to", "any", "port", "32768:60999", "proto", "tcp")


def test_the_salt_master_rule_names_the_minions_ports_too():
    assert ufw.rule_words(SALT_MASTER) == SALT_WORDS
    two = SALT_MASTER._replace(ports=(PortSpec(32768, 60999, "tcp"), PortSpec(61000, 61000, "tcp")))
    assert ufw.rule_words(two)[-3:] == ("32768:60999,61000", "proto", "tcp")
    without = SALT_MASTER._replace(ports=None)
    assert ufw.rule_words(without) == ("allow", "from", "10.77.0.1", "port", "4505,4506", "proto", "tcp")


UFW_PYTHON = "/usr/bin/python3"


# ufw's parser, then the tuple line ufw's backend writes for the rule (no firewall touched)
PARSE = """
import gettext, json, sys
gettext.install("ufw")
import ufw.frontend
lines = []
for words in json.load(sys.stdin):
    parsed = ufw.frontend.parse_command(["ufw", *words])
    rule = parsed.data["rule"]
    rule.normalize()
    lines.append("### tuple ### %s %s %s %s %s %s %s" % (
        rule.action, rule.protocol, rule.dport, rule.dst, rule.sport, rule.src, rule.direction))
print(json.dumps(lines))
"""


def ufw_tuple_lines(rules):
    out = subprocess.run(
        [UFW_PYTHON, "-c", PARSE], input=json.dumps(rules), capture_output=True, text=True, check=False, timeout=60
    )
    if out.returncode != 0 and "No module named 'ufw'" in out.stderr:
        pytest.skip("ufw's Python package is not installed")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_ufw_parses_the_salt_master_rule_and_reads_it_back_the_same():
    policy = policy_of(dict(SINGLE, ssh={"from": ["10.0.0.0/8"]}))
    rules = [SALT_WORDS, *(words for words in ufw.desired_rules(policy) if "Zimbra" not in words)]
    lines = ufw_tuple_lines([list(words) for words in rules])
    assert lines[0] == "### tuple ### allow tcp 32768:60999 0.0.0.0/0 4505,4506 10.77.0.1 in"
    assert [words for words, _ in ufw_files.rules_from_files(["\n".join(lines)])] == rules


def test_profile_text_single_server():
    text = ufw.profile_text(policy_of(SINGLE))
    assert "[Zimbra]\n" in text
    assert "title=Zimbra Collaboration Server\n" in text
    assert text.endswith("ports=25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071/tcp\n")
    assert list(ufw_files.profile_file_ports(text)) == ["Zimbra"]


def test_no_public_port_means_no_profile():
    policy = policy_of({"roles": ["ldap"], "trusted_subnets": ["10.0.0.0/8"]})
    assert ufw.profile_text(policy) is None
    assert ("allow", "Zimbra") not in ufw.desired_rules(policy)


def test_desired_rules_management_first():
    policy = policy_of(
        dict(SINGLE, trusted_subnets=["2001:DB8::/64", "192.168.1.0/24", "10.0.0.5"], ssh={"from": ["10.0.0.0/8"]})
    )
    assert ufw.desired_rules(policy) == [
        ("allow", "from", "10.0.0.0/8", "to", "any", "port", "22", "proto", "tcp"),
        ("allow", "from", "10.0.0.5"),
        ("allow", "from", "192.168.1.0/24"),
        ("allow", "from", "2001:db8::/64"),
        ("allow", "Zimbra"),
    ]


def test_managed_and_other_rules():
    snapshot = ufw.Snapshot(ufw_files.rules_from_files([EVERY_FORM_RULES, EVERY_FORM_RULES6]), None, {}, None, None)
    managed, other = ufw.managed_rules(snapshot), ufw.other_rules(snapshot)
    assert managed == [
        ("allow", "22/tcp"),
        ("allow", "from", "192.168.1.0/24"),
        ("allow", "Zimbra"),
        ("allow", "from", "10.1.0.5", "to", "any", "app", "Zimbra-mta"),
        ("allow", "from", "2001:db8::1"),
    ]
    assert other[0] == ("allow", "8000")
    assert other[1][-2:] == ("comment", "someone else")


COMMANDS = [["allow", "22/tcp"], ["allow", "from", "10.0.0.0/8"], ["allow", "Zimbra"]]


def test_batch_outcome_all_applied():
    report = '{"done": 0}\n{"done": 1}\n{"done": 2}\n'
    assert ufw.batch_outcome(COMMANDS, report, 0) == (3, None)


def test_batch_outcome_names_the_failed_command():
    report = '{"done": 0}\n{"failed": 1, "error": "ERROR: Bad source address"}\n'
    assert ufw.batch_outcome(COMMANDS, report, 1) == (
        1,
        "'ufw allow from 10.0.0.0/8' failed: ERROR: Bad source address",
    )


def test_batch_outcome_of_a_crash_counts_what_was_reported():
    applied, error = ufw.batch_outcome(COMMANDS, '{"done": 0}\nnot json\n', -9, "Killed")
    assert applied == 1
    assert error == "'ufw allow from 10.0.0.0/8' failed: exit -9: Killed"


def test_batch_outcome_without_ufw_library_asks_for_one_by_one():
    assert ufw.batch_outcome(COMMANDS, '{"unavailable": "No module named ufw"}\n', 3) is None


def test_consecutive_ufw_steps_form_one_batch():
    steps = [
        ufw.Step("ufw", ("delete", "allow", "Old"), ""),
        ufw.Step("write", ("x",), ""),
        ufw.Step("ufw", ("app", "update", "A"), ""),
        ufw.Step("ufw", ("app", "update", "B"), ""),
        ufw.Step("check", (), ""),
        ufw.Step("ufw", ("--force", "enable"), ""),
    ]
    assert [len(batch) for batch in ufw.step_batches(steps)] == [1, 1, 2, 1, 1]
    assert [step for batch in ufw.step_batches(steps) for step in batch] == steps


def test_ufw_python_from_the_programs_first_line(tmp_path):
    python = tmp_path / "python3"
    python.write_text("")
    python.chmod(0o755)
    program = tmp_path / "ufw"
    program.write_text(f"#! {python}\nimport ufw\n")
    assert ufw.ufw_python(str(program)) == str(python)
    program.write_text("#!/bin/sh\nexec true\n")
    assert ufw.ufw_python(str(program)) is None
    assert ufw.ufw_python(str(tmp_path / "missing")) is None
    assert ufw.ufw_python(None) is None


def test_batch_outcome_edges():
    # nothing reported, no stderr: the first command is the one that failed
    assert ufw.batch_outcome(COMMANDS, "", 1) == (0, "'ufw allow 22/tcp' failed: exit 1: ")
    assert ufw.batch_outcome(COMMANDS, "", 1, None) == (0, "'ufw allow 22/tcp' failed: exit 1: ")
    # a line that is not JSON does not hide the lines after it
    report = 'ufw says hello\n{"done": 0}\n{"done": 1}\n{"done": 2}\n'
    assert ufw.batch_outcome(COMMANDS, report, 0) == (3, None)


CLUSTER_PEERS = [
    {"name": "ldap", "addresses": ["10.0.0.11"], "roles": ["ldap"]},
    {"name": "mta", "addresses": ["10.0.0.12", "2001:db8::12"], "roles": ["mta"]},
    {"name": "mailbox", "addresses": ["10.0.0.13"], "roles": ["mailbox", "memcached"]},
    {"name": "proxy", "addresses": ["10.0.0.14"], "roles": ["proxy"]},
]


def cluster_node(name, **pillar):
    """The policy of one node of a 4-node cluster (ldap, mta, mailbox + memcached, proxy)."""
    roles = next(p["roles"] for p in CLUSTER_PEERS if p["name"] == name)
    peers = [p for p in CLUSTER_PEERS if p["name"] != name]
    return policy_of(dict({"roles": roles, "cluster": {"peers": peers}}, **pillar))


def test_one_rule_per_peer_address_and_profile():
    rules = ufw.desired_rules(cluster_node("ldap"))
    peer_rules = [r for r in rules if "app" in r]
    assert peer_rules == [
        ("allow", "from", "10.0.0.13", "to", "any", "app", "Zimbra-all"),
        ("allow", "from", "10.0.0.13", "to", "any", "app", "Zimbra-mailbox"),
        ("allow", "from", "10.0.0.12", "to", "any", "app", "Zimbra-all"),
        ("allow", "from", "2001:db8::12", "to", "any", "app", "Zimbra-all"),
        ("allow", "from", "10.0.0.14", "to", "any", "app", "Zimbra-all"),
    ]
    assert ("allow", "Zimbra") not in rules  # LDAP has nothing public


def test_profile_text_has_a_section_per_profile():
    text = ufw.profile_text(cluster_node("mailbox"))
    assert list(ufw_files.profile_file_ports(text)) == ["Zimbra", "Zimbra-mta", "Zimbra-proxy"]
    assert ufw_files.profile_file_ports(text)["Zimbra-mta"] == "7025,7073,8443/tcp"


def test_only_from_takes_a_range_and_udp():
    policy = policy_of(
        {
            "roles": ["snmp"],
            "extra_ports": ["6000:6010/tcp", "1194/udp"],
            "only_from": {"6000:6010/tcp": ["10.1.0.0/16"], "1194/udp": ["10.2.0.0/16"]},
        }
    )
    assert ufw.desired_rules(policy)[1:] == [
        ("allow", "from", "10.2.0.0/16", "to", "any", "port", "1194", "proto", "udp"),
        ("allow", "from", "10.1.0.0/16", "to", "any", "port", "6000:6010", "proto", "tcp"),
    ]
    assert "Zimbra" not in policy.groups  # nothing left for anyone


def test_ssh_limit_rate_limits_the_management_rules_and_the_check_expects_them():
    policy = policy_of({"roles": ["mta"], "ssh": {"limit": True, "from": ["any", "10.0.0.0/8"]}})
    assert ufw.desired_rules(policy)[0] == ("limit", "22/tcp")
    policy = policy_of({"roles": ["mta"], "ssh": {"limit": True, "from": ["10.0.0.0/8"]}})
    rule = ("limit", "from", "10.0.0.0/8", "to", "any", "port", "22", "proto", "tcp")
    assert ufw.desired_rules(policy)[0] == rule
    plan = ufw.plan_firewall(policy, ufw.Snapshot([], None, {}, False, "deny"))
    assert plan.steps[0].args == (rule,)
    assert cfg.parse_config({"roles": ["mta"]}).ssh_limit is False


def test_own_rules_are_the_rules_marked_ours_as_the_audit_reads_them():
    policy = policy_of({"roles": ["mta"], "ssh": {"port": 2222, "from": ["10.9.0.0/16"]}})
    snap = snapshot(managed=ufw.desired_rules(policy), other=[("allow", "2223/tcp")])
    assert audit.Rule("allow", "10.9.0.0/16", [PortSpec(2222, 2222, "tcp")]) in ufw.own_rules(snap)
    assert all(rule.ports != [PortSpec(2223, 2223, "tcp")] for rule in ufw.own_rules(snap))


def test_every_change_ufw_plans_is_said_in_words_done_or_to_be_done():
    changes = {
        "ports": {"Zimbra-mta": {"old": "25/tcp", "new": "25,465/tcp"}},
        "file": {"old": "[Zimbra]", "new": "[Zimbra-mta]"},
        "rules updated": ["allow 25/tcp", "allow 465/tcp"],
        "rules removed": ["allow from 10.0.0.5 to any app Zimbra-old"],
        "added": ["allow 25/tcp", "allow 465/tcp", "allow 587/tcp"],
        "removed": ["allow 11211/tcp"],
        "default incoming": {"old": "allow", "new": "deny"},
        "active": {"old": False, "new": True},
    }
    assert ufw.describe(changes, test=False) == (
        "Updated profile Zimbra-mta; rewrote the profile file; updated 2 rules to their profile's ports; "
        "removed 1 rule of a retired profile; added 3 rules; removed 1 rule; set default incoming to deny; "
        "enabled the firewall"
    )
    assert ufw.describe(changes, test=True) == (
        "Profile Zimbra-mta would be updated; the profile file would be rewritten; 2 rules would be updated; "
        "1 rule of a retired profile would be removed; 3 rules would be added; 1 rule would be removed; "
        "default incoming would be set to deny; the firewall would be enabled"
    )


@pytest.fixture
def rollback_files(ufw_files_in, monkeypatch):
    """ufw's files a rollback saves (ufw_files_in's, and ufw.conf): {name: path}."""
    monkeypatch.setattr(ufw, "CONF_PATH", str(ufw_files_in / "ufw.conf"))
    paths = {name: ufw_files_in / name for name in ("user.rules", "user6.rules", "zimbra", "default-ufw", "ufw.conf")}
    for name, path in paths.items():
        path.write_text(f"{name} as saved\n")
    return paths


@pytest.mark.parametrize(
    "case",
    [
        # only rules changed on a running ufw: its chains reloaded from the files, one swap a family
        (True, True, ["user.rules"], True, [["iptables-restore", "--noflush", "user.rules"],
                                            ["ip6tables-restore", "--noflush", "user6.rules"]]),
        (True, True, ["zimbra"], False, [["iptables-restore", "--noflush", "user.rules"]]),
        # its defaults or its ufw.conf changed: ufw reloads, enables or disables as it was
        (True, True, ["default-ufw"], True, [["ufw", "reload"]]),
        (True, True, ["ufw.conf"], True, [["ufw", "reload"]]),
        (True, False, ["user.rules"], True, [["ufw", "--force", "enable"]]),
        (False, True, ["user.rules"], True, [["ufw", "--force", "disable"]]),
        (False, False, ["user.rules"], True, []),
    ],
)  # fmt: skip
def test_a_rollback_puts_ufw_back_as_it_was_saved(rollback_files, monkeypatch, case):
    was_active, is_active, changed, ipv6, commands = case
    active, ran = [was_active], []

    def run(argv, stdin=None):
        ran.append([os.path.basename(word) if word.startswith("/") else word for word in argv])
        if argv[:2] == ["ufw", "--force"]:  # ufw rewrites ufw.conf as it enables or disables
            rollback_files["ufw.conf"].write_text("rewritten by ufw\n")
        return 0, "", ""

    monkeypatch.setattr(ufw, "_active", lambda given: active[0] if given is run else pytest.fail("another run"))
    monkeypatch.setattr(ufw, "_ipv6_read", lambda: ipv6)

    saved = json.loads(json.dumps(ufw.save(run)))  # as the rollback keeps it
    assert saved["active"] is was_active and sorted(saved["files"]) == sorted(map(str, rollback_files.values()))
    for name in changed:
        rollback_files[name].write_text(f"{name} changed by a run\n")
    active[0] = is_active
    ufw.restore(saved, run)
    assert ran == commands
    assert all(path.read_text() == f"{name} as saved\n" for name, path in rollback_files.items())


def test_a_rollback_writes_only_ufws_own_files(rollback_files, monkeypatch, tmp_path):
    monkeypatch.setattr(ufw, "_active", lambda run: False)
    saved = ufw.save(None)
    elsewhere = str(tmp_path / "elsewhere")
    saved["files"][elsewhere] = saved["files"][str(rollback_files["zimbra"])]
    ufw.restore(saved, None)
    assert not os.path.exists(elsewhere)


def test_close_foreign_removes_widening_rules_as_well_as_stale_ones():
    """A stale rule of ours and the foreign rules that widen access all go,
    ours first; an application rule opens its profile's ports, or what its
    tuples in the rules files open when they were read."""
    policy = policy_of(dict(SINGLE, close_foreign=True))
    stale = ("allow", "from", "172.16.0.0/12")
    memcached, cache, kept = ("allow", "Memcached"), ("allow", "Cache"), ("allow", "8448/tcp")
    profiles = {"Memcached": [PortSpec(11211, 11211, "tcp")], "Cache": [PortSpec(8448, 8448, "tcp")]}
    current = snapshot([*SEED_RULES, stale], [("allow", "11211/tcp"), memcached, cache, kept], active=True)
    by_profile = current._replace(app_profiles=profiles)
    plan = ufw.plan_rules(policy, by_profile)
    assert ufw_args(plan) == [("delete", *stale), ("delete", "allow", "11211/tcp"), ("delete", *memcached)]
    assert plan.changes == {"removed": ["allow from 172.16.0.0/12", "allow 11211/tcp", "allow Memcached"]}
    live = {rule: dict.fromkeys(ufw_files.FAMILIES, frozenset()) for rule in by_profile.rules}
    live[(memcached, None)] = {"IPv4": frozenset([PortSpec(8448, 8448, "tcp")])}  # what ufw wrote for it
    live[(cache, None)] = {"IPv4": frozenset([PortSpec(11211, 11211, "udp")])}
    plan = ufw.plan_rules(policy, by_profile._replace(copies=live))
    assert ufw_args(plan) == [("delete", *stale), ("delete", "allow", "11211/tcp"), ("delete", *cache)]
