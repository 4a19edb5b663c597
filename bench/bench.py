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

With ``--nftables``: zimbra_fw (backend nftables, one table replaced in one
transaction) and Salt's core nftables states (table_present, chain_present,
one append per rule and source, delete for peers that left, set_policy),
each judged by what its tables let in (every input-hook chain dropping by
default, the allowed (source, port) pairs those of the policy).

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

from bench.tools import FIREWALLD_TOOLS, LIMIT, NFTABLES_TOOLS, TOOLS, DidNotFinish
from harness.sandbox import REPO, SALT_CALL, Lab

sys.path.insert(0, os.path.join(REPO, "_utils"))  # the core, as on a minion after saltutil.sync_all
import zimbra_fw_config
import zimbra_fw_firewalld
import zimbra_fw_firewalld_files
import zimbra_fw_nftables
import zimbra_fw_nftables_files
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
        self.core, self.nft_absent = policy, []  # nft_absent: accesses of peers that left


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


ONE_ADDRESS_UP_TO = 2000  # peers; above, each peer brings a second address (the config takes 5,000 peers)


def _address(index, network=1):
    return f"10.{network}.{index // 250}.{index % 250 + 1}"


def cluster_policy(addresses, absent=(), fw_absent=()):
    """A mailbox with ``addresses`` peer addresses (alternately MTAs and
    proxies): one per peer up to ONE_ADDRESS_UP_TO, two per peer above, the
    second from 10.2/16, so that a smaller cluster's rules stay in a larger one's."""
    per_peer = 1 if addresses <= ONE_ADDRESS_UP_TO else 2
    peer_list = [
        {
            "name": f"peer{i}",
            "addresses": [
                _address(i),
                *([_address(i, 2)] if per_peer == 2 and i + (addresses + 1) // 2 < addresses else []),
            ],
            "roles": ["mta" if i % 2 else "proxy"],
        }
        for i in range((addresses + per_peer - 1) // per_peer)
    ]
    pillar = {"roles": ["mailbox"], "trusted_subnets": ["192.168.1.0/24"], "cluster": {"peers": peer_list}}
    return Policy(f"cluster-{addresses}", pillar, addresses, absent, fw_absent)


RUNNING_BASE = 2  # peers before and after: one MTA, one proxy, so no profile comes or goes


def running_change(peers):
    """(before, with N more peers, after they left): a mailbox with an active firewall."""
    before, joined = cluster_policy(RUNNING_BASE), cluster_policy(RUNNING_BASE + peers)
    absent = [rule for rule in joined.rules if rule not in before.rules]
    fw_absent = [rule for rule in joined.fw_rules if rule not in before.fw_rules]
    left = cluster_policy(RUNNING_BASE, absent, fw_absent)
    left.nft_absent = [access for access in joined.core.accesses if access not in before.core.accesses]
    return before, joined, left


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


def _port_keys(specs):
    """PortSpecs as (port, proto) keys, a long range as one key: rules that
    merge or split ports compare alike."""
    if specs is None:
        return {None}
    keys = set()
    for spec in specs:
        if spec.last - spec.first > 100:
            keys.add((spec.first, spec.last, spec.proto))
        else:
            keys.update((port, spec.proto) for port in range(spec.first, spec.last + 1))
    return keys


def nft_allowed(minion):
    """(every chain on the input hook drops by default, {(source, port key)}
    its rules accept), from ``nft -j list ruleset``."""
    items = json.loads(minion.nft("-j", "list", "ruleset").stdout)["nftables"]
    sets, policies, rules = {}, {}, []
    for item in items:
        kind, found = next(iter(item.items()))
        table = (found.get("family"), found.get("table"))
        if kind == "set":
            elements = tuple(zimbra_fw_nftables_files.value_text(e) for e in found.get("elem") or ())
            sets.setdefault(table, {})[found["name"]] = zimbra_fw_nftables_files.NftSet(found["type"], (), elements)
        elif kind == "chain" and found.get("hook") == "input":
            policies[(*table, found["name"])] = found.get("policy")
        elif kind == "rule":
            rules.append(((*table, found["chain"]), found["expr"]))
    allowed = set()
    for chain, exprs in rules:
        for rule in zimbra_fw_nftables._rule_access(exprs, sets.get(chain[:2], {})) if chain in policies else ():
            if rule.action == "allow":
                allowed |= {(rule.source, key) for key in _port_keys(rule.ports)}
    return bool(policies) and set(policies.values()) == {"drop"}, allowed


def matches_nftables(minion, policy):
    """Does the sandbox's nftables let in exactly what the policy allows, and drop the rest?"""
    drops, allowed = nft_allowed(minion)
    wanted = {
        (zimbra_fw_config.source_text(access.source) if access.source else "any", key)
        for access in policy.core.accesses
        for key in _port_keys(access.ports)
    }
    return drops and allowed == wanted


def checker(tool, backend):
    """The ``matches`` for this tool: (minion, policy) -> bool."""

    def check(minion, policy):
        if backend == "firewalld":
            return matches_firewalld(minion, policy, ipsets=tool.name == "zimbra_fw")
        if backend == "nftables":
            return matches_nftables(minion, policy)
        return matches(minion, policy)

    return check


BASELINE_SLS = "bench_one_state"


def baselines(minion):
    """What any Salt run costs, measured in the sample's own sandbox right
    before it: ``salt-call test.ping`` and a ``state.apply`` of one state."""
    path = os.path.join(minion.state, "srv", f"{BASELINE_SLS}.sls")
    if not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump({"bench-one-state": {"test.nop": []}}, handle)
    # Untimed first: a fresh sandbox's first salt-call pays once for what
    # later calls find done (caches, the file server's map).
    timed_salt(minion, "test.ping")
    return {"ping": timed_salt(minion, "test.ping"), "one_state": one_state(minion)}


def timed_salt(minion, *args):
    start = time.perf_counter()
    done = minion.guarded([SALT_CALL, "--local", "-c", minion.config_dir, "--out", "quiet", *args], check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        said = f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        raise RuntimeError(f"salt-call {' '.join(args)}: exit {done.returncode}\n{said}")
    return seconds


def one_state(minion):
    return timed_salt(minion, "state.apply", BASELINE_SLS)


# No-ops per sample, each right after a one-state run (a tool whose no-op
# takes longer than NOOP_REPEAT_UNDER seconds gets one pair).
NOOP_PAIRS = 3
NOOP_REPEAT_UNDER = 10


def reset_counts(minion):
    minion.reset_ufw_counts()
    minion.reset_nft_counts()


def firewall_processes(minion, backend):
    """ufw processes, or with nftables nft processes, since the last reset."""
    return len(minion.nft_commands() if backend == "nftables" else minion.ufw_processes())


def sample(tool, policy, backend="ufw"):
    """One fresh sandbox: the baselines, a first converge, then no-op
    converges, each right after a one-state run."""
    check = checker(tool, backend)
    with Lab(firewalld=backend == "firewalld", nftables=backend == "nftables") as lab:
        minion = lab.minion
        tool.prepare(minion, policy)
        measured = baselines(minion)
        reset_counts(minion)
        try:
            first, _ = tool.converge(minion, policy)
        except DidNotFinish:
            return {**measured, "dnf": True}
        first_calls = firewall_processes(minion, backend)
        correct = check(minion, policy)
        pairs, noop_changed = [], False
        for _ in range(NOOP_PAIRS):
            state = one_state(minion)
            reset_counts(minion)
            noop, changed = tool.converge(minion, policy)
            pairs.append((noop, state, firewall_processes(minion, backend)))
            noop_changed = noop_changed or changed
            if noop > NOOP_REPEAT_UNDER:
                break
        return {
            **measured, "first": first, "first_ufw": first_calls,
            "noop": statistics.median(p[0] for p in pairs), "noop_one_state": statistics.median(p[1] for p in pairs),
            "noop_ufw": max(p[2] for p in pairs), "noop_changed": noop_changed,
            "correct": correct and check(minion, policy),
        }  # fmt: skip


def sample_running(tool, peers, backend="ufw"):
    """One fresh sandbox with the firewall running: N peers joining and
    leaving, each timed, each right after its baselines, which run with the
    input of that converge (its pillar), as a first converge's do."""
    before, joined, left = running_change(peers)
    check = checker(tool, backend)
    with Lab(firewalld=backend == "firewalld", nftables=backend == "nftables") as lab:
        minion = lab.minion
        tool.prepare(minion, before)
        tool.converge(minion, before)
        measured = {}
        try:
            tool.prepare(minion, joined)
            measured.update({f"{key}_join": value for key, value in baselines(minion).items()})
            join, _ = tool.converge(minion, joined)
            correct = check(minion, joined)
            tool.prepare(minion, left)
            measured.update({f"{key}_leave": value for key, value in baselines(minion).items()})
            leave, _ = tool.converge(minion, left)
        except DidNotFinish:
            return {**measured, "dnf": True}
        return {**measured, "join": join, "leave": leave, "correct": correct and check(minion, left)}


def alternated(sizes, tools, rounds, take):
    """``{(size, tool name): [samples]}``: ``take(tool, size)`` for every size
    (smallest first) and round, the tools' order rotating each round. A tool
    that did not finish at a size is not run at the larger ones."""
    results, stopped = {}, set()
    for size in sizes:
        for round_number in range(rounds):
            shift = round_number % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                if tool.name in stopped:
                    found = {"dnf": True, "skipped": True}
                else:
                    found = take(tool, size)
                    print(f"  {size!s:<16} {tool.name:<18} round {round_number + 1}", file=sys.stderr, flush=True)
                stopped.update([tool.name] if found.get("dnf") else [])
                results.setdefault((size, tool.name), []).append(found)
    return results


def _median(samples, key):
    values = [s[key] for s in samples if key in s]
    return statistics.median(values) if values else None


def _ratio(value, base):
    return None if value is None or not base else value / base


def _base(results, size, suffix=""):
    """The median baselines of every sample taken at ``size``, whichever tool
    (``suffix``: those taken before a running change, ``_join`` or ``_leave``)."""
    samples = [s for (found_size, _), group in results.items() if found_size == size for s in group]
    return _median(samples, f"ping{suffix}"), _median(samples, f"one_state{suffix}")


def summarise(policies, tools, results):
    rows = []
    for policy in policies:
        ping, one_state = _base(results, policy.name)
        ours = results[(policy.name, tools[0].name)]
        ours_first, ours_noop = _median(ours, "first"), _median(ours, "noop")
        for tool in tools:
            samples = results[(policy.name, tool.name)]
            done = not any(s.get("dnf") for s in samples)
            first = _median(samples, "first") if done else None
            noop = _median(samples, "noop") if done else None
            rows.append({
                "policy": policy.name, "peers": policy.peers, "rules": len(policy.rules), "tool": tool.name,
                "finished": done, "ping_s": ping, "one_state_s": one_state,
                "first_s": first, "first_x": _ratio(first, ours_first), "first_vs_ping": _ratio(first, ping),
                "first_ufw": max(s["first_ufw"] for s in samples) if done else None,
                "noop_s": noop, "noop_x": _ratio(noop, ours_noop), "noop_vs_ping": _ratio(noop, ping),
                "noop_vs_one_state": _ratio(noop, _median(samples, "noop_one_state") if done else None),
                "noop_ufw": max(s["noop_ufw"] for s in samples) if done else None,
                "idempotent": done and not any(s["noop_changed"] for s in samples),
                "correct": done and all(s["correct"] for s in samples),
            })  # fmt: skip
    return rows


def summarise_running(peer_counts, tools, results):
    rows = []
    for peers in peer_counts:
        (ping_join, _), (ping_leave, _) = _base(results, peers, "_join"), _base(results, peers, "_leave")
        ours = results[(peers, tools[0].name)]
        ours_join, ours_leave = _median(ours, "join"), _median(ours, "leave")
        for tool in tools:
            samples = results[(peers, tool.name)]
            done = not any(s.get("dnf") for s in samples)
            join = _median(samples, "join") if done else None
            leave = _median(samples, "leave") if done else None
            rows.append({
                "peers": peers, "tool": tool.name, "finished": done,
                "ping_join_s": ping_join, "ping_leave_s": ping_leave,
                "join_s": join, "join_x": _ratio(join, ours_join), "join_vs_ping": _ratio(join, ping_join),
                "leave_s": leave, "leave_x": _ratio(leave, ours_leave), "leave_vs_ping": _ratio(leave, ping_leave),
                "correct": done and all(s["correct"] for s in samples),
            })  # fmt: skip
    return rows


def _cell(value, width, digits=2):
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _yes(flag, finished):
    return "yes" if flag else "NO" if finished else "dnf"


def print_running_table(rows):
    print("running firewall: N peers join, then leave (x = ratio to zimbra_fw; ping = x the median salt-call "
          "test.ping of the samples at that N, measured right before each change with its input; "
          f"- = did not finish in {LIMIT} s)")  # fmt: skip
    print(f"{'peers':>5} {'tool':<17} {'ping s':>6} {'+N s':>7} {'x':>5} {'ping':>5} {'ping s':>6} {'-N s':>7} "
          f"{'x':>5} {'ping':>5} {'matches':>7}")  # fmt: skip
    for r in rows:
        print(f"{r['peers']:>5} {r['tool']:<17} {_cell(r['ping_join_s'], 6)} {_cell(r['join_s'], 7)} "
              f"{_cell(r['join_x'], 5, 1)} {_cell(r['join_vs_ping'], 5, 1)} {_cell(r['ping_leave_s'], 6)} "
              f"{_cell(r['leave_s'], 7)} {_cell(r['leave_x'], 5, 1)} {_cell(r['leave_vs_ping'], 5, 1)} "
              f"{_yes(r['correct'], r['finished']):>7}")  # fmt: skip


def print_table(rows, rounds):
    print(
        f"medians of {rounds} rounds, tools alternated; x = ratio to zimbra_fw in this run; ping = x the median "
        "salt-call test.ping measured in every sample's sandbox right before it; 1-st = x the median state.apply "
        f"of one state, each right before a no-op ({NOOP_PAIRS} pairs a sample); - = did not finish in {LIMIT} s"
    )
    header = (f"{'policy':<12} {'rules':>5} {'tool':<17} {'ping s':>6} {'first s':>8} {'x':>5} {'ping':>5} {'ufw':>5} "
              f"{'no-op s':>8} {'x':>5} {'1-st':>5} {'ufw':>5} {'idempotent':>10} {'matches':>7}")  # fmt: skip
    print(header)
    for r in rows:
        ufw_first = "-" if r["first_ufw"] is None else r["first_ufw"]
        ufw_noop = "-" if r["noop_ufw"] is None else r["noop_ufw"]
        print(f"{r['policy']:<12} {r['rules']:>5} {r['tool']:<17} {_cell(r['ping_s'], 6)} {_cell(r['first_s'], 8)} "
              f"{_cell(r['first_x'], 5, 1)} {_cell(r['first_vs_ping'], 5, 1)} {ufw_first:>5} "
              f"{_cell(r['noop_s'], 8)} {_cell(r['noop_x'], 5, 1)} {_cell(r['noop_vs_one_state'], 5, 2)} "
              f"{ufw_noop:>5} {_yes(r['idempotent'], r['finished']):>10} "
              f"{_yes(r['correct'], r['finished']):>7}")  # fmt: skip


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def converged_ufw_snapshot(policy):
    """What zimbra_fw reads from a ufw converged to ``policy``: the rules files
    and profiles of a real sandbox after a first converge."""
    with Lab() as lab:
        minion = lab.minion
        tool = TOOLS[0]
        tool.prepare(minion, policy)
        tool.converge(minion, policy)
        etc = os.path.join(minion.state, "etc-ufw")
        apps = os.path.join(etc, "applications.d")
        rules, copies = zimbra_fw_ufw_files.read_rules(
            [_read(os.path.join(etc, n)) for n in ("user.rules", "user6.rules")]
        )
        profiles = zimbra_fw_ufw_files.parse_app_profiles(
            _read(os.path.join(apps, n)) for n in sorted(os.listdir(apps))
        )
        incoming = zimbra_fw_ufw_files.parse_defaults_file(_read(os.path.join(minion.state, "default-ufw")))
        return zimbra_fw_ufw.Snapshot(
            rules, _read(os.path.join(apps, "zimbra")), profiles, True, incoming, copies, True
        )


def converged_firewalld_snapshot(policy):
    """A firewalld converged to the core's ``policy``, permanent and runtime alike, as zimbra_fw reads it."""
    wanted = zimbra_fw_firewalld.desired(policy)
    services = {n: tuple(d["ports"]) for n, d in zimbra_fw_firewalld.service_definitions(policy).items()}
    ipsets = {
        name: zimbra_fw_firewalld_files.IPSet("hash:net", definition["family"], wanted.entries.get(name, ()))
        for name, definition in zimbra_fw_firewalld.ipset_definitions(policy).items()
    }
    zone = zimbra_fw_firewalld.Zone(wanted.services, wanted.rules, "default", ())
    return zimbra_fw_firewalld.Snapshot(True, "public", "public", services, services, ipsets, ipsets, zone, zone)


def converged_nftables_snapshot(policy):
    """Our table converged to the core's ``policy``, persisted, as zimbra_fw reads it."""
    wanted = zimbra_fw_nftables.desired(policy)
    chain = zimbra_fw_nftables_files.Chain("filter", "input", 0, "drop")
    persisted = zimbra_fw_nftables.persisted_text(policy, "drop")
    return zimbra_fw_nftables.Snapshot(
        True, chain, wanted.rules, (), ("input",), wanted.sets, persisted, True, True, zimbra_fw_nftables.DEBIAN
    )


def plan_afresh(backend, policy, snapshot):
    """Every part's plan, as a run makes them (nftables' parts share one Desired a run: made anew here)."""
    if backend is zimbra_fw_nftables:
        zimbra_fw_nftables._LAST[:] = [None, None]
    return [backend.plan(part, policy, snapshot) for part in backend.PARTS]


def plan_timing(addresses, repeats=5):
    """Seconds the pure core takes for a mailbox with ``addresses`` peer
    addresses (one per peer): the pillar to the policy, and each backend's
    plan of every part from a snapshot of a firewall already converged to it
    (medians of ``repeats``; the plans must be empty)."""
    policy = cluster_policy(addresses)
    timings = {"addresses": addresses}

    def timed(function):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = function()
            times.append(time.perf_counter() - start)
        return statistics.median(times), result

    timings["policy_s"], built = timed(lambda: zimbra_fw_policy.build(zimbra_fw_config.parse_config(policy.pillar)))
    for backend, snapshot in (
        (zimbra_fw_ufw, converged_ufw_snapshot(policy)),
        (zimbra_fw_firewalld, converged_firewalld_snapshot(built)),
        (zimbra_fw_nftables, converged_nftables_snapshot(built)),
    ):
        seconds, plans = timed(lambda b=backend, s=snapshot: plan_afresh(b, built, s))
        timings[f"{backend.NAME}_plan_s"] = seconds
        timings[f"{backend.NAME}_converged"] = not any(plan.steps for plan in plans)
    return timings


def print_plan_timing(timing):
    print(f"pure core, {timing['addresses']} peer addresses, converged (medians): pillar to policy "
          f"{timing['policy_s']:.3f} s; plan of every part: ufw {timing['ufw_plan_s']:.3f} s "
          f"(nothing to do: {timing['ufw_converged']}), firewalld {timing['firewalld_plan_s']:.3f} s "
          f"(nothing to do: {timing['firewalld_converged']}), nftables {timing['nftables_plan_s']:.3f} s "
          f"(nothing to do: {timing['nftables_converged']})")  # fmt: skip


RESULT_FILES = (("latest.json", "ufw"), ("firewalld.json", "firewalld"), ("nftables.json", "nftables"))


def plot(path, result_files=RESULT_FILES):
    """One log-log figure from the last results of both runs (ufw: latest.json,
    firewalld: firewalld.json), a row each: time against peers, one line per
    tool, for the first converge, the no-op, +N and -N; a tool's line stops
    where it did not finish."""
    import matplotlib
    import matplotlib.ticker

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
                points = sorted((r["peers"], r[key]) for r in table if r["tool"] == tool and r[key] is not None)
                axis.plot([p for p, _ in points], [t for _, t in points], marker="o", label=tool)
            ping_key = {"join_s": "ping_join_s", "leave_s": "ping_leave_s"}.get(key, "ping_s")
            pings = sorted(
                (r["peers"], r.get(ping_key, r.get("ping_s"))) for r in table if r["tool"] == table[0]["tool"]
            )
            axis.plot([p for p, _ in pings], [t for _, t in pings], color="grey", linestyle=":", label="test.ping")
            axis.set_title(f"{label}: {title}")
            axis.set_xlabel("peers")
            axis.set_ylabel("wall time, s (median)")
            axis.set_xscale("log")
            axis.set_yscale("log")
            sizes = sorted({r["peers"] for r in table})
            axis.set_xticks(sizes, [f"{size:,}" for size in sizes])
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            axis.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            axis.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            axis.grid(True, which="both", alpha=0.3)
        row[0].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description="zimbra_fw against other firewall tools, in sandboxes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", type=int, nargs="*", default=[10, 50, 200], help="first/no-op: cluster sizes")
    parser.add_argument("--running", type=int, nargs="*", default=[50, 200], help="running firewall: peers +/-")
    parser.add_argument("--no-seed", action="store_true", help="leave out the seed policy")
    parser.add_argument("--tools", nargs="*", default=None, help="names (default: all); zimbra_fw always runs")
    parser.add_argument("--plot", default=None, help="write a PNG of both runs' last results here")
    parser.add_argument("--firewalld", action="store_true", help="the firewalld tools")
    parser.add_argument("--nftables", action="store_true", help="the nftables tools")
    parser.add_argument("--plan-addresses", type=int, default=8000, help="the pure plan's timing: peer addresses")
    args = parser.parse_args(argv)
    backend = "firewalld" if args.firewalld else "nftables" if args.nftables else "ufw"
    every = {"firewalld": FIREWALLD_TOOLS, "nftables": NFTABLES_TOOLS}.get(backend, TOOLS)
    tools = [t for t in every if args.tools is None or t.name in args.tools or t is every[0]]
    policies = ([] if args.no_seed else [seed_policy()]) + [cluster_policy(n) for n in sorted(args.peers)]
    by_name = {policy.name: policy for policy in policies}
    results = alternated(list(by_name), tools, args.rounds, lambda t, n: sample(t, by_name[n], backend))
    rows = summarise(policies, tools, results)
    running_sizes = sorted(args.running)
    running = alternated(running_sizes, tools, args.rounds, lambda t, n: sample_running(t, n, backend))
    running_rows = summarise_running(running_sizes, tools, running)
    timing = plan_timing(args.plan_addresses)
    print_table(rows, args.rounds)
    print()
    print_running_table(running_rows)
    print()
    print_plan_timing(timing)
    os.makedirs(RESULTS, exist_ok=True)
    every_ping = [
        value for group in (*results.values(), *running.values()) for s in group
        for key, value in s.items() if key in ("ping", "ping_join", "ping_leave")
    ]  # fmt: skip
    with open(
        os.path.join(RESULTS, {"ufw": "latest.json"}.get(backend, f"{backend}.json")), "w", encoding="utf-8"
    ) as handle:
        json.dump(
            {
                "test_ping_s": statistics.median(every_ping),
                "rounds": args.rounds,
                "limit_s": LIMIT,
                "rows": rows,
                "running": running_rows,
                "plan_timing": timing,
            },
            handle,
            indent=1,
        )
    if args.plot:
        plot(args.plot)
    ours = [r for r in rows if r["tool"] == tools[0].name]
    ok = all(r["finished"] and r["noop_ufw"] <= 2 and r["idempotent"] and r["correct"] for r in ours)
    ok = ok and all(r["correct"] for r in running_rows if r["tool"] == tools[0].name)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
