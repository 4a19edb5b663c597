"""Benchmark: zimbra_fw against the tools admins use today, in real-ufw sandboxes.

Run with ``make bench`` (``python -m bench.bench`` from the repository root).

Policies: ``seed`` (pillar.example: profile, app rule, one trusted subnet,
ssh, enabled) and ``cluster-N``: a mailbox with N peers (alternately MTAs
and proxies), each peer one rule ``allow from ADDR to any app Zimbra-ROLE``.
Every tool builds exactly the rules zimbra_fw computes for the policy:

* zimbra_fw                -- ``state.apply zimbra_fw``;
* saltext.ufw              -- ``ufw.rule_present`` etc. from the Salt extension;
* ansible ufw              -- ``community.general.ufw`` tasks, ``ansible-playbook -c local``;
* cmd.run + unless         -- the naive way: ``ufw ...`` guarded by ``ufw show added | grep``.

For each tool and policy, rounds alternate the tools' order; each sample is
a fresh sandbox: a first converge, then a no-op converge. The running
firewall rows (``--running N...``): a mailbox with 2 peers, converged and
active; then N more peers join (+N) and leave again (-N), each timed. With
``--firewalld``: zimbra_fw (backend firewalld), Salt's core firewalld states
and ansible.posix.firewalld against a private firewalld. Reported: median
wall times, the ratio to zimbra_fw in the same run, ufw processes started,
whether the no-op run reported changes, and whether the resulting rules,
profile and firewall state match the policy. ``salt-call --local
test.ping`` is the baseline for what any Salt run costs. Writes
bench/results/latest.json and a plot (``--plot``).
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

import yaml

from bench.tools import FIREWALLD_TOOLS, TOOLS
from harness.sandbox import REPO, SALT_CALL, Lab

sys.path.insert(0, os.path.join(REPO, "_utils"))  # the core, as on a minion after saltutil.sync_all
import zimbra_fw_config
import zimbra_fw_firewalld
import zimbra_fw_policy
import zimbra_fw_ufw
import zimbra_fw_ufw_files

RESULTS = os.path.join(REPO, "bench", "results")


class Policy:
    """A pillar and what zimbra_fw makes of it: profile text and rules; for
    other tools, the rules that must go (``absent``: ufw, ``fw_absent``: firewalld)."""

    def __init__(self, name, pillar, peers=0, absent=(), fw_absent=()):
        self.name, self.pillar, self.peers, self.absent = name, pillar, peers, list(absent)
        self.fw_absent = list(fw_absent)
        policy = zimbra_fw_policy.build(zimbra_fw_config.parse_config(pillar))
        self.profile_text = zimbra_fw_ufw.profile_text(policy)
        self.rules = zimbra_fw_ufw.desired_rules(policy)
        self.fw = zimbra_fw_firewalld.desired(policy)
        self.fw_services, self.fw_rules = self.fw.services, per_source_rules(self.fw)
        self.fw_definitions = zimbra_fw_firewalld.service_definitions(policy)


def per_source_rules(wanted):
    """zimbra_fw's rich rules with each ipset rule as one rule per entry: the
    same access, as tools that do not make ipsets build it."""
    rules = []
    for rule in wanted.rules:
        found = re.search(r'source ipset="([^"]+)" ', rule)
        if found is None:
            rules.append(rule)
            continue
        family = "ipv6" if found.group(1).endswith("-v6") else "ipv4"
        for entry in wanted.entries[found.group(1)]:
            rules.append(rule.replace(found.group(0), f'family="{family}" source address="{entry}" '))
    return tuple(rules)


def seed_policy():
    with open(os.path.join(REPO, "pillar.example"), encoding="utf-8") as handle:
        return Policy("seed", yaml.safe_load(handle)["zimbra_fw"])


def cluster_policy(peers, absent=(), fw_absent=()):
    peer_list = [
        {"name": f"peer{i}", "addresses": [f"10.1.{i // 250}.{i % 250 + 1}"], "roles": ["mta" if i % 2 else "proxy"]}
        for i in range(peers)
    ]
    pillar = {"roles": ["mailbox"], "trusted_subnets": ["192.168.1.0/24"], "cluster": {"peers": peer_list}}
    return Policy(f"cluster-{peers}", pillar, peers, absent, fw_absent)


RUNNING_BASE = 2  # peers before and after: one MTA, one proxy, so no profile comes or goes


def running_change(peers):
    """(before, with N more peers, after they left): a mailbox with an active firewall."""
    before, joined = cluster_policy(RUNNING_BASE), cluster_policy(RUNNING_BASE + peers)
    absent = [rule for rule in joined.rules if rule not in before.rules]
    fw_absent = [rule for rule in joined.fw_rules if rule not in before.fw_rules]
    return before, joined, cluster_policy(RUNNING_BASE, absent, fw_absent)


def matches(minion, policy):
    """Does the sandbox's firewall now hold exactly the policy?"""
    rules = {rule for rule, _ in minion.show_added()}
    active, incoming = zimbra_fw_ufw_files.parse_status(minion.ufw("status", "verbose").stdout)
    profile = minion.guarded(["cat", "/etc/ufw/applications.d/zimbra"], check=False).stdout
    wanted = zimbra_fw_ufw_files.profile_file_ports(policy.profile_text)
    same_profile = all(
        zimbra_fw_ufw_files.profile_file_ports(profile).get(name) == ports for name, ports in wanted.items()
    )
    return rules == set(policy.rules) and active and incoming == "deny" and same_profile


