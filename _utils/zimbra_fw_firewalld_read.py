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
    """The read-only calls of firewalld's D-Bus API that zimbra_fw makes;
    each answers one value."""

    def __init__(self, bus):
        self.bus = bus

    def _one(self, *call):
        values = self.bus.call(*call)
        if len(values) != 1:
            raise dbus.BrokenMessage(f"{call[3]} answered {len(values)} values, not one")
        return values[0]

    def running(self):
        owned = self._one(*dbus.BUS, "NameHasOwner", BUS_NAME)
        if not isinstance(owned, bool):
            raise dbus.BrokenMessage(f"NameHasOwner answered {owned!r:.80}")
        if not owned:
            return False
        return self._one(BUS_NAME, PATH, "org.freedesktop.DBus.Properties", "Get", BUS_NAME, "state") == "RUNNING"

    def runtime(self, interface, method, *args):
        return self._one(BUS_NAME, PATH, BUS_NAME + interface, method, *args)

    def zone_settings(self, zone, scope):
        if scope == "permanent":
            path = text_of(
                self._one(BUS_NAME, PATH + "/config", BUS_NAME + ".config", "getZoneByName", zone), "zone path"
            )
            return self._one(BUS_NAME, path, BUS_NAME + ".config.zone", "getSettings2")
        return self.runtime(".zone", "getZoneSettings2", zone)


# Each answer is checked for the shape firewalld gives it: a value of
# another shape is an error, never a different snapshot.


def _shape_error(what, value):
    return dbus.BrokenMessage(f"firewalld's {what} is not as firewalld answers it: {value!r:.120}")


def text_of(value, what):
    if not isinstance(value, str):
        raise _shape_error(what, value)
    return value


def texts_of(value, what):
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _shape_error(what, value)
    return value


def flag_of(value, what):
    if not isinstance(value, bool):
        raise _shape_error(what, value)
    return value


def mapping_of(value, what):
    """A dictionary with string keys, as firewalld's ``a{sv}``, ``a{ss}`` and ``a{s...}`` are."""
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise _shape_error(what, value)
    return value


def _ports(value, what):
    """``[[PORT, PROTOCOL], ...]`` from D-Bus's ``a(ss)``."""
    if not isinstance(value, list) or not all(
        isinstance(port, tuple) and len(port) == 2 and all(isinstance(word, str) for word in port) for port in value
    ):
        raise _shape_error(what, value)
    return [list(port) for port in value]


def zone_view(settings, what):
    """A zone's settings (getZoneSettings2's dictionary) as the backend reads them."""
    settings = mapping_of(settings, what)
    return {
        "services": sorted(texts_of(settings.get("services", []), f"{what}'s services")),
        "rich_rules": list(texts_of(settings.get("rules_str", []), f"{what}'s rich rules")),
        "target": text_of(settings.get("target", "default"), f"{what}'s target"),
        "ports": _ports(settings.get("ports", []), f"{what}'s ports"),
    }


def _ipset(settings, name):
    """(type, family, entries) of getIPSetSettings' answer."""
    if not isinstance(settings, tuple) or len(settings) != 6:
        raise _shape_error(f"ipset {name}", settings)
    options = mapping_of(settings[4], f"ipset {name}'s options")
    return {
        "type": text_of(settings[3], f"ipset {name}'s type"),
        "family": text_of(options.get("family", "inet"), f"ipset {name}'s family"),
        "entries": sorted(texts_of(settings[5], f"ipset {name}'s entries")),
    }


def _held(zones):
    """getActiveZones' answer: each zone's interfaces and sources."""
    held = {}
    for name, answer in mapping_of(zones, "active zones").items():
        found = mapping_of(answer, f"active zone {name}")
        held[name] = {
            key: sorted(texts_of(found.get(key, []), f"active zone {name}'s {key}"))
            for key in ("interfaces", "sources")
        }
    return held


def interfaces():
    """This host's network interfaces but the loopback (firewalld always accepts it)."""
    return sorted(name for _, name in socket.if_nameindex() if name != "lo")


def state(zone, names):
    """firewalld as it is now (see the module's docstring); ``{"running":
    False}`` when no system bus listens or firewalld is not on it. Raises
    zimbra_fw_dbus.DBusFailure when the bus cannot be talked to, a call
    fails or firewalld answers in another shape, OSError when this host's
    interfaces cannot be listed."""
    try:
        bus = dbus.SystemBus()
    except dbus.NoBus:
        return {"running": False}
    with bus:
        return read(Firewalld(bus), zone, names)


def read(firewalld, zone, names):
    """What ``state`` answers, read from ``firewalld`` (a Firewalld)."""
    if not firewalld.running():
        return {"running": False}
    default_zone = text_of(firewalld.runtime("", "getDefaultZone"), "default zone")
    zone = zone or default_zone
    zones = texts_of(firewalld.runtime(".zone", "getZones"), "zones")
    known = set(texts_of(firewalld.runtime("", "listServices"), "services"))
    runtime_services = {}
    for name in names:
        if name in known:
            settings = mapping_of(firewalld.runtime("", "getServiceSettings2", name), f"service {name}")
            runtime_services[name] = _ports(settings.get("ports", []), f"service {name}'s ports")
    ipsets = {
        name: _ipset(firewalld.runtime(".ipset", "getIPSetSettings", name), name)
        for name in texts_of(firewalld.runtime(".ipset", "getIPSets"), "ipsets")
    }
    permanent = runtime = None
    if zone in zones:
        permanent = zone_view(firewalld.zone_settings(zone, "permanent"), f"permanent zone {zone}")
        runtime = zone_view(firewalld.zone_settings(zone, "runtime"), f"runtime zone {zone}")
    return {
        "running": True,
        "default_zone": default_zone,
        "zone": zone,
        "zones": zones,
        "permanent": permanent,
        "runtime": runtime,
        "runtime_services": runtime_services,
        "ipsets": ipsets,
        "active_zones": _held(firewalld.runtime(".zone", "getActiveZones")),
        "interfaces": interfaces(),
    }
