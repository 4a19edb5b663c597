"""
Helper of the zimbra_fw execution module, not an execution module itself:
``zimbra_fw`` runs this file with firewalld's own Python (the one that has
the ``dbus`` package) to change firewalld over D-Bus in one process, as
``python3 -I zimbra_fw_firewalld_client.py`` with a JSON
request on stdin. (Reading firewalld needs no process:
zimbra_fw_firewalld_read.)

``{"steps": [STEP, ...]}`` holds ``LOCK``, in a directory only root can enter (one zimbra_fw change at a time:
each step reads what it changes and writes it back), carries out steps in
order and reports ``{"done": i}`` per step, then ``{"failed":
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

It talks to firewalld in plain D-Bus calls (``Firewalld``), not through
``firewall.client``: importing it and introspecting its objects costs more
than the calls.
"""

import fcntl
import ipaddress
import json
import os
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
NOT_RUNNING = "firewalld is not running (firewall-cmd --state)"
# The lock lives in a directory only root can enter, so no other user can
# open the file and hold the lock (a world-readable lock file can be
# flock'ed by anyone). The 0644 /run/zimbra_fw-firewalld.lock of older
# versions is ignored (/run is emptied at boot).
LOCK = "/run/zimbra_fw/firewalld.lock"
LOCK_WAIT = 120  # seconds
# D-Bus types of the settings lists and dicts zimbra_fw sends (as
# firewall.client's settings classes declare them).
SIGNATURES = {
    "services": "s",
    "rules_str": "s",
    "ports": "(ss)",
    "modules": "s",
    "destination": "ss",
    "protocols": "s",
    "source_ports": "(ss)",
    "includes": "s",
    "helpers": "s",
}


