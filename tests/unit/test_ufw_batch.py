"""zimbra_fw_ufw_batch, the helper run with ufw's own Python.

Its logic with a fake ufw package that records what the batch asks of it:
rules files written once, per family, after the last rule (or before a command
that is not a rule), reports only for what is written, one restore per family on
a running firewall, the files put back (mode and owner kept) when a restore
fails, each rule normalized once, ufw's lock held throughout. And RuleIndex on a
model of ufw's rule code: ufw's own ``set_rule`` (as in backend_iptables: compare
the rule with each rule, keep, replace, drop or append) runs on the rules that
can match only, and the whole list ends as ufw's full loop would leave it. The
sandbox tests (tests/sandbox/test_sandbox_ufw_batch.py) hold the batch to real ufw."""

import errno
import io
import ipaddress
import json
import os
import stat
import sys
import types

import oracles
import pytest
import zimbra_fw_ufw_batch as batch_module
from zimbra_fw_ufw_batch import RuleFamily, RuleIndex, UfwBatch, match_key

RULE_ACTIONS = ("allow", "deny", "reject", "limit")


class UFWError(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value


class FakeRule:
    normalized = None  # the rules normalize ran on, class-wide (a list per test's subclass)

    def __init__(self, words, position=0):
        self.words, self.position = words, position
        self.src, self.dst, self.dport, self.sport = "any", "any", "any", "any"
        self.v6 = any(":" in word for word in words)
        if "from" in words:
            self.src = words[words.index("from") + 1]

    def dup_rule(self):
        copy = type(self)(self.words, self.position)
        copy.src, copy.dst, copy.dport, copy.sport, copy.v6 = self.src, self.dst, self.dport, self.sport, self.v6
        return copy

    def set_src(self, address):
        words = list(self.words)
        words[words.index("from") + 1] = address
        self.words, self.src = words, address

    def normalize(self):
        type(self).normalized.append(self.words)
        if self.src != "any" and "/" not in self.src:
            self.src += "/128" if self.v6 else "/32"


class FakeBackend:
    def __init__(self, ufw, etc, enabled):
        self.ufw, self.enabled = ufw, enabled
        self.files = {"rules": str(etc / "user.rules"), "rules6": str(etc / "user6.rules")}
        self.iptables_restore = ufw.script("iptables-restore", 0)
        self.ip6tables_restore = ufw.script("ip6tables-restore", 0)
        self.iptables, self.ip6tables = "/sbin/iptables", "/sbin/ip6tables"
        self.profiles = {}
        self.rules, self.rules6 = ["old rule"], ["old rule v6"]
        self.written = 0
        self.caps = None

    def initcaps(self):  # ufw's: one probe a family, the first time capabilities are asked for
        if self.caps is None:
            self.caps = {"4": self.ufw.util.get_netfilter_capabilities(self.iptables)}
            if self.use_ipv6():
                self.caps["6"] = self.ufw.util.get_netfilter_capabilities(self.ip6tables)

    def _chain_cmd(self, chain, args, fail_ok=False):
        self.ufw.calls.append(("chain", chain, *args, fail_ok))
        if (chain in self.ufw.failing_chains or args[0] in self.ufw.failing) and not fail_ok:
            raise UFWError(f"Could not perform '{args}'")

    def update_logging(self, level):  # ufw's, as the sandbox records it: checks, changes
        self.ufw.calls.append(("update_logging", level))
        self._chain_cmd("ufw-after-logging-input", ["-L", "ufw-after-logging-input", "-n"])
        self._chain_cmd("ufw6-user-logging-input", ["-L", "ufw6-user-logging-input", "-n"])
        self._chain_cmd("ufw-after-logging-input", ["-F", "ufw-after-logging-input"])
        self._chain_cmd("ufw6-user-logging-input", ["-D", "ufw6-user-logging-input", "-j", "RETURN"], True)
        if level == "off":
            self._chain_cmd("ufw6-user-logging-input", ["-I", "ufw6-user-logging-input", "-j", "RETURN"])
            return  # at level off, ufw adds no logging rule
        self._chain_cmd(
            "ufw-after-logging-input", ["-A", "ufw-after-logging-input", "-j", "LOG", "--log-prefix", "[UFW BLOCK] "]
        )

    def is_enabled(self):
        return self.enabled

    ipv6 = True

    def use_ipv6(self):
        return self.ipv6

    def _write_rules(self, v6=False):
        self.written += 1
        self.ufw.calls.append(("write", v6))
        with open(self.files["rules6" if v6 else "rules"], "w", encoding="utf-8") as handle:
            handle.write(f"written {self.written}\n")

    def _read_rules(self):
        self.ufw.calls.append(("read rules", list(self.rules), list(self.rules6)))

    # ufw's rule code, which the batch's RuleIndex wraps; the fake frontend applies rules itself.
    def set_rule(self, rule, allow_reload=True):
        raise AssertionError("not called by the fake frontend")

    get_app_rules_from_system = get_app_rules_from_template = get_rules_count = set_rule


class FakeFrontend:
    def __init__(self, ufw, interactive):
        assert interactive is False
        ufw.calls.append("frontend")
        self.ufw, self.backend = ufw, ufw.backend

    def do_action(self, action, rule, iptype, force):
        running = self.backend.is_enabled()
        self.ufw.calls.append(("do_action", action, rule.words if rule else rule, iptype, force, running))
        if rule and "FAIL" in rule.words:
            raise UFWError("bad rule")
        if rule and "CRASH" in rule.words:
            sys.stderr.write("Traceback: ufw crashed\n")
            raise RuntimeError("crash")
        if rule and "BYTES" in rule.words:  # ufw writes bytes to sys.stderr.buffer
            sys.stderr.buffer.write(b"bad \xff byte\n")
            raise RuntimeError("crash")
        if rule and "SURROGATE" in rule.words:
            sys.stderr.write("bad \udcff char\n")
            raise RuntimeError("crash")
        if action == "enable":  # ufw starts its chains, then probes as it loads its logging rules
            self.ufw.calls.append(("start",))
            self.backend.enabled = True
            self.backend.initcaps()
        if action in RULE_ACTIONS:  # as ufw does: each rule rewrites its family's rules file
            rule.normalize()
            self.backend._write_rules(rule.v6)
        elif running:
            self.backend._write_rules(False)  # e.g. default: ufw rewrites and reloads

    def do_application_action(self, action, name):
        self.ufw.calls.append(("app", action, name, self.backend.is_enabled()))
        self.backend._write_rules(False)
        self.backend._write_rules(True)


def parse_command(argv, rule_class):
    args = argv[1:]
    if args[:1] == ["app"]:
        return types.SimpleNamespace(action=args[1], data={"type": "app", "name": args[2]}, force=False, dryrun=False)
    words = args[1:] if args[:1] == ["delete"] else args
    position = 0
    if args[:1] == ["insert"]:
        position, words = int(args[1]), args[2:]
    if words[:1] and words[0] in RULE_ACTIONS:
        rule = rule_class(words, position)
        iptype = "v6" if rule.v6 else "v4" if "from" in words else "both"
        return types.SimpleNamespace(
            action=words[0], data={"type": "rule", "rule": rule, "iptype": iptype}, force=False, dryrun=False
        )
    force = args[:1] == ["--force"]
    return types.SimpleNamespace(action="-".join(args[1:] if force else args), data={}, force=force)


class ParserResponse(types.SimpleNamespace):
    def __init__(self, action):
        super().__init__(action=action, dryrun=False, force=False, data={})


@pytest.fixture
def ufw(tmp_path, monkeypatch):
    """A fake ufw package (ufw, ufw.common, ufw.frontend, ufw.util) recording calls, its rules files mode 0640."""
    etc = tmp_path / "etc"
    etc.mkdir()
    for name in ("user.rules", "user6.rules"):
        (etc / name).write_text(f"old {name}\n")
        (etc / name).chmod(0o640)
    package = types.ModuleType("ufw")
    package.calls = []
    package.log = tmp_path / "restores.log"

    def script(name, code):
        path = tmp_path / f"{name}-{code}"
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> {package.log}\necho "{name} says no" >&2\nexit {code}\n')
        path.chmod(0o755)
        return str(path)

    package.script = script
    rule_class = type("UFWRule", (FakeRule,), {"normalized": []})
    package.common = types.SimpleNamespace(UFWRule=rule_class, UFWError=UFWError, programName="ufw", state_dir="/x")
    package.frontend = types.SimpleNamespace(
        UFWFrontend=lambda interactive: FakeFrontend(package, interactive),
        parse_command=lambda argv: parse_command(argv, rule_class),
    )
    package.parser = types.SimpleNamespace(UFWParserResponse=ParserResponse)
    package.backend_iptables = types.SimpleNamespace(re=None)
    package.util = types.SimpleNamespace(
        valid_address=lambda address, version: version == "6" and ":" in address,
        supported_protocols=["tcp", "udp"],
        normalize_address=lambda address, v6: (address, False),
        human_sort=lambda ports: ports.sort(),
        create_lock=lambda lockfile: package.calls.append(("lock", lockfile)) or "LOCK",
        cmd=lambda args: (
            package.calls.append(("cmd", *args)) or ((1, "gone") if args[1] in package.failing else (0, ""))
        ),
        get_netfilter_capabilities=lambda exe=None, do_checks=True: probe_capabilities(package, exe, do_checks),
        release_lock=lambda lock: package.calls.append(("unlock", lock)),
    )
    package.failing_chains, package.failing = set(), set()  # chains, iptables options that fail
    package.backend = FakeBackend(package, etc, enabled=False)
    package.etc = etc
    for name in ("ufw", "ufw.common", "ufw.frontend", "ufw.parser", "ufw.util"):
        monkeypatch.setitem(sys.modules, name, package if name == "ufw" else getattr(package, name[4:]))
    return package


def probe_capabilities(ufw, exe, do_checks):
    """ufw's probe through ``ufw.util.cmd``: a chain, a rule a capability, flushed and deleted."""
    ufw.calls.append(("probe", exe, do_checks))
    chain = "ufw-caps-test1234"
    ufw.util.cmd([exe, "-N", chain])
    found = [name for name in ("recent-set", "recent-update") if ufw.util.cmd([exe, "-A", chain, "-m", name])[0] == 0]
    ufw.util.cmd([exe, "-F", chain])
    ufw.util.cmd([exe, "-X", chain])
    return found


def restores(ufw):
    return ufw.log.read_text().splitlines() if ufw.log.exists() else []


def reports(report):
    return [json.loads(line) for line in report.getvalue().splitlines()]


def run_batch(ufw, commands):
    """The batch as main() drives it, without main's process plumbing."""
    report = io.StringIO()
    batch = UfwBatch(ufw, report)
    for argv in commands:
        batch.run(argv)
    batch.write_pending()
    return batch, reports(report)


class ProcessOs:
    """os as the batch's module sees it in main(): fd 1 (the report) is a text buffer."""

    def __init__(self, ufw):
        self.ufw, self.report = ufw, io.StringIO()

    def __getattr__(self, name):
        return getattr(os, name)

    def dup(self, fd):
        assert fd == 1
        return "report fd"

    def fdopen(self, fd, mode):
        assert (fd, mode) == ("report fd", "w")
        return self.report

    def dup2(self, old, new):
        self.ufw.calls.append(("dup2", old, new))

    def getuid(self):
        return self.ufw.uid if hasattr(self.ufw, "uid") else os.getuid()


def run_main(ufw, commands, monkeypatch):
    """UfwBatch.main() with the commands on stdin: (JSON reports, exit code, what went to stderr)."""
    fake_os = ProcessOs(ufw)
    monkeypatch.setattr(batch_module, "os", fake_os)
    monkeypatch.setattr(sys, "argv", ["zimbra_fw_ufw_batch.py", "/usr/sbin/ufw"])
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(commands)))
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    code = 0
    try:
        UfwBatch.main()
    except SystemExit as exc:
        code = exc.code
    return reports(fake_os.report), code, stderr.getvalue()


