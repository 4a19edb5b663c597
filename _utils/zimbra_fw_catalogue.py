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

# Read from Zimbra's sources (SOURCES, below, cites the source of each row).
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

# Where each row's facts were read: Zimbra's sources (github.com/Zimbra repositories,
# 'develop' ~10.1 unless noted). tools/ports_yaml.py writes them to docs/zimbra-ports.yaml.
SOURCES = {
    (22, "tcp", "core"): (
        "zimbra-attrs.xml (zimbraRemoteManagementPort default 22); Zimbra/zm-mailbox "
        "store/src/java/com/zimbra/cs/rmgmt/RemoteManager.java (used by GetMailQueueInfo, MailQueueFlush, "
        "CollectConfigFiles, GetServerNIFs)"
    ),
    (25, "tcp", "mta"): (
        'Zimbra/zm-postfix conf/postfix/master.cf.in ("smtp inet ... postscreen"); zm-build zmsetup.pl '
        "checkPortConflicts 25=>zimbra-mta; zimbra-attrs.xml zimbraSmtpPort/zimbraSmtpHostname"
    ),
    (53, "tcp", "dnscache"): (
        "Zimbra/zm-build zmsetup.pl checkPortConflicts 53=>zimbra-dnscache; zmconfigd serverconfig.py "
        "zimbraUnboundBindAddress=127.0.0.1 (ipv4 mode)"
    ),
    (53, "udp", "dnscache"): (
        "Zimbra/zm-build zmsetup.pl checkPortConflicts 53=>zimbra-dnscache; zmconfigd serverconfig.py "
        "zimbraUnboundBindAddress=127.0.0.1 (ipv4 mode)"
    ),
    (80, "tcp", "mailbox"): (
        "Zimbra/zm-mailbox store/src/java/com/zimbra/cs/util/ProxyConfGen.java (web.http.port, "
        "HttpEnablerVar); Zimbra/zm-core-utils src/libexec/zmproxyconfig (-a default 8080:80:8443:443)"
    ),
    (80, "tcp", "proxy"): (
        "Zimbra/zm-mailbox store/src/java/com/zimbra/cs/util/ProxyConfGen.java (web.http.port, "
        "HttpEnablerVar); Zimbra/zm-core-utils src/libexec/zmproxyconfig (-a default 8080:80:8443:443)"
    ),
    (110, "tcp", "mailbox"): (
        "Zimbra/zm-mailbox store/conf/attrs/zimbra-attrs.xml (default 110); ProxyConfGen.java mail.pop3.port;"
        " adminguide proxy.adoc"
    ),
    (110, "tcp", "proxy"): (
        "Zimbra/zm-mailbox store/conf/attrs/zimbra-attrs.xml (default 110); ProxyConfGen.java mail.pop3.port;"
        " adminguide proxy.adoc"
    ),
    (143, "tcp", "mailbox"): "zimbra-attrs.xml (default 143); ProxyConfGen.java mail.imap.port; adminguide proxy.adoc",
    (143, "tcp", "proxy"): "zimbra-attrs.xml (default 143); ProxyConfGen.java mail.imap.port; adminguide proxy.adoc",
    (389, "tcp", "ldap"): (
        'Zimbra/zm-core-utils src/libexec/zmslapd (-h "${ldap_bind_url or first ldap_url} ldapi:///"); '
        "zmsetup.pl (LDAPPORT=389; checkPortConflicts 389=>zimbra-ldap); adminguide provisioning.adoc "
        "('default port is 389')"
    ),
    (443, "tcp", "mailbox"): (
        'Zimbra/zm-mailbox ProxyConfGen.java (web.https.port); Zimbra/adminguide proxy.adoc "Zimbra Proxy '
        'Ports (External)"'
    ),
    (443, "tcp", "proxy"): (
        'Zimbra/zm-mailbox ProxyConfGen.java (web.https.port); Zimbra/adminguide proxy.adoc "Zimbra Proxy '
        'Ports (External)"'
    ),
    (465, "tcp", "mta"): (
        'Zimbra/zm-postfix conf/postfix/master.cf.in ("465 inet ... smtpd -o smtpd_tls_wrappermode=yes")'
    ),
    (514, "udp", "logger"): (
        "Zimbra/zm-core-utils src/libexec/zmsyslogsetup (udp(\"<loghost>\" port(514)) / '@<LOGHOST>' = UDP); "
        "zm-build zmsetup.pl setLdapGlobalConfig zimbraLogHostname"
    ),
    (587, "tcp", "mta"): 'Zimbra/zm-postfix conf/postfix/master.cf.in ("submission inet ... smtpd")',
    (636, "tcp", "ldap"): "zmsetup.pl (checkPortConflicts 636=>zimbra-ldap; LDAPPORT==636 -> ldaps)",
    (993, "tcp", "mailbox"): "zimbra-attrs.xml (default 993); ProxyConfGen.java mail.imaps.port; adminguide proxy.adoc",
    (993, "tcp", "proxy"): "zimbra-attrs.xml (default 993); ProxyConfGen.java mail.imaps.port; adminguide proxy.adoc",
    (995, "tcp", "mailbox"): "zimbra-attrs.xml (default 995); ProxyConfGen.java mail.pop3s.port; adminguide proxy.adoc",
    (995, "tcp", "proxy"): "zimbra-attrs.xml (default 995); ProxyConfGen.java mail.pop3s.port; adminguide proxy.adoc",
    (3310, "tcp", "mta"): (
        "Zimbra/zm-mta clamd.conf.in (TCPSocket %%zimbraClamAVListenPort%%, TCPAddr "
        "%%zimbraClamAVBindAddress%%); zimbra-attrs.xml zimbraClamAVBindAddress default localhost, "
        "zimbraClamAVListenPort default 3310 (since 8.5.0)"
    ),
    (3443, "tcp", "proxy"): (
        'zimbra-attrs.xml (default 3443, since 7.1.1; "SSL client certificate port for HTTP proxy"); '
        "zm-nginx-conf conf/nginx/nginx.conf.web.sso.default.template; ProxyConfGen.java "
        "web.sso.certauth.port / ZMSSODefaultEnablerVar"
    ),
    (5222, "tcp", "mailbox"): (
        "zimbra-attrs.xml (default 5222, since 8.7.6; commit 76a98a2f3d 'Add Zextras Chat attributes'); "
        "observed 0.0.0.0:5222 on 8.8.15; zm-build 3d59e112a moves zimbra-chat into ZEXTRAS_PACKAGES"
    ),
    (5223, "tcp", "mailbox"): "zimbra-attrs.xml (default 5223; zimbraChatXmppSslPortEnabled default FALSE)",
    (5269, "tcp", "mailbox"): (
        "Zimbra/zm-mailbox LC.java (xmpp_server_socket_remoteport 5269); Zimbra/adminguide "
        "zimbra-chat-guide.adoc ('Verify that the port 5269 is opened on each server'); observed 0.0.0.0:5269"
        " on 8.8.15"
    ),
    (7025, "tcp", "mailbox"): (
        "zimbra-attrs.xml (default 7025); zm-mailbox "
        "store/src/java/com/zimbra/cs/account/callback/MailHost.java (zimbraMailTransport = "
        "lmtp:<host>:<lmtpPort>); zmsetup.pl 7025=>zimbra-store"
    ),
    (7026, "tcp", "mta"): (
        "zimbra-attrs.xml (zimbraMilterBindPort 7026; zimbraMilterBindAddress 'if not specified, binds to "
        "127.0.0.1'; zimbraMilterServerEnabled FALSE); zm-mailbox "
        "store/src/java/com/zimbra/cs/util/Config.java D_MILTER_BIND_PORT; adminguide mta.adoc (Zimbra Milter"
        " Server is an MTA program)"
    ),
    (7035, "tcp", "mailbox"): (
        "zimbra-attrs.xml (zimbraNotifyBindPort 7035 / zimbraNotifySSLBindPort 7036, both deprecatedSince set)"
    ),
    (7036, "tcp", "mailbox"): (
        "zimbra-attrs.xml (zimbraNotifyBindPort 7035 / zimbraNotifySSLBindPort 7036, both deprecatedSince set)"
    ),
    (7047, "tcp", "convertd"): (
        "zm-build zmsetup.pl (7047=>zimbra-convertd; configConvertdURL sets GLOBAL zimbraConvertdURL "
        "http://<host>:7047/convert)"
    ),
    (7071, "tcp", "mailbox"): (
        "zimbra-attrs.xml (default 7071); zm-jetty-conf conf/jetty/jetty.xml.production (admin connector); "
        "ProxyConfGen.java web.admin.uport; adminguide adminconsole.adoc; zmtrainsa (crontab.mta) via "
        "SpamExtract and imapd's ImapServerListener call admin SOAP here (URLUtil.getAdminURL)"
    ),
    (7072, "tcp", "mailbox"): (
        "zimbra-attrs.xml (default 7072, since 8.7.0); ProxyConfGen.java zmlookup handlers (servers with "
        "zimbraReverseProxyLookupTarget=TRUE, https:// for 8.7+); zm-jetty-conf jetty.xml.production ext "
        "connector; adminguide proxy.adoc 'Route Lookup Handler 7072'"
    ),
    (7073, "tcp", "mailbox"): (
        "zimbra-attrs.xml (default 7073, since 8.7/9.0.0); zm-mailbox "
        "store/src/java/com/zimbra/cs/httpclient/URLUtil.java getMtaAuthURL (7073 for >=8.7, admin port "
        "before); zm-mta saslauthd.conf.in (zimbra_url %%getAllMtaAuthURLs%%)"
    ),
    (7074, "tcp", "mailbox"): (
        "zimbra-attrs.xml (default 7074, since 10.0.0); zm-jetty-conf jetty.xml.production docServer "
        "connector (host empty = all interfaces)"
    ),
    (7084, "tcp", "onlyoffice"): (
        "Zimbra/zm-mailbox ProxyConfGen.java ZIMBRA_UPSTREAM_ONLYOFFICE_DOCSERVICE_PORT=7084 (commit "
        "9d6e4b11dc 2021-07 ZCS-10618); zmsetup.pl 7084=>zimbra-onlyoffice; zm-nginx-conf "
        "nginx.conf.onlyoffice.upstream.template"
    ),
    (7085, "tcp", "onlyoffice"): (
        "ProxyConfGen.java ZIMBRA_UPSTREAM_ONLYOFFICE_SPELLCHECKER_PORT=7085; zmsetup.pl 7085=>zimbra-onlyoffice"
    ),
    (7110, "tcp", "mailbox"): (
        "zimbra-attrs.xml (default 7110); zmproxyconfig -p 7110:110:7995:995; adminguide proxy.adoc 'POP3 Backend'"
    ),
    (7143, "tcp", "mailbox"): (
        "zimbra-attrs.xml (default 7143); zmproxyconfig -i 7143:143:7993:993; adminguide proxy.adoc"
    ),
    (7171, "tcp", "core"): (
        "Zimbra/zm-mailbox LC.java (zmconfigd_listen_port 7171); Zimbra/zm-core-utils src/libexec/zmconfigd "
        "(binds 127.0.0.1 / ::1), src/bin/zmconfigdctl & src/libexec/configrewrite (nc localhost)"
    ),
    (7285, "tcp", "mailbox"): (
        "zimbra-attrs.xml (zimbraMessageChannelPort 7285, zimbraMessageChannelEnabled FALSE, since 8.0.0)"
    ),
    (7306, "tcp", "mailbox"): (
        "Zimbra/zm-mailbox LC.java (mysql_port 7306); Zimbra/zm-core-utils src/libexec/zmiptool (sets "
        "localconfig mysql_bind_address 127.0.0.1 or ::1 per zimbraIPMode; run from zmsetup "
        "configSetEnabledServices) and src/libexec/zmmycnf (bind-address/port from localconfig)"
    ),
    (7307, "tcp", "logger"): (
        "zmsetup.pl checkPortConflicts 7307 (labelled zimbra-store); zm-mailbox git history "
        "LC.logger_mysql_port=7307, logger_mysql_bind_address=localhost (removed later)"
    ),
    (7308, "tcp", "mta"): (
        "Zimbra/zm-mailbox common/.../localconfig/LC.java (antispam_mysql_port 7308, antispam_mysql_enabled "
        "false); Zimbra/zm-core-utils src/libexec/zmantispammycnf (bind-address = 0.0.0.0)"
    ),
    (7780, "tcp", "spell"): (
        "zm-build zmsetup.pl (7780=>zimbra-spell; SPELLURL http://<host>:7780/aspell.php -> "
        "zimbraSpellCheckURL); zimbra-attrs.xml zimbraSpellCheckURL"
    ),
    (7993, "tcp", "mailbox"): (
        "zimbra-attrs.xml (default 7993); ProxyConfGen.java "
        "mail.proxy.ssl<-zimbraReverseProxySSLToUpstreamEnabled (default TRUE); zm-nginx-lookup-store "
        "NginxLookupExtension (imapssl -> zimbraReverseProxyImapSSLPortAttribute)"
    ),
    (7995, "tcp", "mailbox"): "zimbra-attrs.xml (default 7995); adminguide proxy.adoc 'POP3S Backend'",
    (8080, "tcp", "mailbox"): (
        "zmsetup.pl (HTTPPORT=8080 when proxy enabled); zmproxyconfig -a 8080:80:8443:443; zm-jetty-conf "
        "jetty.xml.production (http connector / http_local on localhost when zimbraMailLocalBind); adminguide"
        " proxy.adoc 'HTTP Backend'; SpamExtract (zmtrainsa on the MTA) and imapd's ImapCredentials "
        "(AccountUtil.getSoapUri) use the mailbox's SOAP/REST port per zimbraMailMode"
    ),
    (8143, "tcp", "imapd"): (
        "zimbra-attrs.xml (default 8143, since 8.8.1); zmsetup.pl 8143=>zimbra-imapd; zm-nginx-lookup-store "
        "NginxLookupExtension getUpstreamIMAPPort / zimbraReverseProxyUpstreamImapServers"
    ),
    (8443, "tcp", "mailbox"): (
        "zmsetup.pl (HTTPSPORT=8443 when proxy enabled); ProxyConfGen.java web.ssl.upstream "
        "(zimbraReverseProxyHttpSSLPortAttribute=zimbraMailSSLPort); adminguide proxy.adoc 'HTTPS Backend'; "
        "adminguide zimbra-docs-guide.adoc (mailbox<->Docs over 8443); SpamExtract (zmtrainsa on the MTA) and"
        " imapd's ImapCredentials (AccountUtil.getSoapUri) use the mailbox's SOAP/REST port per "
        "zimbraMailMode"
    ),
    (8465, "tcp", "mta"): (
        "Zimbra/zm-mta opendkim.conf.in (Socket %%zimbraInetMode%%:8465@[%%zimbraLocalBindAddress%%]); "
        "zm-build zmsetup.pl 8465=>zimbra-mta"
    ),
    (8735, "tcp", "modules-ng"): (
        "Zimbra/zm-build rpmconf/Install/Util/utilfunc.sh on hotfix/8.8.15.p45 and hotfix/9.0.0.p33 ('Network"
        " Modules NG needs to bind on TCP ports 8735 and 8736 ... for inter-instance communication ... "
        "properly filtered from public access') - commit 520f4c757 ZCS-1896 (2017); removed by 'remove "
        "zextras' 3d59e112a (2021-07)"
    ),
    (8736, "tcp", "modules-ng"): (
        "Zimbra/zm-build rpmconf/Install/Util/utilfunc.sh (hotfix/8.8.15.p45, hotfix/9.0.0.p33)"
    ),
    (8742, "tcp", "mailbox"): (
        "Zimbra/zm-mailbox ProxyConfGen.java ZIMBRA_UPSTREAM_ZX_PORT=8742 (commit 1e4fadb2de 2018-09 'zx "
        "path, needed by the new zimbra drive'); zm-nginx-conf nginx.conf.web.template upstream zx; "
        "docs.zextras.com install guide (8742/8743)"
    ),
    (8743, "tcp", "mailbox"): (
        "Zimbra/zm-mailbox ProxyConfGen.java ZIMBRA_UPSTREAM_SSL_ZX_PORT=8743; zm-nginx-conf "
        "nginx.conf.web.template upstream zx_ssl"
    ),
    (8993, "tcp", "imapd"): "zimbra-attrs.xml (default 8993, since 8.8.1); zmsetup.pl 8993=>zimbra-imapd",
    (9071, "tcp", "proxy"): (
        "zimbra-attrs.xml (zimbraAdminProxyPort default 9071, since 8.0.0); ProxyConfGen.java "
        "web.admin.port/web.admin.uport + web.admin.default.enabled<-zimbraReverseProxyAdminEnabled; "
        "zm-core-utils zmproxyconfig -C/-n 7071:9071"
    ),
    (9443, "tcp", "mailbox"): (
        "zimbra-attrs.xml (default 9443, since 7.1.0); zm-jetty-conf jetty.xml.production (ssl-clientcert "
        "connector only when zimbraMailSSLClientCertMode != Disabled)"
    ),
    (9980, "tcp", "docs"): (
        "Zimbra/zm-nginx-conf conf/nginx/nginx.conf.docs.upstream.template (server ${server_hostname}:9980); "
        "Zimbra/adminguide zimbra-docs-guide.adoc ('Docs Server communicates with the Extension through port "
        "9980 ... from all mailbox and proxy servers')"
    ),
    (10024, "tcp", "mta"): (
        "Zimbra/zm-amavis conf/zmconfigd/postfix_content_filter.cf; zm-postfix "
        "conf/postfix/tag_as_foreign.re.in; zmconfigd serverconfig.py zimbraAmavisListenSockets "
        "('10024','10026','10032') (Zimbra/zm-ldap-utilities src/python/pylibs/serverconfig.py)"
    ),
    (10025, "tcp", "mta"): (
        'Zimbra/zm-postfix master.cf.in ("[zimbraLocalBindAddress]:10025 ... syslog_name=postfix/amavisd"); '
        "zm-amavis amavisd.conf.in $forward_method/$notify_method"
    ),
    (10026, "tcp", "mta"): (
        "Zimbra/zm-amavis conf/amavisd.conf.in ($interface_policy{'10026'}='ORIGINATING'); zm-postfix "
        "tag_as_originating.re.in (FILTER smtp-amavis:[...]:10026)"
    ),
    (10027, "tcp", "mta"): (
        'Zimbra/zm-postfix master.cf.in ("[...]:10027 inet ... spawn ... postjournal"); zm-build zmsetup.pl '
        "checkPortConflicts 10027=>zimbra-mta"
    ),
    (10028, "tcp", "mta"): 'Zimbra/zm-postfix master.cf.in ("[...]:10028 ... syslog_name=postfix/reinject")',
    (10029, "tcp", "mta"): 'Zimbra/zm-postfix master.cf.in ("[...]:10029 ... syslog_name=postfix/archive")',
    (10030, "tcp", "mta"): (
        'Zimbra/zm-postfix master.cf.in ("[...]:10030 ... smtpd_milters=inet:localhost:8465 ... '
        'syslog_name=postfix/dkimmilter"); zm-amavis amavisd.conf.in ORIGINATING forward_method :10030 when '
        "SERVICE:opendkim"
    ),
    (10031, "tcp", "mta"): (
        "Zimbra/zm-mta cbpolicyd.conf.in (host=localhost, port=%%zimbraCBPolicydBindPort%%); zimbra-attrs.xml"
        " default 10031 (since 8.5.0)"
    ),
    (10032, "tcp", "mta"): (
        "Zimbra/zm-amavis amavisd.conf.in ($interface_policy{'10032'}='ORIGINATING_POST'); zm-postfix "
        "master.cf.in (10030 content_filter smtp-amavis:[...]:10032 when SERVICE:antispam)"
    ),
    (11211, "tcp", "memcached"): (
        "zimbra-attrs.xml (default 11211, since 5.0.0; zimbraMemcachedClientServerList for mailbox side); "
        "zm-core-utils src/bin/zmmemcachedctl ('-U 0' = UDP off, -l zimbraMemcachedBindAddress or all "
        "interfaces); ProxyConfGen.java MemcacheServersVar"
    ),
    (23232, "tcp", "mta"): (
        "observed 127.0.0.1:23232 LISTEN on ZCS 8.8.15 (cgomeznt/Zimbra guia/instalar.rst netstat); "
        "Zimbra/zm-core-utils src/bin/zmamavisdctl starts amavis-mc; zm-amavis amavisd.conf.in $enable_zmq=1"
    ),
    (23233, "tcp", "mta"): "observed 127.0.0.1:23233 LISTEN on ZCS 8.8.15 (cgomeznt/Zimbra guia/instalar.rst netstat)",
}


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
