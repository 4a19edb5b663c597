"""
Converge a Zimbra server's firewall to its ``zimbra_fw`` pillar.

The states only orchestrate: ``zimbra_fw.converge`` (execution module) plans
from the pillar and applies. ``zimbra_fw/init.sls`` applies them in order,
each requiring the one before:

.. code-block:: yaml

    zimbra_fw-pillar:
      zimbra_fw.pillar_valid: []
    zimbra_fw-installed:
      zimbra_fw.firewall_installed: []   # its daemon running, if it has one
    zimbra_fw-profile:
      zimbra_fw.profile_managed: []
    zimbra_fw-rules:
      zimbra_fw.rules_managed: []
    zimbra_fw-firewall:
      zimbra_fw.firewall_enabled: []

Within one state run the policy is computed once and shared by the states.
"""

import time

import salt.utils.path
import salt.utils.systemd
from salt.exceptions import CommandExecutionError

__virtualname__ = "zimbra_fw"

RUN_CACHE = "zimbra_fw.state_run"  # shared with the execution module, see _policy()


def __virtual__():
    if "zimbra_fw.converge" in __salt__:
        return __virtualname__
    return (False, "the zimbra_fw execution module is not loaded: run saltutil.sync_all")


# The part of the firewall each state converges (zimbra_fw.converge part=...).
PART_OF_STATE = {"profile_managed": "profile", "rules_managed": "rules", "firewall_enabled": "firewall"}


def _parts_in_run():
    """The parts whose states this state run holds (``state.single`` holds one)."""
    try:
        chunks = __lowstate__  # Salt's low chunks of this run, given to each state function
    except NameError:
        chunks = ()
    return sorted(
        {
            PART_OF_STATE[chunk["fun"]]
            for chunk in chunks
            if chunk.get("fun") in PART_OF_STATE and chunk.get("state") == "zimbra_fw"
        }
    )


def _call(function, **kwargs):
    cache = __context__.setdefault(RUN_CACHE, {})
    if "parts" not in cache:  # once a run: every state sees the same low chunks
        cache["parts"] = _parts_in_run()
    return __salt__[function](**kwargs)


def _count(items, noun, plural=None):
    return f"{len(items)} {noun if len(items) == 1 else plural or noun + 's'}"


def _converge(name, part):
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    test = bool(__opts__["test"])
    try:
        outcome = _call("zimbra_fw.converge", part=part, test=test)[part]
    except CommandExecutionError as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    changes = outcome["changes"]
    ret.update(changes=changes, comment=outcome["comment"], result=None if test and changes else True)
    return ret


