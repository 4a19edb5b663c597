"""zimbra_fw's ufw layer against ufw itself.

zimbra_fw_ufw_batch: the same commands, one ufw process each in one sandbox
(the path zimbra_fw falls back to) and all in one batch process in another,
must leave the same rules files and the same loaded iptables rules, byte for
byte -- inactive and active (where the batch loads the rules files with one
``iptables-restore -n`` per family), with deletes, profile updates and IPv6,
and when a command fails half-way. Reading the rules files must give what
``ufw show added`` prints."""

import json
import os

import pytest
import zimbra_fw_ufw as ufw
import zimbra_fw_ufw_files as ufw_files

from harness.sandbox import REPO, UFW, Minion, Topology, replace_line

BATCH = os.path.join(REPO, "_utils", "zimbra_fw_ufw_batch.py")
PROFILE = """[Zimbra]
title=Zimbra
description=public
ports=25,80,443/tcp

[Zimbra-mta]
title=Zimbra MTA peers
description=cluster
ports=25,389,7025/tcp|7026/udp
"""
PEERS = [f"10.1.{i // 200}.{i % 200 + 1}" for i in range(30)]


def rule(*args):
    return [*args, "comment", "zimbra_fw"]


FIRST = [
    rule("allow", "22/tcp"),
    rule("allow", "from", "192.168.1.0/24"),
    rule("allow", "from", "2001:db8::/64"),
    *(rule("allow", "from", peer, "to", "any", "app", "Zimbra-mta") for peer in PEERS),
    rule("allow", "Zimbra"),
    ["allow", "from", "10.2.0.1", "to", "any", "port", "389", "proto", "tcp"],
    ["deny", "23"],
]
SECOND = [
    rule("allow", "from", "10.9.0.1", "to", "any", "app", "Zimbra-mta"),
    ["delete", *rule("allow", "from", PEERS[3], "to", "any", "app", "Zimbra-mta")],
    ["delete", "deny", "23"],
    rule("allow", "from", "172.16.0.0/12"),
]


def set_profile(minion, text):
    with open(os.path.join(minion.state, "etc-ufw", "applications.d", "zimbra"), "w", encoding="utf-8") as handle:
        handle.write(text)


class Twins(Topology):
    """Two sandboxed minions with the same ufw: one for the ufw command, one for the batch."""

    def __init__(self):
        super().__init__()
        try:
            self.cli = self._add(Minion(f"{self.prefix}-cli", self.workdir))
            self.batch = self._add(Minion(f"{self.prefix}-bat", self.workdir))
        except BaseException:
            self.close()
            raise
        for minion in (self.cli, self.batch):
            set_profile(minion, PROFILE)


@pytest.fixture
def twins():
    with Twins() as pair:
        yield pair


def one_by_one(minion, commands):
    """Each command as its own ``ufw`` process; stops at the first failure."""
    for index, argv in enumerate(commands):
        if minion.ufw(*argv, check=False).returncode != 0:
            return index
    return len(commands)


def batched(minion, commands):
    out = minion.guarded([ufw.ufw_python(UFW), "-I", BATCH, UFW], stdin=json.dumps(commands), check=False)
    return [json.loads(line) for line in out.stdout.splitlines()], out.returncode


def firewall(minion):
    state = minion.snapshot()
    return {name: text for name, text in state.items() if name.endswith(("user.rules", "user6.rules", "-save"))}


def test_batch_builds_what_ufw_builds_one_command_at_a_time(twins):
    assert one_by_one(twins.cli, FIRST) == len(FIRST)
    report, code = batched(twins.batch, FIRST)
    assert code == 0
    assert report == [{"done": i} for i in range(len(FIRST))]
    assert firewall(twins.batch) == firewall(twins.cli)
    assert "ENABLED=no" in open(os.path.join(twins.batch.state, "etc-ufw", "ufw.conf"), encoding="utf-8").read()

    for minion in (twins.cli, twins.batch):
        minion.ufw("--force", "enable")
    assert one_by_one(twins.cli, SECOND) == len(SECOND)
    report, code = batched(twins.batch, SECOND)
    assert (report, code) == ([{"done": i} for i in range(len(SECOND))], 0)
    after = firewall(twins.batch)
    assert after == firewall(twins.cli)
    assert b"10.9.0.1" in after["iptables-save"] and f"{PEERS[3]} ".encode() not in after["iptables-save"]


