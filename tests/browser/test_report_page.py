"""The fleet report's page in a real browser: Debian's Chromium, headless.

The page is built from a fleet's answers made by the real core
(tests/fleet.py): four servers, one that does not answer, one with an older
formula. Chromium runs in a network namespace of its own with no network
(it only opens the file), dumps the DOM it parsed, whose matrix cells are
checked, and takes a screenshot, kept as a test artifact: its path is
printed (``pytest -rP``). ``FLEET_REPORT_SCREENSHOT=docs/fleet-report.png``
also writes it there, taller, for the docs.
"""

import os
import shutil
import subprocess

import fleet
import pytest
import zimbra_fw_report as report

CHROMIUM = shutil.which("chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")  # fmt: skip
HOSTILE = '<script>document.title="pwned"</script>'

if not os.environ.get("CI"):  # CI has them: there it must run, and fail if it cannot
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make setup installs it)", allow_module_level=True)
    if os.geteuid() != 0:
        pytest.skip("chromium runs in a network namespace of its own: needs root", allow_module_level=True)


def chromium(tmp_path, *args):
    """Run Chromium without network on a fresh profile; its stdout."""
    profile = tmp_path / f"profile{len(list(tmp_path.iterdir()))}"
    command = ["unshare", "--net", CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def write_page(tmp_path, name, extra):
    data = fleet.answers(extra)
    if "mta2" in data["drift"]:  # an older formula
        data["drift"]["mta2"] = {"ret": "'zimbra_fw.drift' is not available.", "retcode": 254}
    path = tmp_path / name
    path.write_text(report.page(report.servers(data), "2026-12-06 10:00:00 UTC"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def fleet_page(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("fleet-report")
    mta = fleet.minion_answers("mta")
    path = write_page(tmp_path, "report.html", {"store2": {}, "mta2": mta})
    return tmp_path, path


def test_chromium_renders_the_matrix_with_drift_and_findings_marked(fleet_page):
    tmp_path, path = fleet_page
    tables = fleet.Tables(chromium(tmp_path, "--dump-dom", path.as_uri()))
    assert [tag for tag in tables.tags if tag == "script"] == []
    summary = {row[0]["text"]: [cell["text"] for cell in row[1:]] for row in tables.tables[0][1:]}
    assert summary["mailbox"] == ["firewalld", "yes", "1", "0", "0", "mailbox,memcached", ""]
    assert summary["store2"] == ["?", "no answer", "?", "?", "?", "", "did not answer"]
    assert summary["mta2"][1] == "unknown" and "is not available" in summary["mta2"][-1]
    grid = tables.grid(1)
    internet = grid["internet", "mailbox"]
    assert internet["text"].split() == ["22/tcp", "5222/tcp", "5223/tcp", "11211/tcpcritical"]
    assert internet["class"] == "drift" and "port extra" in internet["spans"]
    assert grid["internet", "mta"]["text"].split() == ["22/tcp", "25/tcp", "465/tcp", "587/tcp"]
    assert grid["internet", "mta"]["class"] is None
    assert grid["trusted subnets", "ldap"]["text"] == "every port"
    assert grid["admin subnets", "mailbox"]["text"] == "7071/tcp"
    ldap_from_mailbox = grid["mailbox + memcached", "ldap"]
    assert ldap_from_mailbox["text"].split() == ["22/tcp", "389/tcp", "636/tcp"]
    assert ldap_from_mailbox["class"] == "drift" and ldap_from_mailbox["spans"].count("port closed") == 2
    assert grid["mta", "mailbox"]["text"].split() == ["7025/tcp", "7071/tcp", "7073/tcp", "8443/tcp"]
    assert grid["internet", "store2"]["text"] == "\u2013"
    assert "critical 11211/tcp: memcached" in grid["findings", "mailbox"]["text"]
    heads = [cell["text"] for cell in tables.tables[1][0]]
    assert heads[0] == "who \\ server" and [head.split("\n")[0] for head in heads[1:]] == [
        "ldap", "mailbox", "mta", "mta2", "proxy", "store2",
    ]  # fmt: skip
    assert heads[1] == "ldap\nufw\ndrifted: rules"
    assert heads[4] == "mta2\nufw\ndrift unknown: 'zimbra_fw.drift' is not available."
    assert heads[6] == "store2\n?\ndid not answer"


def test_chromium_takes_a_screenshot_of_the_page(fleet_page):
    tmp_path, path = fleet_page
    screenshot = tmp_path / "fleet-report.png"
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,900", path.as_uri())
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a blank page is ~5 kB
    print(f"fleet report screenshot: {screenshot}")
    docs = os.environ.get("FLEET_REPORT_SCREENSHOT")
    if docs:
        chromium(tmp_path, f"--screenshot={os.path.abspath(docs)}", "--window-size=1280,1250", path.as_uri())


def test_hostile_minion_data_renders_as_text(tmp_path):
    hostile = fleet.minion_answers("mta")
    hostile["audit"]["findings"].append({"severity": "high", "port": HOSTILE, "message": HOSTILE})
    path = write_page(tmp_path, "hostile.html", {HOSTILE: hostile})
    tables = fleet.Tables(chromium(tmp_path, "--dump-dom", path.as_uri()))
    assert [tag for tag in tables.tags if tag == "script"] == []
    assert tables.tables[0][1][0]["text"] == HOSTILE  # the first minion: "<" sorts first
    assert f"high {HOSTILE}: {HOSTILE}" in tables.grid(1)["findings", HOSTILE]["text"]
