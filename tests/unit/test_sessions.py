"""Live sessions: /proc/net/tcp{,6} as the kernel writes them, whether a
policy admits a new connection from a session's address to its port, and
which sessions a run would cut, naming the pillar key responsible."""

import ipaddress

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_sessions as sessions
from hypothesis import given, settings
from hypothesis import strategies as st
from zimbra_fw_audit import Rule
from zimbra_fw_catalogue import PortSpec
from zimbra_fw_sessions import Session

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
TAIL = "00000000:00000000 00:00000000 00000000     0        0 4711 1 0000000000000000 20 4 30 10 -1"
MASTER = ("10.77.0.1", (4505, 4506), (32768, 60999))


def line(local, remote, state="01", number=0):
    return f"{number:4}: {local} {remote} {state} {TAIL}\n"


def ip(text):
    return ipaddress.ip_address(text)


def policy_of(pillar, facts=cfg.NO_FACTS):
    return policies.build(cfg.parse_config({"roles": ["mta"], **pillar}, facts))


# 192.168.1.1:22 <- 10.9.4.2:51000, as a little-endian kernel prints them
IPV4_SESSION = line("0101A8C0:0016", "0204090A:C738")


def test_ipv4_addresses_are_one_word_in_the_hosts_byte_order():
    text = HEADER + IPV4_SESSION + line("0100007F:0CEA", "00000000:0000", state="0A", number=1)
    assert sessions.established(text, "little") == [Session(ip("192.168.1.1"), 22, ip("10.9.4.2"), 51000)]
    # a big-endian kernel prints the address bytes in order
    big = HEADER + line("C0A80101:0016", "0A090402:C738")
    assert sessions.established(big, "big") == [Session(ip("192.168.1.1"), 22, ip("10.9.4.2"), 51000)]


def test_ipv6_addresses_are_four_words_and_mapped_ones_read_as_ipv4():
    text = HEADER
    # [2001:db8:1::1]:22 <- [2001:db8:1::10]:40000
    text += line("B80D0120000001000000000001000000:0016", "B80D0120000001000000000010000000:9C40")
    # [::ffff:192.168.1.1]:22 <- [::ffff:192.168.1.10]:40001 (an IPv4 client on an IPv6 socket)
    text += line("0000000000000000FFFF00000101A8C0:0016", "0000000000000000FFFF00000A01A8C0:9C41", number=1)
    # [::1]:22 listening: not a session
    text += line("00000000000000000000000001000000:0016", "00000000000000000000000000000000:0000", "0A", 2)
    assert sessions.established(text, "little") == [
        Session(ip("2001:db8:1::1"), 22, ip("2001:db8:1::10"), 40000),
        Session(ip("192.168.1.1"), 22, ip("192.168.1.10"), 40001),
    ]


@pytest.mark.parametrize(
    "hostile, count",
    [
        ("", 0),
        ("garbage", 0),
        ("\x00\xff" * 50, 0),
        ("0: 0101A8C0:0016 0204090A:C738", 0),  # no state
        ("0: 0101A8C0:0016 0204090A:C738 01", 1),  # enough to be read
        ("0: 0101A8C0 0204090A:C738 01 x", 0),  # no port
        ("0: 0101A8C0:16 0204090A:C738 01 x", 0),  # a short port
        ("0: 0101A8C0:00ZZ 0204090A:C738 01 x", 0),  # not hex
        ("0: 0101A8:0016 0204090A:C738 01 x", 0),  # six digits: no address
        ("0: 0101A8C0G:0016 0204090A:C738 01 x", 0),
        ("0: XXXXXXXX:0016 0204090A:C738 01 x", 0),
        ("0: 0101A8C0:0016 0204090A:C738:0016 01 x", 0),
        ("0: :0016 :C738 01 x", 0),
        ("0: 0101A8C0:0016 B80D0120000001000000000010000000:9C40 01 x", 1),  # mixed families: two addresses
    ],
)
def test_hostile_proc_text_never_raises(hostile, count):
    assert len(sessions.established(HEADER + hostile + "\n", "little")) == count
    assert len(sessions.established(HEADER + hostile + "\n" + IPV4_SESSION, "little")) == count + 1


def test_the_first_line_is_the_header_and_only_established_sessions_count_to_the_bound(monkeypatch):
    assert sessions.established(IPV4_SESSION) == []  # the first line names columns
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 3)
    # a busy server: many sockets in other states before the admin's session
    waiting = line("0101A8C0:0050", "0204090A:C739", state="06") * 10
    assert sessions.established(HEADER + waiting + IPV4_SESSION, "little") == [
        Session(ip("192.168.1.1"), 22, ip("10.9.4.2"), 51000)
    ]
    # more established sessions than it reads: it says so rather than check some
    with pytest.raises(sessions.TooManySessions, match="more than 3 established TCP sessions"):
        sessions.established(HEADER + IPV4_SESSION * 4, "little")