def calls(ufw, kind):
    return [call for call in ufw.calls if isinstance(call, tuple) and call[0] == kind]


def test_an_inactive_firewalls_rules_files_are_written_once_per_family_after_the_last_rule(ufw):
    commands = [["allow", "22/tcp"], ["allow", "from", "10.0.0.1"], ["allow", "from", "2001:db8::1"]]
    _, report = run_batch(ufw, commands)
    assert calls(ufw, "write") == [("write", False), ("write", True)]
    assert report == [{"done": 0}, {"done": 1}, {"done": 2}]
    assert [call[-1] for call in calls(ufw, "do_action")] == [False, False, False]
    assert restores(ufw) == []  # nothing is running: nothing to load


def test_reports_come_only_once_the_rules_are_written(ufw):
    report = io.StringIO()
    batch = UfwBatch(ufw, report)
    batch.run(["allow", "22/tcp"])
    batch.run(["allow", "from", "10.0.0.1"])
    assert report.getvalue() == "" and calls(ufw, "write") == []
    assert batch.pending == {False}
    batch.write_pending()
    assert reports(report) == [{"done": 0}, {"done": 1}]
    assert batch.pending == set() and batch.old_files is None
    batch.write_pending()  # nothing left: nothing written or reported again
    assert reports(report) == [{"done": 0}, {"done": 1}] and len(calls(ufw, "write")) == 1


def test_a_command_that_is_not_a_rule_writes_the_pending_rules_first(ufw):
    ufw.backend.enabled = True
    _, report = run_batch(ufw, [["allow", "22/tcp"], ["default", "deny", "incoming"], ["allow", "from", "10.0.0.1"]])
    order = [call[:2] for call in ufw.calls if isinstance(call, tuple) and call[0] in ("write", "do_action")]
    assert order == [
        ("do_action", "allow"),
        ("write", False),  # the rule, before default deny reads the files
        ("do_action", "default-deny-incoming"),
        ("write", False),  # default deny's own write, straight through
        ("do_action", "allow"),
        ("write", False),
    ]
    assert report == [{"done": 0}, {"done": 1}, {"done": 2}]
    assert restores(ufw) == [
        f"iptables-restore -n {ufw.backend.files['rules']}",
        f"ip6tables-restore -n {ufw.backend.files['rules6']}",
        f"iptables-restore -n {ufw.backend.files['rules']}",
        f"ip6tables-restore -n {ufw.backend.files['rules6']}",
    ]


def test_on_a_running_firewall_rules_see_it_inactive_then_one_restore_per_family_loads_them(ufw):
    ufw.backend.enabled = True
    batch, report = run_batch(ufw, [["allow", "22/tcp"], ["allow", "from", "2001:db8::1"], ["app", "update", "Z"]])
    assert [call[-1] for call in calls(ufw, "do_action")] == [False, False]  # ufw inserts no iptables rule itself
    assert calls(ufw, "app") == [("app", "update", "Z", False)]
    assert report == [{"done": 0}, {"done": 1}, {"done": 2}]
    assert restores(ufw) == [
        f"iptables-restore -n {ufw.backend.files['rules']}",
        f"ip6tables-restore -n {ufw.backend.files['rules6']}",
    ]
    assert batch.unloaded is False and batch.ui.backend.is_enabled() is True


def test_an_app_update_writes_and_reads_the_rules_back(ufw):
    run_batch(ufw, [["app", "update", "Zimbra"]])
    assert calls(ufw, "write") == [("write", False), ("write", True)]
    assert calls(ufw, "read rules") == [("read rules", [], [])]  # emptied first: ufw's _read_rules appends


def test_a_delete_is_a_rule_command_too(ufw):
    ufw.backend.enabled = True
    run_batch(ufw, [["delete", "allow", "22/tcp"]])
    assert calls(ufw, "do_action") == [("do_action", "allow", ["allow", "22/tcp"], "both", False, False)]
    assert len(restores(ufw)) == 2


def test_ufws_lists_are_compacted_before_any_command_but_a_plain_rule(ufw):
    # ufw's code for anything but a rule at no position reads its rule lists whole: they must hold no hole
    # (a deleted rule's None) then; before a plain rule, compacting would only cost a pass over every rule.
    batch = UfwBatch(ufw, io.StringIO())
    compact = batch.index.compact
    batch.index.compact = lambda: ufw.calls.append(("compact",)) or compact()
    for argv in (["allow", "22/tcp"], ["insert", "2", "allow", "80/tcp"], ["app", "update", "Z"], ["allow", "25/tcp"]):
        batch.run(argv)
    events = [call for call in ufw.calls if isinstance(call, tuple) and call[0] in ("compact", "do_action", "app")]
    assert [call[0] if call[0] == "compact" else call[:2] for call in events] == [
        ("do_action", "allow"),
        "compact",
        ("do_action", "allow"),  # inserted at a position
        "compact",
        ("app", "update"),
        "compact",  # the update writes the rules files and reads them back
        "compact",  # then what is pending is written
        ("do_action", "allow"),
    ]


def test_a_failed_restore_puts_the_rules_files_back_with_their_mode(ufw):
    ufw.backend.enabled = True
    ufw.backend.ip6tables_restore = ufw.script("ip6tables-restore", 2)
    os.chmod(ufw.backend.files["rules6"], 0o600)
    report = io.StringIO()
    batch = UfwBatch(ufw, report)
    batch.run(["allow", "22/tcp"])
    batch.run(["allow", "from", "2001:db8::1"])
    with pytest.raises(UFWError) as info:
        batch.write_pending()
    assert info.value.value == (
        f"loading {ufw.backend.files['rules6']} into the running firewall ('{ufw.backend.ip6tables_restore} -n') "
        "failed (exit 2): ip6tables-restore says no; the rules files are as they were"
    )
    for name, mode in (("user.rules", 0o640), ("user6.rules", 0o600)):
        path = ufw.etc / name
        assert path.read_text() == f"old {name}\n"
        assert stat.S_IMODE(path.stat().st_mode) == mode
        assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid())
    assert sorted(p.name for p in ufw.etc.iterdir()) == ["user.rules", "user6.rules"]
    assert restores(ufw) == [
        f"iptables-restore -n {ufw.backend.files['rules']}",
        f"ip6tables-restore -n {ufw.backend.files['rules6']}",
        f"iptables-restore -n {ufw.backend.files['rules']}",  # the chains loaded from the new file, put back
    ]
    assert report.getvalue() == ""  # nothing of the batch stays applied
    assert (batch.completed, batch.reported, batch.unloaded, batch.old_files) == (0, 0, False, None)


@pytest.mark.skipif(os.getuid() != 0, reason="changing a file's owner needs root")
def test_a_put_back_file_keeps_its_owner(ufw):
    os.chown(ufw.backend.files["rules"], 0, 4)
    ufw.backend.enabled = True
    ufw.backend.iptables_restore = ufw.script("iptables-restore", 1)
    batch = UfwBatch(ufw, io.StringIO())
    batch.run(["allow", "22/tcp"])
    with pytest.raises(UFWError):
        batch.write_pending()
    owner = os.stat(ufw.backend.files["rules"])
    assert (owner.st_uid, owner.st_gid, stat.S_IMODE(owner.st_mode)) == (0, 4, 0o640)


def test_main_reports_a_failed_load_as_the_first_unreported_command(ufw, monkeypatch):
    ufw.backend.enabled = True
    ufw.backend.iptables_restore = ufw.script("iptables-restore", 1)
    lines, code, _ = run_main(ufw, [["allow", "22/tcp"], ["allow", "80/tcp"]], monkeypatch)
    assert code == 1
    assert lines == [
        {
            "failed": 0,
            "error": f"ERROR: loading {ufw.backend.files['rules']} into the running firewall "
            f"('{ufw.backend.iptables_restore} -n') failed (exit 1): iptables-restore says no; "
            "the rules files are as they were",
        }
    ]
    assert (ufw.etc / "user.rules").read_text() == "old user.rules\n"


def test_main_reports_each_command_and_holds_ufws_lock_throughout(ufw, monkeypatch):
    lines, code, _ = run_main(ufw, [["allow", "22/tcp"], ["allow", "from", "10.0.0.1"]], monkeypatch)
    assert (lines, code) == ([{"done": 0}, {"done": 1}], 0)
    lockfile = "/run/ufw.lock" if os.getuid() == 0 else os.path.join("/x", "ufw.lock")
    events = [call if isinstance(call, str) else call[0] for call in ufw.calls]
    assert ufw.calls[0] == ("dup2", 2, 1)  # ufw's own messages go to stderr, not into the report
    assert ufw.calls[1] == ("lock", lockfile)
    assert events.index("lock") < events.index("frontend") < events.index("write") < events.index("unlock")
    assert ufw.calls[-1] == ("unlock", "LOCK")
    assert sys.argv == ["/usr/sbin/ufw"]  # ufw checks its own program file, sys.argv[0]