def matches_firewalld(minion, policy, ipsets):
    """Does the sandbox's firewalld hold the policy, permanent and runtime
    alike: zimbra_fw's ipsets and rules (``ipsets``), else one rule a source,
    and none of the rules of peers that left?"""
    for scope in ([], ["--permanent"]):
        services = minion.guarded(["firewall-cmd", *scope, "--list-services"]).stdout.split()
        rules = set(minion.guarded(["firewall-cmd", *scope, "--list-rich-rules"]).stdout.splitlines())
        wanted = policy.fw.rules if ipsets else policy.fw_rules
        if not set(policy.fw_services) <= set(services) or not set(wanted) <= rules or set(policy.fw_absent) & rules:
            return False
        for name, entries in policy.fw.entries.items() if ipsets else ():
            listed = minion.guarded(["firewall-cmd", *scope, f"--ipset={name}", "--get-entries"]).stdout.split()
            if sorted(listed) != sorted(entries):
                return False
        for name, definition in policy.fw_definitions.items():
            info = minion.guarded(["firewall-cmd", *scope, "--info-service", name], check=False).stdout
            ports = next((line.split(":", 1)[1] for line in info.splitlines() if line.strip().startswith("ports:")), "")
            if set(ports.split()) != {f"{port}/{proto}" for port, proto in definition["ports"]}:
                return False
    return True


def checker(tool, firewalld):
    """The ``matches`` for this tool: (minion, policy) -> bool."""

    def check(minion, policy):
        if firewalld:
            return matches_firewalld(minion, policy, ipsets=tool.name == "zimbra_fw")
        return matches(minion, policy)

    return check


def sample(tool, policy, firewalld=False):
    """One fresh sandbox: first converge, then no-op converge."""
    check = checker(tool, firewalld)
    with Lab(firewalld=firewalld) as lab:
        minion = lab.minion
        tool.prepare(minion, policy)
        minion.reset_ufw_counts()
        first, _ = tool.converge(minion, policy)
        first_calls = len(minion.ufw_processes())
        correct = check(minion, policy)
        minion.reset_ufw_counts()
        noop, noop_changed = tool.converge(minion, policy)
        return {
            "first": first, "first_ufw": first_calls, "noop": noop, "noop_ufw": len(minion.ufw_processes()),
            "noop_changed": noop_changed, "correct": correct and check(minion, policy),
        }  # fmt: skip


def sample_running(tool, peers, firewalld=False):
    """One fresh sandbox with the firewall running: time N peers joining, then leaving."""
    before, joined, left = running_change(peers)
    check = checker(tool, firewalld)
    with Lab(firewalld=firewalld) as lab:
        minion = lab.minion
        tool.prepare(minion, before)
        tool.converge(minion, before)
        tool.prepare(minion, joined)
        join, _ = tool.converge(minion, joined)
        correct = check(minion, joined)
        tool.prepare(minion, left)
        leave, _ = tool.converge(minion, left)
        return {"join": join, "leave": leave, "correct": correct and check(minion, left)}


