"""
Beacon: tells the master when this minion's firewall drifts from its
``zimbra_fw`` policy, within one ``interval``.

Every ``interval`` it calls ``zimbra_fw.drift``: the same read as a run that
changes nothing (ufw: its rules files and whether its chain is loaded,
over netlink, no ufw process; firewalld: D-Bus calls from the minion's
process; nftables: ``nft -j list table``), plus the listening sockets from
/proc/net for the audit. It fires

* ``salt/beacon/<id>/zimbra_fw/drift`` with the drift as data when the
  firewall drifts, and again only when the drift changes;
* ``salt/beacon/<id>/zimbra_fw/repaired`` when the firewall matches the
  policy again;
* ``salt/beacon/<id>/zimbra_fw/error`` once when the drift cannot be read (a
  bad pillar, the module not synced), again only when the reason changes.

A stopped firewall is drift (``active: false``). Configuration (minion
config or pillar):

.. code-block:: yaml

    beacons:
      zimbra_fw:
        - interval: 30
        - disable_during_state_run: True

``disable_during_state_run: True`` keeps the beacon quiet while a state run
(the formula's own changes) is under way; its next tick after the run
reports ``repaired`` or the drift that is left.
"""

import json
import logging

log = logging.getLogger(__name__)

__virtualname__ = "zimbra_fw"
DRIFT_FUNCTION = "zimbra_fw.drift"
# The options Salt's beacon loop reads itself; the beacon has none of its own.
SALT_OPTIONS = ("interval", "disable_during_state_run", "enabled", "run_once", "beacon_module", "_beacon_name")
# What each beacon (by name) last told: ("clean",), ("drift", fingerprint) or ("error", reason).
_TOLD = {}


def __virtual__():
    return __virtualname__


def _settings(config):
    return {key: value for item in config for key, value in item.items()}


def validate(config):
    """(True, message) for a list of Salt's beacon options, else (False, why)."""
    if not isinstance(config, list) or not all(isinstance(item, dict) for item in config):
        return False, f"zimbra_fw beacon: {config!r} must be a list of options such as '- interval: 30'"
    settings = _settings(config)
    unknown = sorted((str(key) for key in settings if key not in SALT_OPTIONS), key=str)
    if unknown:
        known = ", ".join(SALT_OPTIONS[:4])
        return False, f"zimbra_fw beacon: {unknown[0]!r} is not an option; it takes Salt's own ({known})"
    interval = settings.get("interval")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0):
        return False, f"zimbra_fw beacon: interval {interval!r} must be a positive number of seconds"
    return True, "Valid beacon configuration"


def _fingerprint(report):
    """What makes one drift another: the changes, the findings, the firewall's state."""
    return json.dumps([report["parts"], report["findings"], report["active"]], sort_keys=True, default=str)


def _look():
    """(state, event) for the firewall now."""
    if DRIFT_FUNCTION not in __salt__:
        reason = f"{DRIFT_FUNCTION} is not loaded on this minion: run saltutil.sync_all"
        return ("error", reason), {"tag": "error", "error": reason}
    try:
        report = __salt__[DRIFT_FUNCTION]()
    except Exception as exc:  # pylint: disable=broad-except
        # A bad pillar, an unreadable firewall: one event says so, not a traceback every tick.
        reason = str(exc) or type(exc).__name__
        return ("error", reason), {"tag": "error", "error": reason}
    if report["drifted"]:
        return ("drift", _fingerprint(report)), {"tag": "drift", **report}
    return ("clean",), {"tag": "repaired", **report}


def beacon(config):
    """One tick: the event to fire when what the beacon would say changed, else none."""
    name = _settings(config).get("_beacon_name", __virtualname__)
    state, event = _look()
    told = _TOLD.get(name)
    _TOLD[name] = state
    if state == told or (told is None and state == ("clean",)):
        return []
    if state[0] == "error":
        log.warning("zimbra_fw beacon: %s", state[1])
    return [event]