def pillar_valid(name="zimbra_fw-pillar"):
    """
    Check the whole ``zimbra_fw`` pillar before anything is installed or
    changed; a bad value fails here, naming every key and value at fault.
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        ports = _call("zimbra_fw.open_ports")
    except CommandExecutionError as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    peers = {peer for names in ports["peers"].values() for peer in names}
    ret["comment"] = (
        f"The zimbra_fw pillar is valid: roles {', '.join(ports['roles']['roles'])} "
        f"(from {ports['roles']['source']}), {_count(ports['public'], 'public port')}, {_count(peers, 'peer')}"
    )
    if ports["admin_console_open"]:
        ret["comment"] += "; the admin console is open to anyone: set zimbra_fw:admin_subnets to restrict it"
    if ports.get("left_out"):
        ret["comment"] += f"; mine data left out: {', '.join(sorted(ports['left_out']))} (see zimbra_fw.open_ports)"
    for warning in ports["warnings"]:
        ret["comment"] += f"; {warning}"
    return ret


def firewall_installed(name="zimbra_fw-installed"):
    """
    Install the firewall the pillar's ``backend`` names and, for a firewall
    with a daemon, make it run and start at boot (systemd). A stopped daemon is
    prepared before it starts (its default deny applies at once): the zone
    is checked and the management rules (ssh, the Salt master) are put into
    its permanent configuration; the state fails, starting nothing, if that
    fails, and fails if the daemon does not run once started. Where there is
    no init system (a container), the daemon must already run: the next state
    reads it and fails, saying so, if it does not.
    """
    try:
        firewall = _call("zimbra_fw.open_ports")["firewall"]
    except CommandExecutionError as exc:
        return {"name": name, "changes": {}, "result": False, "comment": str(exc)}
    program = salt.utils.path.which(firewall["program"])
    if program:  # cheaper than asking the package manager on every run
        ret = {
            "name": name,
            "changes": {},
            "result": True,
            "comment": f"{firewall['package']} is installed ({program})",
        }
    else:
        ret = __states__["pkg.installed"](name=firewall["package"])
        ret["name"] = name
    service = firewall["service"]
    if not ret["result"] or service is None:
        return ret
    if not salt.utils.systemd.booted(__context__):
        # A container: nothing here starts daemons or enables them at boot.
        # Whether it runs is read by the next state, which fails if not.
        ret["comment"] += f"; no init system here: {service} must already run"
        return ret
    return _service_running(ret, service, program or salt.utils.path.which(firewall["program"]))


START_CHECKS = 20  # a started daemon has 20 times 0.5 s to say it runs


def _state_of(program):
    """(runs, what ``PROGRAM --state`` said): firewall-cmd exits 0 and says
    'running' only when the daemon runs with its configuration loaded
    (a backend with a daemon answers ``--state`` so)."""
    result = __salt__["cmd.run_all"](
        [program, "--state"], python_shell=False, ignore_retcode=True, output_loglevel="debug"
    )
    said = (result.get("stdout") or result.get("stderr") or "").strip()
    return result["retcode"] == 0 and said == "running", said


def _service_running(ret, service, program):
    """``ret`` once ``service`` runs and starts at boot: a stopped one is
    prepared first (zimbra_fw.prepare), and checked after it started."""
    test = bool(__opts__["test"])
    if program is None:
        ret.update(result=False, comment=f"{ret['comment']}; {service}'s program is not found: reinstall it")
        return ret
    was_running = _state_of(program)[0]
    if not was_running:
        if "zimbra_fw.prepare" not in __salt__:
            ret.update(
                result=False,
                comment=f"{ret['comment']}; {service} is not running and zimbra_fw cannot prepare it before it starts "
                "(zimbra_fw.prepare is missing: run saltutil.sync_all); it was not started",
            )
            return ret
        try:
            added = _call("zimbra_fw.prepare", test=test)
        except CommandExecutionError as exc:
            ret.update(result=False, comment=f"{ret['comment']}; {service} was not started: {exc}")
            return ret
        if added:
            ret["changes"] = {**ret["changes"], "permanent": {"added": added}}
            verb = "would be added" if test else "added"
            ret["comment"] += (
                f"; {_count(added, 'management rule')} {verb} to {service}'s permanent configuration before it starts"
            )
    running = __states__["service.running"](name=service, enable=True)
    changes = {**ret["changes"], **({service: running["changes"]} if running["changes"] else {})}
    ret.update(result=running["result"], changes=changes, comment=f"{ret['comment']}; {running['comment']}")
    if running["result"] is not True or test or (was_running and not running["changes"]):
        return ret  # a daemon that ran and was left alone needs no second look
    runs, said = _state_of(program)
    for _ in range(START_CHECKS):
        if runs:
            break
        time.sleep(0.5)
        runs, said = _state_of(program)
    if not runs:
        ret.update(
            result=False,
            comment=f"{ret['comment']}; but {service} does not run: '{program} --state' says {said or 'nothing'} "
            f"(journalctl -u {service})",
        )
    return ret


def profile_managed(name="zimbra_fw-profile"):
    """
    Write the port groups as the firewall holds them (the public one with
    this server's public ports, one per peer role and for admin_subnets),
    and bring the rules that use a group whose ports changed up to date.
    """
    return _converge(name, "profile")


def rules_managed(name="zimbra_fw-rules"):
    """
    Make the firewall's zimbra_fw allow rules match the pillar: management
    access first, then trusted subnets, admin subnets, peers and the public
    group. Stale rules of ours go after the new ones are in place; rules
    that are not ours are never touched.
    """
    return _converge(name, "rules")


def firewall_enabled(name="zimbra_fw-firewall"):
    """
    Make the firewall deny what no rule allows, and run, each only when it
    differs. Refuses while management access is not allowed. With
    ``zimbra_fw:enabled: false`` the firewall's state is left alone.
    """
    return _converge(name, "firewall")
