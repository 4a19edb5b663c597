"""The ufw backend's planners, pure functions of (policy, snapshot), and its
applying of steps with a recording command runner: no ufw runs here."""

import json

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
import zimbra_fw_ufw_files as ufw_files

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


# ---------------------------------------------------------------- rules


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


# ---------------------------------------------------------------- firewall


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


# ---------------------------------------------------------------- profile


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


# ---------------------------------------------------------------- applying


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
