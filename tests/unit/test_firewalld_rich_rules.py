"""The rich rules the firewalld backend writes, read back by firewalld's own
parser (firewall.core.rich.Rich_Rule, run with the Python that has it):
each one unchanged, never a ``NOT``, never pillar text (addresses are
written as Python's ipaddress prints them). ssh:limit is refused; the Salt
master's rule with the minion's ports is one destination-port rule."""

import ipaddress
import json
import subprocess

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_firewalld as fwd
import zimbra_fw_policy as policies
from zimbra_fw_catalogue import PortSpec

P = 'rule priority="32000" '
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