def test_main_stops_at_a_failing_command_and_keeps_what_it_applied(ufw, monkeypatch):
    commands = [["allow", "22/tcp"], ["allow", "FAIL"], ["allow", "80/tcp"]]
    lines, code, _ = run_main(ufw, commands, monkeypatch)
    assert code == 1
    assert lines == [{"done": 0}, {"failed": 1, "error": "ERROR: bad rule"}]
    assert [call[2] for call in calls(ufw, "do_action")] == [["allow", "22/tcp"], ["allow", "FAIL"]]
    assert calls(ufw, "write") == [("write", False)]  # the applied rule is written
    assert ufw.calls[-1] == ("unlock", "LOCK")


def test_main_reports_a_crash_with_what_ufw_wrote(ufw, monkeypatch):
    lines, code, stderr = run_main(ufw, [["allow", "CRASH"]], monkeypatch)
    assert code == 1
    assert lines == [{"failed": 0, "error": "Traceback: ufw crashed"}]
    assert stderr == "Traceback: ufw crashed\n"  # passed on after the lock is released


def test_main_reports_a_crash_without_a_message_by_its_exception(ufw, monkeypatch):
    ufw.frontend.parse_command = lambda argv: (_ for _ in ()).throw(KeyError("x"))
    lines, code, _ = run_main(ufw, [["allow", "22/tcp"]], monkeypatch)
    assert (lines, code) == ([{"failed": 0, "error": "KeyError('x')"}], 1)


def test_main_without_ufws_library_says_so(ufw, monkeypatch):
    monkeypatch.setitem(sys.modules, "ufw.frontend", None)  # import ufw.frontend fails
    lines, code, _ = run_main(ufw, [["allow", "22/tcp"]], monkeypatch)
    assert code == 3
    assert list(lines[0]) == ["unavailable"] and "ufw.frontend" in lines[0]["unavailable"]
    assert len(lines) == 1 and calls(ufw, "lock") == []


def test_main_when_ufw_cannot_start(ufw, monkeypatch):
    def broken(interactive):
        raise UFWError("Couldn't determine iptables version")

    ufw.frontend.UFWFrontend = broken
    lines, code, _ = run_main(ufw, [["allow", "22/tcp"]], monkeypatch)
    assert (lines, code) == ([{"failed": 0, "error": "ERROR: Couldn't determine iptables version"}], 1)
    assert ufw.calls[-1] == ("unlock", "LOCK")


def test_each_rule_is_normalized_once_unless_its_fields_change(ufw):
    rule_class = ufw.common.UFWRule
    UfwBatch.normalize_rules_once(rule_class)
    first, second = rule_class(["allow", "from", "10.0.0.1"]), rule_class(["allow", "from", "2001:db8::1"])
    first.normalize()
    first.normalize()
    second.normalize()
    assert rule_class.normalized == [first.words, second.words]
    assert (first.src, second.src) == ("10.0.0.1/32", "2001:db8::1/128")
    assert first.normalized_fields == ("10.0.0.1/32", "any", "any", "any", False)
    for field, value in (("src", "10.0.0.2"), ("dst", "10.1.0.0/16"), ("dport", "80"), ("sport", "53"), ("v6", 1)):
        setattr(first, field, value)
        first.normalize()
        assert len(rule_class.normalized) == 3, field
        first.normalize()
        assert len(rule_class.normalized) == 3, field
        del rule_class.normalized[-1]


def test_the_batch_normalizes_ufws_rule_class_once_per_rule(ufw):
    run_batch(ufw, [["allow", "from", "10.0.0.1"], ["allow", "from", "10.0.0.2"]])
    assert ufw.common.UFWRule.normalized == [["allow", "from", "10.0.0.1"], ["allow", "from", "10.0.0.2"]]
    assert ufw.common.UFWRule.normalize is not FakeRule.normalize


def test_with_ipv6_off_only_user_rules_is_kept_and_loaded(ufw):
    ufw.backend.enabled, ufw.backend.ipv6 = True, False
    report = io.StringIO()
    batch = UfwBatch(ufw, report)
    batch.run(["allow", "22/tcp"])
    assert list(batch.old_files) == [ufw.backend.files["rules"]]
    batch.write_pending()
    assert restores(ufw) == [f"iptables-restore -n {ufw.backend.files['rules']}"]


def test_a_failing_put_back_restore_is_not_the_error_reported(ufw, capfd):
    """The chains put back from the old file: output captured, a failure ignored (the load's error is the news)."""
    ufw.backend.enabled = True
    counter = ufw.etc.parent / "count"
    (ufw.etc.parent / "flaky").write_text(  # succeeds once, then fails
        f'#!/bin/sh\necho "iptables-restore $*" >> {ufw.log}\necho x >> {counter}\n'
        f'echo "iptables-restore says no" >&2\n[ "$(wc -l < {counter})" -eq 1 ]\n'
    )
    (ufw.etc.parent / "flaky").chmod(0o755)
    ufw.backend.iptables_restore = str(ufw.etc.parent / "flaky")
    ufw.backend.ip6tables_restore = ufw.script("ip6tables-restore", 1)
    batch = UfwBatch(ufw, io.StringIO())
    batch.run(["allow", "22/tcp"])
    with pytest.raises(UFWError, match="ip6tables-restore says no; the rules files are as they were"):
        batch.write_pending()
    assert len(restores(ufw)) == 3
    assert "says no" not in capfd.readouterr().err


def test_a_command_that_is_not_a_rule_gets_ufws_arguments_as_ufw_gives_them(ufw):
    run_batch(ufw, [["--force", "enable"], ["default", "deny", "incoming"]])
    assert calls(ufw, "do_action") == [
        ("do_action", "enable", "", "", True, False),
        ("do_action", "default-deny-incoming", "", "", False, True),  # ufw runs now
    ]


def test_an_app_command_other_than_update_reads_no_rules_back(ufw):
    run_batch(ufw, [["app", "info", "Zimbra"]])
    assert calls(ufw, "app") == [("app", "info", "Zimbra", False)]
    assert calls(ufw, "read rules") == []


def test_main_without_root_takes_ufws_lock_in_its_state_dir(ufw, monkeypatch):
    ufw.uid = 1000
    lines, code, _ = run_main(ufw, [["allow", "22/tcp"]], monkeypatch)
    assert (lines, code) == ([{"done": 0}], 0)
    assert calls(ufw, "lock") == [("lock", "/x/ufw.lock")]


@pytest.mark.parametrize(
    "crash, message",
    [("BYTES", "bad \N{REPLACEMENT CHARACTER} byte"), ("SURROGATE", "bad ? char")],
)
def test_main_passes_on_what_ufw_wrote_whatever_its_encoding(ufw, monkeypatch, crash, message):
    lines, code, stderr = run_main(ufw, [["allow", crash]], monkeypatch)
    assert (lines, code) == ([{"failed": 0, "error": message}], 1)
    assert stderr == message + "\n"


class Rule:
    """The fields of ufw's UFWRule that RuleIndex reads."""

    def __init__(self, action, src, dapp="", comment="", *, v6=False, remove=False, position=0):
        self.action, self.src, self.dapp, self.comment, self.v6 = action, src, dapp, comment, v6
        self.remove, self.position = remove, position
        self.dport = "25,389" if dapp else "any"
        self.sport, self.protocol, self.dst, self.sapp = "any", "tcp", "any", ""
        self.interface_in = self.interface_out = ""
        self.direction, self.forward, self.logtype = "in", False, ""
        self.normalized = 0

    def normalize(self):
        """As ufw's: an IPv6 rule's addresses are written short (an IPv4 rule's are left to IPv4's rules)."""
        self.normalized += 1
        if self.v6 and self.src != "any":
            self.src = ipaddress.ip_interface(self.src).compressed.removesuffix("/128")

    def dup_rule(self):
        copy = Rule(
            self.action, self.src, self.dapp, self.comment, v6=self.v6, remove=self.remove, position=self.position
        )
        copy.dport = self.dport
        return copy

    def set_v6(self, v6):
        self.v6 = v6

    def get_app_tuple(self):
        return f"{self.dapp} {self.dst} {self.sport} {self.src} {self.direction}" if self.dapp else ""

    def fields(self):
        return (self.action, self.src, self.dapp, self.comment, self.v6)


def match(x, y):
    """ufw's UFWRule.match: 1 no match, 0 exact, -2 all but the comment, -1 all but the action."""
    same = (x.dport, x.src, x.dapp, x.v6) == (y.dport, y.src, y.dapp, y.v6)
    if not same:
        return 1
    if x.action == y.action:
        return 0 if x.comment == y.comment else -2
    return -1


class Backend:
    """ufw's backend as far as RuleIndex uses it; ``set_rule`` is ufw's loop."""

    def __init__(self, rules=(), rules6=()):
        self.rules, self.rules6, self.enabled, self.compared = list(rules), list(rules6), False, []
        self.reloads = []  # allow_reload of each set_rule call

    def is_enabled(self):
        return self.enabled

    def set_rule(self, rule, allow_reload=True):
        rules = self.rules6 if rule.v6 else self.rules
        self.compared.append(len(rules))
        self.reloads.append(allow_reload)
        newrules, found = [], False
        for current in rules:
            ret = match(current, rule)
            if ret == 0 and not found:
                found = True
                if not rule.remove:
                    newrules.append(rule.dup_rule())
            elif ret == -2 and rule.remove and rule.comment == "":
                found = True
            elif ret < 0 and not rule.remove:
                found = True
                newrules.append(rule.dup_rule())
            else:
                newrules.append(current)
        if not found and rule.remove:
            return "Could not delete non-existent rule"
        if found and not rule.remove and newrules == rules:
            return "Skipping adding existing rule"
        if not found and not rule.remove:
            newrules.append(rule.dup_rule())
        if rule.v6:
            self.rules6 = newrules
        else:
            self.rules = newrules
        return "Rules updated"

    def get_app_rules_from_system(self, template, v6):
        tuple_ = template.get_app_tuple()
        return [r.dup_rule() for r in (self.rules6 if v6 else self.rules) if r.get_app_tuple() == tuple_]

    def get_rules_count(self, v6):
        rules = self.rules6 if v6 else self.rules
        return len([r for r in rules if not r.dapp]) + len({r.get_app_tuple() for r in rules if r.dapp})


START = [Rule("allow", f"10.0.0.{i}", dapp="Zimbra-mta", comment="zimbra_fw") for i in range(1, 41)]


START += [Rule("allow", "192.168.1.0/24"), Rule("allow", "any", dapp="Zimbra", comment="zimbra_fw")]


