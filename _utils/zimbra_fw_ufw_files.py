"""
ufw's formats, read and written without running ufw: the ``### tuple ###``
lines of its rules files (as ``ufw show added`` lists them), application
profile files, ``/etc/default/ufw``, ``ufw status verbose`` and ufw's port
syntax. Pure functions of text, used by the ufw backend (zimbra_fw_ufw).
"""

import configparser
import functools
import re
from collections import namedtuple

from zimbra_fw_audit import Rule
from zimbra_fw_catalogue import PortSpec


def __virtual__():
    return (False, "zimbra_fw_ufw_files is a library of the zimbra_fw module, not a Salt util")


MULTIPORT_LIMIT = 15  # iptables multiport: at most 15 ports per group, a range counts 2
POLICY_WORDS = {"DROP": "deny", "REJECT": "reject", "ACCEPT": "allow"}
ANYWHERE = ("0.0.0.0/0", "::/0")
FAMILIES = ("IPv4", "IPv6")  # user.rules, user6.rules
UfwTuple = namedtuple("UfwTuple", "action proto dport dst sport src dapp sapp direction iface_in iface_out logtype")


# ---------------------------------------------------------------- application profiles


def port_groups(specs):
    """Split ports into ufw profile groups of ``LIST/proto`` within the multiport limit."""
    groups = []
    for proto in ("tcp", "udp"):
        current, weight = [], 0
        for spec in sorted(s for s in specs if s.proto == proto):
            if weight + spec.weight > MULTIPORT_LIMIT:
                groups.append(current)
                current, weight = [], 0
            current.append(spec)
            weight += spec.weight
        if current:
            groups.append(current)
    return [",".join(str(s).split("/")[0] for s in group) + "/" + group[0].proto for group in groups]


def profile_section(name, title, description, specs):
    return f"[{name}]\ntitle={title}\ndescription={description}\nports={'|'.join(port_groups(specs))}\n"


def profile_file_ports(text):
    """``{profile name: ports text}`` from a profile file, in file order ({} if unreadable)."""
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text or "")
    except configparser.Error:
        return {}
    return {name: parser.get(name, "ports", fallback=None) for name in parser.sections()}


def parse_ufw_ports(text):
    """PortSpecs from ufw port syntax: ``22``, ``80,443/tcp``, ``6000:6010/tcp``, ``a/tcp|b/udp``."""
    specs = []
    for group in text.split("|"):
        ports, _, proto = group.partition("/")
        for item in ports.split(","):
            first, _, last = item.partition(":")
            for one_proto in (proto,) if proto else ("tcp", "udp"):
                specs.append(PortSpec(int(first), int(last or first), one_proto))
    return specs


def parse_app_profiles(texts):
    """``{name: [PortSpec]}`` from the texts of the files in applications.d."""
    profiles = {}
    for text in texts:
        for name, ports in profile_file_ports(text).items():
            if ports is None:
                continue
            try:
                profiles[name] = parse_ufw_ports(ports)
            except ValueError:  # ports ufw would refuse
                continue
    return profiles


# ---------------------------------------------------------------- rules files


def _command_words(rule):
    """A UfwTuple's arguments as ``ufw show added`` writes them."""
    words = [rule.action]
    interfaces = rule.iface_in or rule.iface_out
    if rule.dst in ANYWHERE and rule.src in ANYWHERE and rule.sport == "any" and not rule.sapp and not interfaces:
        if rule.dport != "any":  # ufw's short form: allow 22/tcp, allow Zimbra
            words += ["out"] if rule.direction == "out" else []
            words += [rule.logtype] if rule.logtype else []
            words.append(rule.dapp or (rule.dport if rule.proto == "any" else f"{rule.dport}/{rule.proto}"))
            return tuple(words)
    words += ["in", "on", rule.iface_in] if rule.iface_in else []
    words += ["out", "on", rule.iface_out] if rule.iface_out else (["out"] if rule.direction == "out" else [])
    words += [rule.logtype] if rule.logtype else []
    for keyword, address, port, app in (
        ("from", rule.src, rule.sport, rule.sapp),
        ("to", rule.dst, rule.dport, rule.dapp),
    ):
        where = "any" if address in ANYWHERE else address
        if where != "any" or port != "any" or app:
            words += [keyword, where, *(["app", app] if app else ["port", port] if port != "any" else [])]
    if "from" not in words and "to" not in words and not interfaces:
        words += ["to", "any"]
    if rule.proto != "any" and not rule.dapp and not rule.sapp:
        words += ["proto", rule.proto]
    return tuple(words)


