"""
Helper of the zimbra_fw execution module, not an execution module itself:
``zimbra_fw`` runs this file with firewalld's own Python (the one that has
the ``dbus`` and ``firewall`` packages) to talk to firewalld over D-Bus in
one process, as ``python3 -I zimbra_fw_firewalld_client.py`` with a JSON
request on stdin.

``{"read": ZONE, "services": [NAME, ...]}`` prints one JSON object: whether
firewalld runs, its default zone, ZONE's (or the default zone's) services,
rich rules, ports and target, permanent and runtime, the runtime ports of
the named services and every runtime ipset (type, family, entries). Reading
happens on every run, so it calls D-Bus directly: importing
``firewall.client`` alone costs more than all the calls.

``{"steps": [STEP, ...]}`` holds ``LOCK`` (one zimbra_fw change at a time:
each step reads what it changes and writes it back), carries out steps in
order with ``firewall.client`` and reports ``{"done": i}`` per step, then ``{"failed":
i, "error": ...}`` on the first failure. Steps: ``["service", NAME,
{"short", "description", "ports"}]`` (create or update a permanent service),
``["drop-service", NAME]``, ``["ipset", NAME, {"short", "description",
"family"}]`` (create or redefine a permanent hash:net ipset, empty),
``["drop-ipset", NAME]``, ``["reload"]``, ``["check", ZONE, [RULE, ...]]``
(each rich rule is in the runtime zone, or fail), ``["entries", "permanent"
| "runtime", {IPSET: {"add": [...], "remove": [...]}}]`` (adds before
removes; a runtime ipset none of whose entries stay is refilled in one
call), ``["zone", ZONE, "permanent" | "runtime", CHANGE]`` with CHANGE
``{"add_services", "remove_services", "add_rules", "remove_rules",
"target"}`` applied as one settings update.

Any other output means firewalld's Python library could not be used: ``{"unavailable": why}``.
"""

import fcntl
import ipaddress
import json
import sys
import time


def __virtual__():
    return (False, "zimbra_fw_firewalld_client is a helper script run by zimbra_fw, not an execution module")


