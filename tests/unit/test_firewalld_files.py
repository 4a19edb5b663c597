"""firewalld's formats (zimbra_fw_firewalld_files): service and ipset files
(ours are the marked ones, bare files read with firewalld's defaults), and rich
rules as the audit reads them (a rule on an ipset as one rule per entry)."""

import zimbra_fw_firewalld as fwd
import zimbra_fw_firewalld_files as fwd_files
from zimbra_fw_audit import Rule
from zimbra_fw_catalogue import PortSpec

P = 'rule priority="32000" '


def test_own_services_are_the_marked_files(tmp_path, monkeypatch):
    (tmp_path / "zimbra.xml").write_text(
        f'<service><short>Z</short><description>x {fwd.MARK}</description><port port="25" protocol="tcp"/></service>'
    )
    (tmp_path / "http.xml").write_text("<service><short>H</short><description>web</description></service>")
    (tmp_path / "broken.xml").write_text("<service>")
    monkeypatch.setattr(fwd_files, "SERVICE_DIRS", (str(tmp_path / "none"), str(tmp_path)))
    monkeypatch.setattr(fwd_files, "IPSET_DIRS", (str(tmp_path / "none"),))
    assert fwd_files.own_services() == {"zimbra": (("25", "tcp"),)}
    assert fwd.name_taken("Http").startswith("is a firewalld service already (http")
    assert fwd.name_taken("Zimbra") is None and fwd.name_taken("Other") is None


def test_own_ipsets_are_the_marked_files_and_a_clash_or_a_long_name_is_refused(tmp_path, monkeypatch):
    ours = f'<ipset type="hash:net"><description>{fwd.MARK}</description><option name="family" value="inet6"/>'
    (tmp_path / "zimbra-mta-v6.xml").write_text(ours + "<entry>2001:db8::2</entry><entry>2001:db8::1</entry></ipset>")
    (tmp_path / "mail-mta-v4.xml").write_text('<ipset type="hash:ip"><entry>10.0.0.1</entry></ipset>')
    monkeypatch.setattr(fwd_files, "IPSET_DIRS", (str(tmp_path),))
    monkeypatch.setattr(fwd_files, "SERVICE_DIRS", (str(tmp_path / "none"),))
    assert fwd_files.own_ipsets() == {"zimbra-mta-v6": fwd.IPSet("hash:net", "inet6", ("2001:db8::1", "2001:db8::2"))}
    assert fwd.name_taken("Mail").startswith("names a firewalld ipset already (mail-mta-v4")
    assert fwd.name_taken("Zimbra") is None
    assert fwd.name_taken("Zimbra-Collaboration") == (
        "is too long for firewalld's ipset names (zimbra-collaboration-onlyoffice-v4, over 32): 18 characters at most"
    )
    assert fwd.name_taken("Zimbra-Collaborati") is None  # 18 characters: zimbra-collaborati-onlyoffice-v4 is 32


def test_bare_service_and_ipset_files_read_with_defaults(tmp_path, monkeypatch):
    (tmp_path / "bare.xml").write_text('<service><port/><port port="7" protocol="sctp"/><port port="9"/></service>')
    (tmp_path / "full.xml").write_text("<service><short>Mail</short><description>SMTP</description></service>")
    assert fwd_files.read_service(str(tmp_path / "full.xml")) == ("Mail", "SMTP", ())
    (tmp_path / "udp.xml").write_text('<service><port port="5140" protocol="udp"/><port protocol="tcp"/></service>')
    (tmp_path / "set.xml").write_text("<ipset><entry> 10.0.0.1 </entry><entry/></ipset>")
    assert fwd_files.read_service(str(tmp_path / "bare.xml")) == ("", "", (("", ""), ("7", "sctp"), ("9", "")))
    assert fwd_files.read_ipset(str(tmp_path / "set.xml")) == ("", fwd.IPSet("", "inet", ("10.0.0.1",)))
    monkeypatch.setattr(fwd_files, "SERVICE_DIRS", (str(tmp_path),))
    assert fwd_files.service_ports("bare") == []  # neither tcp nor udp, or no port: not the audit's
    assert fwd_files.service_ports("udp") == [PortSpec(5140, 5140, "udp")]


