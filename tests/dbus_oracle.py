"""A D-Bus service made with dbus-python, the library firewalld's own tools
use: test_dbus.py runs it with the system's Python on a private bus (the
address is argv[1]) and reads its replies with zimbra_fw_dbus. Each method
answers with the values it names, marshalled by libdbus; ``Mirror`` answers
any call with what libdbus read of it. Prints
"ready" once it owns its name."""

import sys

import dbus
import dbus.lowlevel
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

NAME = "org.example.Oracle"
PATH = "/org/example/Oracle"


def settings():
    """firewalld's zone settings shape (a{sv}) and more types besides."""
    return dbus.Dictionary(
        {
            "services": dbus.Array(["ssh", "zimbra"], signature="s"),
            "rules_str": dbus.Array(['rule family="ipv4" source address="10.0.0.1" accept', "é ☃ 𝄞"], signature="s"),
            "ports": dbus.Array([dbus.Struct(("25", "tcp")), dbus.Struct(("7000-7010", "udp"))], signature="(ss)"),
            "no_ports": dbus.Array([], signature="(ss)"),
            "target": dbus.String("default", variant_level=1),
            "flag": dbus.Boolean(True),
            "off": dbus.Boolean(False),
            "byte": dbus.Byte(255),
            "int16": dbus.Int16(-32768),
            "uint16": dbus.UInt16(65535),
            "int32": dbus.Int32(-5),
            "uint32": dbus.UInt32(4294967295),
            "int64": dbus.Int64(-(2**63)),
            "uint64": dbus.UInt64(2**64 - 1),
            "double": dbus.Double(1.5),
            "bytes": dbus.Array([dbus.Byte(0), dbus.Byte(1)], signature="y"),
            "path": dbus.ObjectPath("/a/b"),
            "signature": dbus.Signature("a{sv}"),
            "nested": dbus.String("deep", variant_level=3),
            "dict": dbus.Dictionary({"family": "inet6"}, signature="ss"),
            "by_number": dbus.Dictionary({7: True}, signature="ub"),
        },
        signature="sv",
    )


def ipset(count):
    """getIPSetSettings' shape: (version, short, description, type, options, entries)."""
    entries = dbus.Array([f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(count)], signature="s")
    return dbus.Struct(("", "short", "", "hash:net", dbus.Dictionary({"family": "inet"}, signature="ss"), entries))


def active():
    """getActiveZones' shape: a{sa{sas}}."""
    held = dbus.Dictionary({"interfaces": dbus.Array(["eth0"], signature="s")}, signature="sas")
    return dbus.Dictionary({"public": held, "empty": dbus.Dictionary({}, signature="sas")}, signature="sa{sas}")


class Oracle(dbus.service.Object):
    @dbus.service.method(NAME, in_signature="", out_signature="a{sv}")
    def Settings(self):
        return settings()

    @dbus.service.method(NAME, in_signature="s", out_signature="(ssssa{ss}as)")
    def IPSet(self, count):
        return ipset(int(count))

    @dbus.service.method(NAME, in_signature="", out_signature="a{sa{sas}}")
    def Active(self):
        return active()

    @dbus.service.method(NAME, in_signature="ss", out_signature="sso")
    def Echo(self, first, second):
        return first, second, dbus.ObjectPath("/org/example/Oracle/1")

    def _message_cb(self, connection, message):
        """``Mirror`` (any arguments) answers the signature libdbus read the
        call with, then its arguments as libdbus read them, marshalled again
        by that signature; other calls go to the methods below."""
        if message.get_member() != "Mirror":
            return super()._message_cb(connection, message)
        signature = message.get_signature() or ""
        reply = dbus.lowlevel.MethodReturnMessage(message)
        reply.append(dbus.Signature(signature), *message.get_args_list(), signature="g" + signature)
        connection.send_message(reply)
        return None

    @dbus.service.method(NAME, in_signature="", out_signature="")
    def Nothing(self):
        return None

    @dbus.service.method(NAME, in_signature="s", out_signature="s")
    def Fail(self, text):
        raise dbus.exceptions.DBusException(text, name="org.example.Error.Refused")


def main():
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(sys.argv[1])
    name = dbus.service.BusName(NAME, bus)
    Oracle(bus, PATH)
    print("ready", name.get_name(), flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