def test_admits_counts_only_an_access_on_that_port_from_that_address():
    policy = policy_of(
        {
            "roles": ["mailbox", "proxy"],
            "ssh": {"from": ["10.8.0.0/16"]},
            "trusted_subnets": ["10.20.0.0/16"],
            "admin_subnets": ["10.30.0.0/24"],
            "extra_ports": ["2222"],
        },
        cfg.Facts(salt_master=MASTER),
    )
    assert sessions.admits(policy, ip("10.8.4.2"), 22)
    assert not sessions.admits(policy, ip("10.9.4.2"), 22)  # outside ssh:from
    assert sessions.admits(policy, ip("10.20.0.9"), 22)  # a trusted subnet reaches every port
    assert not sessions.admits(policy, ip("10.30.0.9"), 22)  # admin_subnets reach the admin console only
    assert sessions.admits(policy, ip("10.30.0.9"), 7071)
    assert sessions.admits(policy, ip("198.51.100.7"), 2222)  # an extra port: anyone, on that port only
    assert not sessions.admits(policy, ip("198.51.100.7"), 22)
    # the master's rule admits its replies (from 4505/4506), not new connections from it
    assert not sessions.admits(policy, ip("10.77.0.1"), 22)
    assert not sessions.admits(policy, ip("10.77.0.1"), 40000)
    # an IPv4-looking IPv6 address is not the IPv4 one
    assert not sessions.admits(policy, ip("::ffff:10.8.4.2"), 22)


def cut_texts(policy, found, held=(), own=()):
    return [(cut.key, cut.text) for cut in sessions.cut_sessions(policy, found, held, own)]


def test_a_session_outside_the_new_ssh_from_is_cut_naming_ssh_from():
    policy = policy_of({"ssh": {"from": ["10.8.0.0/16", "2001:db8:8::/48"]}})
    found = [
        Session(ip("192.168.1.1"), 22, ip("10.9.4.2"), 51000),
        Session(ip("192.168.1.1"), 22, ip("10.9.4.2"), 51001),  # two sessions, one address: said once
        Session(ip("192.168.1.1"), 22, ip("10.8.4.2"), 51002),
        Session(ip("2001:db8:1::1"), 22, ip("2001:db8:9::5"), 51003),
        Session(ip("192.168.1.1"), 25, ip("10.9.4.2"), 51004),  # not ssh
        Session(ip("127.0.0.1"), 22, ip("127.0.0.1"), 51005),  # loopback: no rule decides it
        Session(ip("192.168.1.1"), 22, ip("192.168.1.1"), 51006),  # this host to itself
        Session(ip("192.168.1.1"), 51007, ip("10.9.4.2"), 22),  # this host's own ssh out
    ]
    assert cut_texts(policy, found) == [
        ("zimbra_fw:ssh:from", "would cut the ssh session from 10.9.4.2 to port 22 (zimbra_fw:ssh:from)"),
        ("zimbra_fw:ssh:from", "would cut the ssh session from 2001:db8:9::5 to port 22 (zimbra_fw:ssh:from)"),
    ]


def test_a_session_to_22_when_ssh_port_moves_is_cut_naming_ssh_port():
    policy = policy_of({"ssh": {"port": 2222, "from": ["10.8.0.0/16"]}})
    found = [
        Session(ip("192.168.1.1"), 22, ip("10.8.4.2"), 51000),
        Session(ip("192.168.1.1"), 2222, ip("10.8.4.2"), 51001),
    ]
    assert cut_texts(policy, found) == [
        ("zimbra_fw:ssh:port", "would cut the ssh session from 10.8.4.2 to port 22 (zimbra_fw:ssh:port)")
    ]


def test_ssh_from_anyone_cuts_nobody():
    policy = policy_of({})
    assert cut_texts(policy, [Session(ip("192.168.1.1"), 22, ip("203.0.113.50"), 51000)]) == []


def test_a_session_to_the_ssh_port_a_rule_of_ours_holds_now_is_checked_when_ssh_port_moves():
    # today ssh:port is 2222 from the VPN and the admin is in on 2222; the new pillar says 2223
    policy = policy_of({"ssh": {"port": 2223, "from": ["10.9.0.0/16"]}})
    admin = Session(ip("192.0.2.10"), 2222, ip("10.9.4.2"), 51000)
    held = [Rule("allow", "10.9.0.0/16", [PortSpec(2222, 2222, "tcp")])]
    assert cut_texts(policy, [admin], held) == [
        (
            "zimbra_fw:ssh",
            "would cut the session from 10.9.4.2 to port 2222, which the firewall's zimbra_fw rule for port 2222 "
            "admits now (zimbra_fw:ssh or zimbra_fw:only_from)",
        )
    ]
    # kept on 2222: nothing is cut
    assert cut_texts(policy_of({"ssh": {"port": 2222, "from": ["10.9.0.0/16"]}}), [admin], held) == []