class Firewalld:
    """firewalld's D-Bus API as zimbra_fw uses it, in plain dbus calls (see
    the module's docstring). The ``permanent*``, ``write_*`` and ``remove``
    methods work on the permanent configuration, ``zone_settings`` and
    ``update_zone`` on either scope, the others on the runtime. Values go in
    as plain Python (typed here); entries come back as strings, settings as
    dbus-python's dict and list subclasses."""

    def __init__(self, dbus, bus):
        self.dbus, self.bus = dbus, bus
        self.main = self._object(PATH)
        self.config = self._object(PATH + "/config")

    def _object(self, path):
        return self.bus.get_object(BUS_NAME, path, introspect=False)

    @staticmethod
    def _call(obj, interface, method, *args):
        return obj.get_dbus_method(method, BUS_NAME + interface)(*args)

    def state(self):
        return str(self.main.Get(BUS_NAME, "state", dbus_interface=PROPERTIES))

    def runtime(self, interface, method, *args):
        return self._call(self.main, interface, method, *args)

    def permanent(self, kind, name, method, *args):
        """Call ``method`` on the permanent zone, service or ipset (``kind``
        Zone, Service or IPSet) ``name``."""
        path = self._call(self.config, ".config", f"get{kind}ByName", name)
        return self._call(self._object(path), ".config." + kind.lower(), method, *args)

    def _strings(self, items):
        return self.dbus.Array([str(item) for item in items], signature="s")

    def _settings(self, settings):
        """``settings`` as a D-Bus a{sv}, its lists and dicts typed (an empty list has no type to guess)."""
        typed = dict(settings)
        for key, value in settings.items():
            if isinstance(value, dict):
                typed[key] = self.dbus.Dictionary(value, signature=SIGNATURES[key])
            elif isinstance(value, list):
                items = [tuple(item) if isinstance(item, list) else item for item in value]
                typed[key] = self.dbus.Array(items, signature=SIGNATURES[key])
        return self.dbus.Dictionary(typed, signature="sv")

    # the runtime

    def entries(self, ipset):
        return [str(entry) for entry in self.runtime(".ipset", "getEntries", ipset)]

    def set_entries(self, ipset, entries):
        self.runtime(".ipset", "setEntries", ipset, self._strings(entries))

    def add_entry(self, ipset, entry):
        self.runtime(".ipset", "addEntry", ipset, entry)

    def remove_entry(self, ipset, entry):
        self.runtime(".ipset", "removeEntry", ipset, entry)

    def has_rule(self, zone, rule):
        return bool(self.runtime(".zone", "queryRichRule", zone, rule))

    def add_rule(self, zone, rule):
        self.runtime(".zone", "addRichRule", zone, rule, 0)  # 0: no timeout

    def remove_rule(self, zone, rule):
        self.runtime(".zone", "removeRichRule", zone, rule)

    def reload(self):
        self.runtime("", "reload")

    # a zone, in either scope

    def zone_settings(self, zone, scope):
        if scope == "permanent":
            return self.permanent("Zone", zone, "getSettings2")
        return self.runtime(".zone", "getZoneSettings2", zone)

    def update_zone(self, zone, scope, update):
        """Set the settings in ``update`` (only those) of ``zone``."""
        if scope == "permanent":
            self.permanent("Zone", zone, "update2", self._settings(update))
        else:
            self.runtime(".zone", "setZoneSettings2", zone, self._settings(update))

    # the permanent configuration

    def permanent_has_rule(self, zone, rule):
        return bool(self.permanent("Zone", zone, "queryRichRule", rule))

    def permanent_entries(self, ipset):
        return [str(entry) for entry in self.permanent("IPSet", ipset, "getEntries")]

    def set_permanent_entries(self, ipset, entries):
        self.permanent("IPSet", ipset, "setEntries", self._strings(entries))

    def write_service(self, name, wanted):
        """Create or redefine the permanent service ``name``: its ports and
        words, nothing else (as firewall.client's empty settings)."""
        settings = self._settings(
            {
                "version": "",
                "short": wanted["short"],
                "description": wanted["description"],
                "ports": wanted["ports"],
                **{key: [] for key in ("modules", "protocols", "source_ports", "includes", "helpers")},
                "destination": {},
            }
        )
        if name in self._call(self.config, ".config", "getServiceNames"):
            self.permanent("Service", name, "update2", settings)
        else:
            self._call(self.config, ".config", "addService2", name, settings)

    def write_ipset(self, name, wanted):
        """Create or redefine the permanent hash:net ipset ``name``, empty."""
        options = self.dbus.Dictionary({"family": wanted["family"]}, signature="ss")
        settings = self.dbus.Struct(
            ("", wanted["short"], wanted["description"], "hash:net", options, self._strings([])),
            signature="ssssa{ss}as",
        )
        if name in self._call(self.config, ".config", "getIPSetNames"):
            self.permanent("IPSet", name, "update", settings)
        else:
            self._call(self.config, ".config", "addIPSet", name, settings)

    def remove(self, kind, name):
        self.permanent(kind, name, "remove")


def connect(dbus):
    """(Firewalld, None) when firewalld runs, else (None, why not)."""
    try:
        bus = dbus.SystemBus()
        firewalld = Firewalld(dbus, bus) if bus.name_has_owner(BUS_NAME) else None
        running = firewalld is not None and firewalld.state() == "RUNNING"
    except dbus.exceptions.DBusException as exc:  # no system bus, or firewalld left it meanwhile
        return None, str(exc)
    return (firewalld, None) if running else (None, NOT_RUNNING)


ZONE_LISTS = (
    ("services", "add_services", "remove_services"),
    ("rules_str", "add_rules", "remove_rules"),
    ("ports", "add_ports", "remove_ports"),
)


def zone_update(settings, change):
    """The zone settings ``change`` alters, and only those: each list as it
    is with what is missing added and what is named to go removed (rich
    rules as firewalld writes them), and the target."""
    update = {}
    for key, add, remove in ZONE_LISTS:
        if not (change.get(add) or change.get(remove)):
            continue
        plain = tuple if key == "ports" else str
        current = [plain(item) for item in settings.get(key, [])]
        going = {plain(item) for item in change.get(remove, [])}
        coming = [plain(item) for item in change.get(add, [])]
        kept = [item for item in current if item not in going]
        update[key] = kept + [item for item in dict.fromkeys(coming) if item not in current and item not in going]
    if change.get("target"):
        update["target"] = change["target"]
    return update


