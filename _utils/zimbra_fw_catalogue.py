"""
The Zimbra port catalogue: every port a Zimbra role listens on, who connects
to it and how far it may be exposed. Adding a Zimbra role is an edit here.

Knows no firewall and no pillar; everything else in zimbra_fw builds on it.
"""

from collections import namedtuple


def __virtual__():
    return (False, "zimbra_fw_catalogue is a library of the zimbra_fw module, not a Salt util")


Port = namedtuple("Port", "port proto role exposure consumers purpose critical when_missing scheme")
Port.__new__.__defaults__ = (False, None, None)

# Pillar role -> Zimbra package that owns the listeners.
ROLES = {
    "ldap": "zimbra-ldap",
    "mta": "zimbra-mta",
    "proxy": "zimbra-proxy",
    "mailbox": "zimbra-store",
    "memcached": "zimbra-memcached",
    "logger": "zimbra-logger",
    "spell": "zimbra-spell",
    "snmp": "zimbra-snmp",
    "imapd": "zimbra-imapd",
    "convertd": "zimbra-convertd",
    "onlyoffice": "zimbra-onlyoffice",
    "docs": "zimbra-docs",
    "dnscache": "zimbra-dnscache",
    "modules-ng": "zimbra-network-modules-ng",
}
CORE_ROLE = "core"  # zimbra-core: present on every Zimbra node

PUBLIC, CLUSTER, LOCALHOST = "public", "cluster", "localhost"
ANYONE = ("internet",)
ADMINS = ("admins",)
ALL_NODES = ("all",)
LOCAL = ("localhost",)

# zmrcd (remote management: mail queues, config files) runs over ssh from the
# mailbox to every node, on whatever port sshd listens on: ssh:port.
ZMRCD = Port(22, "tcp", CORE_ROLE, CLUSTER, ("mailbox",), "sshd for Zimbra remote management (zmrcd)")

# Clients of the mailbox's SOAP/REST port follow zimbraMailMode, which lives in
# LDAP (pillar key mail_mode): zmtrainsa's SpamExtract on the MTA (crontab.mta,
# nightly) and imapd (AccountUtil.getSoapUri) use 8443 in https mode, 8080 in
# http mode; the other modes serve both.
SOAP_CLIENTS = ("mta", "imapd")
MAIL_MODES = {
    "https": ("https",),
    "http": ("http",),
    "both": ("http", "https"),
    "mixed": ("http", "https"),
    "redirect": ("http", "https"),
}

