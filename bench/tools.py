"""The tools the benchmark compares, each building the same policy in a sandbox.

A policy is what zimbra_fw computes for a pillar: the profile file text and
the allow rules (ufw argument tuples), plus default deny incoming and ufw
enabled; and, when peers leave, the rules that must go (``absent``: zimbra_fw
removes its own stale rules by itself, the other tools are told). Each
driver turns it into that tool's own input -- a Salt SLS for saltext.ufw
and for the naive cmd.run way, an Ansible playbook for community.general.ufw
-- and runs it inside the sandboxed minion.

``converge`` returns (seconds, changes reported).
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time

import yaml

from harness.sandbox import REPO, SALT_CALL

sys.path.insert(0, os.path.join(REPO, "_utils"))  # the core, as on a minion after saltutil.sync_all
import zimbra_fw_config
import zimbra_fw_policy

BIN = os.path.dirname(SALT_CALL)
COMMENT = "zimbra_fw"


# A converge that takes longer than this did not finish (the table says so).
LIMIT = 600


class DidNotFinish(Exception):
    """A converge ran over LIMIT seconds."""


def _timed(minion, argv):
    start = time.perf_counter()
    try:
        out = minion.guarded(argv, check=False, timeout=LIMIT)
    except subprocess.TimeoutExpired as exc:
        raise DidNotFinish(f"over {LIMIT} s") from exc
    return time.perf_counter() - start, out


def _salt_changes(out):
    result = json.loads(out.stdout)["local"]
    if not isinstance(result, dict):
        raise RuntimeError(f"state run failed: {result}")
    failed = [key for key, state in result.items() if state["result"] is not True]
    if failed:
        raise RuntimeError(f"states failed: {[result[k]['comment'] for k in failed]}")
    return any(state["changes"] for state in result.values())


def rule_fields(rule):
    """Split a rule tuple into source, destination port or app, and protocol."""
    words = list(rule[1:])
    if len(words) == 1:
        port, _, proto = words[0].partition("/")
        return ("any", None, port, proto or "any") if port[:1].isdigit() else ("any", words[0], None, "any")
    fields = dict(zip(words[::2], words[1::2], strict=False))
    return fields.get("from", "any"), fields.get("app"), fields.get("port"), fields.get("proto", "any")


class Tool:
    name = ""

    def prepare(self, minion, policy):
        """Untimed set-up: write the tool's input, and the pillar: the pillar
        top names it, so every salt-call in the sandbox (the baselines too)
        renders it, whatever the tool reads."""
        minion.set_pillar(policy.pillar)

    def converge(self, minion, policy):
        raise NotImplementedError


class ZimbraFw(Tool):
    name = "zimbra_fw"

    def prepare(self, minion, policy):
        super().prepare(minion, policy)
        minion.sync()

    def converge(self, minion, policy):
        seconds, out = _timed(minion, [SALT_CALL, "--local", "-c", minion.config_dir, "--out", "json",
                                       "state.apply", "zimbra_fw"])  # fmt: skip
        return seconds, _salt_changes(out)


class _SaltSls(Tool):
    """A tool expressed as an SLS of Salt's own (or an extension's) states."""

    def sls(self, policy):
        raise NotImplementedError

    def prepare(self, minion, policy):
        super().prepare(minion, policy)
        root = os.path.join(minion.state, "bench-sls")
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, f"{self.sls_name}.sls"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(self.sls(policy), handle, sort_keys=False)
        config_path = os.path.join(minion.config_dir, "minion")
        with open(config_path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
        if root not in config["file_roots"]["base"]:
            config["file_roots"]["base"].append(root)
        with open(config_path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle)
        minion.sync()

    def converge(self, minion, policy):
        seconds, out = _timed(minion, [SALT_CALL, "--local", "-c", minion.config_dir, "--out", "json",
                                       "state.apply", self.sls_name])  # fmt: skip
        return seconds, _salt_changes(out)


def _profile_state(policy):
    return {
        "file.managed": [
            {"name": "/etc/ufw/applications.d/zimbra"},
            {"contents": policy.profile_text},
            {"mode": "0644"},
        ]
    }


class SaltextUfw(_SaltSls):
    name = "saltext.ufw"
    sls_name = "bench_saltext_ufw"

    @staticmethod
    def rule_args(rule):
        source, app, port, proto = rule_fields(rule)
        args = [{"action": "allow"}]
        if source != "any":
            args.append({"src": source})
        if app or port:
            args.append({"dport": app or port})
        if proto != "any":
            args.append({"proto": proto})
        return args

    def sls(self, policy):
        states = {"bench-profile": _profile_state(policy)}
        for index, rule in enumerate(policy.rules):
            args = [{"comment": COMMENT}, {"require": [{"file": "bench-profile"}]}]
            states[f"bench-rule-{index}"] = {"ufw.rule_present": self.rule_args(rule) + args}
        for index, rule in enumerate(policy.absent):
            states[f"bench-gone-{index}"] = {"ufw.rule_absent": self.rule_args(rule)}
        # saltext.ufw sets a default policy only on an active firewall.
        states["bench-enabled"] = {"ufw.enabled": []}
        states["bench-default"] = {
            "ufw.default_policy": [
                {"direction": "incoming"},
                {"policy": "deny"},
                {"require": [{"ufw": "bench-enabled"}]},
            ]
        }
        return states


class NaiveCmdRun(_SaltSls):
    name = "cmd.run + unless"
    sls_name = "bench_naive"

    def sls(self, policy):
        states = {"bench-profile": _profile_state(policy)}
        for index, rule in enumerate(policy.rules):
            text = " ".join(rule)
            listed = shlex.quote(f"ufw {text} comment {COMMENT!r}")  # as `ufw show added` prints it
            states[f"bench-rule-{index}"] = {
                "cmd.run": [
                    {"name": f"ufw {text} comment {COMMENT}"},
                    {"unless": f"ufw show added | grep -qxF {listed}"},
                    {"require": [{"file": "bench-profile"}]},
                ]
            }
        for index, rule in enumerate(policy.absent):
            text = " ".join(rule)
            listed = shlex.quote(f"ufw {text} comment {COMMENT!r}")
            states[f"bench-gone-{index}"] = {
                "cmd.run": [{"name": f"ufw delete {text}"}, {"onlyif": f"ufw show added | grep -qxF {listed}"}]
            }
        states["bench-default"] = {
            "cmd.run": [
                {"name": "ufw default deny incoming"},
                {"unless": "grep -q '^DEFAULT_INPUT_POLICY=\"DROP\"' /etc/default/ufw"},
            ]
        }
        states["bench-enabled"] = {
            "cmd.run": [{"name": "ufw --force enable"}, {"unless": "ufw status | grep -q 'Status: active'"}]
        }
        return states


class AnsibleUfw(Tool):
    name = "ansible ufw"

    def prepare(self, minion, policy):
        super().prepare(minion, policy)
        play = [{"hosts": "localhost", "gather_facts": False, "tasks": self.tasks(policy)}]
        with open(os.path.join(minion.state, "bench-play.yml"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(play, handle, sort_keys=False)

    def tasks(self, policy):
        """The playbook's tasks for ``policy``."""
        tasks = [
            {
                "name": "profile",
                "ansible.builtin.copy": {
                    "dest": "/etc/ufw/applications.d/zimbra",
                    "content": policy.profile_text,
                    "mode": "0644",
                },
            }
        ]
        for rule in policy.rules:
            source, app, port, proto = rule_fields(rule)
            args = {"rule": "allow", "comment": COMMENT}
            if source != "any":
                args["from_ip"] = source
            if app:
                args["name"] = app
            if port:
                args["to_port"] = port
            if proto != "any":
                args["proto"] = proto
            tasks.append({"name": "rule " + " ".join(rule), "community.general.ufw": args})
        for rule in policy.absent:
            source, app, port, proto = rule_fields(rule)
            args = {"rule": "allow", "delete": True, **({"from_ip": source} if source != "any" else {})}
            args.update({"name": app} if app else {"to_port": port} if port else {})
            if proto != "any":
                args["proto"] = proto
            tasks.append({"name": "no rule " + " ".join(rule), "community.general.ufw": args})
        tasks.append({"name": "default deny", "community.general.ufw": {"default": "deny", "direction": "incoming"}})
        tasks.append({"name": "enabled", "community.general.ufw": {"state": "enabled"}})
        return tasks

    def converge(self, minion, policy):
        home = os.path.join(minion.state, "ansible-home")
        argv = [
            "env", "LC_ALL=C.UTF-8", f"ANSIBLE_HOME={home}", f"ANSIBLE_LOCAL_TEMP={home}/tmp", "ANSIBLE_NOCOLOR=1",
            "ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3",
            os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
            os.path.join(minion.state, "bench-play.yml"),
        ]  # fmt: skip
        seconds, out = _timed(minion, argv)
        recap = re.search(r"ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out.stdout)
        if out.returncode != 0 or not recap or recap.group(3) != "0":
            raise RuntimeError(f"ansible-playbook failed:\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}")
        return seconds, int(recap.group(1)) > 0


TOOLS = [ZimbraFw(), SaltextUfw(), AnsibleUfw(), NaiveCmdRun()]


# ---------------------------------------------------------------- firewalld


class ZimbraFwFirewalld(ZimbraFw):
    def prepare(self, minion, policy):
        minion.set_pillar(dict(policy.pillar, backend="firewalld"))
        minion.sync()


def _service_xml(definition):
    ports = "".join(f'  <port protocol="{proto}" port="{port}"/>\n' for port, proto in definition["ports"])
    short = f"  <short>{definition['short']}</short>\n"
    return f'<?xml version="1.0" encoding="utf-8"?>\n<service>\n{short}{ports}</service>\n'


class SaltFirewalld(_SaltSls):
    """Salt's core states: firewalld.service per port group, firewalld.present for the zone."""

    name = "salt firewalld"
    sls_name = "bench_salt_firewalld"

    def sls(self, policy):
        states = {}
        for name, definition in policy.fw_definitions.items():
            ports = [f"{port}/{proto}" for port, proto in definition["ports"]]
            states[f"bench-service-{name}"] = {"firewalld.service": [{"name": name}, {"ports": ports}]}
        states["bench-zone"] = {
            "firewalld.present": [
                {"name": "public"},
                {"services": ["ssh", "dhcpv6-client", *sorted(policy.fw_services)]},
                {"rich_rules": list(policy.fw_rules)},
                {"prune_rich_rules": bool(policy.fw_absent)},  # its only way to remove a rule
                {"require": [{"firewalld": f"bench-service-{name}"} for name in policy.fw_definitions]},
            ]
        }
        return states


class AnsibleFirewalld(AnsibleUfw):
    """ansible.posix.firewalld (it cannot make a service: the files are copied, then a reload)."""

    name = "ansible firewalld"

    def tasks(self, policy):
        tasks = [
            {
                "name": f"service {name}",
                "ansible.builtin.copy": {
                    "dest": f"/etc/firewalld/services/{name}.xml",
                    "content": _service_xml(definition),
                    "mode": "0644",
                },
                "register": f"service_{name.replace('-', '_')}",
            }
            for name, definition in policy.fw_definitions.items()
        ]
        changed = " or ".join(f"service_{name.replace('-', '_')}.changed" for name in policy.fw_definitions)
        tasks.append({"name": "reload", "ansible.builtin.command": "firewall-cmd --reload", "when": changed or "false"})
        zone = {"zone": "public", "permanent": True, "immediate": True, "state": "enabled"}
        for name in sorted(policy.fw_services):
            tasks.append({"name": f"zone service {name}", "ansible.posix.firewalld": {**zone, "service": name}})
        for rule in policy.fw_rules:
            tasks.append({"name": rule, "ansible.posix.firewalld": {**zone, "rich_rule": rule}})
        for rule in policy.fw_absent:
            tasks.append({"name": rule, "ansible.posix.firewalld": {**zone, "rich_rule": rule, "state": "disabled"}})
        return tasks


FIREWALLD_TOOLS = [ZimbraFwFirewalld(), SaltFirewalld(), AnsibleFirewalld()]


# ---------------------------------------------------------------- nftables


class ZimbraFwNftables(ZimbraFw):
    def prepare(self, minion, policy):
        minion.set_pillar(dict(policy.pillar, backend="nftables"))
        minion.sync()


SALT_NFT_TABLE = "zimbra_salt"
SALT_NFT_BASE = [  # loopback, conntrack and ICMP, as zimbra_fw's table has them (state kwargs of build_rule)
    ({"if": "lo", "jump": "accept"}, ("ipv4", "ipv6")),
    ({"connstate": "established,related", "jump": "accept"}, ("ipv4", "ipv6")),
    ({"connstate": "invalid", "jump": "drop"}, ("ipv4", "ipv6")),
    ({"icmp-type": "destination-unreachable, echo-request, parameter-problem, time-exceeded", "jump": "accept"},
     ("ipv4",)),
    ({"icmpv6-type": "destination-unreachable, echo-request, mld-listener-query, nd-neighbor-advert, "
                     "nd-neighbor-solicit, nd-router-advert, packet-too-big, parameter-problem, time-exceeded",
      "jump": "accept"}, ("ipv6",)),
]  # fmt: skip


def salt_nft_rules(access):
    """One policy access as Salt nftables rule kwargs: [(family, kwargs)], one rule a source."""
    families = ("ipv4", "ipv6") if access.source is None else (f"ipv{access.source.version}",)
    head = {} if access.source is None else {"source": zimbra_fw_config.source_text(access.source)}
    if access.ports is None:
        return [(family, {**head, "jump": "accept"}) for family in families]
    rules = []
    for proto in sorted({spec.proto for spec in access.ports}):
        specs = [spec for spec in access.ports if spec.proto == proto]
        if len(specs) == 1:
            spec = specs[0]
            ports = {"dport": str(spec.first) if spec.first == spec.last else f"{spec.first}:{spec.last}"}
        else:  # build_rule's dports takes numbers only
            ports = {"dports": ",".join(str(p) for s in specs for p in range(s.first, s.last + 1))}
        rules += [(family, {**head, "proto": proto, **ports, "jump": "accept"}) for family in families]
    return rules


class SaltNftables(_SaltSls):
    """Salt's core nftables states: table_present, chain_present, one append per
    rule (a rule a source: they make no sets) in an ip and an ip6 table, set_policy
    drop; peers that left are delete states."""

    name = "salt nftables"
    sls_name = "bench_salt_nftables"

    def sls(self, policy):
        states, index = {}, 0
        for family in ("ipv4", "ipv6"):
            where = {"table": SALT_NFT_TABLE, "family": family}
            states[f"bench-table-{family}"] = {"nftables.table_present": [{"name": SALT_NFT_TABLE}, {"family": family}]}
            states[f"bench-chain-{family}"] = {
                "nftables.chain_present": [{"name": "input"}, *({k: v} for k, v in where.items()),
                                           {"table_type": "filter"}, {"hook": "input"}, {"priority": 0}]
            }  # fmt: skip
        accesses = list(policy.core.accesses)
        management = [a for a in accesses if a.kind in zimbra_fw_policy.MANAGEMENT_KINDS]
        rules = [rule for access in management for rule in salt_nft_rules(access)]
        rules += [(family, kwargs) for kwargs, families in SALT_NFT_BASE for family in families]
        rules += [rule for access in accesses if access not in management for rule in salt_nft_rules(access)]
        for family, kwargs in rules:
            index += 1
            args = {"table": SALT_NFT_TABLE, "chain": "input", "family": family, **kwargs}
            states[f"bench-rule-{index}"] = {
                "nftables.append": [{"name": f"rule{index}"}, *({k: v} for k, v in args.items())]
            }
        for family, kwargs in (rule for access in policy.nft_absent for rule in salt_nft_rules(access)):
            index += 1
            args = {"table": SALT_NFT_TABLE, "chain": "input", "family": family, **kwargs}
            states[f"bench-gone-{index}"] = {
                "nftables.delete": [{"name": f"gone{index}"}, *({k: v} for k, v in args.items())]
            }
        for family in ("ipv4", "ipv6"):
            states[f"bench-policy-{family}"] = {
                "nftables.set_policy": [{"name": f"policy-{family}"}, {"table": SALT_NFT_TABLE}, {"chain": "input"},
                                        {"family": family}, {"policy": "drop"}]
            }  # fmt: skip
        return states


NFTABLES_TOOLS = [ZimbraFwNftables(), SaltNftables()]
