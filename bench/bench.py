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
a fresh sandbox: a first converge, then a no-op converge. Reported: median
wall times, the ratio to zimbra_fw in the same run, ufw processes started,
whether the no-op run reported changes, and whether the resulting rules,
profile and firewall state match the policy. ``salt-call --local
test.ping`` is the baseline for what any Salt run costs. Writes
bench/results/latest.json and a plot (``--plot``).
"""

import argparse
import json
import os
import statistics
import sys
import time

import yaml

from bench.tools import TOOLS
from harness.sandbox import REPO, SALT_CALL, Lab

sys.path.insert(0, os.path.join(REPO, "_utils"))  # the core, as on a minion after saltutil.sync_all
import zimbra_fw_config
import zimbra_fw_policy
import zimbra_fw_ufw
import zimbra_fw_ufw_files

RESULTS = os.path.join(REPO, "bench", "results")


class Policy:
    """A pillar and what zimbra_fw makes of it: profile text and rules."""

    def __init__(self, name, pillar, peers=0):
        self.name, self.pillar, self.peers = name, pillar, peers
        policy = zimbra_fw_policy.build(zimbra_fw_config.parse_config(pillar))
        self.profile_text = zimbra_fw_ufw.profile_text(policy)
        self.rules = zimbra_fw_ufw.desired_rules(policy)


def seed_policy():
    with open(os.path.join(REPO, "pillar.example"), encoding="utf-8") as handle:
        return Policy("seed", yaml.safe_load(handle)["zimbra_fw"])


def cluster_policy(peers):
    peer_list = [
        {"name": f"peer{i}", "addresses": [f"10.1.{i // 250}.{i % 250 + 1}"], "roles": ["mta" if i % 2 else "proxy"]}
        for i in range(peers)
    ]
    pillar = {"roles": ["mailbox"], "trusted_subnets": ["192.168.1.0/24"], "cluster": {"peers": peer_list}}
    return Policy(f"cluster-{peers}", pillar, peers)


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


def sample(tool, policy):
    """One fresh sandbox: first converge, then no-op converge."""
    with Lab() as lab:
        minion = lab.minion
        tool.prepare(minion, policy)
        minion.reset_ufw_counts()
        first, _ = tool.converge(minion, policy)
        first_calls = len(minion.ufw_processes())
        correct = matches(minion, policy)
        minion.reset_ufw_counts()
        noop, noop_changed = tool.converge(minion, policy)
        return {
            "first": first, "first_ufw": first_calls, "noop": noop, "noop_ufw": len(minion.ufw_processes()),
            "noop_changed": noop_changed, "correct": correct and matches(minion, policy),
        }  # fmt: skip


def baseline(rounds):
    times = []
    with Lab() as lab:
        for _ in range(rounds):
            start = time.perf_counter()
            lab.minion.guarded([SALT_CALL, "--local", "-c", lab.minion.config_dir, "test.ping"])
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(policies, tools, rounds):
    results = {}
    for policy in policies:
        for round_number in range(rounds):
            shift = round_number % len(tools)
            for tool in tools[shift:] + tools[:shift]:  # alternate who goes first
                results.setdefault((policy.name, tool.name), []).append(sample(tool, policy))
                print(f"  {policy.name:<12} {tool.name:<18} round {round_number + 1}", file=sys.stderr, flush=True)
    return results


def summarise(policies, tools, results, ping):
    rows = []
    for policy in policies:
        ours = results[(policy.name, TOOLS[0].name)]
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


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cluster = [r for r in rows if r["policy"].startswith("cluster")]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, key, title in ((axes[0], "first_s", "first converge"), (axes[1], "noop_s", "no-op converge")):
        for tool in dict.fromkeys(r["tool"] for r in cluster):
            points = sorted((r["peers"], r[key]) for r in cluster if r["tool"] == tool)
            axis.plot([p for p, _ in points], [t for _, t in points], marker="o", label=tool)
        axis.set_title(title)
        axis.set_xlabel("peers (one rule each)")
        axis.set_ylabel("wall time, s (median)")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description="zimbra_fw against other ufw tools, in sandboxes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", type=int, nargs="*", default=[10, 50, 200])
    parser.add_argument("--tools", nargs="*", default=[t.name for t in TOOLS], help="names, zimbra_fw first")
    parser.add_argument("--plot", default=None, help="write a PNG of time against peers here")
    args = parser.parse_args(argv)
    tools = [t for t in TOOLS if t.name in args.tools or t is TOOLS[0]]
    policies = [seed_policy()] + [cluster_policy(n) for n in args.peers]
    ping = baseline(args.rounds)
    results = run(policies, tools, args.rounds)
    rows = summarise(policies, tools, results, ping)
    print_table(rows, ping, args.rounds)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "latest.json"), "w", encoding="utf-8") as handle:
        json.dump({"test_ping_s": ping, "rounds": args.rounds, "rows": rows}, handle, indent=1)
    if args.plot:
        plot(rows, args.plot)
    ours = [r for r in rows if r["tool"] == TOOLS[0].name]
    ok = all(r["noop_ufw"] <= 2 and r["idempotent"] and r["correct"] for r in ours)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
