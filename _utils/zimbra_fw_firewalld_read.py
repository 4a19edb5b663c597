"""
firewalld as zimbra_fw reads it, over D-Bus in this process (zimbra_fw_dbus):
``state(zone, services)`` is whether firewalld runs, its default zone, ZONE's
(or the default zone's) services, rich rules, ports and target, permanent
and runtime, the runtime ports of the named services, every runtime ipset
(type, family, entries), the zones that hold interfaces or sources
(``getActiveZones``) and this host's interfaces: plain strings, lists and
dicts. It only reads, and never starts firewalld.
"""

import socket

import zimbra_fw_dbus as dbus


def __virtual__():
    return (False, "zimbra_fw_firewalld_read is a library of the zimbra_fw module, not a Salt util")


BUS_NAME = "org.fedoraproject.FirewallD1"
PATH = "/org/fedoraproject/FirewallD1"


class Firewalld:
    """The read-only calls of firewalld's D-Bus API that zimbra_fw makes."""

    def __init__(self, bus):
        self.bus = bus

    def _call(self, path, interface, method, *args):
        return self.bus.call(BUS_NAME, path, BUS_NAME + interface, method, *args)[0]

    def running(self):
        if not self.bus.call(*dbus.BUS, "NameHasOwner", BUS_NAME)[0]:
            return False
        properties = "org.freedesktop.DBus.Properties"
        return self.bus.call(BUS_NAME, PATH, properties, "Get", BUS_NAME, "state")[0] == "RUNNING"

    def runtime(self, interface, method, *args):
        return self._call(PATH, interface, method, *args)

    def zone_settings(self, zone, scope):
        if scope == "permanent":
            path = self._call(PATH + "/config", ".config", "getZoneByName", zone)
            return self._call(path, ".config.zone", "getSettings2")
        return self.runtime(".zone", "getZoneSettings2", zone)


def zone_view(settings):
    """A zone's settings (getZoneSettings2's dictionary) as the backend reads them."""
    return {
        "services": sorted(settings.get("services", [])),
        "rich_rules": list(settings.get("rules_str", [])),
        "target": str(settings.get("target", "default")),
        "ports": [list(port) for port in settings.get("ports", [])],
    }


def interfaces():
    """This host's network interfaces but the loopback (firewalld always accepts it)."""
    return sorted(name for _, name in socket.if_nameindex() if name != "lo")


def state(zone, names):
    """firewalld as it is now (see the module's docstring); ``{"running":
    False}`` when there is no system bus or firewalld is not on it. Raises
    zimbra_fw_dbus.DBusFailure when a call fails."""
    try:
        bus = dbus.SystemBus()
    except dbus.Unreachable:
        return {"running": False}
    with bus:
        return read(Firewalld(bus), zone, names)


def read(firewalld, zone, names):
    """What ``state`` answers, read from ``firewalld`` (a Firewalld)."""
    if not firewalld.running():
        return {"running": False}
    default_zone = firewalld.runtime("", "getDefaultZone")
    zone = zone or default_zone
    zones = list(firewalld.runtime(".zone", "getZones"))
    known = set(firewalld.runtime("", "listServices"))
    runtime_services = {
        name: [list(port) for port in firewalld.runtime("", "getServiceSettings2", name).get("ports", [])]
        for name in names
        if name in known
    }
    ipsets = {}
    for name in firewalld.runtime(".ipset", "getIPSets"):
        _, _, _, kind, options, entries = firewalld.runtime(".ipset", "getIPSetSettings", name)
        ipsets[name] = {"type": kind, "family": options.get("family", "inet"), "entries": sorted(entries)}
    permanent = runtime = None
    if zone in zones:
        permanent = zone_view(firewalld.zone_settings(zone, "permanent"))
        runtime = zone_view(firewalld.zone_settings(zone, "runtime"))
    active = firewalld.runtime(".zone", "getActiveZones")
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