def tell(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


BUS_NAME = "org.fedoraproject.FirewallD1"
PATH = "/org/fedoraproject/FirewallD1"
PROPERTIES = "org.freedesktop.DBus.Properties"
LOCK = "/run/zimbra_fw-firewalld.lock"
LOCK_WAIT = 120  # seconds


def zone_view(settings):
    """A zone's settings (getZoneSettings2's dictionary) as the backend reads them."""
    return {
        "services": sorted(settings.get("services", [])),
        "rich_rules": list(settings.get("rules_str", [])),
        "target": str(settings.get("target", "default")),
        "ports": [list(port) for port in settings.get("ports", [])],
    }


def read(zone, names):
    """The read request's answer, over D-Bus without firewall.client."""
    import dbus  # pylint: disable=import-outside-toplevel,import-error

    try:
        bus = dbus.SystemBus()
        running = bus.name_has_owner(BUS_NAME)
    except dbus.exceptions.DBusException:  # no system bus: nothing runs
        running = False
    if running:
        main = bus.get_object(BUS_NAME, PATH, introspect=False)
        running = main.Get(BUS_NAME, "state", dbus_interface=PROPERTIES) == "RUNNING"
    if not running:
        return {"running": False}

    def call(obj, interface, method, *args):
        return obj.get_dbus_method(method, f"{BUS_NAME}{interface}")(*args)

    default_zone = call(main, "", "getDefaultZone")
    zone = zone or default_zone
    zones = list(call(main, ".zone", "getZones"))
    known = set(call(main, "", "listServices"))
    runtime_services = {
        name: [list(port) for port in call(main, "", "getServiceSettings2", name).get("ports", [])]
        for name in names
        if name in known
    }
    ipsets = {}
    for name in call(main, ".ipset", "getIPSets"):
        _, _, _, kind, options, entries = call(main, ".ipset", "getIPSetSettings", name)
        ipsets[name] = {"type": kind, "family": options.get("family", "inet"), "entries": sorted(entries)}
    permanent = runtime = None
    if zone in zones:
        config = bus.get_object(BUS_NAME, PATH + "/config", introspect=False)
        zone_path = call(config, ".config", "getZoneByName", zone)
        permanent_zone = bus.get_object(BUS_NAME, zone_path, introspect=False)
        permanent = zone_view(call(permanent_zone, ".config.zone", "getSettings2"))
        runtime = zone_view(call(main, ".zone", "getZoneSettings2", zone))
    return {
        "running": True,
        "default_zone": default_zone,
        "zone": zone,
        "zones": zones,
        "permanent": permanent,
        "runtime": runtime,
        "runtime_services": runtime_services,
        "ipsets": ipsets,
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


def change_entries(firewall, config, scope, changes):
    """Adds first, then removes, in every ipset named. Entries already there
    (or already gone) are skipped, so a concurrent run does not fail this one."""
    for name, change in changes.items():
        if scope == "permanent":
            entry = config.getIPSetByName(name)
            current = entry.getSettings().getEntries()
            wanted = [e for e in current if e not in change["remove"]]
            wanted += [e for e in change["add"] if e not in current]
            if wanted != current:
                entry.setEntries(wanted)
            continue
        current = set(firewall.getEntries(name))
        stays = current - set(change["remove"])
        if not stays:  # nothing to keep reachable while it changes: one call
            firewall.setEntries(name, sorted(set(change["add"])))
            continue
        # firewalld refuses an entry that overlaps one in the set: a subnet
        # replacing its own hosts takes their place.
        leaving = {old: ipaddress.ip_network(old, strict=False) for old in sorted(current - stays)}
        for item in change["add"]:
            if item in current:
                continue
            network = ipaddress.ip_network(item, strict=False)
            for old in [old for old, net in leaving.items() if net.overlaps(network)]:
                firewall.removeEntry(name, old)
                current.discard(old)
                del leaving[old]
            firewall.addEntry(name, item)
        for item in change["remove"]:
            if item in current:
                firewall.removeEntry(name, item)


def write_ipset(client, config, name, wanted):
    settings = client.FirewallClientIPSetSettings()
    settings.setType("hash:net")
    settings.setOptions({"family": wanted["family"]})
    settings.setShort(wanted["short"])
    settings.setDescription(wanted["description"])
    if name in config.getIPSetNames():
        config.getIPSetByName(name).update(settings)
    else:
        config.addIPSet(name, settings)


def write_service(client, config, name, wanted):
    settings = client.FirewallClientServiceSettings()
    settings.setShort(wanted["short"])
    settings.setDescription(wanted["description"])
    settings.setPorts([tuple(port) for port in wanted["ports"]])
    if name in config.getServiceNames():
        config.getServiceByName(name).update(settings)
    else:
        config.addService(name, settings)


def run_step(client, firewall, step):
    kind, args = step[0], step[1:]
    config = firewall.config()
    if kind == "service":
        write_service(client, config, *args)
    elif kind == "drop-service":
        config.getServiceByName(args[0]).remove()
    elif kind == "ipset":
        write_ipset(client, config, *args)
    elif kind == "drop-ipset":
        config.getIPSetByName(args[0]).remove()
    elif kind == "entries":
        change_entries(firewall, config, *args)
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


def locked():
    """The lock file, held; raises after LOCK_WAIT seconds of another run holding it."""
    handle = open(LOCK, "a", encoding="utf-8")  # pylint: disable=consider-using-with
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"another zimbra_fw run held {LOCK} for {LOCK_WAIT} s") from None
            time.sleep(0.05)


def main():
    request = json.load(sys.stdin)
    try:  # pylint: disable=import-outside-toplevel
        if "read" in request:
            tell(**read(request["read"], request.get("services", [])))
            return
        from firewall import client
    except ImportError as exc:
        tell(unavailable=f"firewalld's Python library cannot be loaded: {exc}")
        sys.exit(3)
    try:
        connection = client.FirewallClient(wait=0, quiet=True)
    except Exception as exc:  # pylint: disable=broad-except  # no system bus: nothing runs
        connection, reason = None, str(exc)
    else:
        reason = "firewalld is not running (firewall-cmd --state)"
    if connection is None or not connection.connected:
        tell(failed=0, error=reason)
        sys.exit(1)
    try:
        lock = locked()
    except (OSError, RuntimeError) as exc:
        tell(failed=0, error=str(exc))
        sys.exit(1)
    with lock:
        for index, step in enumerate(request["steps"]):
            try:
                run_step(client, connection, step)
            except Exception as exc:  # pylint: disable=broad-except
                tell(failed=index, error=str(exc))
                sys.exit(1)
            tell(done=index)


if __name__ == "__main__":
    main()
