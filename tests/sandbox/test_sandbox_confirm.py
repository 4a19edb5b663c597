"""Live sessions and commit-confirmed changes, on ufw and on firewalld.

The LAN client holds ssh sessions (IPv4 and IPv6) to the minion's port 22,
whose listener keeps them open. A pillar that moves ssh:from away from the
LAN is refused, changing nothing; with allow_cut_sessions and confirm it
applies, the LAN's new connections to 22 are refused, and the firewall is
put back byte for byte when the change is not confirmed in time, or stays
when ``zimbra_fw.confirm`` comes first. One lab per backend, shared.
"""

import json
import os
import time

import pytest

from harness.sandbox import Lab, stop

LAN_SSH = ["192.168.1.0/24", "2001:db8:1::/64"]
PILLAR = {"roles": ["mta", "proxy"], "trusted_subnets": [], "ssh": {"from": LAN_SSH}}
AWAY = {**PILLAR, "ssh": {"from": ["203.0.113.0/24"]}, "allow_cut_sessions": True}
WINDOW = 5  # seconds: the shortest confirm allowed


@pytest.fixture(scope="module", params=["ufw", "firewalld"])
def lab(request):
    firewalld = request.param == "firewalld"
    with Lab(firewalld=firewalld) as new_lab:
        minion = new_lab.minion
        minion.sync()
        if firewalld:  # its default zone lets anyone reach ssh: only the pillar's rules may here
            for scope in (["--permanent"], []):
                minion.guarded(["firewall-cmd", *scope, "--remove-service=ssh"])
        minion.set_pillar({**PILLAR, "backend": request.param})
        assert all(r["result"] for r in minion.apply().values())
        minion.listen([22], hold=True)
        new_lab.backend = request.param
        yield new_lab


def set_pillar(lab, pillar):
    lab.minion.set_pillar({**pillar, "backend": lab.backend})


def apply(lab, *args):
    """state.apply zimbra_fw with extra arguments: {state id: result}."""
    result = lab.minion.salt("state.apply", "zimbra_fw", *args)
    assert isinstance(result, dict), result
    return {key.split("_|-")[1]: value for key, value in result.items()}


def with_confirm(seconds):
    return "pillar=" + json.dumps({"zimbra_fw": {"confirm": seconds}})


def firewall(lab):
    """The firewall as bytes and reads: the private files (ufw, or
    /etc/firewalld) and the loaded rules (iptables; firewalld's runtime and
    permanent settings, rule lists sorted: firewalld's order varies)."""
    minion = lab.minion
    state = minion.snapshot()
    if lab.backend == "firewalld":
        state.pop("nft")  # the same rules after a reload, in another order
        for scope in ([], ["--permanent"]):
            text = minion.guarded(["firewall-cmd", *scope, "--list-all"]).stdout
            state[f"list-all{scope}"] = sorted(text.splitlines())
        for name in minion.guarded(["firewall-cmd", "--get-ipsets"]).stdout.split():
            state[f"ipset {name}"] = sorted(minion.guarded(["firewall-cmd", "--info-ipset", name]).stdout.split())
    return state


def pending_record(lab):
    """The pending rollback's record, in the minion's private /run."""
    return os.path.join(lab.minion.state, "run", "zimbra_fw", "pending.json")


def lan_reaches_ssh(lab):
    return lab.lan.probe(lab.MINION_LAN, [22], timeout=0.5)[22]


def failures(results):
    return {state: r["comment"] for state, r in results.items() if r["result"] is False}


def test_a_run_that_would_cut_a_live_session_is_refused_and_changes_nothing(lab):
    sessions = [lab.lan.session(lab.MINION_LAN, 22), lab.lan.session(lab.MINION_LAN6, 22)]
    try:
        before = firewall(lab)
        set_pillar(lab, {**AWAY, "allow_cut_sessions": False})
        for args in (["test=True"], []):
            refused = failures(apply(lab, *args))
            comment = refused["zimbra_fw-profile"]
            assert "would cut the ssh session from 192.168.1.10 to port 22 (zimbra_fw:ssh:from)" in comment
            assert "would cut the ssh session from 2001:db8:1::10 to port 22 (zimbra_fw:ssh:from)" in comment
            assert "allow_cut_sessions" in comment
        assert firewall(lab) == before
        assert lan_reaches_ssh(lab)
    finally:
        for session in sessions:
            stop(session)
        set_pillar(lab, PILLAR)


def test_an_unconfirmed_change_is_rolled_back_to_the_firewall_before_it(lab):
    session = lab.lan.session(lab.MINION_LAN, 22)
    before = firewall(lab)
    set_pillar(lab, AWAY)
    results = apply(lab, with_confirm(WINDOW))
    assert not failures(results), results
    comment = results["zimbra_fw-rules"]["comment"]
    assert "cuts the ssh session from 192.168.1.10 to port 22 (zimbra_fw:ssh:from)" in comment
    assert "unless zimbra_fw.confirm is called" in comment
    stop(session)
    assert not lan_reaches_ssh(lab)
    pending = lab.minion.salt("zimbra_fw.status")["rollback"]
    assert pending["confirm_with"] == "zimbra_fw.confirm" and "(in " in pending["due"]
    deadline = time.monotonic() + WINDOW + 10
    while not lan_reaches_ssh(lab) or os.path.exists(pending_record(lab)):
        assert time.monotonic() < deadline, "the LAN never reached ssh again"
        time.sleep(0.3)
    assert firewall(lab) == before
    set_pillar(lab, PILLAR)
    assert lab.minion.salt("zimbra_fw.confirm") == {
        "confirmed": False,
        "comment": "No rollback is pending: nothing to confirm",
    }


def test_a_confirmed_change_stays_and_a_second_run_with_confirm_extends_the_first(lab):
    set_pillar(lab, AWAY)
    assert not failures(apply(lab, with_confirm(WINDOW)))
    set_pillar(lab, {**AWAY, "ssh": {"from": ["203.0.113.0/24", "198.51.100.0/24"]}})
    refused = failures(apply(lab))  # no confirm while one is pending
    assert "a rollback is pending" in refused["zimbra_fw-profile"]
    extended = apply(lab, with_confirm(WINDOW))
    armed_before = time.monotonic()  # both rollbacks were due WINDOW s after they were armed, or sooner
    assert not failures(extended)
    assert "saved before the earlier unconfirmed change" in extended["zimbra_fw-rules"]["comment"]
    confirmed = lab.minion.salt("zimbra_fw.confirm")
    assert confirmed["confirmed"] is True and confirmed["comment"].startswith("Confirmed: the rollback due ")
    time.sleep(max(0.0, armed_before + WINDOW + 1 - time.monotonic()))  # past both rollbacks' times
    assert not lan_reaches_ssh(lab)
    assert lab.minion.salt("zimbra_fw.status")["rollback"] is None
    set_pillar(lab, PILLAR)
    assert not failures(apply(lab))
    assert lan_reaches_ssh(lab)
