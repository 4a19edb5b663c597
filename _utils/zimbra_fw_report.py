"""
The fleet report: what every Zimbra server's minion answered to
``zimbra_fw.drift``, ``audit``, ``open_ports`` and ``identity``, as one
table and as a reachability matrix (who reaches which ports of each server)
in a self-contained HTML page. Pure: the answers come in as the master's
LocalClient gives them (full returns), and every value in them is hostile
until parsed (a minion may answer anything, or nothing).
"""

import html
import ipaddress
from collections import namedtuple

from zimbra_fw_catalogue import ROLES


def __virtual__():
    return (False, "zimbra_fw_report is a library of the zimbra_fw module, not a Salt util")


FUNCTIONS = ("drift", "audit", "open_ports", "identity")
SEVERITIES = ("critical", "high", "medium", "low", "info")
COUNTED = ("critical", "high", "medium")
NO_ANSWER = "did not answer"
INTERNET, TRUSTED, ADMIN, FINDINGS = "internet", "trusted subnets", "admin subnets", "findings"
# Mark states. open: the policy opens the port to them (and, where it
# listens, the firewall lets them in); idle: opened, nothing listens;
# closed: opened and listening, but the firewall keeps them out; extra: the
# firewall lets them in, the policy does not; restricted: open to the
# only_from networks only; management: ssh as ssh:from allows it.
OPEN, IDLE, CLOSED, EXTRA, RESTRICTED, MANAGEMENT = "open", "idle", "closed", "extra", "restricted", "management"
DRIFT_STATES = (CLOSED, EXTRA)
# Hostile data cannot make the page or the table arbitrarily long.
MAX_TEXT = 200
MAX_ITEMS = 1000

Server = namedtuple(
    "Server", "name problems backend active drifted drift_parts drift_comment findings roles addresses ports live"
)
Mark = namedtuple("Mark", "port state severity note")
Matrix = namedtuple("Matrix", "rows columns cells")


# ---------------------------------------------------------------- parsing answers


def text(value, limit=MAX_TEXT):
    """``value`` as one printable line of at most ``limit`` characters."""
    shown = "".join(c if c.isprintable() else "?" for c in str(value))
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def answer(raw):
    """(value, problem) of one minion's full return: the function's dict, or
    None and why not (no answer, the function missing, an exception)."""
    if not isinstance(raw, dict) or raw.get("out") == "no_return" or raw.get("failed"):
        return None, NO_ANSWER
    value = raw.get("ret", raw.get("error"))
    if isinstance(value, dict):
        return value, None
    return None, text(value) or "empty answer"


def _get(mapping, key, kind, default=None):
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, kind) else default


def _strings(values):
    """The strings of a list, as printable text; not a list: none."""
    if not isinstance(values, list):
        return []
    return [text(value) for value in values[:MAX_ITEMS] if isinstance(value, str)]


def _networks(values):
    """The networks among ``values`` (hostile: others are skipped)."""
    found = []
    for value in values if isinstance(values, list) else ():
        try:
            found.append(ipaddress.ip_network(value, strict=False))
        except (TypeError, ValueError):
            continue
    return found


def _findings(report):
    """``[(severity, port, message)]`` of an audit or drift answer, worst first."""
    found = []
    for entry in _get(report, "findings", list, [])[:MAX_ITEMS]:
        severity = _get(entry, "severity", str)
        if severity not in SEVERITIES:
            continue
        port = _get(entry, "port", str)
        found.append((severity, text(port) if port else None, text(_get(entry, "message", str, ""))))
    return sorted(found, key=lambda finding: SEVERITIES.index(finding[0]))


def _live(audit):
    """``{port: (reachable_from, expected)}`` of the audit's listening ports."""
    live = {}
    for entry in _get(audit, "ports", list, [])[:MAX_ITEMS]:
        port = _get(entry, "port", str)
        reach = entry.get("reachable_from") if isinstance(entry, dict) else None
        if port and (reach in ("anyone", "nobody", "localhost") or isinstance(reach, list)):
            live[text(port)] = (reach, _get(entry, "expected", str))
    return live


