"""
Whether an nf_tables chain exists, asked of the kernel over netlink: one
request and its answer, no process. The iptables of Debian and RHEL keeps
its chains in nf_tables, and ``iptables -n -L CHAIN`` fetches every rule of
the chain only to say whether it exists (tens of ms at thousands of rules);
this asks for the chain alone. It only reads.

* ``chain_exists(version, table, chain)``: True or False, or None when the
  kernel cannot be asked here (the caller then runs iptables).
* ``get_chain_request`` and ``answer`` build and read the messages: pure.
"""

import errno
import itertools
import socket
import struct


def __virtual__():
    return (False, "zimbra_fw_netlink is a library of the zimbra_fw module, not a Salt util")


NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWCHAIN, NFT_MSG_GETCHAIN = 3, 4
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME = 1, 3
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}  # NFPROTO_IPV4, NFPROTO_IPV6: iptables, ip6tables
HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
NAME_MAX = 255  # NFT_TABLE_MAXNAMELEN and NFT_CHAIN_MAXNAMELEN are 256, with the NUL
ANSWER_WAIT = 2.0  # seconds
_SEQUENCE = itertools.count(1)


def _attribute(kind, name):
    data = name.encode("ascii") + b"\0"
    return struct.pack("=HH", 4 + len(data), kind) + data + b"\0" * (-len(data) % 4)


def get_chain_request(version, table, chain, sequence):
    """The NFT_MSG_GETCHAIN message asking for ``chain`` of ``table`` in the
    IPv4 (4) or IPv6 (6) family, with an acknowledgement."""
    for name in (table, chain):
        if not name.isascii() or not name.isprintable() or not 0 < len(name) <= NAME_MAX:
            raise ValueError(f"not a table or chain name: {name!r}")
    body = struct.pack("=BBH", FAMILY[version], 0, 0)  # nfgenmsg: family, version 0, resource id 0
    body += _attribute(NFTA_CHAIN_TABLE, table) + _attribute(NFTA_CHAIN_NAME, chain)
    kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN
    return HEADER.pack(HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, sequence, 0) + body


def answer(data, sequence, found=False):
    """Read the kernel's messages in ``data`` for ``sequence``: (done, found).
    ``found``: whether an earlier part of the answer held the chain. Raises
    OSError for an error other than "no such table or chain"."""
    offset = 0
    while offset + HEADER.size <= len(data):
        length, kind, _, number, _ = HEADER.unpack_from(data, offset)
        if length < HEADER.size or offset + length > len(data):
            raise OSError(errno.EBADMSG, "a truncated netlink message")
        if number == sequence:
            if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN:
                found = True
            elif kind == NLMSG_ERROR:
                if length < HEADER.size + 4:
                    raise OSError(errno.EBADMSG, "a netlink error message without its error")
                (error,) = struct.unpack_from("=i", data, offset + HEADER.size)
                if error == 0:  # the acknowledgement: the answer is complete
                    return True, found
                if -error == errno.ENOENT:
                    return True, False
                raise OSError(-error, f"netlink error {-error}")
            elif kind == NLMSG_DONE:
                return True, found
        offset += (length + 3) & ~3
    if offset < len(data):  # a netlink datagram holds whole messages
        raise OSError(errno.EBADMSG, "a truncated netlink message")
    return False, found


def chain_exists(version, table, chain):
    """Does ``chain`` exist in nf_tables' ``table`` of the IPv4 (4) or IPv6 (6)
    family? None when netlink cannot tell (no permission, no nf_tables, no answer)."""
    sequence = next(_SEQUENCE) & 0xFFFFFFFF
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER) as sock:
            sock.settimeout(ANSWER_WAIT)
            sock.bind((0, 0))
            sock.sendall(get_chain_request(version, table, chain, sequence))
            done, found = False, False
            while not done:
                done, found = answer(sock.recv(65536), sequence, found)
            return found
    except OSError:  # socket.timeout is one
        return None