def test_rich_rules_as_the_audit_reads_them(tmp_path, monkeypatch):
    (tmp_path / "ldap.xml").write_text('<service><port port="389" protocol="tcp"/></service>')
    monkeypatch.setattr(fwd_files, "SERVICE_DIRS", (str(tmp_path),))
    read = fwd_files.rich_rule_access
    assert read(P + 'family="ipv4" source address="10.1.0.1" service name="ldap" accept') == [
        (32000, Rule("allow", "10.1.0.1", [PortSpec(389, 389, "tcp")]))
    ]
    assert read('rule family="ipv4" source address="1.2.3.4" reject') == [(0, Rule("reject", "1.2.3.4", None))]
    assert read('rule priority="-5" port port="7000-7010" protocol="udp" drop') == [
        (-5, Rule("deny", "any", [PortSpec(7000, 7010, "udp")]))
    ]
    assert read('rule source address="10.0.0.5" source-port port="4505" protocol="tcp" accept')[0][1].ports == [
        PortSpec(1, 65535, "tcp")
    ]
    # A source the audit cannot judge: an accept counts as from anyone, a reject keeps no one out.
    assert read('rule family="ipv4" source NOT address="1.2.3.4" accept') == [(0, Rule("allow", "any", None))]
    not_memcached = 'rule family="ipv4" source NOT address="10.0.0.0/8" port port="11211" protocol="tcp" accept'
    assert read(not_memcached) == [(0, Rule("allow", "any", [PortSpec(11211, 11211, "tcp")]))]
    assert read('rule source mac="00:11:22:33:44:55" accept') == [(0, Rule("allow", "any", None))]
    # A NOT anywhere in the rule is not told apart: the audit says too much rather than too little.
    not_to = 'rule family="ipv4" source address="10.0.0.0/8" destination NOT address="10.0.0.1" accept'
    assert read(not_to) == [(0, Rule("allow", "any", None))]
    assert read('rule family="ipv4" source NOT address="1.2.3.4" reject') == []
    assert read('rule family="ipv4" source address="1.2.3.4" log prefix="x"') == []


def test_an_ipset_rule_is_read_as_one_rule_per_entry(tmp_path, monkeypatch):
    (tmp_path / "ldap.xml").write_text('<service><port port="389" protocol="tcp"/></service>')
    monkeypatch.setattr(fwd_files, "SERVICE_DIRS", (str(tmp_path),))
    ipsets = {
        "peers": fwd.IPSet("hash:net", "inet", ("10.1.0.1", "10.2.0.0/16", "10.3.0.0-10.3.0.3", "bad")),
        "macs": fwd.IPSet("hash:mac", "inet", ("00:11:22:33:44:55",)),
        "hosts": fwd.IPSet("hash:ip", "inet", ("10.4.0.9/24",)),  # firewalld keeps what it was given
    }
    read = fwd_files.rich_rule_access
    found = read('rule source ipset="peers" service name="ldap" accept', ipsets)
    assert [rule.source for _, rule in found] == ["10.1.0.1", "10.2.0.0/16", "10.3.0.0/30"]
    assert all(rule == Rule("allow", rule.source, [PortSpec(389, 389, "tcp")]) for _, rule in found)
    assert read('rule source ipset="macs" accept', ipsets) == []
    assert read('rule source ipset="hosts" accept', ipsets) == [(0, Rule("allow", "10.4.0.9/24", None))]
    assert read('rule protocol value="gre" accept') == [(0, Rule("allow", "any", [PortSpec(1, 65535, "gre")]))]
    assert read('rule source ipset="unknown" accept', ipsets) == []


def test_a_file_in_an_unknown_encoding_or_with_no_port_is_read_as_none_or_skipped(tmp_path, monkeypatch):
    (tmp_path / "odd.xml").write_text('<?xml version="1.0" encoding="x-unknown"?><service/>')
    (tmp_path / "bad.xml").write_text(
        '<service><port port="http" protocol="tcp"/><port port="70000" protocol="tcp"/>'
        '<port port="25" protocol="tcp"/></service>'
    )
    monkeypatch.setattr(fwd_files, "SERVICE_DIRS", (str(tmp_path),))
    assert fwd_files.read_service(str(tmp_path / "odd.xml")) is None
    assert fwd_files.service_ports("bad") == [PortSpec(25, 25, "tcp")]
