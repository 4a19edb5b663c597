"""The ufw backend's reading and writing, on files in a temporary directory
and with a recording command runner: no ufw runs here."""

import glob
import importlib
import json
import os
import stat

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
from conftest import REPO

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


class Runner:
    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __call__(self, argv, stdin=None):
        self.calls.append((tuple(argv), stdin))
        return self.answers[tuple(argv[:3])]


def test_snapshot_reads_the_files_and_one_status(etc):
    runner = Runner({LIST: (0, CHAIN, "")})
    snap = ufw.read_snapshot(runner)
    assert runner.calls == [(("iptables", "-n", "-L", "ufw-user-input"), None)]
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
    runner = Runner({})
    snap = ufw.read_snapshot(runner, live=False)
    assert runner.calls == [] and snap.active is None and snap.incoming == "deny"  # files only


def test_inactive_ufw_takes_the_default_policy_from_its_config(etc):
    (etc / "default-ufw").write_text('DEFAULT_INPUT_POLICY="ACCEPT"\n')
    snap = ufw.read_snapshot(Runner({LIST: (1, "", "iptables: No chain/target/match by that name.\n")}))
    assert (snap.active, snap.incoming) == (False, "allow")


def test_ipv6_off_leaves_user6_rules_unread_and_is_a_fact(etc):
    assert ufw.ipv6_off() is None
    (etc / "default-ufw").write_text("IPV6=no\n")
    assert ufw.ipv6_off() == "ufw has IPv6 off (IPV6=no in /etc/default/ufw)"
    snap = ufw.read_snapshot(Runner({}), live=False)
    assert ("allow", "from", "2001:db8::/64") not in ufw.managed_rules(snap)


def test_a_failing_status_names_the_command(etc):
    with pytest.raises(ufw.CommandExecutionError, match=r"'iptables -n -L ufw-user-input' failed \(exit 4\): no perm"):
        ufw.read_snapshot(Runner({LIST: (4, "", "no perm\n")}))


def test_missing_ufw_is_said_plainly(etc, monkeypatch):
    monkeypatch.setattr(ufw.salt.utils.path, "which", lambda name: None)
    assert ufw.unavailable() == "ufw is not available on this minion: install the 'ufw' package"
    with pytest.raises(ufw.CommandExecutionError, match="install the 'ufw' package"):
        ufw.read_snapshot(Runner({}))


def test_service_names_cannot_be_profile_names():
    assert ufw.name_taken("smtp") == "is a service name in /etc/services; ufw would take the service, not the profile"
    assert ufw.name_taken("Zimbra") is None


def test_status_and_access_rules(etc):
    snap = ufw.read_snapshot(Runner({LIST: (0, CHAIN, "")}))
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
    ufw.apply([ufw.Step("write", ("[Zimbra]\nports=25/tcp\n",), "write")], Runner({}))
    path = etc / "applications.d" / "zimbra"
    assert path.read_text() == "[Zimbra]\nports=25/tcp\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == [".zimbra_fw-half-written", "openssh-server", "zimbra"]
    assert ufw.apply([ufw.Step("remove", (), "rm"), ufw.Step("remove", (), "rm again")], Runner({})) == [
        "rm",
        "rm again",
    ]
    assert not path.exists()


def test_a_failed_write_leaves_no_temporary_file(etc, monkeypatch):
    def no_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ufw.os, "replace", no_replace)
    with pytest.raises(ufw.ApplyFailed, match=r"step 'write it' failed: disk full\. Already applied: nothing"):
        ufw.apply([ufw.Step("write", ("x",), "write it")], Runner({}))
    assert (etc / "applications.d" / "zimbra").read_text() == PROFILE
    assert sorted(p.name for p in (etc / "applications.d").iterdir()) == [
        ".zimbra_fw-half-written",
        "openssh-server",
        "zimbra",
    ]


def test_an_unknown_step_is_an_error():
    with pytest.raises(ufw.ApplyFailed, match="unknown plan step"):
        ufw.apply([ufw.Step("shell", ("reboot",), "reboot")], Runner({}))


def test_the_batch_runs_with_ufws_python_and_the_commands_on_stdin(etc, monkeypatch, tmp_path):
    python = tmp_path / "python3"
    python.write_text("")
    python.chmod(0o755)
    monkeypatch.setattr(ufw, "ufw_python", lambda program: str(python) if program == "/usr/sbin/ufw" else None)
    runner = Runner({(str(python), "-I", ufw.BATCH_SCRIPT): (0, '{"done": 0}\n{"done": 1}\n', "")})
    steps = [ufw.Step("ufw", ("allow", "22/tcp"), "a"), ufw.Step("ufw", ("app", "update", "Zimbra"), "b")]
    assert ufw.apply(steps, runner) == ["a", "b"]
    ((argv, stdin),) = runner.calls
    assert argv == (str(python), "-I", ufw.BATCH_SCRIPT, "/usr/sbin/ufw")
    assert json.loads(stdin) == [["allow", "22/tcp"], ["app", "update", "Zimbra"]]
    assert os.path.basename(ufw.BATCH_SCRIPT) == "zimbra_fw_ufw_batch.py" and os.path.exists(ufw.BATCH_SCRIPT)


def test_without_the_batch_helper_each_command_runs_alone(etc, monkeypatch):
    monkeypatch.setattr(ufw, "BATCH_SCRIPT", str(etc / "missing.py"))
    monkeypatch.setattr(ufw, "ufw_python", lambda program: "/usr/bin/python3")
    runner = Runner({("ufw", "allow", "22/tcp"): (0, "", ""), ("ufw", "app", "update"): (0, "", "")})
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


HELPER_SCRIPTS = ("zimbra_fw_ufw_batch", "zimbra_fw_firewalld_client")
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
    ufw.apply([ufw.Step("write", ("[Zimbra]\nports=25/tcp\n",), "write")], Runner({}))
    ((src, dst),) = renames
    assert dst == ufw.PROFILE_PATH
    assert os.path.dirname(src) == os.path.dirname(dst)  # a rename within one file system
    assert os.path.basename(src).startswith(".zimbra_fw-")  # hidden: ufw skips it meanwhile


def test_udp_only_service_names_are_taken_too():
    assert ufw.name_taken("tftp") == "is a service name in /etc/services; ufw would take the service, not the profile"


def test_a_failing_command_with_output_on_stdout_or_none():
    with pytest.raises(ufw.CommandExecutionError) as info:
        ufw.read_snapshot(Runner({LIST: (2, "ERROR: on stdout\n", "")}))
    assert info.value.strerror == "'iptables -n -L ufw-user-input' failed (exit 2): ERROR: on stdout"
    with pytest.raises(ufw.CommandExecutionError) as info:
        ufw.read_snapshot(Runner({LIST: (3, "", "")}))
    assert info.value.strerror == "'iptables -n -L ufw-user-input' failed (exit 3): "


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
    runner = Runner({("ufw", "allow", "22/tcp"): (1, "", "ERROR: Bad port\n")})
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