COMMANDS = [
    Rule("allow", "10.0.0.3", dapp="Zimbra-mta", comment="zimbra_fw"),  # there: skipped
    Rule("allow", "192.168.1.0/24", comment="zimbra_fw"),  # there without a comment: adopted in place
    Rule("deny", "10.0.0.5", dapp="Zimbra-mta", comment="zimbra_fw"),  # another action: replaced in place
    Rule("allow", "10.0.0.7", dapp="Zimbra-mta", remove=True),  # comment differs: deleted
    Rule("allow", "10.0.0.8", dapp="Zimbra-mta", comment="zimbra_fw", remove=True),  # exact: deleted
    Rule("deny", "10.0.0.9", dapp="Zimbra-mta", remove=True),  # another action: kept
    Rule("allow", "10.9.9.9", remove=True),  # not there
    Rule("allow", "10.8.8.8", comment="zimbra_fw"),
    Rule("allow", "10.8.8.8", comment="zimbra_fw"),  # twice
    Rule("allow", "10.8.8.8", remove=True),  # and gone again
    Rule("allow", "2001:db8::5", dapp="Zimbra-mta", comment="zimbra_fw", v6=True),
    *(Rule("allow", f"10.1.0.{i}", dapp="Zimbra-mta", comment="zimbra_fw") for i in range(1, 11)),
    *(Rule("allow", f"10.0.0.{i}", dapp="Zimbra-mta", remove=True) for i in range(20, 41)),
]


def copies(rules):
    return [rule.dup_rule() for rule in rules]


def test_each_command_ends_as_ufws_full_loop_leaves_it_comparing_only_rules_that_can_match():
    model, indexed = Backend(copies(START)), Backend(copies(START))
    index = RuleIndex(indexed)
    for command in COMMANDS:
        expected = model.set_rule(command.dup_rule())
        assert indexed.set_rule(command.dup_rule()) == expected, command.fields()
        assert indexed.get_rules_count(command.v6) == model.get_rules_count(command.v6)
    index.compact()
    for v6 in (False, True):
        got = indexed.rules6 if v6 else indexed.rules
        want = model.rules6 if v6 else model.rules
        assert [rule.fields() for rule in got] == [rule.fields() for rule in want]
    assert max(indexed.compared) == 1  # ufw's loop saw at most the one rule that can match
    assert model.compared[0] == len(START)  # ufw's full loop sees every rule


def test_an_applications_rules_and_the_count_come_from_the_lookups():
    backend = Backend(copies(START), [Rule("allow", "2001:db8::1", dapp="Zimbra-mta", v6=True)])
    index = RuleIndex(backend)
    template = Rule("allow", "10.0.0.4", dapp="Zimbra-mta")
    found = backend.get_app_rules_from_system(template, False)
    assert [rule.fields() for rule in found] == [START[3].fields()]
    assert found[0] is not backend.rules[3] and found[0].normalized == 1  # a normalized copy
    assert backend.get_app_rules_from_system(template, True) == []
    assert template.v6 is False  # the template itself is left as it was
    assert (backend.get_rules_count(False), backend.get_rules_count(True)) == (42, 1)
    backend.set_rule(Rule("allow", "10.0.0.4", dapp="Zimbra-mta", remove=True))
    assert backend.get_rules_count(False) == 41
    assert backend.get_app_rules_from_system(template, False) == []
    assert index.families[False].holes == 1


def test_compact_gives_ufw_its_lists_without_holes_and_the_lookups_are_rebuilt():
    backend = Backend(copies(START))
    index = RuleIndex(backend)
    listed = backend.rules
    backend.set_rule(Rule("allow", "10.0.0.1", dapp="Zimbra-mta", remove=True))
    assert listed[0] is None and backend.rules is listed
    index.compact()
    assert backend.rules is not listed and None not in backend.rules and len(backend.rules) == len(START) - 1
    assert False not in index.families
    index.compact()  # nothing left to compact
    assert backend.get_rules_count(False) == len(START) - 1  # rebuilt from the new list
    assert index.families[False].current(backend.rules)


@pytest.mark.parametrize("enabled, position", [(True, 0), (False, 2)])
def test_a_rule_on_running_chains_or_at_a_position_goes_through_ufw_whole(enabled, position):
    backend = Backend(copies(START))
    index = RuleIndex(backend)
    backend.set_rule(Rule("allow", "10.0.0.2", dapp="Zimbra-mta", remove=True))  # leaves a hole
    backend.enabled = enabled
    backend.set_rule(Rule("allow", "10.5.5.5", position=position))
    assert backend.compared[-1] == len(START) - 1  # the whole list, without the hole
    assert None not in backend.rules and backend.rules[-1].src == "10.5.5.5"
    assert index.families == {}


def test_a_list_replaced_by_ufw_is_indexed_anew():
    backend = Backend(copies(START))
    RuleIndex(backend)
    assert backend.get_rules_count(False) == len(START)  # each peer's rule is an application tuple of its own
    backend.rules = backend.rules[:2]  # e.g. ufw read its rules back
    assert backend.get_rules_count(False) == 2


def test_what_ufw_could_not_have_made_is_refused():
    family = RuleFamily(copies(START[:2]))
    stranger = Rule("allow", "10.7.7.7")
    with pytest.raises(RuntimeError, match=r"^ufw's delete made rules of its own$"):
        RuleIndex._merge(family, family.rules[:1], [stranger], remove=True)
    with pytest.raises(RuntimeError, match="ufw's add made 3 rules of 1"):
        RuleIndex._merge(family, family.rules[:1], [stranger, stranger, stranger], remove=False)
    with pytest.raises(RuntimeError, match="ufw's delete made rules of its own"):
        RuleIndex._merge(family, family.rules[:1], [family.rules[0], family.rules[0]], remove=True)


def test_a_family_normalizes_each_rule_once_and_knows_its_places():
    rules = copies(START[:3])
    family = RuleFamily(rules)
    assert [rule.normalized for rule in rules] == [1, 1, 1]
    new = Rule("allow", "10.6.6.6")
    family.put(None, new)
    assert rules[-1] is new and family.place[id(new)] == 3 and family.length == 4 and new.normalized == 1
    replacement = Rule("deny", "10.0.0.2", dapp="Zimbra-mta")
    family.put(rules[1], replacement)
    assert rules[1] is replacement and family.place[id(replacement)] == 1
    assert family.by_key[match_key(replacement)] == [replacement]
    family.drop(rules[0])
    assert rules[0] is None and family.holes == 1 and family.compact() == rules[1:]
    assert family.count() == 3


def test_an_ipv6_hole_is_compacted_in_rules6_and_the_ipv4_list_is_left_alone():
    backend = Backend(copies(START), [Rule("allow", f"2001:db8::{i}", v6=True) for i in range(1, 4)])
    index = RuleIndex(backend)
    listed = backend.rules
    backend.set_rule(Rule("allow", "2001:db8::2", v6=True, remove=True))
    assert backend.rules6[1] is None
    index.compact()
    assert [rule.src for rule in backend.rules6] == ["2001:db8::1", "2001:db8::3"]
    assert backend.rules is listed and len(listed) == len(START) and None not in listed


def test_compact_never_puts_back_a_list_ufw_has_replaced():
    backend = Backend(copies(START))
    index = RuleIndex(backend)
    backend.set_rule(Rule("allow", "10.0.0.1", dapp="Zimbra-mta", remove=True))  # a hole
    replaced = backend.rules = copies(START[:2])  # e.g. ufw read its rules back
    index.compact()
    assert backend.rules is replaced and [rule.fields() for rule in replaced] == [r.fields() for r in START[:2]]


def test_a_list_replaced_by_one_as_long_is_indexed_anew():
    backend = Backend(copies(START[:2]))
    RuleIndex(backend)
    assert backend.get_app_rules_from_system(Rule("allow", "10.0.0.1", dapp="Zimbra-mta"), False) != []
    backend.rules = [Rule("allow", "10.7.0.1", dapp="Zimbra-mta"), Rule("allow", "10.7.0.2", dapp="Zimbra-mta")]
    assert backend.get_app_rules_from_system(Rule("allow", "10.0.0.1", dapp="Zimbra-mta"), False) == []
    (found,) = backend.get_app_rules_from_system(Rule("allow", "10.7.0.2", dapp="Zimbra-mta"), False)
    assert found.src == "10.7.0.2"


def test_an_applications_rule_of_each_protocol_stays_found_when_the_other_goes():
    tcp, udp = Rule("allow", "10.0.0.1", dapp="Zimbra"), Rule("allow", "10.0.0.1", dapp="Zimbra")
    udp.protocol = "udp"
    family = RuleFamily([tcp, udp, Rule("allow", "10.0.0.9")])
    assert family.count() == 2  # the application counts once, as in ufw
    family.drop(tcp)
    assert family.by_app[udp.get_app_tuple()] == [udp] and family.by_key[match_key(udp)] == [udp]
    assert family.count() == 2


def test_an_applications_ipv6_rules_are_found_from_a_template_written_long():
    backend = Backend(rules6=[Rule("allow", "2001:db8::1", dapp="Zimbra-mta", v6=True)])
    RuleIndex(backend)
    template = Rule("allow", "2001:db8:0:0::1", dapp="Zimbra-mta")  # normalized as IPv6 for rules6 only
    (found,) = backend.get_app_rules_from_system(template, True)
    assert found.src == "2001:db8::1" and found.v6 is True
    assert template.src == "2001:db8:0:0::1" and template.v6 is False


@pytest.mark.parametrize("enabled, position", [(False, 0), (True, 0), (False, 2)])
def test_allow_reload_goes_to_ufw_as_given_or_as_ufws_default(enabled, position):
    backend = Backend(copies(START))
    RuleIndex(backend)
    backend.enabled = enabled
    backend.set_rule(Rule("allow", "10.5.5.5", position=position))
    backend.set_rule(Rule("allow", "10.5.5.6", position=position), False)
    backend.set_rule(Rule("allow", "10.5.5.7", position=position), allow_reload=True)
    assert backend.reloads == [True, False, True]


def test_a_copy_of_a_normalized_rule_is_not_normalized_again(ufw):
    rule_class = ufw.common.UFWRule
    UfwBatch.normalize_rules_once(rule_class)
    rule = rule_class(["allow", "from", "10.0.0.1"])
    unnormalized = rule.dup_rule()
    rule.normalize()
    copy = rule.dup_rule()
    copy.normalize()
    assert rule_class.normalized == [rule.words]
    assert copy.src == "10.0.0.1/32"
    unnormalized.normalize()  # copied before normalizing: normalized on its own
    assert rule_class.normalized == [rule.words, rule.words]
    changed = rule.dup_rule()
    changed.src = "10.0.0.2"
    changed.normalize()
    assert len(rule_class.normalized) == 3 and changed.src == "10.0.0.2/32"