def run_running(peer_counts, tools, rounds, firewalld=False):
    results = {}
    for peers in peer_counts:
        for round_number in range(rounds):
            shift = round_number % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                results.setdefault((peers, tool.name), []).append(sample_running(tool, peers, firewalld))
                print(f"  running +/-{peers:<5} {tool.name:<18} round {round_number + 1}", file=sys.stderr, flush=True)
    return results


def summarise_running(peer_counts, tools, results, ping):
    rows = []
    for peers in peer_counts:
        ours = results[(peers, tools[0].name)]
        ours_join, ours_leave = (statistics.median(s[key] for s in ours) for key in ("join", "leave"))
        for tool in tools:
            samples = results[(peers, tool.name)]
            join, leave = (statistics.median(s[key] for s in samples) for key in ("join", "leave"))
            rows.append({
                "peers": peers, "tool": tool.name, "join_s": join, "join_x": join / ours_join,
                "join_vs_ping": join / ping, "leave_s": leave, "leave_x": leave / ours_leave,
                "leave_vs_ping": leave / ping, "correct": all(s["correct"] for s in samples),
            })  # fmt: skip
    return rows


def print_running_table(rows):
    print("running firewall: N peers join, then leave (x = ratio to zimbra_fw; ping = x salt-call test.ping)")
    print(f"{'peers':>5} {'tool':<17} {'+N s':>7} {'x':>5} {'ping':>5} {'-N s':>7} {'x':>5} {'ping':>5} {'matches':>7}")
    for r in rows:
        print(f"{r['peers']:>5} {r['tool']:<17} {r['join_s']:>7.2f} {r['join_x']:>5.1f} {r['join_vs_ping']:>5.1f} "
              f"{r['leave_s']:>7.2f} {r['leave_x']:>5.1f} {r['leave_vs_ping']:>5.1f} "
              f"{'yes' if r['correct'] else 'NO':>7}")  # fmt: skip


def baseline(rounds):
    times = []
    with Lab() as lab:
        for _ in range(rounds):
            start = time.perf_counter()
            lab.minion.guarded([SALT_CALL, "--local", "-c", lab.minion.config_dir, "test.ping"])
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(policies, tools, rounds, firewalld=False):
    results = {}
    for policy in policies:
        for round_number in range(rounds):
            shift = round_number % len(tools)
            for tool in tools[shift:] + tools[:shift]:  # alternate who goes first
                results.setdefault((policy.name, tool.name), []).append(sample(tool, policy, firewalld))
                print(f"  {policy.name:<12} {tool.name:<18} round {round_number + 1}", file=sys.stderr, flush=True)
    return results


def summarise(policies, tools, results, ping):
    rows = []
    for policy in policies:
        ours = results[(policy.name, tools[0].name)]
        ours_first = statistics.median(s["first"] for s in ours)
        ours_noop = statistics.median(s["noop"] for s in ours)
        for tool in tools:
            samples = results[(policy.name, tool.name)]
            first = statistics.median(s["first"] for s in samples)
            noop = statistics.median(s["noop"] for s in samples)
            rows.append({
                "policy": policy.name, "peers": policy.peers, "rules": len(policy.rules), "tool": tool.name,
                "first_s": first, "first_x": first / ours_first, "first_ufw": max(s["first_ufw"] for s in samples),
                "noop_s": noop, "noop_x": noop / ours_noop, "noop_ufw": max(s["noop_ufw"] for s in samples),
                "noop_vs_ping": noop / ping,
                "idempotent": not any(s["noop_changed"] for s in samples),
                "correct": all(s["correct"] for s in samples),
            })  # fmt: skip
    return rows


