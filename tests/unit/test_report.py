"""The fleet report's logic: answers, table rows, matrix cells, escaping."""

import copy
import html.parser

import fleet
import pytest
import zimbra_fw_report as report

OLD_FORMULA = "'zimbra_fw.drift' is not available."
HOSTILE = "<script>alert(1)</script>\"'&"


@pytest.fixture(scope="module")
def answers():
    return fleet.answers()


def servers(answers, extra=None):
    data = {function: copy.deepcopy(answers.get(function, {})) for function in report.FUNCTIONS}
    for name, returns in (extra or {}).items():
        for function, calls in data.items():
            if function in returns:
                calls[name] = {"ret": returns[function], "retcode": 0}
            else:
                calls[name] = False  # LocalClient.cmd: targeted, no answer
    return report.servers(data)


def rows(items):
    return {row[0]: row[1:] for row in report.table_rows(items)}


def cell(grid, row, column):
    marks, note = grid.cells[row, column]
    return note, {mark.port: (mark.state, mark.severity) for mark in marks}


def test_an_answer_is_the_function_return_or_why_there_is_none():
    assert report.answer({"ret": {"drifted": False}, "retcode": 0}) == ({"drifted": False}, None)
    assert report.answer(False) == (None, report.NO_ANSWER)
    assert report.answer(None) == (None, report.NO_ANSWER)
    assert report.answer({"out": "no_return", "ret": "Minion did not return. [No response]"}) == (
        None,
        report.NO_ANSWER,
    )
    assert report.answer({"failed": True}) == (None, report.NO_ANSWER)
    assert report.answer({"ret": OLD_FORMULA, "retcode": 254}) == (None, OLD_FORMULA)
    assert report.answer({"ret": "The minion function caused an exception:\nTraceback ..."})[1] == (
        "The minion function caused an exception:?Traceback ..."
    )
    assert report.answer({"ret": ""}) == (None, "empty answer")
    assert report.answer({"error": "Minion is a syndic"}) == (None, "Minion is a syndic")
    assert report.answer(["a list"]) == (None, report.NO_ANSWER)


def test_the_table_has_one_row_per_minion_with_backend_drift_findings_and_roles(answers):
    assert rows(servers(answers)) == {
        "ldap": ("ufw", "yes", "0", "0", "0", "ldap", ""),
        "mailbox": ("firewalld", "yes", "1", "0", "0", "mailbox,memcached", ""),
        "mta": ("ufw", "no", "0", "0", "0", "mta", ""),
        "proxy": ("firewalld", "no", "0", "0", "1", "proxy", ""),
    }
    lines = report.table_lines(servers(answers))
    assert lines[0].split() == ["minion", "backend", "drifted", "critical", "high", "medium", "roles", "note"]
    assert lines[2] == "mailbox  firewalld  yes      1         0     0       mailbox,memcached"


def test_silent_minions_and_an_older_formula_are_named_not_fatal(answers):
    mta = fleet.minion_answers("mta")
    old = {"drift": OLD_FORMULA, **{f: mta[f] for f in ("audit", "open_ports", "identity")}}
    broken = {"drift": mta["drift"], "audit": "The minion function caused an exception", "open_ports": "boom"}
    table = rows(servers(answers, {"store2": {}, "mta2": old, "mta3": broken}))
    assert table["store2"] == ("?", "no answer", "?", "?", "?", "", report.NO_ANSWER)
    assert table["mta2"] == ("ufw", "unknown", "0", "0", "0", "mta", f"drift: {OLD_FORMULA}")
    # the audit failed: the findings come from the drift; open_ports failed: no matrix column
    assert table["mta3"][:6] == ("ufw", "no", "0", "0", "0", "mta")
    assert table["mta3"][6] == (
        "audit: The minion function caused an exception; open_ports: boom; identity: " + report.NO_ANSWER
    )
    items = servers(answers, {"store2": {}, "mta3": broken})
    grid = report.matrix(items)
    assert cell(grid, report.INTERNET, "store2") == ("", {})
    page = report.page(items, "now")
    assert "open_ports: boom" in page and '<br><span class="problem">did not answer</span>' in page


def test_the_internet_row_shows_public_ports_management_and_what_the_firewall_adds(answers):
    grid = report.matrix(servers(answers))
    assert cell(grid, report.INTERNET, "mta") == (
        "",
        {
            "22/tcp": ("management", None),
            "25/tcp": ("open", None),
            "465/tcp": ("open", None),
            "587/tcp": ("open", None),
        },
    )
    # someone ran `ufw allow 11211/tcp` on the mailbox
    _, mailbox = cell(grid, report.INTERNET, "mailbox")
    assert mailbox["11211/tcp"] == ("extra", "critical")
    assert mailbox["5222/tcp"] == ("open", None)
    assert cell(grid, report.INTERNET, "proxy")[1]["9071/tcp"] == ("open", "medium")


def test_rows_are_who_and_cells_are_the_ports_the_policy_opens_to_them(answers):
    grid = report.matrix(servers(answers))
    assert grid.rows == [
        "internet",
        "trusted subnets",
        "admin subnets",
        "ldap",
        "mta",
        "proxy",
        "mailbox + memcached",
        "findings",
    ]
    assert grid.columns == ["ldap", "mailbox", "mta", "proxy"]
    assert cell(grid, report.TRUSTED, "ldap") == ("every port", {})
    assert cell(grid, report.ADMIN, "mailbox") == ("", {"7071/tcp": ("open", None)})
    assert cell(grid, "mta", "ldap") == ("", {"389/tcp": ("open", None), "636/tcp": ("open", None)})
    assert cell(grid, "mta", "mailbox")[1] == {
        "7025/tcp": ("open", None),
        "7071/tcp": ("open", None),
        "7073/tcp": ("open", None),
        "8443/tcp": ("open", None),
    }
    assert cell(grid, "proxy", "mailbox")[1]["11211/tcp"] == ("open", "critical")
    assert cell(grid, "ldap", "mta") == ("", {})