ORACLE_MISSING = oracles.available() or (
    # make mutation: the helper imported above is mutmut's copy, which the system Python cannot import
    "the helper is mutmut's mutated copy" if "mutmut" in sys.modules else None
)

# Each shape several times (a template, then copies), in both IP versions,
# with the source written as ufw accepts it (upper case, a host /32, a
# network), deletes beside adds, and commands that ufw refuses.
SHAPED = [
    *[["allow", "from", f"10.0.{i}.{i + 1}", "to", "any", "app", "OpenSSH", "comment", "zimbra_fw"] for i in range(3)],
    ["allow", "from", "2001:DB8::1", "to", "any", "app", "OpenSSH", "comment", "zimbra_fw"],
    ["allow", "from", "2001:db8::/64", "to", "any", "app", "OpenSSH", "comment", "zimbra_fw"],
    ["allow", "from", "10.0.0.0/8", "to", "any", "app", "OpenSSH", "comment", "zimbra_fw"],
    ["allow", "from", "10.0.0.7/32", "to", "any", "app", "OpenSSH", "comment", "zimbra_fw"],
    ["delete", "allow", "from", "10.0.0.1", "to", "any", "app", "OpenSSH"],
    ["delete", "allow", "from", "10.0.0.2", "to", "any", "app", "OpenSSH"],
    ["delete", "allow", "from", "2001:db8::2", "to", "any", "app", "OpenSSH"],
    *[["allow", "from", source, "to", "any", "port", "7025", "proto", "tcp"] for source in ("10.1.1.1", "10.1.1.2")],
    *[["limit", "from", source, "to", "any", "port", "22", "proto", "tcp"] for source in ("10.1.1.1", "::1")],
    *[["allow", "from", source, "port", "4505,4506", "proto", "tcp"] for source in ("192.0.2.1", "192.0.2.9")],
    *[["allow", "from", source] for source in ("192.168.1.0/24", "192.168.2.0/24", "fd00::/8", "fd01::/16")],
    ["allow", "from", "10.0.0.300", "to", "any", "app", "OpenSSH", "comment", "zimbra_fw"],  # after its template
    ["allow", "from", "not-an-address"],
    ["allow", "from", "2001:db8::1", "to", "10.0.0.1"],  # mixed versions: refused
    ["allow", "from", "2001:db8::2", "to", "10.0.0.1"],
    ["allow", "from", "any", "to", "any", "port", "25"],
    ["allow", "proto", "tcp", "from", "10.2.0.1", "to", "any", "port", "80"],
    ["allow", "proto", "tcp", "from", "10.2.0.2", "to", "any", "port", "80"],
    ["allow", "22/tcp"],
    ["default", "deny", "incoming"],
    # ufw takes "comment" and the word after it out first: not a source, not a shape
    ["allow", "from", "comment", "to", "any", "port", "11211", "proto", "tcp"],
    ["allow", "from", "0.0.0.0/1", "to", "any", "port", "11211", "proto", "tcp"],
    ["delete", "allow", "from", "10.9.0.1", "to", "any", "port", "11211", "proto", "tcp"],
    ["allow", "to", "comment", "from", "10.0.0.1", "port", "25"],
    ["allow", "to", "comment", "from", "10.0.0.2", "port", "25"],
    *[["allow", "from", word, "to", "any", "port", "25"] for word in ("in", "out", "log", "10.0.0.3", "to")],
]


@pytest.mark.skipif(ORACLE_MISSING is not None, reason=str(ORACLE_MISSING))
def test_a_command_parsed_by_shape_and_a_rule_copied_are_what_ufw_makes_of_them():
    utils = os.path.dirname(batch_module.__file__)
    results = oracles.ufw_parse_by_shape(SHAPED, utils)
    for words, result in zip(SHAPED, results, strict=True):
        assert result["shaped"] == result["ufw"], words
        for ufws, batchs in result["copies"] or ():  # the batch copies a rule as ufw's dup_rule does
            assert batchs == ufws, words
    # ufw parsed only the first command of each shape; refusals stay refusals
    # app v4, v6, their deletes, 7025, limit v4, v6, 4505, all ports v4, v6, proto first, 11211 and its
    # delete, port 25; none from a command with "comment" elsewhere than at the end, none from a refusal
    assert results[-1]["templates"] == 14
    refused = [words[words.index("from") + 1] for words, result in zip(SHAPED, results, strict=True)
               if "error" in result["ufw"]]  # fmt: skip
    assert refused == ["10.0.0.300", "not-an-address", "2001:db8::1", "2001:db8::2", "in", "out", "log", "to"]


# Rules as ufw's format_rule writes them (one per kind of action, log, protocol,
# port and app), and texts that hold a pattern's literal without matching it.
FORMATTED = [
    " -p all -s 10.0.0.5 -j ACCEPT",
    " -p all -d 10.1.0.0/16 --dport 25 -s 10.0.0.5 -j ACCEPT_log",
    " -p tcp --dport 22 -j LIMIT_log-all",
    " -p tcp --dport 22 -s 2001:db8::1 -j LIMIT",
    " -p all --dport 23 -j REJECT_log",
    " -p tcp --dport 23 -j REJECT --reject-with tcp-reset",
    " -p udp -m multiport --dports 25,465,587 -s 192.168.1.0/24 -j DROP_log-all",
    " -i eth0 -o eth1 -p all -j ACCEPT_log -m comment --comment 'dapp_Zimbra%20mta,sapp_x'",
    " -p all -j ACCEPT -m comment --comment 'dapp__log'",
    " -p all -j ACCEPT -m comment --comment 'dapp_a --log-prefix \"x \"'",
    ' -p all -j DROP_log --log-prefix "[UFW BLOCK] "',
    "_log",
    "",
]


@pytest.mark.skipif(ORACLE_MISSING is not None, reason=str(ORACLE_MISSING))
def test_literal_first_patterns_make_of_each_rule_what_ufws_patterns_make():
    utils = os.path.dirname(batch_module.__file__)
    for result in oracles.ufw_formatted_rules(FORMATTED, utils):
        assert result["literal_first"] == result["re"]
    assert any(len(result["re"]["rules"]) > 1 for result in oracles.ufw_formatted_rules(FORMATTED[:3], utils))


def test_literal_first_searches_only_texts_that_hold_the_literal():
    searched = []

    class Pattern:
        def search(self, text):
            searched.append(text)
            return "match"

        sub = match = search

    found = batch_module.LiteralFirst(Pattern(), "_log")
    assert found.search("-j ACCEPT") is None and found.match("-j ACCEPT") is None
    assert found.sub("x", "-j ACCEPT") == "-j ACCEPT"
    assert searched == []
    assert found.search("-j ACCEPT_log") == "match" and searched == ["-j ACCEPT_log"]
    compiled = batch_module.LiteralFirstRe().compile(r"(.*)-j ([A-Z]+)_log(-all)?(.*)")
    assert isinstance(compiled, batch_module.LiteralFirst) and compiled.literal == "_log"
    assert batch_module.LiteralFirstRe().compile(r"(.*)-j").search("a-j")  # other patterns: re's own


REMEMBERED = [
    *(
        ["address", [address, v6]]
        for v6 in (False, True)
        for address in (
            "0.0.0.0/0",
            "::/0",
            "10.1.0.1",
            "10.1.0.1/32",
            "10.1.0.0/255.255.0.0",
            "10.1.0.7/16",
            "192.168.1.0/24",
            "2001:db8::1",
            "2001:DB8:0::1/128",
            "2001:db8::/64",
            "2001:db8::7/64",
            "10.0.0.300",
            "not an address",
            "",
            "1.2.3.4/33",
            "::ffff:10.0.0.1",
            "1.2.3.4/255.0.255.0",
        )
    ),
    *(
        ["ports", ports]
        for ports in (
            ["8443", "7025", "7073"],
            ["9443", "8080", "7072", "7110", "8743", "7995", "7993", "8742", "7143", "8443"],
            ["25", "22:23", "http", "Ssh", "a10", "a9"],
            ["1"],
            [],
            ["7025", "7025"],
        )
    ),
]


@pytest.mark.skipif(ORACLE_MISSING is not None, reason=str(ORACLE_MISSING))
def test_remembered_helpers_answer_as_ufws_own_the_first_time_and_again():
    results = oracles.ufw_remembered_helpers(REMEMBERED, os.path.dirname(batch_module.__file__))
    for case, result in zip(REMEMBERED, results, strict=True):
        assert result["first"] == result["ufw"] == result["again"], case
    refused = [case[1][0] for case, result in zip(REMEMBERED, results, strict=True) if "error" in result["ufw"]]
    assert {"10.0.0.300", "not an address", "", "1.2.3.4/33", "2001:db8::1"} <= set(refused)  # raised each time


