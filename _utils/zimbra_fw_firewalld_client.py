"""
Helper of the zimbra_fw execution module, not an execution module itself:
``zimbra_fw`` runs this file with firewalld's own Python (the one that has
the ``dbus`` and ``firewall`` packages) to talk to firewalld over D-Bus in
one process, as ``python3 -I zimbra_fw_firewalld_client.py`` with a JSON
request on stdin.

``{"read": ZONE, "services": [NAME, ...]}`` prints one JSON object: whether
firewalld runs, its default zone, ZONE's (or the default zone's) services,
rich rules, ports and target, permanent and runtime, the runtime ports of
the named services, every runtime ipset (type, family, entries), the
zones that hold interfaces or sources (``getActiveZones``) and this host's
interfaces. Reading
happens on every run, so it calls D-Bus directly: importing
``firewall.client`` alone costs more than all the calls.

``{"steps": [STEP, ...]}`` holds ``LOCK``, in a directory only root can enter (one zimbra_fw change at a time:
each step reads what it changes and writes it back), carries out steps in
order with ``firewall.client`` and reports ``{"done": i}`` per step, then ``{"failed":
i, "error": ...}`` on the first failure. Steps: ``["service", NAME,
{"short", "description", "ports"}]`` (create or update a permanent service),
``["drop-service", NAME]``, ``["ipset", NAME, {"short", "description",
"family"}]`` (create or redefine a permanent hash:net ipset, empty),
``["drop-ipset", NAME]``, ``["reload"]``, ``["check", ZONE, [RULE, ...]]``
(each rich rule is in the zone, permanent and runtime, or fail), ``["entries",
"permanent" | "runtime", {IPSET: {"add": [...], "remove": [...], "cover":
{"zone", "rules"}}}]`` (adds before removes; a runtime ipset none of whose
entries stay, or which has ``refill``, is refilled in one call; ``cover``,
runtime only and optional: rich rules held while new entries replace
overlapping ones, or while the set is refilled), ``["zone",
ZONE, "permanent" | "runtime", CHANGE]`` with CHANGE ``{"add_services",
"remove_services", "add_rules", "remove_rules", "add_ports", "remove_ports",
"target"}`` (ports: ``[PORT, PROTO]``) applied as one
settings update.

Any other output means firewalld's Python library could not be used: ``{"unavailable": why}``.
"""

import fcntl
import ipaddress
import json
import os
import socket
import stat
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
# The lock lives in a directory only root can enter, so no other user can
# open the file and hold the lock (a world-readable lock file can be
# flock'ed by anyone). The 0644 /run/zimbra_fw-firewalld.lock of older
# versions is ignored (/run is emptied at boot).
LOCK = "/run/zimbra_fw/firewalld.lock"
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
        return {"running": False}
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
    active = call(main, ".zone", "getActiveZones")
    return {
        "running": True,
        "default_zone": default_zone,
        "zone": zone,
        "zones": zones,
        "permanent": permanent,
        "runtime": runtime,
        "runtime_services": runtime_services,
        "ipsets": ipsets,
        "active_zones": {
            str(name): {"interfaces": sorted(held.get("interfaces", [])), "sources": sorted(held.get("sources", []))}
            for name, held in active.items()
        },
        "interfaces": interfaces(),
    }


def interfaces():
    """This host's network interfaces but the loopback (firewalld always accepts it)."""
    return sorted(name for _, name in socket.if_nameindex() if name != "lo")


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
    _change_ports(settings, change)
    if change.get("target"):
        settings.setTarget(change["target"])
    return settings


def _change_ports(settings, change):
    for port, proto in change.get("add_ports", []):
        if not settings.queryPort(port, proto):
            settings.addPort(port, proto)
    for port, proto in change.get("remove_ports", []):
        if settings.queryPort(port, proto):
            settings.removePort(port, proto)


def _cover(firewall, cover):
    """Add the cover rules (rich rules admitting new entries that replace
    overlapping ones) the runtime zone lacks; the ones added."""
    if not cover:
        return []
    added = [rule for rule in cover["rules"] if not firewall.queryRichRule(cover["zone"], rule)]
    for rule in added:
        firewall.addRichRule(cover["zone"], rule)
    return added