# Read from Zimbra's sources; docs/zimbra-ports.yaml cites the source of each port.
# ``consumers`` names the roles (or internet/admins/all/localhost) that connect.
# ``when_missing``: the row applies only when that role is absent from the node.
CATALOGUE = (
    # zimbra-proxy: what users and the internet reach
    Port(80, "tcp", "proxy", PUBLIC, ANYONE, "nginx HTTP web proxy (redirects to 443)"),
    Port(110, "tcp", "proxy", PUBLIC, ANYONE, "nginx POP3 proxy"),
    Port(143, "tcp", "proxy", PUBLIC, ANYONE, "nginx IMAP proxy"),
    Port(443, "tcp", "proxy", PUBLIC, ANYONE, "nginx HTTPS web proxy (webmail, EWS, ActiveSync, DAV)"),
    Port(993, "tcp", "proxy", PUBLIC, ANYONE, "nginx IMAPS proxy"),
    Port(995, "tcp", "proxy", PUBLIC, ANYONE, "nginx POP3S proxy"),
    Port(3443, "tcp", "proxy", PUBLIC, ANYONE, "nginx client-certificate (certauth SSO) port"),
    Port(9071, "tcp", "proxy", PUBLIC, ADMINS, "nginx admin console proxy (to mailbox 7071)"),
    # zimbra-mta
    Port(25, "tcp", "mta", PUBLIC, (*ANYONE, "mailbox"), "postfix SMTP (inbound MX, relay for mailboxes)"),
    Port(465, "tcp", "mta", PUBLIC, ANYONE, "postfix SMTPS submission (implicit TLS)"),
    Port(587, "tcp", "mta", PUBLIC, ANYONE, "postfix submission (STARTTLS)"),
    Port(3310, "tcp", "mta", LOCALHOST, LOCAL, "ClamAV clamd"),
    Port(7026, "tcp", "mta", LOCALHOST, LOCAL, "Zimbra milter server"),
    Port(7308, "tcp", "mta", LOCALHOST, LOCAL, "antispam MariaDB (binds 0.0.0.0 when enabled)", True),
    Port(8465, "tcp", "mta", LOCALHOST, LOCAL, "OpenDKIM milter"),
    Port(10024, "tcp", "mta", LOCALHOST, LOCAL, "amavisd inbound content filter", True),
    Port(10025, "tcp", "mta", LOCALHOST, LOCAL, "postfix re-injection from amavisd", True),
    Port(10026, "tcp", "mta", LOCALHOST, LOCAL, "amavisd ORIGINATING policy bank", True),
    Port(10027, "tcp", "mta", LOCALHOST, LOCAL, "postfix postjournal filter", True),
    Port(10028, "tcp", "mta", LOCALHOST, LOCAL, "postfix reinject listener", True),
    Port(10029, "tcp", "mta", LOCALHOST, LOCAL, "postfix archive listener", True),
    Port(10030, "tcp", "mta", LOCALHOST, LOCAL, "postfix OpenDKIM hop", True),
    Port(10031, "tcp", "mta", LOCALHOST, LOCAL, "cbpolicyd policy daemon", True),
    Port(10032, "tcp", "mta", LOCALHOST, LOCAL, "amavisd ORIGINATING_POST (SpamAssassin)", True),
    Port(23232, "tcp", "mta", LOCALHOST, LOCAL, "amavis-services (ZeroMQ forwarder)"),
    Port(23233, "tcp", "mta", LOCALHOST, LOCAL, "amavis-services snmp-responder"),
    # zimbra-store (mailbox)
    Port(5222, "tcp", "mailbox", PUBLIC, ANYONE, "XMPP client (Zimbra Chat)"),
    Port(5223, "tcp", "mailbox", PUBLIC, ANYONE, "XMPP legacy SSL (Zimbra Chat)"),
    Port(7071, "tcp", "mailbox", PUBLIC, (*ADMINS, "proxy", "mailbox", "mta", "imapd"), "admin console and admin SOAP"),
    Port(80, "tcp", "mailbox", PUBLIC, ANYONE, "mailboxd HTTP (no proxy on this node)", when_missing="proxy"),
    Port(110, "tcp", "mailbox", PUBLIC, ANYONE, "mailboxd POP3 (no proxy on this node)", when_missing="proxy"),
    Port(143, "tcp", "mailbox", PUBLIC, ANYONE, "mailboxd IMAP (no proxy on this node)", when_missing="proxy"),
    Port(443, "tcp", "mailbox", PUBLIC, ANYONE, "mailboxd HTTPS (no proxy on this node)", when_missing="proxy"),
    Port(993, "tcp", "mailbox", PUBLIC, ANYONE, "mailboxd IMAPS (no proxy on this node)", when_missing="proxy"),
    Port(995, "tcp", "mailbox", PUBLIC, ANYONE, "mailboxd POP3S (no proxy on this node)", when_missing="proxy"),
    Port(5269, "tcp", "mailbox", CLUSTER, ("mailbox",), "XMPP server-to-server between mailboxes"),
    Port(7025, "tcp", "mailbox", CLUSTER, ("mta",), "LMTP delivery from the MTA"),
    Port(7072, "tcp", "mailbox", CLUSTER, ("proxy",), "nginx route lookup handler"),
    Port(7073, "tcp", "mailbox", CLUSTER, ("mta",), "MTA SASL auth endpoint"),
    Port(7074, "tcp", "mailbox", CLUSTER, ("onlyoffice",), "document-editing callback"),
    Port(7110, "tcp", "mailbox", CLUSTER, ("proxy",), "POP3 backend"),
    Port(7143, "tcp", "mailbox", CLUSTER, ("proxy",), "IMAP backend"),
    Port(7285, "tcp", "mailbox", CLUSTER, ("mailbox",), "message channel"),
    Port(7993, "tcp", "mailbox", CLUSTER, ("proxy",), "IMAPS backend"),
    Port(7995, "tcp", "mailbox", CLUSTER, ("proxy",), "POP3S backend"),
    Port(8080, "tcp", "mailbox", CLUSTER, ("proxy", "mailbox"), "HTTP backend", scheme="http"),
    Port(
        8443,
        "tcp",
        "mailbox",
        CLUSTER,
        ("proxy", "mailbox", "docs"),
        "HTTPS backend, server-to-server SOAP",
        scheme="https",
    ),
    Port(8742, "tcp", "mailbox", CLUSTER, ("proxy",), "zx HTTP endpoint (Zextras extensions)"),
    Port(8743, "tcp", "mailbox", CLUSTER, ("proxy",), "zx HTTPS endpoint (Zextras extensions)"),
    Port(9443, "tcp", "mailbox", CLUSTER, ("proxy",), "HTTPS with client certificate"),
    Port(7035, "tcp", "mailbox", LOCALHOST, LOCAL, "notification server (deprecated)"),
    Port(7036, "tcp", "mailbox", LOCALHOST, LOCAL, "notification server SSL (deprecated)"),
    Port(7306, "tcp", "mailbox", LOCALHOST, LOCAL, "mailbox MariaDB", True),
    # other roles
    Port(389, "tcp", "ldap", CLUSTER, ALL_NODES, "OpenLDAP (ldap://, StartTLS)", True),
    Port(636, "tcp", "ldap", CLUSTER, ALL_NODES, "OpenLDAP (ldaps://)", True),
    Port(11211, "tcp", "memcached", CLUSTER, ("proxy", "mailbox"), "memcached (no authentication)", True),
    Port(514, "udp", "logger", CLUSTER, ALL_NODES, "remote syslog sink"),
    Port(7307, "tcp", "logger", LOCALHOST, LOCAL, "legacy logger MySQL", True),
    Port(7780, "tcp", "spell", CLUSTER, ("mailbox",), "spell checker (Apache + aspell)"),
    Port(8143, "tcp", "imapd", CLUSTER, ("proxy",), "standalone IMAP daemon"),
    Port(8993, "tcp", "imapd", CLUSTER, ("proxy",), "standalone IMAPS daemon"),
    Port(7047, "tcp", "convertd", CLUSTER, ("mailbox",), "attachment conversion"),
    Port(7084, "tcp", "onlyoffice", CLUSTER, ("proxy",), "OnlyOffice document service"),
    Port(7085, "tcp", "onlyoffice", CLUSTER, ("proxy",), "OnlyOffice spellchecker"),
    Port(9980, "tcp", "docs", CLUSTER, ("proxy", "mailbox"), "Zimbra Docs server"),
    Port(53, "tcp", "dnscache", LOCALHOST, LOCAL, "unbound DNS cache"),
    Port(53, "udp", "dnscache", LOCALHOST, LOCAL, "unbound DNS cache"),
    Port(8735, "tcp", "modules-ng", CLUSTER, ("mailbox",), "Network Modules NG inter-instance"),
    Port(8736, "tcp", "modules-ng", CLUSTER, ("mailbox",), "Network Modules NG inter-instance"),
    # zimbra-core: every node
    ZMRCD,
    Port(7171, "tcp", CORE_ROLE, LOCALHOST, LOCAL, "zmconfigd control listener", True),
)