MARK = "comment=7a696d6272615f6677"
TUPLES = [
    f"### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in {MARK}",
    f"### tuple ### allow any any 0.0.0.0/0 any 192.168.1.0/24 in {MARK}",
    *(
        f"### tuple ### allow tcp 7025,7073,8443 0.0.0.0/0 any {src} Zimbra-mta - in {MARK}"
        for src in (
            "10.1.0.2",
            "10.1.0.3",
            "10.0.0.300",
            "10.1.0.4",
            "not-an-address",
            "ANY",
            "any",
            "::/0",
            "10.2.0.0/16",
        )
    ),
    *(
        f"### tuple ### allow tcp 7072,7110,7143,7993,7995,8080,8443,8742,8743,9443 0.0.0.0/0 any {src} "
        f"Zimbra-proxy - in {MARK}"
        for src in ("10.0.0.300", "10.1.0.1", "10.1.0.11")
    ),
    f"### tuple ### allow tcp 7025,7073,8443 0.0.0.0/0 any 10.3.0.1 in {MARK}",  # as the app's, but no app
    f"### tuple ### allow tcp 7025,7073,8443 0.0.0.0/0 any 10.3.0.2 - - in {MARK}",
    "### tuple ### allow tcp 2222 any any any in",
    "### tuple ### deny tcp 11211 0.0.0.0/0 any 10.9.0.1 in",
    "### tuple ### deny tcp 11211 0.0.0.0/0 any 10.9.0.2 in",
    "### tuple ### limit tcp 22 0.0.0.0/0 any 10.2.0.2 in comment=6f74686572",
    "### tuple ### reject udp 7000:7010 10.0.0.1 any 10.9.0.3 out",
    "### tuple ### allow any any 0.0.0.0/0 any 10.0.0.7 in_eth0",
    "### tuple ### allow any any 0.0.0.0/0 any 10.0.0.8 in_eth0",
    "### tuple ### route:allow tcp 80 10.5.0.0/16 any 10.0.0.9 in",
    "### tuple ### route:allow tcp 80 10.5.0.0/16 any 10.0.0.10 in",
    "### tuple ### allow tcp 80 0.0.0.0/0 1024:2048 10.0.0.11 in",
    "### tuple ### allow tcp any 0.0.0.0/0 any 10.0.0.12 Zimbra%20Web - in",
    "### tuple ### allow tcp any 0.0.0.0/0 any 10.0.0.13 Zimbra%20Web - in",
    "### tuple ### allow tcp 80 0.0.0.0/0 any",  # malformed: too short
    "### tuple ### allow tcp 80,,81 0.0.0.0/0 any 10.0.0.14 in",  # ufw refuses the ports
    "### tuple ### allow tcp 80,,81 0.0.0.0/0 any 10.0.0.15 in",
]
TUPLES6 = [
    f"### tuple ### allow tcp 22 ::/0 any ::/0 in {MARK}",
    "### tuple ### allow tcp 2222 any any any in",  # as in user.rules: the same shape, another family
    *(
        f"### tuple ### allow tcp 7025,7073,8443 ::/0 any {src} Zimbra-mta - in {MARK}"
        for src in (
            "2001:db8::1",
            "2001:DB8::2",
            "2001:db8::/64",
            "10.0.0.1",
            "any",
            "0.0.0.0/0",
            "::ffff:10.0.0.1",
        )
    ),
]


@pytest.mark.skipif(ORACLE_MISSING is not None, reason=str(ORACLE_MISSING))
def test_rules_read_by_shape_are_what_ufw_reads_line_by_line():
    read = oracles.ufw_rules_read_by_shape(TUPLES, TUPLES6, os.path.dirname(batch_module.__file__))
    assert read["shaped"] == read["ufw"] == read["again"]
    sources = [rule["src"] for rule in read["ufw"]["rules"]]
    assert "10.1.0.4" in sources and "10.0.0.300" not in sources and "0.0.0.0/0" in sources  # refusals stay refusals
    assert read["ufw"]["said"].count("Skipping malformed tuple") >= 5


def test_restore_lines_quote_words_with_spaces_and_refuse_what_iptables_would_read_otherwise():
    line = batch_module.restore_line(["-A", "ufw-logging-deny", "-j", "LOG", "--log-prefix", "[UFW BLOCK] "])
    assert line == '-A ufw-logging-deny -j LOG --log-prefix "[UFW BLOCK] "'
    assert batch_module.restore_line(["-A", "c", "--limit", "3/min", "-s", "2001:db8::/64"]) == (
        "-A c --limit 3/min -s 2001:db8::/64"
    )
    for word in ['say "hi"', "back\\slash", "new\nline", "#comment", "tab\there", "-t", "--table=nat", "-tnat"]:
        assert batch_module.restore_line(["-A", "c", "--log-prefix", word]) is None, word


def probe_commands(exe, chain="ufw-caps-test1"):
    return [
        [exe, "-N", chain],
        [exe, "-A", chain, "-m", "conntrack", "--ctstate", "NEW", "-m", "recent", "--set"],
        [exe, "-A", chain, "-m", "recent", "--update", "--seconds", "30"],
        [exe, "-F", chain],
        [exe, "-X", chain],
    ]


def test_ufws_capability_probe_becomes_two_restores_only_in_its_own_shape():
    made, removed = batch_module.probe_restores(probe_commands("/sbin/iptables"), "/sbin/iptables")
    assert made == [
        "-N ufw-caps-test1",
        "-A ufw-caps-test1 -m conntrack --ctstate NEW -m recent --set",
        "-A ufw-caps-test1 -m recent --update --seconds 30",
    ]
    assert removed == ["-F ufw-caps-test1", "-X ufw-caps-test1"]
    good = probe_commands("/sbin/iptables")
    others = [
        [],
        probe_commands("/sbin/ip6tables"),  # another program
        good[1:],  # no chain made
        good[:-1],  # the chain stays
        [good[0], [good[1][0], "-I", *good[1][2:]], *good[2:]],  # an insert
        [good[0], [*good[1][:2], "other-chain", *good[1][3:]], *good[2:]],
        [good[0], [*good[1], "--comment", 'a "quoted" word'], *good[2:]],
        [good[0], *good[1:3], [*good[3], "extra"], good[4]],
        good[:1],  # the chain made, nothing else
        [*good[:2], [good[2][0], "-I", *good[2][2:]], *good[3:]],  # the last rule inserted
    ]
    for commands in others:
        assert batch_module.probe_restores(commands, "/sbin/iptables") is None, commands


def logging_commands(level):
    """ufw's update_logging commands as the sandbox records them (two chains of each kind)."""
    chains = ["ufw-before-logging-input", "ufw6-after-logging-input", "ufw-user-logging-input", "ufw6-logging-deny"]
    commands = [(chain, ["-L", chain, "-n"], False) for chain in chains]
    for chain in (chains[0], chains[1], chains[3]):
        commands += [(chain, ["-F", chain], False), (chain, ["-Z", chain], False)]
    user = chains[2]
    commands.append((user, ["-D", user, "-j", "RETURN"], True))
    if level == "off":
        commands.append((user, ["-I", user, "-j", "RETURN"], False))
    else:
        commands.append((chains[1], ["-A", chains[1], "-j", "LOG", "--log-prefix", "[UFW BLOCK] "], False))
        commands.append(
            (chains[3], ["-I", chains[3], "-m", "conntrack", "--ctstate", "INVALID", "-j", "RETURN"], False)
        )
    limit = ["-m", "limit", "--limit", "3/minute", "-j", "LOG", "--log-prefix", "[UFW LIMIT BLOCK] "]
    commands.append(("ufw-user-limit", ["-D", "ufw-user-limit", *limit], True))
    return commands


@pytest.mark.parametrize("level", ["low", "off"])
def test_logging_commands_go_into_a_restore_a_family_for_chains_ufw_flushes_first(level):
    commands = logging_commands(level)
    checks, lines, rest = batch_module.logging_plan(commands)
    # The IPv4 restore commits first: its chains' checks are its -F lines.
    assert checks == commands[1:4]
    assert lines[False] == ["-F ufw-before-logging-input", "-Z ufw-before-logging-input"]
    assert lines[True][:4] == [
        "-F ufw6-after-logging-input",
        "-Z ufw6-after-logging-input",
        "-F ufw6-logging-deny",
        "-Z ufw6-logging-deny",
    ]
    if level == "low":
        assert lines[True][4:] == [
            '-A ufw6-after-logging-input -j LOG --log-prefix "[UFW BLOCK] "',
            "-I ufw6-logging-deny -m conntrack --ctstate INVALID -j RETURN",
        ]
    assert rest == [command for command in commands[4:] if command[0] in ("ufw-user-logging-input", "ufw-user-limit")]


def test_logging_commands_of_another_shape_are_left_to_ufw():
    commands = logging_commands("low")
    user = "ufw-user-logging-input"
    late_check = [*commands[1:5], commands[0], *commands[5:]]
    stop_first = [*commands[:4], (user, ["-I", user, "-j", "RETURN"], False), *commands[4:]]
    may_fail = [*commands[:4], ("ufw-before-logging-input", ["-F", "ufw-before-logging-input"], True), *commands[5:]]
    unquotable = [*commands, ("ufw6-logging-deny", ["-A", "ufw6-logging-deny", "--log-prefix", 'x"y'], False)]
    other_op = [*commands, ("ufw6-logging-deny", ["-P", "ufw6-logging-deny", "ACCEPT"], False)]
    wrong_chain = [*commands, ("ufw6-logging-deny", ["-A", "ufw-logging-deny", "-j", "LOG"], False)]
    # a chain whose first change is not its flush: its -Z would stop ufw's run before restored lines
    unflushed = [(chain, args, fail_ok) for chain, args, fail_ok in commands if args[:2] != ["-F", "ufw6-logging-deny"]]
    check_may_fail = [(commands[0][0], commands[0][1], True), *commands[1:]]
    check_without_n = [(commands[0][0], commands[0][1][:2], False), *commands[1:]]
    cases = (late_check, stop_first, may_fail, unquotable, other_op, wrong_chain, unflushed, check_may_fail)
    for case in (*cases, check_without_n):
        assert batch_module.logging_plan(case) is None, case


def recording_restore(tmp_path, ufw, name, code):
    """A restore program that logs its arguments and its input, then exits with ``code``."""
    path = tmp_path / f"{name}-rec-{code}"
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> {ufw.log}\ncat >> {ufw.log}\nexit {code}\n')
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("code", [0, 1])
def test_capabilities_are_probed_in_two_restores_or_by_ufw_when_the_first_fails(ufw, tmp_path, code):
    ufw.backend.iptables_restore = recording_restore(tmp_path, ufw, "iptables-restore", code)
    UfwBatch(ufw, io.StringIO())
    ufw.calls.clear()
    found = ufw.util.get_netfilter_capabilities("/sbin/iptables", False)
    assert found == ["recent-set", "recent-update"]
    log = restores(ufw)
    assert log[:5] == [
        "iptables-restore -n",
        "*filter",
        "-N ufw-caps-test1234",
        "-A ufw-caps-test1234 -m recent-set",
        "-A ufw-caps-test1234 -m recent-update",
    ]
    commands = [call for call in ufw.calls if call[0] == "cmd"]
    if code == 0:
        assert log[6:] == ["iptables-restore -n", "*filter", "-F ufw-caps-test1234", "-X ufw-caps-test1234", "COMMIT"]
        assert commands == []  # not one iptables process
    else:
        assert len(log) == 6  # the failed restore committed nothing; ufw's probe ran instead
        assert [call[2] for call in commands] == ["-N", "-A", "-A", "-F", "-X"]
    probes = [call for call in ufw.calls if call[0] == "probe"]
    assert probes == [("probe", "/sbin/iptables", False)] * (1 if code == 0 else 2)  # recorded, then ufw's own
    ufw.calls.clear()
    assert ufw.util.get_netfilter_capabilities("/sbin/other", False) == ["recent-set", "recent-update"]
    assert [call for call in ufw.calls if call[0] == "probe"] == [("probe", "/sbin/other", False)]
    assert [call[2] for call in ufw.calls if call[0] == "cmd"][-5:] == ["-N", "-A", "-A", "-F", "-X"]  # ufw's own