def server(name, values, problems):
    """A Server from ``{function: answer dict}`` and ``{function: problem}``."""
    drift, audit, ports, identity = (values.get(function) for function in FUNCTIONS)
    drifted = _get(drift, "drifted", bool)
    parts = _get(drift, "parts", dict, {})
    return Server(
        name=text(name),
        problems=problems,
        backend=text(_get(drift, "backend", str) or _get(_get(ports, "firewall", dict), "backend", str) or ""),
        active=_get(drift, "active", bool, _get(_get(audit, "firewall", dict), "active", bool)),
        drifted=drifted,
        drift_parts=sorted(text(part) for part, changes in list(parts.items())[:MAX_ITEMS] if changes),
        drift_comment=text(_get(drift, "comment", str, "")),
        findings=_findings(audit if audit is not None else drift),
        roles=_strings(_get(drift, "roles", list) or _get(_get(ports, "roles", dict), "roles", list))
        or _strings(_get(identity, "roles", list)),
        addresses=_networks(_get(identity, "addresses", list)),
        ports=ports,
        live=_live(audit) if audit is not None else None,
    )


def servers(answers):
    """Servers, by name, from ``{function: {minion: full return}}``: every
    minion that any call targeted, each function's problem named."""
    names = sorted({name for returns in answers.values() if isinstance(returns, dict) for name in returns}, key=str)
    found = []
    for name in names:
        values, problems = {}, {}
        for function in FUNCTIONS:
            value, problem = answer(_get(answers, function, dict, {}).get(name))
            if problem:
                problems[function] = problem
            else:
                values[function] = value
        found.append(server(name, values, problems))
    return found


# ---------------------------------------------------------------- the table


def counts(item):
    """``{severity: n}`` of the counted severities; None when the findings are unknown."""
    if "audit" in item.problems and "drift" in item.problems:
        return None
    return {severity: sum(f[0] == severity for f in item.findings) for severity in COUNTED}


def status(item):
    """The drifted column: yes, no, or why it is not known."""
    if len(item.problems) == len(FUNCTIONS) and set(item.problems.values()) == {NO_ANSWER}:
        return "no answer"
    if item.drifted is None:
        return "unknown"
    return "yes" if item.drifted else "no"


def note(item):
    """What went wrong, per function, in one line."""
    if status(item) == "no answer":
        return NO_ANSWER
    return "; ".join(f"{function}: {problem}" for function, problem in item.problems.items())


TABLE_HEADER = ("minion", "backend", "drifted", *COUNTED, "roles", "note")


def table_rows(items):
    """One row of strings per server, in TABLE_HEADER's order."""
    rows = []
    for item in items:
        found = counts(item)
        numbers = [str(found[s]) if found else "?" for s in COUNTED]
        rows.append((item.name, item.backend or "?", status(item), *numbers, ",".join(item.roles), note(item)))
    return rows


def table_lines(items):
    """The table as aligned lines (the last column is not padded)."""
    rows = [TABLE_HEADER, *table_rows(items)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip() for row in rows
    ]


# ---------------------------------------------------------------- the matrix


def _reaches(reach, network):
    """Does the live reach (``anyone`` or sources) let ``network`` in?"""
    if reach == "anyone":
        return True
    for source in _networks(reach):
        if source.version == network.version and network.subnet_of(source):
            return True
    return False


def _worst(findings):
    """``{port: the worst severity of its findings}``."""
    worst = {}
    for severity, port, _ in findings:
        if port and port not in worst:  # findings come worst first
            worst[port] = severity
    return worst


def _opened(port, item, networks, worst, note=""):
    """The mark of a port the policy opens to ``networks``: groups of
    networks, each group let in by one of its networks (a peer by one of its
    addresses); None: to anyone. Without the audit it is not checked."""
    live = (item.live or {}).get(port)
    first, last, _ = _span(port)
    if item.live is None or (live is None and first != last):
        return Mark(port, OPEN, worst.get(port), note)  # a range: its listeners are not checked one by one
    if live is None:
        return Mark(port, IDLE, worst.get(port), note or "nothing listens")
    reach = live[0]
    if reach == "localhost":
        return Mark(port, IDLE, worst.get(port), note or "listens on localhost only")
    if networks is None:
        allowed = reach == "anyone"
    else:
        allowed = all(any(_reaches(reach, net) for net in group) for group in networks)
    return Mark(port, OPEN if allowed else CLOSED, worst.get(port), note or ("" if allowed else "kept out"))


def _span(port):
    """(first, last, proto) of a port label such as 25/tcp or 6000:6010/tcp."""
    number, _, proto = port.partition("/")
    first, _, last = number.partition(":")
    try:
        return int(first), int(last or first), proto
    except ValueError:
        return -1, -1, proto


def _covered(port, labels):
    first, last, proto = _span(port)
    return any(f <= first and last <= la and p == proto for f, la, p in map(_span, labels))


