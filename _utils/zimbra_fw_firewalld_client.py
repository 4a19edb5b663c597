"""
Changes to firewalld, over D-Bus in this process (zimbra_fw_dbus), as the
firewalld backend plans them: ``run_steps(steps)`` holds ``LOCK``, in a
directory only root can enter (one zimbra_fw change at a time: each step
reads what it changes and writes it back), carries out the steps in order
and returns (the number applied, the first failure's error or None).

Steps: ``["service", NAME, {"short", "description", "ports"}]`` (create or
update a permanent service), ``["drop-service", NAME]``, ``["ipset", NAME,
{"short", "description", "family"}]`` (create or redefine a permanent
hash:net ipset, empty), ``["drop-ipset", NAME]``, ``["reload"]``,
``["check", ZONE, [RULE, ...]]`` (each rich rule is in the zone, permanent
and runtime, or fail), ``["entries", "permanent" | "runtime", {IPSET:
{"add": [...], "remove": [...], "cover": {"zone", "rules"}}}]`` (adds before
removes; a runtime ipset none of whose entries stay, or which has
``refill``, is refilled in one call; ``cover``, runtime only and optional:
rich rules held while new entries replace overlapping ones, or while the
set is refilled), ``["zone", ZONE, "permanent" | "runtime", CHANGE]`` with
CHANGE ``{"add_services", "remove_services", "add_rules", "remove_rules",
"add_ports", "remove_ports", "target"}`` (ports: ``[PORT, PROTO]``) applied
as one settings update.
"""

import fcntl
import ipaddress
import os
import stat
import time

import zimbra_fw_dbus as dbus
import zimbra_fw_firewalld_read as reader
from zimbra_fw_commands import private_directory
from zimbra_fw_dbus import Variant


def __virtual__():
    return (False, "zimbra_fw_firewalld_client is a library of the zimbra_fw module, not a Salt util")


BUS_NAME, PATH = reader.BUS_NAME, reader.PATH
NOT_RUNNING = "firewalld is not running (firewall-cmd --state)"
# The lock lives in a directory only root can enter, so no other user can
# open the file and hold the lock (a world-readable lock file can be
# flock'ed by anyone). The 0644 /run/zimbra_fw-firewalld.lock of older
# versions is ignored (/run is emptied at boot).
LOCK = "/run/zimbra_fw/firewalld.lock"
LOCK_WAIT = 120  # seconds
CHANGE_WAIT = 300  # seconds for all the D-Bus calls of one change (a reload of thousands of entries takes ~1 s)
# D-Bus types of the settings zimbra_fw sends (as firewalld's settings declare them).
SIGNATURES = {
    "version": "s",
    "short": "s",
    "description": "s",
    "target": "s",
    "services": "as",
    "rules_str": "as",
    "ports": "a(ss)",
    "modules": "as",
    "destination": "a{ss}",
    "protocols": "as",
    "source_ports": "a(ss)",
    "includes": "as",
    "helpers": "as",
}
IPSET_SETTINGS = "(ssssa{ss}as)"


def _settings(settings):
    """``settings`` as firewalld's ``a{sv}``, each value typed by its key."""
    return {key: Variant(SIGNATURES[key], value) for key, value in settings.items()}


