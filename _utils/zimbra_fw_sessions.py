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
  from ``address`` in to ``port``?
* ``cut_sessions(policy, sessions, held, own)``: the admins' sessions the
  policy would no longer admit, each with the pillar key responsible: those
  into the ssh port (ssh:port, and 22) and those a port rule of ours in the
  firewall admits now (``held``: the ssh rule of an earlier ssh:port).

* ``master_cuts(policy, sessions)``: the minion's connections to its Salt
  master whose replies the policy would not admit. Only for a firewall that
  is about to start filtering: a running one tracks the connection, and
  accepts its replies as ESTABLISHED whatever the rules say; one that starts
  meets the connection mid-stream and judges its replies by the rules.
"""

import ipaddress
import sys
from collections import namedtuple


def __virtual__():
    return (False, "zimbra_fw_sessions is a library of the zimbra_fw module, not a Salt util")


Session = namedtuple("Session", "local_address local_port remote_address remote_port")
# session: the Session; key: the pillar key that decides it; text: the
# problem, as errors and comments say it.
Cut = namedtuple("Cut", "session key text")

ESTABLISHED = "01"
SSH_PORT = 22  # ssh's own port: a session there is an admin's, whatever ssh:port says now
MAX_SESSIONS = 500_000  # a busy server has thousands; more cannot all be checked in time


class TooManySessions(ValueError):
    """More established sessions than the check reads: it cannot tell which it would cut."""


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
    """The established sessions in the text of /proc/net/tcp or /proc/net/tcp6.
    Raises TooManySessions beyond MAX_SESSIONS (other states are not counted)."""
    sessions = []
    for line in text.splitlines()[1:]:  # the first line names the columns
        fields = line.split(maxsplit=4)
        if len(fields) < 4 or fields[3] != ESTABLISHED:
            continue
        local, remote = _endpoint(fields[1], byteorder), _endpoint(fields[2], byteorder)
        if local is None or remote is None:
            continue
        if len(sessions) == MAX_SESSIONS:
            raise TooManySessions(f"more than {MAX_SESSIONS} established TCP sessions")
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


def port_rule(rule):
    """The TCP port an allow or limit rule (an audit Rule) opens when it opens
    exactly one, else None: the shape of the ssh rule, not of a port group."""
    if rule.action not in ("allow", "limit") or not rule.ports or len(rule.ports) != 1:
        return None
    (spec,) = rule.ports
    return spec.first if spec.proto == "tcp" and spec.first == spec.last else None


def _rule_admits(rule, address):
    if rule.source == "any":
        return True
    try:
        network = ipaddress.ip_network(rule.source, strict=False)
    except ValueError:
        return False
    return network.version == address.version and address in network


def admits_reply(policy, address, source_port, port):
    """Does ``policy`` let in what ``address`` sends from ``source_port`` to
    this host's ``port`` (a reply on a connection this host opened)?"""
    return any(
        _from(access, address)
        and _covers(access.ports, port)
        and (not access.source_ports or source_port in access.source_ports)
        for access in policy.accesses
    )


def master_cuts(policy, sessions):
    """``[Cut]``: the minion's connections to its Salt masters (the policy's
    SaltMasters: address, ports) whose replies ``policy`` would not admit.
    None when the policy has no master (allow_salt_master false, a master on
    this host, no master): that is deliberate."""
    cuts = []
    for session in sessions:
        for master in policy.config.salt_masters:
            address, port = session.remote_address, session.remote_port
            if address.version != master.address.version or address not in master.address or port not in master.ports:
                continue
            if not admits_reply(policy, address, port, session.local_port):
                text = (
                    f"would cut the Salt master connection from {address} port {port} to port "
                    f"{session.local_port} (zimbra_fw:allow_salt_master)"
                )
                cuts.append(Cut(session, "zimbra_fw:allow_salt_master", text))
    return cuts


def _held(session, held):
    """Does a port rule in ``held`` admit ``session``?"""
    return any(port_rule(rule) == session.local_port and _rule_admits(rule, session.remote_address) for rule in held)


def _remote(session, own):
    """A session from elsewhere: not over the loopback, not from one of this
    host's own addresses (``own``): no firewall rule decides those."""
    address = session.remote_address
    return not (address.is_loopback or address == session.local_address or address in own)


def _cut(policy, session):
    address, port = session.remote_address, session.local_port
    if port not in (policy.config.ssh_port, SSH_PORT):  # admitted by a port rule of ours, see _held
        text = (
            f"would cut the session from {address} to port {port}, which the firewall's zimbra_fw rule for "
            f"port {port} admits now (zimbra_fw:ssh or zimbra_fw:only_from)"
        )
        return Cut(session, "zimbra_fw:ssh", text)
    key = "zimbra_fw:ssh:from" if port == policy.config.ssh_port else "zimbra_fw:ssh:port"
    return Cut(session, key, f"would cut the ssh session from {address} to port {port} ({key})")


def _kept_admits(kept, address, port):
    """Does a rule in ``kept`` (audit Rules that stay in the firewall) admit ``address`` to ``port``?"""
    return any(
        rule.action in ("allow", "limit") and _rule_admits(rule, address) and _covers(rule.ports, port) for rule in kept
    )


def cut_sessions(policy, sessions, held=(), own=(), kept=()):
    """``[Cut]``: the established ``sessions`` from elsewhere (see _remote)
    that ``policy`` (and the rules ``kept``) would no longer admit, once per
    address and port: those into the ssh port (ssh:port, and 22) and those a
    port rule of ours now in the firewall admits (``held``: audit Rules, see
    port_rule)."""
    ssh = {policy.config.ssh_port, SSH_PORT}
    own = frozenset(own)
    cuts, seen = [], set()
    for session in sessions:
        where = (session.remote_address, session.local_port)
        if where in seen or not _remote(session, own):
            continue
        if session.local_port in ssh or _held(session, held):
            seen.add(where)
            address, port = session.remote_address, session.local_port
            if not (admits(policy, address, port) or _kept_admits(kept, address, port)):
                cuts.append(_cut(policy, session))
    return cuts