NEW_PEERS = [f"10.1.1.{i}" for i in range(1, 11)]
V6_PEERS = [f"2001:db8:50::{i + 1:x}" for i in range(6)]
CHANGED_PROFILE = PROFILE.replace("7025/tcp", "7025,7026/tcp").replace("443/tcp", "443,465/tcp")
JOIN = [
    *(rule("allow", "from", peer, "to", "any", "app", "Zimbra-mta") for peer in NEW_PEERS + V6_PEERS),
    rule("limit", "from", "10.2.0.2", "to", "any", "port", "2222", "proto", "tcp"),
    # ufw remakes a profile's rules from a copy of the first one, flags and
    # all (multiport on the single UDP port); its next process reads them
    # back without. The batch reads them back too.
    ["app", "update", "Zimbra-mta"],
    ["app", "update", "Zimbra"],
]
LEAVE = [
    *(["delete", *rule("allow", "from", peer, "to", "any", "app", "Zimbra-mta")] for peer in PEERS[:10] + V6_PEERS[:3]),
    ["delete", "allow", "Zimbra"],
]


def test_on_a_running_firewall_the_batch_loads_what_ufw_loads_rule_by_rule(twins):
    # The same files either way (the first test shows it): the batch sets up its twin in one process.
    assert one_by_one(twins.cli, FIRST) == len(FIRST)
    assert batched(twins.batch, FIRST)[1] == 0
    for minion in (twins.cli, twins.batch):
        minion.ufw("--force", "enable")
        set_profile(minion, CHANGED_PROFILE)
    for commands in (JOIN, LEAVE):
        assert one_by_one(twins.cli, commands) == len(commands)
        report, code = batched(twins.batch, commands)
        assert (report, code) == ([{"done": i} for i in range(len(commands))], 0)
        assert firewall(twins.batch) == firewall(twins.cli)
    loaded = firewall(twins.batch)
    assert b"-s 10.1.1.10/32" in loaded["iptables-save"] and b"2001:db8:50::6/128" in loaded["ip6tables-save"]
    assert b"-s 10.1.0.1/32" not in loaded["iptables-save"] and b"2001:db8:50::1/128" not in loaded["ip6tables-save"]


def test_a_failed_load_puts_the_rules_files_back(twins):
    minion = twins.batch
    assert batched(minion, FIRST)[1] == 0
    minion.ufw("--force", "enable")
    before = firewall(minion)
    minion.set_fault("ip6tables-restore")
    report, code = batched(minion, JOIN)
    minion.set_fault("ip6tables-restore", on=False)
    assert code == 1
    assert report == [{"failed": 0, "error": report[-1]["error"]}], report
    assert "loading /etc/ufw/user6.rules into the running firewall ('/bin/false -n') failed" in report[0]["error"]
    assert firewall(minion) == before


def test_batch_stops_at_a_failing_command_and_keeps_what_it_applied(twins):
    commands = [*FIRST[:5], rule("allow", "from", "10.3.0.1", "to", "any", "app", "NoSuchProfile"), *FIRST[5:8]]
    assert one_by_one(twins.cli, commands) == 5
    report, code = batched(twins.batch, commands)
    assert code == 1
    assert report[:5] == [{"done": i} for i in range(5)]
    assert report[5]["failed"] == 5 and "NoSuchProfile" in report[5]["error"]
    assert len(report) == 6
    assert firewall(twins.batch) == firewall(twins.cli)


EXOTIC = [
    ["allow", "out", "53/udp"],
    ["deny", "in", "on", "lo", "log", "from", "10.9.0.0/16", "to", "any", "port", "23", "proto", "tcp"],
    ["reject", "out", "on", "lo", "to", "10.8.0.0/16", "port", "25"],
    ["limit", "log-all", "from", "10.4.0.1", "to", "any", "port", "2222", "proto", "tcp"],
    ["limit", "log", "2222/tcp", "comment", "several words here"],
    ["allow", "from", "10.7.0.1", "port", "1000:1010", "proto", "udp"],
    ["route", "allow", "in", "on", "lo", "out", "on", "lo", "to", "10.6.0.0/16"],
    ["allow", "to", "fd00::1", "port", "8080", "proto", "tcp", "comment", "v6 only"],
    ["allow", "from", "10.5.0.0/24", "to", "any", "app", "Zimbra-mta"],
    ["deny", "proto", "udp", "to", "any", "port", "161"],
]