def print_table(rows, ping, rounds):
    print(f"medians of {rounds} rounds, tools alternated; x = ratio to zimbra_fw in this run; "
          f"salt-call test.ping = {ping:.2f} s")  # fmt: skip
    header = (f"{'policy':<11} {'rules':>5} {'tool':<17} {'first s':>8} {'x':>5} {'ufw':>5} "
              f"{'no-op s':>8} {'x':>5} {'ufw':>5} {'idempotent':>10} {'matches':>7}")  # fmt: skip
    print(header)
    for r in rows:
        print(f"{r['policy']:<11} {r['rules']:>5} {r['tool']:<17} {r['first_s']:>8.2f} {r['first_x']:>5.1f} "
              f"{r['first_ufw']:>5} {r['noop_s']:>8.2f} {r['noop_x']:>5.1f} {r['noop_ufw']:>5} "
              f"{'yes' if r['idempotent'] else 'NO':>10} {'yes' if r['correct'] else 'NO':>7}")  # fmt: skip


RESULT_FILES = (("latest.json", "ufw"), ("firewalld.json", "firewalld"))


def plot(path, result_files=RESULT_FILES):
    """One figure from the last results of both runs (ufw: latest.json, firewalld:
    firewalld.json), a row each: time against peers, first, no-op, +N, -N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for name, label in result_files:
        if os.path.exists(os.path.join(RESULTS, name)):
            with open(os.path.join(RESULTS, name), encoding="utf-8") as handle:
                runs.append((label, json.load(handle)))
    titles = (("first_s", "first converge"), ("noop_s", "no-op converge"), ("join_s", "running: +N peers"))
    titles += (("leave_s", "running: -N peers"),)
    figure, axes = plt.subplots(len(runs), len(titles), figsize=(5.2 * len(titles), 4 * len(runs)), squeeze=False)
    for row, (label, result) in zip(axes, runs, strict=True):
        cluster = [r for r in result["rows"] if r["policy"].startswith("cluster")]
        for axis, (key, title) in zip(row, titles, strict=True):
            table = cluster if key in ("first_s", "noop_s") else result["running"]
            for tool in dict.fromkeys(r["tool"] for r in table):
                points = sorted((r["peers"], r[key]) for r in table if r["tool"] == tool)
                axis.plot([p for p, _ in points], [t for _, t in points], marker="o", label=tool)
            axis.axhline(result["test_ping_s"], color="grey", linestyle=":", label="test.ping")
            axis.set_title(f"{label}: {title}")
            axis.set_xlabel("peers")
            axis.set_ylabel("wall time, s (median)")
            axis.set_yscale("log")
            axis.grid(True, which="both", alpha=0.3)
        row[0].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description="zimbra_fw against other ufw tools, in sandboxes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", type=int, nargs="*", default=[10, 50, 200], help="first/no-op: cluster sizes")
    parser.add_argument("--running", type=int, nargs="*", default=[50, 200], help="running firewall: peers +/-")
    parser.add_argument("--no-seed", action="store_true", help="leave out the seed policy")
    parser.add_argument("--tools", nargs="*", default=None, help="names (default: all); zimbra_fw always runs")
    parser.add_argument("--plot", default=None, help="write a PNG of both runs' last results here")
    parser.add_argument("--firewalld", action="store_true", help="the firewalld tools")
    args = parser.parse_args(argv)
    every = FIREWALLD_TOOLS if args.firewalld else TOOLS
    tools = [t for t in every if args.tools is None or t.name in args.tools or t is every[0]]
    policies = ([] if args.no_seed else [seed_policy()]) + [cluster_policy(n) for n in args.peers]
    ping = baseline(args.rounds)
    rows = summarise(policies, tools, run(policies, tools, args.rounds, args.firewalld), ping)
    running = run_running(args.running, tools, args.rounds, args.firewalld)
    running_rows = summarise_running(args.running, tools, running, ping)
    print_table(rows, ping, args.rounds)
    print()
    print_running_table(running_rows)
    os.makedirs(RESULTS, exist_ok=True)
    with open(
        os.path.join(RESULTS, "firewalld.json" if args.firewalld else "latest.json"), "w", encoding="utf-8"
    ) as handle:
        json.dump({"test_ping_s": ping, "rounds": args.rounds, "rows": rows, "running": running_rows}, handle, indent=1)
    if args.plot:
        plot(args.plot)
    ours = [r for r in rows if r["tool"] == tools[0].name]
    ok = all(r["noop_ufw"] <= 2 and r["idempotent"] and r["correct"] for r in ours)
    ok = ok and all(r["correct"] for r in running_rows if r["tool"] == tools[0].name)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