def _internet(item, worst):
    ports = item.ports
    only_from = _get(ports, "only_from", dict, {})
    marks = []
    for port in _strings(_get(ports, "public", list)):
        if port in only_from:
            nets = ", ".join(_strings(only_from[port]))
            marks.append(Mark(port, RESTRICTED, worst.get(port), f"only from {nets}"))
        else:
            marks.append(_opened(port, item, None, worst))
    opened = [mark.port for mark in marks]
    for port, (reach, expected) in (item.live or {}).items():
        if reach != "anyone" or _covered(port, opened):
            continue
        state = MANAGEMENT if expected == "management" else EXTRA
        marks.append(Mark(port, state, worst.get(port), "the firewall lets anyone in"))
    return marks


def _trusted(item, worst):
    nets = _networks(_get(item.ports, "trusted", list))
    if not nets:
        return [], ""
    marks = [_opened(port, item, [[net] for net in nets], worst) for port in sorted(item.live or {}, key=_port_key)]
    return [mark for mark in marks if mark.state == CLOSED], "every port"


def _admin(item, worst):
    admin = _get(item.ports, "admin", dict, {})
    return [_opened(text(port), item, [[n] for n in _networks(nets)], worst) for port, nets in admin.items()]


def _peer_marks(item, names, addresses_of, worst):
    """Marks of the ports the policy opens to the peers ``names`` (a role's
    minions, or one peer): closed when one of them, addresses known, is kept out."""
    marks = []
    for port, peers in _get(item.ports, "peers", dict, {}).items():
        whom = (
            [text(peer) for peer in peers if isinstance(peer, str) and text(peer) in names]
            if isinstance(peers, list)
            else []
        )
        if not whom:
            continue
        groups = [addresses_of[peer] for peer in whom if addresses_of.get(peer)]
        marks.append(_opened(text(port), item, groups, worst, f"to {', '.join(whom)}"))
    return marks


def _port_key(port):
    first, _, proto = _span(port)
    return (first if first >= 0 else 1 << 20, proto, port)


def _role_key(role):
    order = list(ROLES)
    return (order.index(role) if role in order else len(order), role)


def role_row(roles):
    """The row of the servers with these roles: ``mailbox + memcached``."""
    return " + ".join(sorted(roles, key=_role_key)) or "no roles"


def matrix(items):
    """Rows (who: the internet, trusted and admin subnets, the servers of
    each set of roles, peers outside the report), columns (server names) and
    ``{(row, column): (marks, note)}``."""
    roles_of = {item.name: item.roles for item in items}
    addresses_of = {item.name: item.addresses for item in items}
    kinds = {role_row(item.roles): item.roles for item in items if item.ports is not None or item.roles}
    kinds = sorted(kinds, key=lambda row: [_role_key(role) for role in kinds[row]])
    strangers = sorted(
        {
            text(peer)
            for item in items
            for peers in _get(item.ports, "peers", dict, {}).values()
            if isinstance(peers, list)
            for peer in peers
            if isinstance(peer, str) and text(peer) not in roles_of
        }
    )
    with_admin = any(_get(item.ports, "admin", dict) for item in items)
    rows = [INTERNET, TRUSTED, *([ADMIN] if with_admin else []), *kinds, *(f"peer {name}" for name in strangers)]
    rows.append(FINDINGS)
    cells = {}
    for item in items:
        worst = _worst(item.findings)
        if item.ports is None:
            for row in rows[:-1]:
                cells[row, item.name] = ([], "")
        else:
            cells[INTERNET, item.name] = (_internet(item, worst), "")
            cells[TRUSTED, item.name] = _trusted(item, worst)
            if with_admin:
                cells[ADMIN, item.name] = (_admin(item, worst), "")
            for kind in kinds:
                names = {name for name, its in roles_of.items() if role_row(its) == kind}
                cells[kind, item.name] = (_peer_marks(item, names, addresses_of, worst), "")
            for name in strangers:
                marks = _peer_marks(item, {name}, addresses_of, worst)
                cells[f"peer {name}", item.name] = (marks, "")
        cells[FINDINGS, item.name] = ([], "")
    for key, (marks, note_) in cells.items():
        cells[key] = (sorted(marks, key=lambda mark: _port_key(mark.port)), note_)
    return Matrix(rows, [item.name for item in items], cells)


# ---------------------------------------------------------------- the page

STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #bbb;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#eee}
td.drift{background:#fff3e0}
.port{display:inline-block;margin:1px 2px;padding:0 4px;border-radius:3px;background:#e3f2e1;
font-family:monospace;white-space:nowrap}
.idle{background:#eee;color:#777}
.closed{background:#ffe0b2;text-decoration:line-through}
.extra{background:#ffcdd2;font-weight:bold}
.restricted{background:#e3ecf7}
.management{background:#f0e6f6}
.sev{font-size:80%;font-weight:bold;color:#fff;border-radius:3px;padding:0 3px;margin-left:3px}
.sev-critical{background:#b71c1c}.sev-high{background:#e53935}.sev-medium{background:#fb8c00}
.sev-low{background:#7cb342}.sev-info{background:#90a4ae}
.yes{color:#c62828;font-weight:bold}.problem{color:#c62828}
ul{margin:0;padding-left:1.1em}
"""

LEGEND = (
    (OPEN, "open to them by the policy (and by the firewall, where it listens)"),
    (IDLE, "open by the policy, nothing listens"),
    (CLOSED, "open by the policy, but the firewall keeps them out (drift)"),
    (EXTRA, "the firewall lets them in, the policy does not (drift)"),
    (RESTRICTED, "open to the only_from networks only"),
    (MANAGEMENT, "ssh, as ssh:from allows"),
)


def _e(value):
    return html.escape(str(value), quote=True)


def _mark_html(mark):
    title = " ".join(part for part in (mark.state, mark.note) if part)
    badge = f'<span class="sev sev-{mark.severity}">{_e(mark.severity)}</span>' if mark.severity else ""
    return f'<span class="port {mark.state}" title="{_e(title)}">{_e(mark.port)}{badge}</span>'


def _summary_html(items):
    head = "".join(f"<th>{_e(name)}</th>" for name in TABLE_HEADER)
    body = []
    for row in table_rows(items):
        cells = [f"<td>{_e(value)}</td>" for value in row]
        if row[2] == "yes":
            cells[2] = '<td class="yes">yes</td>'
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _column_head(item):
    lines = [f"<b>{_e(item.name)}</b>", _e(item.backend or "?")]
    if status(item) == "no answer":
        return "<br>".join([*lines, f'<span class="problem">{NO_ANSWER}</span>'])
    if item.active is False:
        lines.append('<span class="problem">firewall inactive</span>')
    if item.drifted:
        parts = ", ".join(item.drift_parts) or "yes"
        lines.append(f'<span class="yes" title="{_e(item.drift_comment)}">drifted: {_e(parts)}</span>')
    elif item.drifted is False:
        lines.append("no drift")
    else:
        why = item.problems.get("drift", "drifted is neither true nor false")
        lines.append(f'<span class="problem">drift unknown: {_e(why)}</span>')
    if item.ports is None:
        lines.append(f'<span class="problem">open_ports: {_e(item.problems.get("open_ports", NO_ANSWER))}</span>')
    return "<br>".join(lines)


def _findings_html(item):
    if "audit" in item.problems and "drift" in item.problems:
        return f'<span class="problem">audit: {_e(item.problems["audit"])}</span>'
    if not item.findings:
        return "none"
    entries = [
        f'<li><span class="sev sev-{severity}">{_e(severity)}</span> {_e(port or "firewall")}: {_e(message)}</li>'
        for severity, port, message in item.findings
    ]
    return f"<ul>{''.join(entries)}</ul>"


def _cell_html(marks, note_):
    drift = any(mark.state in DRIFT_STATES for mark in marks)
    content = " ".join(_mark_html(mark) for mark in marks)
    if note_:
        content = f"<i>{_e(note_)}</i> {content}".strip()
    return f'<td class="drift">{content}</td>' if drift else f"<td>{content or '&ndash;'}</td>"


def page(items, generated):
    """The report as a self-contained HTML page (no script, inline style)."""
    grid = matrix(items)
    by_name = {item.name: item for item in items}
    head = "".join(f"<th>{_column_head(by_name[name])}</th>" for name in grid.columns)
    body = []
    for row in grid.rows:
        if row == FINDINGS:
            cells = "".join(f"<td>{_findings_html(by_name[name])}</td>" for name in grid.columns)
        else:
            cells = "".join(_cell_html(*grid.cells[row, name]) for name in grid.columns)
        body.append(f"<tr><th>{_e(row)}</th>{cells}</tr>")
    legend = " ".join(f'<span class="port {state}">{_e(state)}</span> {_e(what)};' for state, what in LEGEND)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>zimbra_fw fleet report</title><style>{STYLE}</style></head><body>\n"
        f"<h1>zimbra_fw fleet report</h1><p>Generated {_e(generated)} for {len(items)} minions.</p>\n"
        f"<h2>Servers</h2>{_summary_html(items)}\n"
        "<h2>Who reaches which ports</h2><p>Rows: who connects; columns: each server; cells: the ports open to "
        f"them.</p><table><tr><th>who \\ server</th>{head}</tr>{''.join(body)}</table>\n"
        f"<p>{legend}</p></body></html>\n"
    )
