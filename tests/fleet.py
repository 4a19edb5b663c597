"""A fleet's answers to the report's jobs, made by the real core.

Four Zimbra servers (LDAP, MTA, mailbox with memcached, proxy) with their
peers in pillar. For each: ``open_ports`` and ``identity`` from the policy,
``audit`` from the policy's own firewall rules (ufw's words, read back as
the audit reads them) with hand edits, Zimbra's listeners, and ``drift`` in
the shape ``zimbra_fw.drift`` returns: the rules the policy wants that are
missing, and the foreign ones. The answers come as the master's LocalClient
gives them (``full_return=True``). ``Tables`` reads the report's page back.
"""

import html.parser
import ipaddress

import zimbra_fw_audit as audit
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
import zimbra_fw_ufw_files as ufw_files

TRUSTED = "192.168.10.0/24"
NODES = {
    "ldap": ("10.0.1.11", ["ldap"]),
    "mta": ("10.0.1.12", ["mta"]),
    "mailbox": ("10.0.1.13", ["mailbox", "memcached"]),
    "proxy": ("10.0.1.14", ["proxy"]),
}
BACKENDS = {"mailbox": "firewalld", "proxy": "firewalld"}
EXTRA_PILLAR = {"mailbox": {"admin_subnets": ["192.0.2.0/24"]}}
# Hand edits: someone opened memcached on the mailbox to anyone, and
# deleted the LDAP server's rule for its mailbox peer.
ADDED = {"mailbox": [("allow", "11211/tcp")]}
REMOVED = {"ldap": [("allow", "from", "10.0.1.13", "to", "any", "app", "Zimbra-all")]}


def pillar(name):
    _, roles = NODES[name]
    peers = [
        {"name": other, "addresses": [other_address], "roles": other_roles}
        for other, (other_address, other_roles) in NODES.items()
        if other != name
    ]
    return {"roles": roles, "trusted_subnets": [TRUSTED], "cluster": {"peers": peers}, **EXTRA_PILLAR.get(name, {})}


def listeners(policy):
    """Zimbra's sockets: public and cluster ports on every address, localhost ports on loopback."""
    anywhere, loopback = ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("127.0.0.1")
    found = [audit.Listener(anywhere, policy.config.ssh_port, "tcp")]
    bound = (
        (policy.public, anywhere),
        (policy.admin, anywhere),
        (policy.cluster, anywhere),
        (policy.localhost, loopback),
    )
    for specs, address in bound:
        found += [audit.Listener(address, s.first, s.proto) for s in specs if s.first == s.last]
    return sorted(set(found), key=lambda listener: (listener.port, listener.proto))


def minion_answers(name):
    """``{function: return}`` of one minion, from the real core."""
    _, roles = NODES[name]
    policy = policies.build(cfg.parse_config(pillar(name), cfg.Facts(minion_id=name)))
    backend = BACKENDS.get(name, "ufw")
    wanted = ufw.desired_rules(policy)
    live = [words for words in wanted if words not in REMOVED.get(name, [])] + ADDED.get(name, [])
    profiles = ufw_files.parse_app_profiles([ufw.profile_text(policy)])
    rules = [ufw_files.access_rule(words, profiles) for words in live]
    report = audit.audit(policy, listeners(policy), rules, active=True, incoming="deny", firewall=backend)
    changes = {}
    missing = [ufw.rule_text(words) for words in wanted if words not in live]
    foreign = [ufw.rule_text(words) for words in live if words not in wanted]
    if missing or foreign:
        changes["rules"] = {key: value for key, value in (("added", missing), ("removed", foreign)) if value}
    open_ports = policies.open_ports(policy)
    open_ports["firewall"] = {"backend": backend}
    return {
        "drift": {
            "drifted": bool(changes),
            "backend": backend,
            "active": True,
            "parts": {"profile": {}, **changes, "firewall": {}},
            "comment": "The firewall has drifted from the policy" if changes else "The firewall matches the policy",
            "findings": [f for f in report["findings"] if f["severity"] in ("critical", "high")],
            "roles": roles,
        },
        "audit": report,
        "open_ports": open_ports,
        "identity": {"roles": roles, "addresses": [NODES[name][0]]},
    }


def answers(extra=None):
    """``{function: {minion: full return}}`` of the four servers, and of
    ``extra``: ``{minion: {function: return}}`` (a function left out did not answer)."""
    per_minion = {name: minion_answers(name) for name in NODES}
    per_minion.update(extra or {})
    result = {function: {} for function in ("drift", "audit", "open_ports", "identity")}
    for name, returns in per_minion.items():
        for function, calls in result.items():
            if function in returns:
                calls[name] = {"ret": returns[function], "retcode": 0, "jid": "20261206100000000000"}
            else:
                calls[name] = {"out": "no_return", "ret": "Minion did not return. [No response]", "retcode": 1}
    return result


class Tables(html.parser.HTMLParser):
    """The tables of a DOM: rows of cells, each (text, class, the classes of its spans)."""

    def __init__(self, dom):
        super().__init__()
        self.tables, self.cell, self.tags = [], None, []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = {"text": "", "class": attrs.get("class"), "spans": []}
            self.tables[-1][-1].append(self.cell)
        elif tag == "span" and self.cell is not None:
            self.cell["spans"].append(attrs.get("class"))
        elif tag == "br" and self.cell is not None:
            self.cell["text"] += "\n"

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell["text"] += data

    def grid(self, index):
        """``{(row header, column header): cell}`` of a table whose first row and column are headers."""
        head, *rows = self.tables[index]
        columns = [cell["text"].split("\n")[0] for cell in head]
        return {(row[0]["text"], columns[i]): cell for row in rows for i, cell in enumerate(row) if i}