def _interfaces(field):
    """(direction, in-interface, out-interface) from a tuple's last field, or None."""
    direction = field.split("_")[0]
    if "_" not in field:
        return direction, "", ""
    parts = field.split("!")
    if len(parts) == 2 and parts[0].startswith("in_") and parts[1].startswith("out_"):
        return direction, parts[0][3:], parts[1][4:]
    if field.startswith("in_"):
        return direction, field[3:], ""
    if field.startswith("out_"):
        return direction, "", field[4:]
    return None


def _tuple_ports(proto, dport):
    """The ports a tuple's destination opens (frozenset of PortSpecs, empty for any port)."""
    try:
        return frozenset(parse_ufw_ports(dport if proto == "any" else f"{dport}/{proto}"))
    except ValueError:  # any port, or ports ufw would not have written
        return frozenset()


# Stands for a tuple's source address while the words of its shape are worked out.
SOURCE = object()


def _tuple_rule(line):
    """One ``### tuple ###`` line of user.rules: ((argument tuple, comment or
    None), the ports its destination opens), or None. Lines that differ only
    in their source address (one per peer) share one parse: the source is a
    word of its own in the words (``from SOURCE``) unless it is anywhere
    (or the word ``any``, which ufw never writes there)."""
    body, _, comment_hex = line.partition(" comment=")
    fields = body.split()[3:]
    source = fields[5] if len(fields) > 5 and fields[5] not in (*ANYWHERE, "any") else None
    if source is not None:
        fields[5] = SOURCE
    parsed = _tuple_shape(tuple(fields), comment_hex.strip())
    if parsed is None:
        return None
    (words, comment), ports, at = parsed
    if source is None:
        return (words, comment), ports
    return ((*words[:at], source, *words[at + 1 :]), comment), ports


@functools.lru_cache(maxsize=1024)  # rules files repeat a few shapes over thousands of rules
def _tuple_shape(fields, comment_hex):
    """``_tuple_rule`` of a line's fields after ``### tuple ###`` and its comment,
    with the index of SOURCE in its words (None: not there)."""
    fields = list(fields)
    if not 6 <= len(fields) <= 9:
        return None
    iface = ("in", "", "")
    if len(fields) in (7, 9):
        iface = _interfaces(fields.pop())
        if iface is None:
            return None
    action, proto, dport, dst, sport, src = fields[:6]
    apps = [app.replace("%20", " ") if app != "-" else "" for app in fields[6:8]] or ["", ""]
    route = action.startswith("route:")
    action, _, logtype = action.split(":")[-1].lower().partition("_")
    if action not in ("allow", "reject", "limit"):
        action = "deny"
    words = _command_words(UfwTuple(action, proto, dport, dst, sport, src, *apps, *iface, logtype))
    words = ("route", *words) if route else tuple(words)
    # Where the source goes back (one slice per line, not a scan): a source
    # that is not anywhere is written once, as ``from SOURCE``.
    at = words.index(SOURCE) if SOURCE in words else None
    return (words, _tuple_comment(comment_hex)), _tuple_ports(proto, dport), at


def _tuple_comment(comment_hex):
    """A tuple's comment, written as hex; None for none."""
    try:
        return bytes.fromhex(comment_hex).decode("utf-8") if comment_hex else None
    except ValueError:
        return comment_hex