class PortSpec(namedtuple("PortSpec", "first last proto")):
    """A port or an inclusive port range with its protocol; sorts by port."""

    __slots__ = ()

    def __str__(self):
        ports = str(self.first) if self.first == self.last else f"{self.first}:{self.last}"
        return f"{ports}/{self.proto}"

    @property
    def weight(self):
        """Entries it takes in an iptables multiport list (a range counts two)."""
        return 1 if self.first == self.last else 2

    def covers(self, other):
        return self.proto == other.proto and self.first <= other.first and other.last <= self.last

    def overlaps(self, other):
        return self.proto == other.proto and self.first <= other.last and other.first <= self.last


def spec_of(row):
    """A catalogue row's port as a PortSpec."""
    return PortSpec(row.port, row.port, row.proto)


def consumers(row, mail_mode):
    """Who connects to a row's port: its consumers, and the SOAP clients where
    the mail mode uses the row's scheme."""
    if row.scheme in MAIL_MODES[mail_mode]:
        return (*row.consumers, *SOAP_CLIENTS)
    return row.consumers


def _port_number(text):
    if not (text.isascii() and text.isdigit()):  # str.isdigit() takes '²' and '٢٥' too
        return None
    number = int(text)
    return number if 1 <= number <= 65535 else None


def parse_port_spec(value, default_proto="tcp"):
    """Parse ``8443``, ``"8443"``, ``"514/udp"`` or ``"6000:6010/tcp"`` into a
    PortSpec; raises ValueError with the reason."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"is a {type(value).__name__}; give a port such as 8443 or '514/udp'")
    ports, _, proto = value.strip().partition("/")
    proto = proto or default_proto
    if proto not in ("tcp", "udp"):
        raise ValueError("has a protocol other than tcp or udp")
    first_text, sep, last_text = ports.partition(":")
    first = _port_number(first_text)
    last = _port_number(last_text) if sep else first
    if first is None or last is None:
        raise ValueError("is not a port (1-65535) or a range such as '6000:6010/tcp'")
    if sep and first >= last:
        raise ValueError("is a range whose first port is not below its last")
    return PortSpec(first, last, proto)


def roles_from_packages(packages):
    """Zimbra roles implied by installed package names (zimbra-store -> mailbox, ...)."""
    by_package = {package: role for role, package in ROLES.items()}
    return sorted({by_package[name] for name in packages if name in by_package})


def rows_for(roles, cluster_roles):
    """The rows that apply to a node with ``roles`` (plus zimbra-core) in a
    cluster whose nodes together have ``cluster_roles``."""
    present = set(roles) | {CORE_ROLE}
    return [
        row
        for row in CATALOGUE
        if row.role in present and (row.when_missing is None or row.when_missing not in cluster_roles)
    ]


def row_for(port, proto, roles):
    """The catalogue row of a port, preferring one of ``roles``; None if unknown."""
    rows = [row for row in CATALOGUE if row.port == port and row.proto == proto]
    own = [row for row in rows if row.role in set(roles) | {CORE_ROLE}]
    return (own or rows or [None])[0]


def internal_rows():
    """One row for each port number that is only ever cluster or localhost,
    whatever the protocol: ports that must never be opened to anyone."""
    public = {row.port for row in CATALOGUE if row.exposure == PUBLIC}
    rows = {}
    for row in sorted(CATALOGUE):
        if row.port not in public:
            rows.setdefault(row.port, row)
    return list(rows.values())


def as_dicts():
    """The catalogue as plain data, sorted by port."""
    return [
        {
            "port": row.port,
            "proto": row.proto,
            "role": row.role,
            "exposure": row.exposure,
            "consumers": list(row.consumers),
            **({"consumers_by_mail_mode": {m: list(consumers(row, m)) for m in MAIL_MODES}} if row.scheme else {}),
            "purpose": row.purpose,
            "critical": row.critical,
            **({"only_without": row.when_missing} if row.when_missing else {}),
        }
        for row in sorted(CATALOGUE)  # by port, proto, role
    ]
