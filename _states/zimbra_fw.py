"""
Converge a Zimbra server's ufw firewall to its ``zimbra_fw`` pillar.

Three states, applied in this order by ``zimbra_fw/init.sls``:

.. code-block:: yaml

    zimbra_fw-profile:
      zimbra_fw.profile_managed: []
    zimbra_fw-rules:
      zimbra_fw.rules_managed:
        - require:
          - zimbra_fw: zimbra_fw-profile
    zimbra_fw-firewall:
      zimbra_fw.firewall_enabled:
        - require:
          - zimbra_fw: zimbra_fw-rules

Each state validates the whole pillar first: bad input fails every state
and changes nothing. The planning and the ufw calls live in the execution
module (``salt '*' zimbra_fw.plan`` shows the same plan).
"""

from salt.exceptions import CommandExecutionError

__virtualname__ = "zimbra_fw"

_DONE = {
    "profile": "The ufw application profile is as configured",
    "rules": "The zimbra_fw allow rules are as configured",
    "firewall": "ufw is active with default deny incoming",
}
_PENDING = {
    "profile": "The ufw application profile would be updated",
    "rules": "The zimbra_fw allow rules would be updated",
    "firewall": "ufw would be set to default deny incoming and enabled",
}
_CHANGED = {
    "profile": "The ufw application profile was updated",
    "rules": "The zimbra_fw allow rules were updated",
    "firewall": "ufw was set to default deny incoming and enabled",
}


def __virtual__():
    if "zimbra_fw.plan" in __salt__:
        return __virtualname__
    return (False, "the zimbra_fw execution module is not loaded: run saltutil.sync_all")


def _converge(name, part):
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        plan = __salt__["zimbra_fw.plan"](part=part)
        if not plan["changes"]:
            ret["comment"] = plan.get("comment", _DONE[part])
            return ret
        if __opts__["test"]:
            ret.update(result=None, changes=plan["changes"], comment=_PENDING[part])
            return ret
        __salt__["zimbra_fw.apply"](plan)
    except CommandExecutionError as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    ret.update(changes=plan["changes"], comment=_CHANGED[part])
    return ret


def profile_managed(name="zimbra_fw-profile"):
    """
    Write the ``[Zimbra]`` application profile to
    ``/etc/ufw/applications.d/zimbra`` (atomically) with this server's public
    ports, and run ``ufw app update`` when rules already use it.
    """
    return _converge(name, "profile")


def rules_managed(name="zimbra_fw-rules"):
    """
    Make the allow rules marked ``zimbra_fw`` match the pillar: ssh
    management access first, each trusted subnet, then the application
    profile. Marked rules the pillar no longer asks for are removed after the
    new ones are in place; rules without the mark are never touched.
    """
    return _converge(name, "rules")


def firewall_enabled(name="zimbra_fw-firewall"):
    """
    Set the default incoming policy to deny and enable ufw, each only when it
    differs. Refuses while management access is not allowed. With
    ``zimbra_fw:enabled: false`` ufw's state is left alone.
    """
    return _converge(name, "firewall")