def read_rules(texts):
    """The rules in ufw's rules files, ``texts`` in FAMILIES' order (user.rules,
    then user6.rules; None for a file not read): ``(rules, copies)``.
    ``rules``: (argument tuple, comment or None) as ``ufw show added`` lists
    them, in ufw's order, each once. ``copies``: ``{rule: {family: ports}}``,
    the families whose file holds the rule and the ports its tuples there
    open (frozenset of PortSpecs: what an application rule opens is what
    ufw wrote when it last read the profile, not what the profile says now)."""
    rules, copies = [], {}
    for index, text in enumerate(texts):  # no user6.rules while IPv6 is off
        if text is None:  # no such file
            continue
        family = FAMILIES[index]
        for line in text.splitlines():
            parsed = _tuple_rule(line) if line.startswith("### tuple ###") else None
            if parsed is None:
                continue
            rule, ports = parsed
            families = copies.get(rule)
            if families is None:
                families = copies[rule] = {}
                rules.append(rule)
            families[family] = families.get(family, frozenset()) | ports
    return rules, copies


def rules_from_files(texts):
    """The rules in ufw's rules files (user.rules, then user6.rules), as
    ``ufw show added`` lists them: (argument tuple, comment or None), in
    ufw's order, each once."""
    return read_rules(texts)[0]


def rule_profile(words):
    """The application profile a rule names, if any."""
    if "app" in words[:-1]:
        return words[words.index("app") + 1]
    return words[1] if len(words) == 2 and not words[1][:1].isdigit() else None


def access_rule(words, profiles, live_ports=None):
    """What an incoming rule lets in, as the audit reads it (None for rules it
    ignores: outgoing, routed, unknown). A rule restricted to source ports
    (``from A port P``) reaches every port from A. An application rule opens
    ``live_ports`` (PortSpecs, what its tuples in the rules files open) when
    given, else its profile's ports in ``profiles``."""
    words = [w for w in words if w not in ("log", "log-all")]
    if not words or words[0] not in ("allow", "deny", "reject", "limit"):
        return None
    action, rest = words[0], words[1:]
    if rest[:1] == ["out"]:
        return None
    if rest[:1] == ["in"]:
        rest = rest[1:]
    if rest[:1] == ["on"]:
        rest = rest[2:]
    if len(rest) == 1:  # simple form: a port spec or an application
        target = rest[0]
        if target[:1].isdigit():
            return Rule(action, "any", parse_ufw_ports(target))
        return Rule(action, "any", list(live_ports if live_ports is not None else profiles.get(target, [])))
    destination = rest[rest.index("to") :] if "to" in rest else []
    fields = {destination[i]: destination[i + 1] for i in range(0, len(destination) - 1, 2)}
    source = rest[rest.index("from") + 1] if "from" in rest else "any"
    proto = rest[rest.index("proto") + 1] if "proto" in rest[:-1] else None
    ports = None
    if "app" in fields:
        ports = list(live_ports if live_ports is not None else profiles.get(fields["app"], []))
    elif "port" in fields:
        ports = parse_ufw_ports(fields["port"] + (f"/{proto}" if proto else ""))
    elif proto:
        ports = [PortSpec(1, 65535, proto)]
    return Rule(action, source, ports)


# ---------------------------------------------------------------- settings and status


def parse_status(output):
    """Parse ``ufw status verbose``: (active, default incoming policy or None)."""
    active = False
    incoming = None
    for line in output.splitlines():
        if line.startswith("Status:"):
            active = line.strip() == "Status: active"
        match = re.match(r"Default:\s*(\w+) \(incoming\)", line)
        if match:
            incoming = match.group(1)
    return active, incoming


def _defaults_value(text, name):
    match = re.search(rf'^{name}="?(\w+)"?', text or "", re.MULTILINE)
    return match.group(1) if match else None


def parse_defaults_file(text):
    """Default incoming policy from /etc/default/ufw text."""
    policy = _defaults_value(text, "DEFAULT_INPUT_POLICY")
    return POLICY_WORDS.get(policy.upper(), policy.lower()) if policy else None


def defaults_ipv6(text):
    """Whether /etc/default/ufw text leaves IPv6 on (ufw's default when unset)."""
    value = _defaults_value(text, "IPV6")
    return value is None or value.lower() == "yes"