def probe_events(ufw):
    return [call[:2] for call in ufw.calls if isinstance(call, tuple) and call[0] in ("probe", "start")]


@pytest.mark.parametrize("ipv6", [True, False])
def test_enabling_a_stopped_firewall_probes_before_ufw_starts_it_and_ufw_does_not_probe_again(ufw, ipv6):
    ufw.backend.ipv6 = ipv6
    run_batch(ufw, [["--force", "enable"]])
    ahead = [("probe", "/sbin/iptables"), ("probe", "/sbin/ip6tables")][: 2 if ipv6 else 1]
    assert probe_events(ufw) == [*ahead, ("start",)]
    assert {call[2] for call in calls(ufw, "probe")} == {True}  # with ufw's checks, as initcaps asks
    assert ufw.backend.caps == {key: ["recent-set", "recent-update"] for key in ["4", "6"][: len(ahead)]}
    assert len(restores(ufw)) == 2 * len(ahead) and calls(ufw, "cmd") == []  # two restores a family


def test_enabling_a_running_firewall_or_one_already_probed_probes_as_ufw_does(ufw):
    ufw.backend.enabled = True
    run_batch(ufw, [["--force", "enable"]])
    assert probe_events(ufw) == [("start",), ("probe", "/sbin/iptables"), ("probe", "/sbin/ip6tables")]
    ufw.calls.clear()
    ufw.backend.enabled = False  # stopped again, its capabilities known
    run_batch(ufw, [["--force", "enable"]])
    assert probe_events(ufw) == [("start",)]


@pytest.mark.parametrize("failing", ["restore", "removal"])
def test_a_probe_before_the_start_that_fails_keeps_nothing_and_ufw_probes_after_it(ufw, tmp_path, failing):
    if failing == "restore":  # the first restore commits nothing: ufw's own probe runs after the start
        ufw.backend.iptables_restore = recording_restore(tmp_path, ufw, "iptables-restore", 1)
    else:  # the chain made stays: ufw's clean-up fails (OSError, as in ufw's probe)
        ufw.backend.iptables_restore = str(tmp_path / "second-fails")
        script = f"#!/bin/sh\ncat > /dev/null\n[ -e {tmp_path}/made ] && exit 1\ntouch {tmp_path}/made\n"
        (tmp_path / "second-fails").write_text(script)
        (tmp_path / "second-fails").chmod(0o755)
        ufw.failing.add("-X")
    ufw.backend.ipv6 = False
    run_batch(ufw, [["--force", "enable"]])
    events = probe_events(ufw)
    assert events[: events.index(("start",))] == [("probe", "/sbin/iptables")]  # recorded, then nothing kept
    # after the start: recorded, then ufw's own (the restore fails again), as without the probe before it
    assert events[events.index(("start",)) + 1 :] == [("probe", "/sbin/iptables")] * 2
    assert ufw.backend.caps == {"4": ["recent-set", "recent-update"]}
    cleanup = ["-F", "-X"] if failing == "removal" else []  # ufw's clean-up of the chain, as its probe ends
    assert [call[2] for call in calls(ufw, "cmd")] == [*cleanup, "-N", "-A", "-A", "-F", "-X"]  # then ufw's probe


@pytest.mark.parametrize("removed", [True, False])
def test_a_probe_chain_the_second_restore_leaves_is_removed_as_ufws_probe_removes_it(ufw, tmp_path, removed):
    ufw.backend.iptables_restore = str(tmp_path / "second-fails")
    (tmp_path / "second-fails").write_text(
        f"#!/bin/sh\ncat > /dev/null\n[ -e {tmp_path}/made ] && exit 1\ntouch {tmp_path}/made\n"
    )
    (tmp_path / "second-fails").chmod(0o755)
    if not removed:
        ufw.failing.add("-X")
    UfwBatch(ufw, io.StringIO())
    ufw.calls.clear()
    if removed:
        assert ufw.util.get_netfilter_capabilities("/sbin/iptables") == ["recent-set", "recent-update"]
    else:
        with pytest.raises(OSError, match="gone") as raised:
            ufw.util.get_netfilter_capabilities("/sbin/iptables")
        assert raised.value.errno == errno.ENOENT  # as ufw's probe raises it
    cleanup = [
        ("cmd", "/sbin/iptables", "-F", "ufw-caps-test1234"),
        ("cmd", "/sbin/iptables", "-X", "ufw-caps-test1234"),
    ]
    assert [call for call in ufw.calls if call[0] == "cmd"] == cleanup
    assert [call for call in ufw.calls if call[0] == "probe"] == [("probe", "/sbin/iptables", True)]  # ufw's default


@pytest.mark.parametrize("failing", ["none", "restore", "check"])
def test_logging_chains_are_restored_or_left_to_ufws_own_update_logging(ufw, tmp_path, failing):
    ufw.backend.iptables_restore = recording_restore(tmp_path, ufw, "iptables-restore", int(failing == "restore"))
    if failing == "check":
        ufw.failing_chains.add("ufw6-user-logging-input")
    UfwBatch(ufw, io.StringIO())
    ufw.calls.clear()
    if failing == "check":
        with pytest.raises(UFWError):  # ufw's own run stops at its check, as ufw does
            ufw.backend.update_logging("low")
    else:
        ufw.backend.update_logging("low")
    check = ("ufw6-user-logging-input", "-L", "ufw6-user-logging-input", "-n", False)
    delete = ("ufw6-user-logging-input", "-D", "ufw6-user-logging-input", "-j", "RETURN", True)
    after = "ufw-after-logging-input"
    ufws_own = [(after, "-L", after, "-n", False), check, (after, "-F", after, False), delete]
    ufws_own.append((after, "-A", after, "-j", "LOG", "--log-prefix", "[UFW BLOCK] ", False))
    restore = [
        "iptables-restore -n",
        "*filter",
        f"-F {after}",
        f'-A {after} -j LOG --log-prefix "[UFW BLOCK] "',
        "COMMIT",
    ]
    chains = [call[1:] for call in ufw.calls if call[0] == "chain"]
    runs = [call for call in ufw.calls if call[0] == "update_logging"]
    if failing == "none":  # the -D that may fail: -C finds its rule, and a restore deletes it
        found = ("ufw6-user-logging-input", "-C", "ufw6-user-logging-input", "-j", "RETURN", False)
        deleted = [*restore, "ip6tables-restore -n"]
        assert (runs, restores(ufw), chains) == ([("update_logging", "low")], deleted, [check, found])
    elif failing == "restore":
        assert (runs, restores(ufw), chains) == ([("update_logging", "low")] * 2, restore, [check, *ufws_own])
    else:
        assert (len(runs), restores(ufw), chains) == (2, [], [check, *ufws_own[:2]])


@pytest.mark.parametrize("present", [True, False])
def test_a_delete_and_insert_of_one_rule_go_into_a_restore_when_the_rule_is_there(ufw, tmp_path, present):
    ufw.backend.iptables_restore = recording_restore(tmp_path, ufw, "iptables-restore", 0)
    ufw.backend.ip6tables_restore = recording_restore(tmp_path, ufw, "ip6tables-restore", 0)
    if not present:  # or -C fails for another reason: it cannot tell, so ufw's way
        ufw.failing.add("-C")
    UfwBatch(ufw, io.StringIO())
    ufw.calls.clear()
    ufw.backend.update_logging("off")
    user = "ufw6-user-logging-input"
    checked = [(user, "-L", user, "-n", False), (user, "-C", user, "-j", "RETURN", False)]
    chains = [call[1:] for call in ufw.calls if call[0] == "chain"]
    if present:  # one cheap check, no -D or -I process
        assert chains == checked
        pair = ["ip6tables-restore -n", "*filter", f"-D {user} -j RETURN", f"-I {user} -j RETURN", "COMMIT"]
        assert restores(ufw)[-len(pair) :] == pair
    else:
        assert chains == [*checked, (user, "-D", user, "-j", "RETURN", True), (user, "-I", user, "-j", "RETURN", False)]
        assert "ip6tables-restore -n" not in restores(ufw)
    assert restores(ufw)[0] == "iptables-restore -n"
    assert [call for call in ufw.calls if call[0] == "update_logging"] == [("update_logging", "off")]


def test_a_failing_command_after_the_restores_stops_with_ufws_error_where_ufws_run_stops(ufw, tmp_path):
    # The pair's restore fails (it commits nothing): its commands run as ufw runs them, and its -I fails.
    ufw.backend.iptables_restore = recording_restore(tmp_path, ufw, "iptables-restore", 0)
    ufw.backend.ip6tables_restore = recording_restore(tmp_path, ufw, "ip6tables-restore", 1)
    ufw.failing.add("-I")
    UfwBatch(ufw, io.StringIO())
    ufw.calls.clear()
    with pytest.raises(UFWError, match=r"^Could not update running firewall$"):
        ufw.backend.update_logging("off")
    assert [call for call in ufw.calls if call[0] == "update_logging"] == [("update_logging", "off")]  # not run again
    assert [call[1:3] for call in ufw.calls if call[0] == "chain"] == [
        ("ufw6-user-logging-input", "-L"),
        ("ufw6-user-logging-input", "-C"),
        ("ufw6-user-logging-input", "-D"),
        ("ufw6-user-logging-input", "-I"),
    ]
    assert restores(ufw)[0] == "iptables-restore -n" and "ip6tables-restore -n" in restores(ufw)


def test_a_restore_program_that_cannot_start_is_a_failed_restore(ufw, tmp_path):
    ufw.backend.iptables_restore = str(tmp_path / "missing-restore")
    UfwBatch(ufw, io.StringIO())
    ufw.calls.clear()
    assert ufw.util.get_netfilter_capabilities("/sbin/iptables") == ["recent-set", "recent-update"]
    ufw.backend.update_logging("low")
    assert [call[2] for call in ufw.calls if call[0] == "cmd"] == ["-N", "-A", "-A", "-F", "-X"]  # ufw's probe
    assert len([call for call in ufw.calls if call[0] == "update_logging"]) == 2  # and ufw's update_logging