def test_a_deleted_peer_rule_shows_as_closed_ports_in_that_row(answers):
    grid = report.matrix(servers(answers))
    # someone deleted the LDAP server's rule for the mailbox (Zimbra-all: 389, 636)
    assert cell(grid, "mailbox + memcached", "ldap")[1] == {
        "22/tcp": ("open", None),  # zmrcd, open to anyone anyway
        "389/tcp": ("closed", None),
        "636/tcp": ("closed", None),
    }
    marks, _ = grid.cells["mailbox + memcached", "ldap"]
    assert [mark.note for mark in marks if mark.state == "closed"] == ["to mailbox", "to mailbox"]


def test_a_peer_outside_the_report_gets_its_own_row(answers):
    items = [item for item in servers(answers) if item.name != "proxy"]
    grid = report.matrix(items)
    assert "peer proxy" in grid.rows
    # its addresses are unknown: the policy's ports, not checked against the firewall
    assert cell(grid, "peer proxy", "ldap") == ("", {"389/tcp": ("open", None), "636/tcp": ("open", None)})


def test_an_inactive_firewall_opens_every_listening_port_to_the_internet():
    audit = {
        "findings": [{"severity": "high", "port": None, "message": "ufw is inactive"}],
        "ports": [
            {"port": "25/tcp", "expected": "public", "reachable_from": "anyone"},
            {"port": "389/tcp", "expected": "cluster", "reachable_from": "anyone"},
            {"port": "7171/tcp", "expected": "localhost", "reachable_from": "localhost"},
            {"port": "6005/tcp", "expected": "public", "reachable_from": "anyone"},
        ],
        "firewall": {"active": False},
    }
    ports = {"public": ["25/tcp", "6000:6010/tcp"], "firewall": {"backend": "ufw"}}
    items = report.servers({"audit": {"s": {"ret": audit}}, "open_ports": {"s": {"ret": ports}}})
    grid = report.matrix(items)
    assert cell(grid, report.INTERNET, "s")[1] == {
        "25/tcp": ("open", None),
        "389/tcp": ("extra", None),
        "6000:6010/tcp": ("open", None),  # a range: 6005 listens inside it, not extra
    }
    assert report.table_rows(items)[0][:6] == ("s", "ufw", "unknown", "0", "1", "0")
    assert "firewall inactive" in report.page(items, "now")


def test_hostile_shapes_neither_crash_nor_count():
    drift = {"drifted": "yes", "parts": ["rules"], "findings": "many", "roles": [1, {"a": 1}, "mta\n"]}
    audit = {"findings": [{"severity": "fatal"}, "x", {"severity": "high", "port": 7, "message": None}], "ports": 3}
    ports = {"public": "25/tcp", "peers": {"7025/tcp": "mta", 5: [1]}, "trusted": ["not a network", 5]}
    items = servers(
        {},
        {"odd": {"drift": drift, "audit": audit, "open_ports": ports, "identity": {"addresses": "10.0.0.1"}}},
    )
    assert report.table_rows(items) == [("odd", "?", "unknown", "0", "1", "0", "mta?", "")]
    grid = report.matrix(items)
    assert all(marks == [] for marks, _ in (grid.cells[row, "odd"] for row in grid.rows))
    assert report.page(items, "now").count("<td>") > 0


def test_text_is_one_printable_bounded_line():
    assert report.text("a\nb\x1b[31m") == "a?b?[31m"
    assert len(report.text("x" * 10_000)) == report.MAX_TEXT
    many = {"findings": [{"severity": "low", "port": "1/tcp", "message": "m"}] * 5000}
    items = servers({}, {"big": {"audit": many}})
    assert len(items[0].findings) == report.MAX_ITEMS


class Dom(html.parser.HTMLParser):
    """Start tags and text of a page."""

    def __init__(self, page):
        super().__init__()
        self.tags, self.texts = [], []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)


def test_minion_data_is_escaped_everywhere(answers):
    hostile = copy.deepcopy(fleet.minion_answers("mta"))
    hostile["drift"].update(drifted=True, parts={HOSTILE: {"added": [HOSTILE]}}, comment=HOSTILE, backend=HOSTILE)
    hostile["audit"]["findings"].append({"severity": "high", "port": HOSTILE, "message": HOSTILE})
    hostile["audit"]["ports"].append({"port": HOSTILE, "expected": "public", "reachable_from": "anyone"})
    hostile["open_ports"]["peers"][HOSTILE] = [HOSTILE]
    hostile["drift"]["roles"] = [HOSTILE]
    items = servers(answers, {HOSTILE: hostile, f"{HOSTILE}2": {"drift": HOSTILE, "audit": HOSTILE}})
    page = report.page(items, HOSTILE)
    dom = Dom(page)
    assert [tag for tag, _ in dom.tags if tag in ("script", "img", "iframe", "object")] == []
    assert all(not name.startswith("on") for _, attrs in dom.tags for name in attrs)
    assert page.count("<script") == 0 and page.count("&lt;script&gt;") > 10
    assert HOSTILE in dom.texts  # the minion id, as text
    titles = [attrs["title"] for _, attrs in dom.tags if "title" in attrs]
    assert HOSTILE in titles  # the drift comment, as an attribute value


def test_open_ports_lists_the_trusted_subnets():
    assert fleet.minion_answers("ldap")["open_ports"]["trusted"] == [fleet.TRUSTED]
