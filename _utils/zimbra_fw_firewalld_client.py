"""
Helper of the zimbra_fw execution module, not an execution module itself:
``zimbra_fw`` runs this file with firewalld's own Python (the one that has
the ``firewall`` package) to talk to firewalld over D-Bus in one process, as
``python3 -I zimbra_fw_firewalld_client.py`` with a JSON request on stdin.

``{"read": ZONE, "services": [NAME, ...]}`` prints one JSON object: whether
firewalld runs, its default zone, ZONE's (or the default zone's) services,
rich rules and target, permanent and runtime, and the runtime ports of the
named services.

``{"steps": [STEP, ...]}`` carries out steps in order and
reports ``{"done": i}`` per step, then ``{"failed": i, "error": ...}`` on the
first failure. Steps: ``["service", NAME, {"short", "description",
"ports"}]`` (create or update a permanent service), ``["drop-service",
NAME]``, ``["reload"]``, ``["check", ZONE, [RULE, ...]]`` (each rich rule is
in the runtime zone, or fail), ``["zone", ZONE, "permanent" | "runtime", CHANGE]``
with CHANGE ``{"add_services", "remove_services", "add_rules",
"remove_rules", "target"}`` applied as one settings update.

Any other output means ``firewall.client`` could not be used: ``{"unavailable": why}``.
"""

import json
import sys


def __virtual__():
    return (False, "zimbra_fw_firewalld_client is a helper script run by zimbra_fw, not an execution module")


def tell(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def zone_view(settings):
    return {
        "services": sorted(settings.getServices()),
        "rich_rules": list(settings.getRichRules()),
        "target": settings.getTarget(),
        "ports": [list(port) for port in settings.getPorts()],
    }


def read(firewall, zone, names):
    default_zone = firewall.getDefaultZone()
    zone = zone or default_zone
    zones = firewall.getZones()
    known = set(firewall.listServices())
    runtime_services = {}
    for name in names:
        if name in known:
            runtime_services[name] = [list(port) for port in firewall.getServiceSettings(name).getPorts()]
    return {
        "running": True,
        "default_zone": default_zone,
        "zone": zone,
        "zones": zones,
        "permanent": zone_view(firewall.config().getZoneByName(zone).getSettings()) if zone in zones else None,
        "runtime": zone_view(firewall.getZoneSettings(zone)) if zone in zones else None,
        "runtime_services": runtime_services,
    }


def change_zone(settings, change):
    for name in change.get("add_services", []):
        if name not in settings.getServices():
            settings.addService(name)
    for rule in change.get("add_rules", []):
        if rule not in settings.getRichRules():
            settings.addRichRule(rule)
    for name in change.get("remove_services", []):
        if name in settings.getServices():
            settings.removeService(name)
    for rule in change.get("remove_rules", []):
        if rule in settings.getRichRules():
            settings.removeRichRule(rule)
    if change.get("target"):
        settings.setTarget(change["target"])
    return settings


def run_step(client, firewall, step):
    kind, args = step[0], step[1:]
    config = firewall.config()
    if kind == "service":
        name, wanted = args
        settings = client.FirewallClientServiceSettings()
        settings.setShort(wanted["short"])
        settings.setDescription(wanted["description"])
        settings.setPorts([tuple(port) for port in wanted["ports"]])
        if name in config.getServiceNames():
            config.getServiceByName(name).update(settings)
        else:
            config.addService(name, settings)
    elif kind == "drop-service":
        config.getServiceByName(args[0]).remove()
    elif kind == "reload":
        firewall.reload()
    elif kind == "check":
        zone, rules = args
        missing = [rule for rule in rules if not firewall.queryRichRule(zone, rule)]
        if missing:
            raise RuntimeError(
                "refusing to restrict the zone: management access is not allowed yet "
                f"(missing: {'; '.join(missing)}); apply the zimbra_fw rules first"
            )
    elif kind == "zone":
        zone, scope, change = args
        if scope == "permanent":
            entry = config.getZoneByName(zone)
            entry.update(change_zone(entry.getSettings(), change))
        else:
            firewall.setZoneSettings(zone, change_zone(firewall.getZoneSettings(zone), change))
    else:
        raise RuntimeError(f"unknown step {step!r}")


def main():
    request = json.load(sys.stdin)
    try:  # pylint: disable=import-outside-toplevel
        from firewall import client
    except ImportError as exc:
        tell(unavailable=f"firewalld's Python library (firewall.client) cannot be loaded: {exc}")
        sys.exit(3)
    try:
        connection = client.FirewallClient(wait=0, quiet=True)
    except Exception as exc:  # pylint: disable=broad-except  # no system bus: nothing runs
        connection, reason = None, str(exc)
    else:
        reason = "firewalld is not running (firewall-cmd --state)"
    if connection is None or not connection.connected:
        if "read" in request:
            tell(running=False)
            return
        tell(failed=0, error=reason)
        sys.exit(1)
    if "read" in request:
        tell(**read(connection, request["read"], request.get("services", [])))
        return
    for index, step in enumerate(request["steps"]):
        try:
            run_step(client, connection, step)
        except Exception as exc:  # pylint: disable=broad-except
            tell(failed=index, error=str(exc))
            sys.exit(1)
        tell(done=index)


if __name__ == "__main__":
    main()