def _cover(firewall, cover):
    """Add the cover rules (rich rules admitting new entries that replace
    overlapping ones) the runtime zone lacks; the ones added."""
    if not cover:
        return []
    added = [rule for rule in cover["rules"] if not firewall.has_rule(cover["zone"], rule)]
    for rule in added:
        firewall.add_rule(cover["zone"], rule)
    return added


def change_entries(firewall, scope, changes):
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
            current = firewall.permanent_entries(name)
            wanted = [e for e in current if e not in change["remove"]]
            wanted += [e for e in change["add"] if e not in current]
            if wanted != current:
                firewall.set_permanent_entries(name, wanted)  # nothing runs on it until a reload
            continue
        covered = _cover(firewall, change.get("cover"))
        current = set(firewall.entries(name))
        stays = current - set(change["remove"])
        if not stays or change.get("refill"):  # one call; what stays is held by the cover rules
            firewall.set_entries(name, sorted(stays | set(change["add"])))
        else:
            leaving = {old: ipaddress.ip_network(old, strict=False) for old in sorted(current - stays)}
            for item in change["add"]:
                if item in current:
                    continue
                network = ipaddress.ip_network(item)  # planned entries have no host bits
                for old in [old for old, net in leaving.items() if net.overlaps(network)]:
                    firewall.remove_entry(name, old)
                    current.discard(old)
                    del leaving[old]
                firewall.add_entry(name, item)
            for item in change["remove"]:
                if item in current:
                    firewall.remove_entry(name, item)
        for rule in covered:
            firewall.remove_rule(change["cover"]["zone"], rule)


def check_management(firewall, zone, rules):
    """Raise unless every rule is in the zone, in the permanent configuration
    (what the reload after the target change loads) and in the runtime."""
    missing = [("permanent", rule) for rule in rules if not firewall.permanent_has_rule(zone, rule)]
    missing += [("runtime", rule) for rule in rules if not firewall.has_rule(zone, rule)]
    if missing:
        texts = "; ".join(f"{rule} ({scope})" for scope, rule in missing)
        raise RuntimeError(
            f"refusing to restrict the zone {zone}: management access is not allowed yet "
            f"(missing: {texts}); apply the zimbra_fw rules first"
        )


def run_step(firewall, step):
    kind, args = step[0], step[1:]
    if kind == "service":
        firewall.write_service(*args)
    elif kind == "drop-service":
        firewall.remove("Service", *args)
    elif kind == "ipset":
        firewall.write_ipset(*args)
    elif kind == "drop-ipset":
        firewall.remove("IPSet", *args)
    elif kind == "entries":
        change_entries(firewall, *args)
    elif kind == "reload":
        firewall.reload()
    elif kind == "check":
        check_management(firewall, *args)
    elif kind == "zone":
        zone, scope, change = args
        update = zone_update(firewall.zone_settings(zone, scope), change)
        if scope == "runtime":
            update.pop("target", None)  # firewalld sets a target in the permanent configuration only
        if update:
            firewall.update_zone(zone, scope, update)
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


def refusal(exc):
    """What went wrong, in firewalld's words when firewalld refused
    (``INVALID_ENTRY: ...``, as firewall-cmd says it)."""
    name = getattr(exc, "get_dbus_name", lambda: None)()
    said = str(exc.get_dbus_message() or "") if name == BUS_NAME + ".Exception" else ""
    return said or str(exc)


def main():
    request = json.load(sys.stdin)
    try:
        import dbus  # pylint: disable=import-outside-toplevel,import-error
    except ImportError as exc:
        tell(unavailable=f"firewalld's Python library cannot be loaded: {exc}")
        sys.exit(3)
    firewall, reason = connect(dbus)
    if firewall is None:
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
                run_step(firewall, step)
            except Exception as exc:  # pylint: disable=broad-except
                tell(failed=index, error=refusal(exc))
                sys.exit(1)
            tell(done=index)


if __name__ == "__main__":
    main()
