"""The backends' pure parts of a rollback: which files firewalld's save
keeps, how the runtime zone is taken back to what was saved, and a saved
copy naming no zone refused before anything is touched. Putting a real
firewall back is shown in the sandbox (test_sandbox_confirm.py)."""

import pytest
import zimbra_fw_firewalld as fwd
from salt.exceptions import CommandExecutionError

SERVICES, IPSETS, ZONES = "/etc/firewalld/services", "/etc/firewalld/ipsets", "/etc/firewalld/zones"


def test_firewalld_saves_the_zone_and_our_services_and_ipsets_with_their_old_copies():
    assert fwd.saved_paths("public", {"zimbra-mta", "zimbra"}, {"zimbra-mta-v4"}) == [
        f"{ZONES}/public.xml",
        f"{ZONES}/public.xml.old",
        f"{SERVICES}/zimbra.xml",
        f"{SERVICES}/zimbra.xml.old",
        f"{SERVICES}/zimbra-mta.xml",
        f"{SERVICES}/zimbra-mta.xml.old",
        f"{IPSETS}/zimbra-mta-v4.xml",
        f"{IPSETS}/zimbra-mta-v4.xml.old",
    ]


def test_only_files_of_that_directory_name_saved_services_or_ipsets():
    saved = dict.fromkeys(
        [
            f"{SERVICES}/zimbra.xml",
            f"{SERVICES}/zimbra.xml.old",
            f"{SERVICES}/sub/evil.xml",
            f"{IPSETS}/zimbra-mta-v4.xml",
            "/etc/passwd",
            f"{SERVICES}/../../../etc/shadow.xml",
        ]
    )
    assert fwd._names_in(saved, SERVICES) == {"zimbra"}
    assert fwd._names_in(saved, IPSETS) == {"zimbra-mta-v4"}


def zone(services=(), rules=(), ports=()):
    return fwd.Zone(frozenset(services), tuple(rules), "default", tuple(ports))


RULE = 'rule family="ipv4" source address="198.51.100.99" port port="2" protocol="tcp" accept'
OURS = 'rule priority="32000" port port="22" protocol="tcp" accept'


def test_the_runtime_zone_goes_back_to_the_saved_services_rules_and_ports():
    saved = {"services": ["ssh", "zimbra"], "rules": [RULE, OURS], "ports": [["8443", "tcp"]], "entries": {}}
    now = zone(services=("zimbra", "zimbra-mta"), rules=(OURS,), ports=(("9000", "udp"),))
    assert fwd._runtime_change(now, saved) == {
        "add_services": ["ssh"],
        "remove_services": ["zimbra-mta"],
        "add_rules": [RULE],
        "remove_rules": [],
        "add_ports": [["8443", "tcp"]],
        "remove_ports": [["9000", "udp"]],
    }
    same = zone(services=("ssh", "zimbra"), rules=(OURS, RULE), ports=(("8443", "tcp"),))
    assert fwd._runtime_change(same, saved) is None


@pytest.mark.parametrize("name", ["../../etc/passwd", "", None, "a" * 18, ["public"]])
def test_a_saved_copy_naming_no_zone_is_refused_before_anything_is_touched(name):
    commands = []
    with pytest.raises(CommandExecutionError, match="the saved firewall names no firewalld zone"):
        fwd.restore({"zone": name, "files": {}, "runtime": {}}, lambda argv, stdin=None: commands.append(argv))
    assert commands == []