APP_PROFILES = """[Zimbra-mta]
title=Zimbra MTA peers
description=cluster
ports=25,389,7025/tcp|7026/udp

[Web]
title=Web
description=web
ports=80,443/tcp

[Dns]
title=DNS
description=dns
ports=53
"""
APP_SOURCES = ["10.1.0.1", "10.1.0.2", "2001:db8::7", "10.2.0.0/24", "2001:DB8::/64", "10.1.0.1", "192.168.9.9"]
APP_RULES = [
    *(["allow", "from", source, "to", "any", "app", "Zimbra-mta", "comment", "zimbra_fw"] for source in APP_SOURCES),
    *(["allow", "from", source, "app", "Web"] for source in APP_SOURCES[:4]),  # a source application
    *(["allow", "from", source, "app", "Dns", "to", "any", "app", "Dns"] for source in APP_SOURCES[:3]),  # the same
    *(["deny", "from", source, "app", "Web", "to", "any", "app", "Dns"] for source in APP_SOURCES[:3]),  # two
    *(
        ["allow", "in", "on", "eth0", "from", source, "to", "10.9.0.1", "app", "Web"]
        for source in ("10.1.0.1", "10.3.0.0/16")
    ),
    *(["limit", "from", source, "to", "any", "app", "Dns", "comment", "x y"] for source in APP_SOURCES[3:]),
    ["allow", "to", "any", "app", "Zimbra-mta"],  # from anyone
    ["allow", "Web"],
    ["allow", "Web"],
    ["allow", "to", "2001:db8::1", "app", "Web"],
    ["allow", "to", "2001:db8::1", "app", "Web"],
]


@pytest.mark.skipif(ORACLE_MISSING is not None, reason=str(ORACLE_MISSING))
def test_an_applications_rules_made_by_shape_are_what_ufw_makes_of_each_template():
    results = oracles.ufw_app_rules_by_shape(APP_RULES, APP_PROFILES, os.path.dirname(batch_module.__file__))
    for words, result in zip(APP_RULES, results, strict=True):
        assert "error" not in result["ufw"] and result["ufw"], words
        assert result["shaped"] == result["ufw"], words
    assert len(results[0]["ufw"]) == 2 and {rule["protocol"] for rule in results[0]["ufw"]} == {"tcp", "udp"}
    assert results[2]["ufw"][0]["src"] == "2001:db8::7"


def test_application_rules_are_kept_per_shape_and_its_types_and_forgotten_with_new_profiles():
    owner = types.SimpleNamespace(profiles={"Web": "80"})
    asked = []

    def ufws(template):  # a rule a port group, copies of the template
        asked.append(template.src)
        made = template.dup_rule()
        made.dport = owner.profiles["Web"]
        return [made]

    shaped = UfwBatch.app_rules_by_shape(ufws, owner)

    class AppRule:  # ufw's fields of an application rule, as far as this goes
        def __init__(self, src, v6):
            self.src, self.v6, self.dapp, self.dport = src, v6, "Web", "Web"

        def dup_rule(self):
            copy = AppRule(self.src, self.v6)
            copy.dport = self.dport
            return copy

    def template(source, v6=False):
        return AppRule(source, v6)

    first = shaped(template("10.0.0.1"))
    again = shaped(template("10.0.0.2"))
    assert asked == ["10.0.0.1"] and [(r.src, r.dport) for r in first + again] == [
        ("10.0.0.1", "80"),
        ("10.0.0.2", "80"),
    ]
    again[0].dport = "changed by ufw's code"
    assert shaped(template("10.0.0.3"))[0].dport == "80"
    shaped(template("10.0.0.4", v6=0))  # equal to False, of another type: another shape
    assert asked == ["10.0.0.1", "10.0.0.4"]
    owner.profiles = {"Web": "443"}
    assert [(r.src, r.dport) for r in shaped(template("10.0.0.5"))] == [("10.0.0.5", "443")]
    assert [(r.src, r.dport) for r in shaped(template("10.0.0.6"))] == [("10.0.0.6", "443")]
    marked = template("10.0.0.7")
    marked.normalized_fields = ("10.0.0.7", "any")  # the batch's own mark is no field of the shape
    assert [(r.src, r.dport) for r in shaped(marked)] == [("10.0.0.7", "443")]
    assert asked[2:] == ["10.0.0.5"]
    odd = template("10.0.0.8")
    odd.ports = ["a list"]  # a field that cannot be a key: ufw makes its rules, each time
    assert [(r.src, r.dport) for r in shaped(odd) + shaped(odd)] == [("10.0.0.8", "443")] * 2
    assert asked[2:] == ["10.0.0.5", "10.0.0.8", "10.0.0.8"]


def test_logging_commands_on_chains_none_of_which_is_flushed_run_as_ufw_runs_them():
    user = "ufw-user-logging-input"
    commands = [(user, ["-L", user, "-n"], False), (user, ["-D", user, "-j", "RETURN"], True)]
    commands.append((user, ["-I", user, "-j", "RETURN"], False))
    assert batch_module.logging_plan(commands) == (commands[:1], {}, commands[1:])
    assert batch_module.logging_plan([commands[0], commands[2]]) == (commands[:1], {}, commands[2:])


def pair(chain, *spec, insert_may_fail=False):
    return (chain, ["-D", chain, *spec], True), (chain, ["-I", chain, *spec], insert_may_fail)


def test_delete_and_insert_pairs_of_one_family_on_chains_of_their_own_go_into_one_restore():
    user = [f"ufw{six}-user-logging-{way}" for six in ("", "6") for way in ("input", "output", "forward")]
    limit = ["-m", "limit", "--limit", "3/minute", "-j", "LOG", "--log-prefix", "[UFW LIMIT BLOCK] "]
    pairs = [pair(chain, "-j", "RETURN") for chain in user]
    lone = [("ufw-user-limit", ["-D", "ufw-user-limit", *limit], True)]
    limits = [pair(chain, *limit, insert_may_fail=True) for chain in ("ufw-user-limit", "ufw6-user-limit")]
    # as ufw's update_logging runs them at log level off, then low
    assert batch_module.rest_plan([command for p in pairs for command in p] + lone) == [
        (False, pairs[:3]),
        (True, pairs[3:]),
        (False, [tuple(lone)]),  # a -D that may fail, alone
    ]
    at_low = [command for p in pairs[3:] + limits for command in p]
    # a unit of the other family: a restore of its own
    assert batch_module.rest_plan(at_low) == [(True, pairs[3:]), (False, limits[:1]), (True, limits[1:])]
    again = pair(user[0], "-j", "LOG")  # its chain has a unit in the restore already: the -C would come too early
    assert batch_module.rest_plan([*pairs[0], *again]) == [(False, [pairs[0]]), (False, [again])]
    deletes = [(chain, ["-D", chain, "-j", "RETURN"], True) for chain in user[:2]]
    assert batch_module.rest_plan([*deletes, *pairs[2]]) == [(False, [(deletes[0],), (deletes[1],), pairs[2]])]


def test_commands_other_than_deletes_that_may_fail_and_their_inserts_run_as_ufw_runs_them():
    chain = "ufw-user-logging-input"
    delete, insert = pair(chain, "-j", "RETURN")
    must_delete = (chain, delete[1], False)
    no_rule = (chain, ["-D", chain], True), (chain, ["-I", chain], False)
    by_number = (chain, ["-D", chain, "1"], True), (chain, ["-I", chain, "1", "-j", "RETURN"], False)
    unquotable = pair(chain, "-j", "LOG", "--log-prefix", 'x"y')
    another_chain = ("ufw-user-logging-output", delete[1], True)
    cases = [[must_delete, insert], list(no_rule), list(by_number), list(unquotable), [another_chain]]
    # jumps to a chain (a restore checks for loops once, ufw's processes after each command), or no jump
    jumps = [["-j", "ufw-user-input"], ["-g", "RETURN"], ["-j", "RETURN", "-j", "LOG"], ["-p", "tcp"], ["-j"]]
    jumps += [["-j", "RETURN", option, "ufw-user-input"] for option in ("--jump", "-g", "--goto")]
    cases += [list(pair(chain, *spec)) for spec in jumps]
    for case in cases:
        assert batch_module.rest_plan(case) == [(None, command) for command in case], case
    other_rule = (chain, ["-I", chain, "-j", "LOG"], False)
    other_chain = ("ufw-user-logging-output", ["-I", "ufw-user-logging-output", "-j", "RETURN"], False)
    appended = (chain, ["-A", chain, "-j", "RETURN"], False)
    for after in other_rule, other_chain, appended:  # the -D alone, then ufw's process
        assert batch_module.rest_plan([delete, after]) == [(False, [(delete,)]), (None, after)], after


def test_a_restore_reports_what_it_printed_and_one_that_cannot_start_fails_with_127(tmp_path):
    program = tmp_path / "restore"
    program.write_bytes(b"#!/bin/sh\ncat\nprintf 'bad \\377 byte' >&2\nexit 3\n")
    program.chmod(0o755)
    done = batch_module.run_restore(str(program), ["-F chain"])
    assert (done.returncode, done.stdout) == (3, "*filter\n-F chain\nCOMMIT\n")
    assert done.stderr == "bad \ufffd byte"
    missing = batch_module.run_restore(str(tmp_path / "missing"), ["-F chain"])
    assert (missing.args, missing.returncode, missing.stdout) == ([str(tmp_path / "missing"), "-n"], 127, "")
    assert "No such file" in missing.stderr


def test_ufws_messages_are_translated_as_ufw_translates_them(monkeypatch):
    monkeypatch.delattr(batch_module.builtins, "_", raising=False)
    assert batch_module.translated("Could not update running firewall") == "Could not update running firewall"
    monkeypatch.setattr(batch_module.builtins, "_", lambda text: f"<{text}>", raising=False)
    assert batch_module.translated("Could not update running firewall") == "<Could not update running firewall>"


def test_the_batch_puts_its_pieces_in_ufws_place(ufw):
    made = []
    ufw.backend.get_app_rules_from_template = lambda template: made.append(template) or [template.dup_rule()]
    UfwBatch(ufw, io.StringIO())
    assert isinstance(ufw.backend_iptables.re, batch_module.LiteralFirstRe)
    rule = ufw.backend_iptables.UFWRule(["allow", "from", "10.0.0.1"])  # not as _read_rules calls it: ufw's class
    assert isinstance(rule, ufw.common.UFWRule)
    template = ufw.common.UFWRule(["allow", "from", "10.0.0.1", "app", "Web"])
    assert [copy.src for copy in ufw.backend.get_app_rules_from_template(template)] == ["10.0.0.1"]
    assert made == [template]