def test_rules_files_read_as_ufw_show_added_prints_them(twins):
    minion = twins.cli
    assert one_by_one(minion, FIRST[:8] + EXOTIC) == 8 + len(EXOTIC)
    texts = []
    for name in ("user.rules", "user6.rules"):
        with open(os.path.join(minion.state, "etc-ufw", name), encoding="utf-8") as handle:
            texts.append(handle.read())
    from_files = ufw_files.rules_from_files(texts)
    assert from_files == minion.show_added()
    assert len(from_files) == 8 + len(EXOTIC)


# Commands whose outcome depends on the rules already there: ufw compares a
# rule with every rule; the batch only with those that can match (its
# RuleIndex), and must end with the same files and chains.
MATCHING = [
    rule("allow", "22/tcp"),  # there already: skipped
    rule("allow", "from", "10.2.0.1", "to", "any", "port", "389", "proto", "tcp"),  # there without a comment: adopted
    rule("deny", "from", PEERS[5], "to", "any", "app", "Zimbra-mta"),  # another action: replaced in its place
    ["delete", "allow", "from", "10.99.0.1"],  # not there
    ["delete", "deny", "22/tcp"],  # there with another action: kept
    rule("allow", "from", "10.9.9.9"),
    ["delete", "allow", "from", "10.9.9.9"],  # added and deleted in one batch
    rule("allow", "from", "10.8.8.8"),
    rule("allow", "from", "10.8.8.8"),  # twice in one batch
    rule("allow", "from", "2001:db8::5", "to", "any", "app", "Zimbra-mta"),
    ["delete", *rule("allow", "from", "2001:db8::/64")],
    ["delete", *rule("allow", "from", PEERS[7], "to", "any", "app", "Zimbra-mta")],  # tcp and udp tuples
    ["delete", *rule("allow", "Zimbra")],  # both families
    rule("allow", "from", PEERS[9], "to", "any", "app", "Zimbra-mta"),  # there: skipped
    rule("limit", "from", "10.3.3.3", "to", "any", "port", "2222", "proto", "tcp"),
]


@pytest.mark.parametrize("running", [False, True], ids=["inactive", "running"])
def test_rules_that_match_others_end_as_ufw_leaves_them(twins, running):
    assert one_by_one(twins.cli, FIRST) == len(FIRST)
    assert batched(twins.batch, FIRST)[1] == 0  # the same files (the first test shows it), in one process
    for minion in (twins.cli, twins.batch):
        if running:
            minion.ufw("--force", "enable")
    assert one_by_one(twins.cli, MATCHING) == len(MATCHING)
    report, code = batched(twins.batch, MATCHING)
    assert (report, code) == ([{"done": i} for i in range(len(MATCHING))], 0)
    assert firewall(twins.batch) == firewall(twins.cli)
    rules = {words: comment for words, comment in twins.batch.show_added()}
    assert rules[("allow", "from", "10.2.0.1", "to", "any", "port", "389", "proto", "tcp")] == "zimbra_fw"
    assert ("deny", "from", PEERS[5], "to", "any", "app", "Zimbra-mta") in rules
    assert ("allow", "from", "10.9.9.9") not in rules and ("allow", "Zimbra") not in rules


# Runs ufw's program, or the batch, with every process it starts counted.
COUNTED = r"""
import json, runpy, subprocess, sys
started = []
popen_init = subprocess.Popen.__init__
def counted(self, args, *more, **named):
    started.append(args[0].rsplit("/", 1)[-1])
    popen_init(self, args, *more, **named)
subprocess.Popen.__init__ = counted
program, ufw, commands = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
try:
    if program == "ufw":
        sys.argv = [ufw, *commands[0]]
        runpy.run_path(ufw, run_name="__main__")
    else:
        sys.path.insert(0, program.rsplit("/", 1)[0])
        sys.argv, sys.stdin = [program, ufw], __import__("io").StringIO(json.dumps(commands))
        runpy.run_path(program, run_name="__main__")
finally:
    sys.stderr.write("STARTED " + json.dumps(started) + "\n")
"""


