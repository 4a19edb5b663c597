"""The sandbox guard refuses to run anything in the host's network namespace."""

import os
import subprocess
import sys

from harness import guard
from harness.sandbox import GUARD, Lab, host_netns_id


def test_guard_refuses_in_the_host_namespace(tmp_path):
    marker = tmp_path / "ran"
    result = subprocess.run(
        [
            sys.executable,
            GUARD,
            "--netns",
            "zfw-no-such-ns",
            "--host-netns",
            host_netns_id(),
            "--state",
            str(tmp_path),
            "--",
            "touch",
            str(marker),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == guard.REFUSED
    assert "host's network namespace" in result.stderr
    assert not marker.exists()


def test_host_references_include_init_net():
    refs = guard.host_references(host_netns_id())
    stat = os.stat("/proc/self/ns/net")
    assert (stat.st_dev, stat.st_ino) in refs
    assert guard.check_isolated("anything", host_netns_id()) is not None


def test_guard_refuses_a_namespace_it_is_not_in(tmp_path):
    with Lab() as lab:
        marker = tmp_path / "ran"
        result = lab.lan.exec(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                sys.executable,
                GUARD,
                "--netns",
                lab.minion.name,
                "--host-netns",
                host_netns_id(),
                "--state",
                lab.minion.state,
                "--",
                "touch",
                str(marker),
            ],
            check=False,
        )
        assert result.returncode == guard.REFUSED
        assert "not in network namespace" in result.stderr
        assert not marker.exists()


def test_guard_runs_inside_its_namespace_with_private_ufw_files():
    with Lab() as lab:
        private = os.path.join(lab.minion.state, "etc-ufw", "zfw-marker")
        with open(private, "w", encoding="utf-8") as handle:
            handle.write("private")
        seen = lab.minion.guarded(["cat", "/etc/ufw/zfw-marker"]).stdout
        assert seen == "private"
        assert not os.path.exists("/etc/ufw/zfw-marker")


def test_a_host_etc_ufw_with_the_formulas_files_is_named_before_any_sandbox_copies_it(tmp_path):
    from harness.sandbox import formula_marks

    (tmp_path / "applications.d").mkdir()
    (tmp_path / "user.rules").write_text("### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n")
    assert formula_marks(str(tmp_path)) == []
    (tmp_path / "applications.d" / "zimbra").write_text("[Zimbra]\n")
    (tmp_path / "user6.rules").write_text("### tuple ### allow any any ::/0 any ::/0 in comment=7a696d6272615f6677\n")
    assert formula_marks(str(tmp_path)) == [str(tmp_path / "applications.d" / "zimbra"), str(tmp_path / "user6.rules")]