@pytest.mark.parametrize(
    "rule",
    [
        Rule("allow", "10.8.0.0/16", [PortSpec(2222, 2222, "tcp")]),  # not from the session's address
        Rule("deny", "any", [PortSpec(2222, 2222, "tcp")]),
        Rule("allow", "any", [PortSpec(2222, 2223, "tcp")]),  # a range, not one port
        Rule("allow", "any", [PortSpec(2222, 2222, "tcp"), PortSpec(25, 25, "tcp")]),  # a port group
        Rule("allow", "any", [PortSpec(2222, 2222, "udp")]),
        Rule("allow", "any", None),  # a trusted subnet: every port
    ],
)
def test_only_a_rule_of_ours_on_that_one_port_from_that_address_makes_a_session_an_admins(rule):
    policy = policy_of({"ssh": {"port": 2223}})
    assert cut_texts(policy, [Session(ip("192.0.2.10"), 2222, ip("10.9.4.2"), 51000)], [rule]) == []


def test_a_session_from_another_of_this_hosts_own_addresses_is_not_an_admins():
    policy = policy_of({"ssh": {"from": ["10.8.0.0/16"]}})
    found = [Session(ip("192.0.2.10"), 22, ip("10.0.0.5"), 40100)]  # 10.0.0.5: this host's other address
    assert cut_texts(policy, found, own={ip("192.0.2.10"), ip("10.0.0.5")}) == []
    assert len(cut_texts(policy, found, own={ip("192.0.2.10")})) == 1


def test_admits_reply_needs_the_masters_port_and_the_ephemeral_range():
    policy = policy_of({}, cfg.Facts(salt_master=MASTER))
    assert sessions.admits_reply(policy, ip("10.77.0.1"), 4506, 40000)
    assert not sessions.admits_reply(policy, ip("10.77.0.1"), 4506, 20000)  # outside the range
    assert not sessions.admits_reply(policy, ip("10.77.0.2"), 4506, 40000)
    assert not sessions.admits_reply(policy, ip("10.77.0.1"), 8080, 40000)


def test_the_salt_master_connection_is_its_own_check_and_cut_when_its_replies_are_not_admitted():
    # the minion's connection started below the range the policy opens (source_ret_port, a narrowed range)
    policy = policy_of({}, cfg.Facts(salt_master=("10.77.0.1", (4505, 4506), (40000, 60999))))
    found = [
        Session(ip("192.168.1.1"), 35000, ip("10.77.0.1"), 4506),
        Session(ip("192.168.1.1"), 45000, ip("10.77.0.1"), 4505),
        Session(ip("192.168.1.1"), 35001, ip("10.77.0.9"), 4506),  # another host
    ]
    assert [(cut.key, cut.text) for cut in sessions.master_cuts(policy, found)] == [
        (
            "zimbra_fw:allow_salt_master",
            "would cut the Salt master connection from 10.77.0.1 port 4506 to port 35000 (zimbra_fw:allow_salt_master)",
        )
    ]
    assert cut_texts(policy, found) == []  # not an admin's session


def test_allow_salt_master_false_is_deliberate_no_master_connection_counts():
    policy = policy_of({"allow_salt_master": False}, cfg.Facts(salt_master=MASTER))
    assert sessions.master_cuts(policy, [Session(ip("192.168.1.1"), 20000, ip("10.77.0.1"), 4506)]) == []


ADDRESSES = [ip(text) for text in ("192.0.2.10", "10.0.0.5", "10.9.4.2", "127.0.0.1", "2001:db8::7", "::1")]


@settings(max_examples=300, deadline=None)
@given(
    found=st.lists(
        st.builds(
            Session,
            st.sampled_from(ADDRESSES),
            st.sampled_from([22, 2222, 2223, 25]),
            st.sampled_from(ADDRESSES),
            st.integers(1024, 1030),
        ),
        max_size=8,
    ),
    own=st.sets(st.sampled_from(ADDRESSES)),
    held_ports=st.sets(st.sampled_from([2222, 25])),
    ssh_from=st.booleans(),
)
def test_this_hosts_addresses_only_ever_take_sessions_off_the_cut_list(found, own, held_ports, ssh_from):
    # The face asks for this host's addresses only when a cut is left without them.
    policy = policy_of({"ssh": {"port": 2223, **({"from": ["10.8.0.0/16"]} if ssh_from else {})}})
    held = [Rule("allow", "any", [PortSpec(port, port, "tcp")]) for port in sorted(held_ports)]
    with_own = cut_texts(policy, found, held, own=own)
    assert set(with_own) <= set(cut_texts(policy, found, held, own=()))
