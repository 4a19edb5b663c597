"""The netlink messages that ask nf_tables whether a chain exists, built and
read as bytes (no socket: unit tests never ask the host's kernel)."""

import errno
import socket
import struct

import pytest
import zimbra_fw_netlink as netlink

CHAIN = (netlink.NFNL_SUBSYS_NFTABLES << 8) | netlink.NFT_MSG_NEWCHAIN


def message(kind, sequence, body=b""):
    return netlink.HEADER.pack(netlink.HEADER.size + len(body), kind, 0, sequence, 0) + body


def error(sequence, code):
    return message(netlink.NLMSG_ERROR, sequence, struct.pack("=i", code) + b"\0" * 16)


def attributes(data):
    found, offset = {}, 0
    while offset < len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        found[kind] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


@pytest.mark.parametrize("version, family", [(4, socket.AF_INET), (6, socket.AF_INET6)])
def test_the_request_asks_for_one_chain_of_one_table_with_an_acknowledgement(version, family):
    request = netlink.get_chain_request(version, "filter", "ufw-user-input", 7)
    length, kind, flags, sequence, port = netlink.HEADER.unpack_from(request)
    assert (length, kind, flags, sequence, port) == (len(request), 0x0A04, 0x5, 7, 0)
    assert len(request) % 4 == 0
    assert request[16:20] == struct.pack("=BBH", family, 0, 0)
    assert attributes(request[20:]) == {1: b"filter\0", 3: b"ufw-user-input\0"}


@pytest.mark.parametrize("name", ["", "a\0b", "ufw-user-input\n", "é", "x" * 256])
def test_a_name_netlink_cannot_carry_as_asked_is_refused(name):
    with pytest.raises(ValueError):
        netlink.get_chain_request(4, "filter", name, 1)


def test_the_chain_then_the_acknowledgement_is_found_even_in_two_reads():
    assert netlink.answer(message(CHAIN, 5, b"\0" * 40) + error(5, 0), 5) == (True, True)
    done, found = netlink.answer(message(CHAIN, 5, b"\0" * 40), 5)
    assert (done, found) == (False, True)
    assert netlink.answer(error(5, 0), 5, found) == (True, True)


def test_no_such_table_or_chain_is_not_found():
    assert netlink.answer(error(9, -errno.ENOENT), 9) == (True, False)


def test_messages_of_another_request_are_skipped():
    assert netlink.answer(message(CHAIN, 4, b"\0" * 8) + error(4, -errno.EPERM), 5) == (False, False)


@pytest.mark.parametrize(
    "data",
    [
        error(3, -errno.EPERM),
        message(CHAIN, 3)[:-1],
        struct.pack("=IHHII", 8, CHAIN, 0, 3, 0),
        message(netlink.NLMSG_ERROR, 3),  # an error without its error code
        error(3, -(2**31)),
    ],
)
def test_any_other_answer_is_an_error_and_the_caller_runs_iptables(data):
    with pytest.raises(OSError):
        netlink.answer(data, 3)
