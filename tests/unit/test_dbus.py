"""zimbra_fw_dbus, the D-Bus client zimbra_fw reads firewalld with.

The oracle is libdbus: a private dbus-daemon (in a temporary directory, not
the host's bus) and a service made with dbus-python (tests/dbus_oracle.py)
marshal the replies this client must read, and accept the calls it makes.
The attacker's side: whatever bytes arrive, reading them ends in a value or
in BrokenMessage, never in another error or a deep recursion."""

import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest
import zimbra_fw_dbus as dbus
from hypothesis import given, settings
from hypothesis import strategies as st

ORACLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dbus_oracle.py")
ORACLE_NAME, ORACLE_PATH = "org.example.Oracle", "/org/example/Oracle"
SYSTEM_PYTHON = "/usr/bin/python3"
# Children end when the test process ends, even killed (mutmut kills a test
# run that takes too long): util-linux's setpriv sets their parent-death signal.
WITH_THIS_PROCESS = ["setpriv", "--pdeathsig", "TERM"]
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <!-- the session bus's own policy: the socket's permissions protect it -->
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/>
  </policy>
</busconfig>
"""


def _ready_line(process, wait=20.0):
    ready, _, _ = select.select([process.stdout], [], [], wait)
    return process.stdout.readline().decode() if ready else ""


@pytest.fixture(scope="module")
def bus_address(tmp_path_factory):
    """A private bus with the oracle service on it: its address."""
    missing = [tool for tool in ("dbus-daemon", "setpriv", SYSTEM_PYTHON) if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"missing here: {missing} ('make setup' installs them)")
        pytest.skip(f"missing here: {missing}")
    directory = tmp_path_factory.mktemp("bus")
    config = directory / "bus.conf"
    config.write_text(BUS_CONFIG.format(socket=directory / "socket"))
    daemon = subprocess.Popen(
        [*WITH_THIS_PROCESS, "dbus-daemon", "--config-file", str(config), "--nofork", "--nopidfile", "--print-address"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    service = None
    try:
        address = _ready_line(daemon).strip()
        assert address.startswith("unix:"), address
        service = subprocess.Popen(
            [*WITH_THIS_PROCESS, SYSTEM_PYTHON, "-I", ORACLE, address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if not _ready_line(service).startswith("ready"):
            service.kill()
            pytest.fail(f"the oracle service did not start: {service.communicate(timeout=10)[1].decode()[-2000:]}")
        yield address
    finally:
        for process in (service, daemon):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)
                process.stdout.close()


@pytest.fixture
def bus(bus_address, monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus_address)
    with dbus.SystemBus() as connection:
        yield connection


def oracle(connection, member, *args):
    return connection.call(ORACLE_NAME, ORACLE_PATH, ORACLE_NAME, member, *args)


# ---------------------------------------------------------------- against libdbus


def test_every_type_libdbus_marshals_is_read_as_plain_python(bus):
    assert oracle(bus, "Settings") == [
        {
            "services": ["ssh", "zimbra"],
            "rules_str": ['rule family="ipv4" source address="10.0.0.1" accept', "é ☃ 𝄞"],
            "ports": [("25", "tcp"), ("7000-7010", "udp")],
            "no_ports": [],
            "target": "default",
            "flag": True,
            "off": False,
            "byte": 255,
            "int16": -32768,
            "uint16": 65535,
            "int32": -5,
            "uint32": 4294967295,
            "int64": -(2**63),
            "uint64": 2**64 - 1,
            "double": 1.5,
            "bytes": [0, 1],
            "path": "/a/b",
            "signature": "a{sv}",
            "nested": "deep",
            "dict": {"family": "inet6"},
            "by_number": {7: True},
        }
    ]


def test_firewalld_shapes_are_read_whole_at_thousands_of_entries(bus):
    (answer,) = oracle(bus, "IPSet", "5000")
    version, short, description, kind, options, entries = answer
    assert (version, short, description, kind, options) == ("", "short", "", "hash:net", {"family": "inet"})
    assert len(entries) == 5000 and entries[0] == "10.0.0.0" and entries[-1] == "10.0.19.135"
    assert oracle(bus, "Active") == [{"public": {"interfaces": ["eth0"]}, "empty": {}}]


def test_string_arguments_arrive_as_sent_and_calls_share_one_connection(bus):
    for text in ("", "a", "é ☃ 𝄞", "x" * 70000):
        assert oracle(bus, "Echo", text, "second") == [text, "second", "/org/example/Oracle/1"]
    assert oracle(bus, "Nothing") == []


def test_an_error_reply_is_raised_with_its_name_and_message(bus):
    with pytest.raises(dbus.BusError) as info:
        oracle(bus, "Fail", "INVALID_ZONE: mail")
    assert (info.value.name, info.value.message) == ("org.example.Error.Refused", "INVALID_ZONE: mail")
    with pytest.raises(dbus.BusError) as info:
        oracle(bus, "NoSuchMethod")
    assert info.value.name == "org.freedesktop.DBus.Error.UnknownMethod"


def test_a_name_nobody_owns_is_not_started_and_the_bus_says_so(bus, monkeypatch):
    with pytest.raises(dbus.BusError) as info:
        bus.call("org.example.Nobody", "/", "org.example.Nobody", "Anything")
    assert info.value.name == "org.freedesktop.DBus.Error.NameHasNoOwner"  # NO_AUTO_START's answer
    monkeypatch.setattr(dbus, "NO_AUTO_START", 0)
    with pytest.raises(dbus.BusError) as info:
        bus.call("org.example.Nobody", "/", "org.example.Nobody", "Anything")
    assert info.value.name == "org.freedesktop.DBus.Error.ServiceUnknown"  # the bus would start it, could it
    assert bus.call(*dbus.BUS, "NameHasOwner", "org.example.Nobody") == [False]
    assert bus.call(*dbus.BUS, "NameHasOwner", ORACLE_NAME) == [True]


def test_no_bus_where_the_address_points_is_unreachable(tmp_path, monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/nothing")
    with pytest.raises(dbus.NoBus, match="no system bus at"):
        dbus.SystemBus()


def test_a_bus_that_refuses_our_authentication_is_unreachable(tmp_path, monkeypatch):
    path = str(tmp_path / "socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)

        def refuse():
            connection, _ = server.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"REJECTED EXTERNAL\r\n")

        thread = threading.Thread(target=refuse)
        thread.start()
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={path}")
        with pytest.raises(dbus.Unreachable, match="refused us"):
            dbus.SystemBus()
        thread.join(timeout=10)


class FakeBus:
    """A bus on a unix socket in a temporary directory that authenticates
    anyone and answers each call with ``answer(serial)``: the bytes to send
    (messages that are not the reply may come first)."""

    def __init__(self, path, answer):
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.answer = answer
        self.thread = threading.Thread(target=self.serve)
        self.thread.start()

    def serve(self):
        connection, _ = self.server.accept()
        with connection:
            pending = b""
            while b"BEGIN\r\n" not in pending:
                pending += connection.recv(4096)
                if b"AUTH" in pending and b"OK" not in pending:
                    connection.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
                    pending += b"OK"
            pending = pending.split(b"BEGIN\r\n", 1)[1]
            while True:
                while len(pending) < 16 or len(pending) < dbus.message_sizes(pending[:16])[1]:
                    chunk = connection.recv(1 << 16)
                    if not chunk:
                        return
                    pending += chunk
                size = dbus.message_sizes(pending[:16])[1]
                serial = struct.unpack_from("<I", pending, 8)[0]
                pending = pending[size:]
                try:
                    connection.sendall(reply("s", string(":1.7"), serial) if serial == 1 else self.answer(serial))
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    return

    def close(self):
        self.server.close()
        self.thread.join(timeout=10)


def test_a_message_that_is_not_our_reply_is_dropped_unread_past_its_header(tmp_path, monkeypatch):
    path = str(tmp_path / "socket")
    signal = [
        (dbus.PATH, "o", "/x"),
        (dbus.INTERFACE, "s", "x.y"),
        (dbus.MEMBER, "s", "Z"),
        (dbus.SIGNATURE, "g", "ay"),
    ]
    flood = 16 * 1024 * 1024
    noise = [
        message(dbus.SIGNAL, signal, struct.pack("<I", flood) + b"\1" * flood, serial=50),
        message(dbus.SIGNAL, [(dbus.SIGNATURE, "g", "s")], string("x")[:-1] + b"\xff", serial=51),  # broken body
        reply("s", string("another call's"), to=99),
        message(dbus.SIGNAL, [(77, "ay", struct.pack("<I", dbus.HEADER_MAX) + b"\0" * dbus.HEADER_MAX)], serial=52),
    ]
    bus = FakeBus(path, lambda serial: b"".join(noise) + reply("s", string("ours"), serial))
    read = []
    monkeypatch.setattr(dbus, "read_body", lambda body, fields, order: read.append(len(body)) or ["ours"])
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={path}")
    try:
        with dbus.SystemBus() as connection:
            assert connection.call("org.a", "/", "org.a", "M") == ["ours"]
    finally:
        bus.close()
    assert read == [len(string(":1.7")), len(string("ours"))]  # the replies' bodies only


def test_one_deadline_bounds_every_call_of_a_connection(tmp_path, monkeypatch):
    path = str(tmp_path / "socket")
    bus = FakeBus(path, lambda serial: time.sleep(0.2) or reply("s", string("late"), serial))
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={path}")
    try:
        with dbus.SystemBus(wait=0.5) as connection:
            assert connection.call("org.a", "/", "org.a", "M") == ["late"]  # each call alone is in time
            with pytest.raises(dbus.Unreachable, match="within"):
                for _ in range(3):
                    connection.call("org.a", "/", "org.a", "M")
    finally:
        bus.close()


def test_a_bus_that_stops_answering_fails_the_call_at_its_deadline(tmp_path, monkeypatch):
    path = str(tmp_path / "socket")
    bus = FakeBus(path, lambda serial: message(dbus.SIGNAL, [(dbus.SIGNATURE, "g", "")], serial=60)[:20])
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={path}")
    try:
        with dbus.SystemBus(wait=0.5) as connection:
            with pytest.raises(dbus.Unreachable, match=r"no answer from the system bus within 0\.5 s"):
                connection.call("org.a", "/", "org.a", "M")
    finally:
        bus.close()


# ---------------------------------------------------------------- addresses and messages (pure)


@pytest.mark.parametrize(
    "address, found",
    [
        ("unix:path=/run/dbus/system_bus_socket", ("/run/dbus/system_bus_socket", False)),
        ("unix:abstract=/tmp/dbus-x,guid=0f", ("/tmp/dbus-x", True)),
        ("tcp:host=a,port=1;unix:path=/a%20b%2c", ("/a b,", False)),
    ],
)
def test_the_first_unix_socket_of_an_address_is_used(address, found):
    assert dbus.bus_path(address) == found


@pytest.mark.parametrize(
    "address",
    ["", "tcp:host=localhost,port=1", "unix:tmpdir=/tmp", "unix:path=/a%zz", "unix:path=/a%00b", "unix:path="],
)
def test_an_address_without_a_unix_socket_is_unreachable(address):
    with pytest.raises(dbus.Unreachable):
        dbus.bus_path(address)


def test_a_call_names_its_target_and_carries_no_auto_start():
    data = dbus.method_call(9, ("org.a", "/org/a", "org.a.i"), "m", ["x", "é"])
    kind, fields, body = dbus.read_message(data)
    assert (kind, data[2], struct.unpack_from("<I", data, 8)[0]) == (dbus.METHOD_CALL, dbus.NO_AUTO_START, 9)
    assert fields == {1: "/org/a", 2: "org.a.i", 3: "m", 6: "org.a", 8: "ss"}
    assert body == ["x", "é"]
    with pytest.raises(ValueError):
        dbus.method_call(1, ("org.a", "/", "org.a"), "m", ["a\0b"])


def message(kind, fields, body=b"", serial=1):
    """A message's bytes, built here by the specification: ``fields`` are
    (code, signature, value) with values a str (``s``, ``o``, ``g``), an
    int (``u``) or bytes already marshalled; ``body`` is marshalled."""
    array = b""
    for code, signature, value in fields:
        array += b"\0" * (-len(array) % 8) + bytes([code, len(signature)]) + signature.encode() + b"\0"
        if isinstance(value, bytes):
            array += value
        elif signature == "g":
            array += bytes([len(value)]) + value.encode() + b"\0"
        elif signature == "u":
            array += b"\0" * (-(16 + len(array)) % 4) + struct.pack("<I", value)
        else:
            array += b"\0" * (-(16 + len(array)) % 4) + struct.pack("<I", len(value.encode())) + value.encode() + b"\0"
    head = dbus.FIXED.pack(ord("l"), kind, 0, 1, len(body), serial, len(array))
    return head + array + b"\0" * (-len(array) % 8) + body


def reply(signature, body, to=1):
    """A METHOD_RETURN to ``to`` with ``body`` of ``signature``."""
    return message(dbus.METHOD_RETURN, [(dbus.REPLY_SERIAL, "u", to), (dbus.SIGNATURE, "g", signature)], body)


def string(text):
    return struct.pack("<I", len(text.encode())) + text.encode() + b"\0"


SETTINGS_REPLY = reply("as", struct.pack("<I", 13) + string("ssh") + string(""))


def test_a_reply_built_by_hand_reads_back():
    assert dbus.read_message(SETTINGS_REPLY) == (dbus.METHOD_RETURN, {5: 1, 8: "as"}, [["ssh", ""]])
    assert dbus.message_sizes(SETTINGS_REPLY[:16]) == (32, len(SETTINGS_REPLY))


@pytest.mark.parametrize(
    "field", [(dbus.REPLY_SERIAL, "b", struct.pack("<I", 1)), (dbus.SIGNATURE, "s", string("as")), (5, "uu", b"\0" * 8)]
)
def test_a_header_field_of_another_type_than_the_specification_gives_is_refused(field):
    with pytest.raises(dbus.BrokenMessage, match="header field"):
        dbus.read_message(message(dbus.METHOD_RETURN, [field]))


@pytest.mark.parametrize(
    "signature, body, why",
    [
        ("s", struct.pack("<I", 3) + b"abc", "past the end"),  # no NUL
        ("s", struct.pack("<I", 3) + b"a\0c\0", "NUL"),
        ("s", struct.pack("<I", 2) + b"\xff\xfe\0", "UTF-8"),
        ("b", struct.pack("<I", 2), "boolean"),
        ("as", struct.pack("<I", 2**31), "bytes"),
        ("as", struct.pack("<I", 100) + b"\0" * 8, "past the end"),
        ("v", b"\x01v\0" * 100 + b"\x01y\0\x05", "deep"),
        ("v", b"\x02ss\0", "one complete type"),
        ("ys", b"\x05\x01\0\0" + struct.pack("<I", 0) + b"\0", "padding"),
        ("y", b"\x05\x06", "another length"),
    ],
)
def test_a_broken_reply_is_refused_by_name(signature, body, why):
    with pytest.raises(dbus.BrokenMessage, match=why):
        dbus.read_message(reply(signature, body))


@pytest.mark.parametrize(
    "signature", ["a" * 70 + "s", "(" * 70 + "s" + ")" * 70, "a{vs}", "a{s}", "()", "(s", "z", "a"]
)
def test_a_signature_out_of_the_specification_is_refused(signature):
    with pytest.raises(dbus.BrokenMessage):
        dbus.parse_signature(signature)


def test_a_message_larger_than_the_specification_allows_is_refused_before_it_is_read():
    head = dbus.FIXED.pack(ord("l"), dbus.METHOD_RETURN, 0, 1, dbus.MESSAGE_MAX, 1, 0)
    with pytest.raises(dbus.BrokenMessage, match="bytes"):
        dbus.message_sizes(head)


def read_or_refuse(data):
    """read_message's value, or None when it refused the bytes as broken."""
    try:
        return dbus.read_message(data)
    except dbus.BrokenMessage:
        return None


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_corruption_of_a_reply_ends_in_a_value_or_a_broken_message(data):
    message = bytearray(SETTINGS_REPLY)
    for _ in range(data.draw(st.integers(1, 4))):
        message[data.draw(st.integers(0, len(message) - 1))] = data.draw(st.integers(0, 255))
    outcome = read_or_refuse(bytes(message[: data.draw(st.integers(0, len(message)))]))
    assert outcome is None or (type(outcome[1]) is dict and type(outcome[2]) is list)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_end_in_a_value_or_a_broken_message(data):
    outcome = read_or_refuse(data)
    assert outcome is None or (type(outcome[1]) is dict and type(outcome[2]) is list)
