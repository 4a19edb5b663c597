"""
Live TCP sessions and the policy: would a run cut them?

Pure: the Salt face reads /proc/net/tcp and /proc/net/tcp6 (a fact, like the
ephemeral port range) and hands their text here.

* ``established(text)`` reads one of those files: the established sessions
  (state 01), as ``Session(local address, local port, remote address, remote
  port)``. The kernel prints an IPv4 address as one 32-bit word and an IPv6
  address as four, each in the host's byte order; an IPv4 client reaching an
  IPv6 socket shows as an IPv4-mapped address (``::ffff:a.b.c.d``), read here
  as the IPv4 address the packets carry. Lines that are not what the kernel
  writes are skipped, never an error.
* ``admits(policy, address, port)``: does the policy let a new TCP connection
  from ``address`` in to ``port``? ``admits_reply`` asks the same of the
  Salt master's replies to the minion's own connection.
* ``cut_sessions(policy, sessions)``: the sessions the policy would
  no longer admit, each with the pillar key responsible.
"""

import ipaddress
import sys
from collections import namedtuple


def __virtual__():
    return (False, "zimbra_fw_sessions is a library of the zimbra_fw module, not a Salt util")


Session = namedtuple("Session", "local_address local_port remote_address remote_port")
# session: the Session; what: "ssh session" or "Salt master connection"; key:
# the pillar key that decides it; text: the problem, as errors and comments say it.
Cut = namedtuple("Cut", "session what key text")

ESTABLISHED = "01"
SSH_PORT = 22  # ssh's own port: a session there is an admin's, whatever ssh:port says now
MAX_LINES = 200_000  # a busy server has thousands of sessions; more is not the kernel's


def _address(text, byteorder):
    """The address a /proc/net/tcp{,6} field holds (8 or 32 hex digits: 32-bit
    words in the host's byte order), IPv4-mapped ones as IPv4; None if it is
    not one."""
    if len(text) not in (8, 32):
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    if byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(raw)
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _endpoint(text, byteorder):
    """(address, port) from ``ADDRESS:PORT`` (the port: 4 hex digits), or None."""
    address, _, port = text.partition(":")
    if len(port) != 4:
        return None
    try:
        number = int(port, 16)
    except ValueError:
        return None
    found = _address(address, byteorder)
    return None if found is None else (found, number)


def established(text, byteorder=sys.byteorder):
    """The established sessions in the text of /proc/net/tcp or /proc/net/tcp6."""
    sessions = []
    for line in text.splitlines()[1 : MAX_LINES + 1]:  # the first line names the columns
        fields = line.split()
        if len(fields) < 4 or fields[3] != ESTABLISHED:
            continue
        local, remote = _endpoint(fields[1], byteorder), _endpoint(fields[2], byteorder)
        if local is None or remote is None:
            continue
        sessions.append(Session(local[0], local[1], remote[0], remote[1]))
    return sessions


def _covers(specs, port):
    return specs is None or any(spec.proto == "tcp" and spec.first <= port <= spec.last for spec in specs)


def _from(access, address):
    return access.source is None or (access.source.version == address.version and address in access.source)


def admits(policy, address, port):
    """Does ``policy`` let a new TCP connection from ``address`` in to ``port``?
    Only an access on that port counts: the Salt master's rule admits its
    replies (from its own ports), not connections from its address."""
    return any(
        not access.source_ports and _from(access, address) and _covers(access.ports, port) for access in policy.accesses
    )


def admits_reply(policy, address, source_port, port):
    """Does ``policy`` let in what ``address`` sends from ``source_port`` to
    this host's ``port`` (a reply on a connection this host opened)?"""
    return any(
        _from(access, address)
        and _covers(access.ports, port)
        and (not access.source_ports or source_port in access.source_ports)
        for access in policy.accesses
    )


def _local(session):
    """A session over the loopback: no firewall rule decides it."""
    return session.remote_address.is_loopback or session.remote_address == session.local_address


def ssh_sessions(sessions, ssh_port):
    """The sessions into this host's ssh port (ssh:port, and 22), but local ones."""
    ports = {ssh_port, SSH_PORT}
    return [s for s in sessions if s.local_port in ports and not _local(s)]


def master_sessions(sessions, masters):
    """The minion's connections to its Salt masters (SaltMaster: address, ports)."""
    return [
        s
        for s in sessions
        for master in masters
        if s.remote_address.version == master.address.version
        and s.remote_address in master.address
        and s.remote_port in master.ports
    ]


def _ssh_cut(policy, session):
    config = policy.config
    key = "ssh:from" if session.local_port == config.ssh_port else "ssh:port"
    text = f"would cut the ssh session from {session.remote_address} to port {session.local_port} (zimbra_fw:{key})"
    return Cut(session, "ssh session", f"zimbra_fw:{key}", text)


def cut_sessions(policy, sessions):
    """``[Cut]``: the established ``sessions`` that ``policy`` would no longer
    admit: those into the ssh port (ssh:port, and 22) and the minion's own
    connections to its Salt master. The master's are not checked when the
    policy has no master (allow_salt_master false, a master on this host, no
    master): that is deliberate."""
    cuts, seen = [], set()
    for session in ssh_sessions(sessions, policy.config.ssh_port):
        if (session.remote_address, session.local_port) in seen:
            continue
        seen.add((session.remote_address, session.local_port))
        if not admits(policy, session.remote_address, session.local_port):
            cuts.append(_ssh_cut(policy, session))
    for session in master_sessions(sessions, policy.config.salt_masters):
        if not admits_reply(policy, session.remote_address, session.remote_port, session.local_port):
            text = (
                f"would cut the Salt master connection from {session.remote_address} port {session.remote_port} "
                f"to port {session.local_port} (zimbra_fw:allow_salt_master)"
            )
            cuts.append(Cut(session, "Salt master connection", "zimbra_fw:allow_salt_master", text))
    return cuts