def counted_run(minion, program, commands):
    """Which programs a ufw command (program "ufw") or a batch of commands started."""
    argv = [ufw.ufw_python(UFW), "-I", "-c", COUNTED, program, UFW, json.dumps(commands)]
    out = minion.guarded(argv, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [line for line in out.stderr.splitlines() if line.startswith("STARTED ")][-1]
    return json.loads(line[len("STARTED ") :])


def set_loglevel(minion, level):
    replace_line(os.path.join(minion.state, "etc-ufw", "ufw.conf"), "LOGLEVEL=", f"LOGLEVEL={level}")


@pytest.mark.parametrize("level", ["off", "low"])
def test_enabling_through_the_batch_loads_what_ufw_loads_with_fewer_processes(twins, level):
    # ufw probes netfilter's capabilities (5 processes a family) and fills
    # its logging chains (about 70) one iptables process a command; the
    # batch does most of it in a restore or two a family.
    assert one_by_one(twins.cli, FIRST) == len(FIRST)
    assert batched(twins.batch, FIRST)[1] == 0
    for minion in (twins.cli, twins.batch):
        set_loglevel(minion, level)
    by_ufw = counted_run(twins.cli, "ufw", [["--force", "enable"]])
    by_batch = counted_run(twins.batch, BATCH, [["--force", "enable"]])
    assert firewall(twins.batch) == firewall(twins.cli)
    iptables = ("iptables", "ip6tables")
    assert by_ufw.count("ufw-init") == by_batch.count("ufw-init") == 1
    assert sum(by_ufw.count(name) for name in iptables) >= 60, by_ufw
    assert sum(by_batch.count(name) for name in iptables) <= 28, by_batch
    started = by_batch.index("ufw-init")
    # the probe before ufw starts its chains: two restores a family
    assert [by_batch[:started].count(f"{name}-restore") for name in iptables] == [2, 2], by_batch
    # after: the logging chains, then the user logging chains' deletes and inserts
    assert 4 <= sum(by_batch[started:].count(f"{name}-restore") for name in iptables) <= 6, by_batch


def test_log_levels_set_through_the_batch_load_what_ufw_loads(twins):
    assert one_by_one(twins.cli, FIRST) == len(FIRST)
    assert batched(twins.batch, FIRST)[1] == 0
    for minion in (twins.cli, twins.batch):
        minion.ufw("--force", "enable")
    for level in ("medium", "full", "off", "high", "low"):
        assert twins.cli.ufw("logging", level).returncode == 0
        assert batched(twins.batch, [["logging", level]]) == ([{"done": 0}], 0)
        assert firewall(twins.batch) == firewall(twins.cli), level
    assert one_by_one(twins.cli, [["--force", "enable"]]) == 1  # again, on a running firewall
    assert batched(twins.batch, [["--force", "enable"]]) == ([{"done": 0}], 0)
    assert firewall(twins.batch) == firewall(twins.cli)


def test_when_the_restores_fail_the_batch_enables_as_ufw_does(twins):
    # ip6tables-restore is /bin/false for ufw's code in the batch's sandbox:
    # the capability probe and the logging restore of IPv6 fail, and ufw's
    # own code runs instead (after the IPv4 restore was loaded).
    assert one_by_one(twins.cli, FIRST) == len(FIRST)
    assert batched(twins.batch, FIRST)[1] == 0
    for minion in (twins.cli, twins.batch):
        set_loglevel(minion, "low")
    twins.batch.set_fault("ip6tables-restore")
    assert one_by_one(twins.cli, [["--force", "enable"]]) == 1
    by_batch = counted_run(twins.batch, BATCH, [["--force", "enable"]])
    twins.batch.set_fault("ip6tables-restore", on=False)
    assert by_batch.count("false") >= 2 and by_batch.count("ip6tables") >= 30, by_batch
    assert firewall(twins.batch) == firewall(twins.cli)