class Firewalld(reader.Firewalld):
    """firewalld's D-Bus API as zimbra_fw changes it. The ``permanent*``,
    ``write_*`` and ``remove`` methods work on the permanent configuration,
    ``zone_settings`` and ``update_zone`` on either scope, the others on the
    runtime. Each answer is checked for its shape (zimbra_fw_firewalld_read)."""

    def _call(self, path, interface, method, *args, signature=None):
        return self._one(BUS_NAME, path, BUS_NAME + interface, method, *args, signature=signature)

    def _one(self, *call, signature=None):
        values = self.bus.call(*call, signature=signature)
        if len(values) > 1:
            raise dbus.BrokenMessage(f"{call[3]} answered {len(values)} values")
        return values[0] if values else None

    def permanent(self, kind, name, method, *args, signature=None):
        """Call ``method`` on the permanent zone, service or ipset (``kind``
        Zone, Service or IPSet) ``name``."""
        path = reader.text_of(self._call(PATH + "/config", ".config", f"get{kind}ByName", name), f"{kind} path")
        return self._call(path, ".config." + kind.lower(), method, *args, signature=signature)

    def _names(self, kind):
        return reader.texts_of(self._call(PATH + "/config", ".config", f"get{kind}Names"), f"{kind} names")

    # the runtime

    def entries(self, ipset):
        return reader.texts_of(self._call(PATH, ".ipset", "getEntries", ipset), f"ipset {ipset}'s entries")

    def set_entries(self, ipset, entries):
        self._call(PATH, ".ipset", "setEntries", ipset, list(entries), signature="sas")

    def add_entry(self, ipset, entry):
        self._call(PATH, ".ipset", "addEntry", ipset, entry)

    def remove_entry(self, ipset, entry):
        self._call(PATH, ".ipset", "removeEntry", ipset, entry)

    def has_rule(self, zone, rule):
        return reader.flag_of(self._call(PATH, ".zone", "queryRichRule", zone, rule), "rich rule query")

    def add_rule(self, zone, rule):
        self._call(PATH, ".zone", "addRichRule", zone, rule, 0, signature="ssi")  # 0: no timeout

    def remove_rule(self, zone, rule):
        self._call(PATH, ".zone", "removeRichRule", zone, rule)

    def reload(self):
        self._call(PATH, "", "reload")

    # a zone, in either scope

    def zone_settings(self, zone, scope):
        """The zone's settings as firewalld answers them, their shape checked."""
        settings = super().zone_settings(zone, scope)
        reader.zone_view(settings, f"{scope} zone {zone}")
        return settings

    def update_zone(self, zone, scope, update):
        """Set the settings in ``update`` (only those) of ``zone``."""
        if scope == "permanent":
            self.permanent("Zone", zone, "update2", _settings(update), signature="a{sv}")
        else:
            self._call(PATH, ".zone", "setZoneSettings2", zone, _settings(update), signature="sa{sv}")

    # the permanent configuration

    def permanent_has_rule(self, zone, rule):
        return reader.flag_of(self.permanent("Zone", zone, "queryRichRule", rule), "rich rule query")

    def permanent_entries(self, ipset):
        return reader.texts_of(self.permanent("IPSet", ipset, "getEntries"), f"ipset {ipset}'s entries")

    def set_permanent_entries(self, ipset, entries):
        self.permanent("IPSet", ipset, "setEntries", list(entries), signature="as")

    def write_service(self, name, wanted):
        """Create or redefine the permanent service ``name``: its ports and
        words, nothing else (as firewall.client's empty settings)."""
        settings = _settings(
            {
                "version": "",
                "short": wanted["short"],
                "description": wanted["description"],
                "ports": wanted["ports"],
                **{key: [] for key in ("modules", "protocols", "source_ports", "includes", "helpers")},
                "destination": {},
            }
        )
        if name in self._names("Service"):
            self.permanent("Service", name, "update2", settings, signature="a{sv}")
        else:
            self._call(PATH + "/config", ".config", "addService2", name, settings, signature="sa{sv}")

    def write_ipset(self, name, wanted):
        """Create or redefine the permanent hash:net ipset ``name``, empty."""
        settings = ("", wanted["short"], wanted["description"], "hash:net", {"family": wanted["family"]}, [])
        if name in self._names("IPSet"):
            self.permanent("IPSet", name, "update", settings, signature=IPSET_SETTINGS)
        else:
            self._call(PATH + "/config", ".config", "addIPSet", name, settings, signature="s" + IPSET_SETTINGS)

    def remove(self, kind, name):
        self.permanent(kind, name, "remove")


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


def locked():
    """The lock file, held; raises after LOCK_WAIT seconds of another run holding it."""
    private_directory(os.path.dirname(LOCK))
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
    if isinstance(exc, dbus.BusError) and exc.name == BUS_NAME + ".Exception" and exc.message:
        return exc.message
    return str(exc)


def run_steps(steps):
    """Carry out ``steps`` in order under the lock: (the number applied, the
    first failure's error or None). Nothing runs unless firewalld does."""
    try:
        lock = locked()
    except (OSError, RuntimeError) as exc:
        return 0, str(exc)
    with lock:
        try:
            bus = dbus.SystemBus(wait=CHANGE_WAIT)
            with bus:
                return _run_connected(Firewalld(bus), steps)
        except dbus.DBusFailure as exc:  # connecting, or asking whether firewalld runs
            return 0, str(exc)


def _run_connected(firewall, steps):
    if not firewall.running():
        return 0, NOT_RUNNING
    for index, step in enumerate(steps):
        try:
            run_step(firewall, step)
        except Exception as exc:  # pylint: disable=broad-except
            return index, refusal(exc)
    return len(steps), None