def change_entries(firewall, config, scope, changes):
    """Adds first, then removes, in every ipset named. Entries already there
    (or already gone) are skipped, so a concurrent run does not fail this one.

    In the runtime, firewalld refuses an entry that overlaps one in the set,
    so a subnet replacing its own hosts (or hosts replacing their subnet)
    can only go in after the old entries are out, and no runtime call swaps
    them at once: ``setEntries`` flushes the set in one nftables transaction
    and refills it in another (firewalld 1.3: fw_ipset.set_entries calls the
    backend's set_flush, then set_restore; with IndividualCalls=yes one
    transaction per entry). So while such entries are replaced, the change's
    ``cover`` rules (``{"zone", "rules"}``: one rich rule per new entry,
    admitting it to the ipset's service) are in the runtime zone, and go
    when the set holds the new entries. A change with ``refill`` (many more
    entries come and go than stay) refills the set in one ``setEntries``,
    its cover rules holding the entries that stay: firewalld checks an
    ``addEntry`` against every entry in the set. Every address the set
    admits before and after is admitted at every moment."""
    for name, change in changes.items():
        if scope == "permanent":
            entry = config.getIPSetByName(name)
            current = entry.getSettings().getEntries()
            wanted = [e for e in current if e not in change["remove"]]
            wanted += [e for e in change["add"] if e not in current]
            if wanted != current:
                entry.setEntries(wanted)  # the permanent configuration: nothing runs on it until a reload
            continue
        covered = _cover(firewall, change.get("cover"))
        current = set(firewall.getEntries(name))
        stays = current - set(change["remove"])
        if not stays or change.get("refill"):  # one call; what stays is held by the cover rules
            firewall.setEntries(name, sorted(stays | set(change["add"])))
        else:
            leaving = {old: ipaddress.ip_network(old, strict=False) for old in sorted(current - stays)}
            for item in change["add"]:
                if item in current:
                    continue
                network = ipaddress.ip_network(item)  # planned entries have no host bits
                for old in [old for old, net in leaving.items() if net.overlaps(network)]:
                    firewall.removeEntry(name, old)
                    current.discard(old)
                    del leaving[old]
                firewall.addEntry(name, item)
            for item in change["remove"]:
                if item in current:
                    firewall.removeEntry(name, item)
        for rule in covered:
            firewall.removeRichRule(change["cover"]["zone"], rule)


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


def check_management(firewall, config, zone, rules):
    """Raise unless every rule is in the zone, in the permanent configuration
    (what the reload after the target change loads) and in the runtime."""
    permanent = config.getZoneByName(zone).getSettings()
    missing = [("permanent", rule) for rule in rules if not permanent.queryRichRule(rule)]
    missing += [("runtime", rule) for rule in rules if not firewall.queryRichRule(zone, rule)]
    if missing:
        texts = "; ".join(f"{rule} ({scope})" for scope, rule in missing)
        raise RuntimeError(
            f"refusing to restrict the zone {zone}: management access is not allowed yet "
            f"(missing: {texts}); apply the zimbra_fw rules first"
        )


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
        check_management(firewall, config, *args)
    elif kind == "zone":
        zone, scope, change = args
        if scope == "permanent":
            entry = config.getZoneByName(zone)
            entry.update(change_zone(entry.getSettings(), change))
        else:
            firewall.setZoneSettings(zone, change_zone(firewall.getZoneSettings(zone), change))
    else:
        raise RuntimeError(f"unknown step {step!r}")


def _lock_dir(directory):
    """``directory``, created if missing; refuses one that is not a real
    directory of ours (a symlink, a file, another owner's) and makes ours 0700."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    found = os.lstat(directory)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid():
        raise RuntimeError(f"{directory} is not a directory owned by uid {os.geteuid()}: remove it")
    if stat.S_IMODE(found.st_mode) != 0o700:
        os.chmod(directory, 0o700)


def locked():
    """The lock file, held; raises after LOCK_WAIT seconds of another run holding it."""
    _lock_dir(os.path.dirname(LOCK))
    descriptor = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    handle = os.fdopen(descriptor)
    if stat.S_IMODE(os.fstat(descriptor).st_mode) != 0o600:
        os.fchmod(descriptor, 0o600)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
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
