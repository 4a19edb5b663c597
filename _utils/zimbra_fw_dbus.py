"""
A D-Bus client for method calls, in this process: the system bus's unix
socket, EXTERNAL authentication, messages marshalled and read here.
zimbra_fw reads and changes firewalld with it (zimbra_fw_firewalld_read,
zimbra_fw_firewalld_client) without starting a process or loading
dbus-python, which Salt's Python may not have.

* ``SystemBus()``: a connection (a context manager); ``call(destination,
  path, interface, member, *args, signature=None)`` sends ``args`` of
  ``signature`` (all strings without one: lists or tuples for arrays and
  structs, dicts for dicts, ``Variant(signature, value)`` for a variant)
  and returns the reply's values: strings, numbers and bools as such,
  arrays as lists, dicts as dicts, structs as tuples, variants as their
  value. An error reply raises ``BusError``; an argument its type cannot
  hold, ValueError, before anything is sent.
* ``Unreachable``: the bus cannot be talked to (``NoBus``: none listens
  where the address points); ``BrokenMessage``: a reply not in D-Bus's
  wire format. All are ``DBusFailure``, as ``BusError`` is.
* ``method_call`` builds a message; ``message_sizes``, ``read_header``,
  ``read_body`` (and ``read_message``, all three) read one: pure. A
  message that is not the reply awaited is dropped past its header.

Calls carry NO_AUTO_START: no call starts a service.
"""

import itertools
import os
import re
import socket
import struct
import time
from collections import namedtuple


def __virtual__():
    return (False, "zimbra_fw_dbus is a library of the zimbra_fw module, not a Salt util")


DEFAULT_ADDRESS = "unix:path=/run/dbus/system_bus_socket"
BUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
REPLY_WAIT = 25.0  # seconds for a connection's calls, libdbus's default for one
MESSAGE_MAX = 128 * 1024 * 1024  # the specification's limit
HEADER_MAX = 64 * 1024  # a reply's header is a few hundred bytes; a larger one is not read
# A signature nests at most 32 arrays, 32 structs and 32 dict entries deep;
# a value, variants included, at most 64 containers deep, a dict's array and
# entry counting two (as libdbus checks).
SIGNATURE_NESTING_MAX = 32
NESTING_MAX = 64
METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
NO_AUTO_START = 0x2
PATH, INTERFACE, MEMBER, ERROR_NAME, REPLY_SERIAL, DESTINATION, SENDER, SIGNATURE, UNIX_FDS = range(1, 10)
FIELD_TYPES = {PATH: "o", INTERFACE: "s", MEMBER: "s", ERROR_NAME: "s", REPLY_SERIAL: "u", DESTINATION: "s"}
FIELD_TYPES.update({SENDER: "s", SIGNATURE: "g", UNIX_FDS: "u"})
FIXED = struct.Struct("<4BIII")  # endianness, type, flags, version, body length, serial, fields' length
ALIGNMENT = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8, "h": 4}
ALIGNMENT.update({"s": 4, "o": 4, "g": 1, "v": 1, "a": 4, "(": 8, "{": 8})
NUMBERS = {"y": "B", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d", "h": "I"}
BASIC = {*NUMBERS, "b", "s", "o", "g"}  # the types a dict's key may have


class DBusFailure(Exception):
    """Talking to the bus failed."""


class Unreachable(DBusFailure):
    """The system bus cannot be talked to: none there, or it refused us,
    closed the connection or did not answer in time."""


class NoBus(Unreachable):
    """No bus listens where the address points."""


class BrokenMessage(DBusFailure):
    """A message not in D-Bus's wire format."""


class BusError(DBusFailure):
    """An error reply: its D-Bus error name and message."""

    def __init__(self, name, message):
        super().__init__(f"{name}: {message}" if message else name)
        self.name, self.message = name, message


# ---------------------------------------------------------------- signatures


def parse_signature(signature):
    """A signature as a list of complete types: a letter, ``("a", TYPE)``
    (an array; a dict's TYPE is ``("{", KEY, VALUE)``) or ``("(", [TYPE,
    ...])``."""
    types, index = [], 0
    while index < len(signature):
        parsed, index = _complete_type(signature, index, "")
        types.append(parsed)
    return types


def _inside(signature, opened, codes):
    """``opened`` (the codes of the containers a type is in) and ``codes``,
    or BrokenMessage when that nests one kind of container too deep."""
    inside = opened + codes
    if any(inside.count(code) > SIGNATURE_NESTING_MAX for code in codes):
        raise BrokenMessage(f"signature {signature!r} nests too deep")
    return inside


def _complete_type(signature, index, opened):
    code = signature[index : index + 1]
    if code in ALIGNMENT and code not in "a({":
        return code, index + 1
    if code == "a" and signature[index + 1 : index + 2] == "{":
        inside = _inside(signature, opened, "a{")
        key, after = _complete_type(signature, index + 2, inside)
        value, after = _complete_type(signature, after, inside)
        if not (isinstance(key, str) and key in BASIC) or signature[after : after + 1] != "}":
            raise BrokenMessage(f"signature {signature!r}: a dict entry is a basic key and one value")
        return ("a", ("{", key, value)), after + 1
    if code == "a":
        element, after = _complete_type(signature, index + 1, _inside(signature, opened, "a"))
        return ("a", element), after
    if code == "(":
        inside = _inside(signature, opened, "(")
        members, after = [], index + 1
        while signature[after : after + 1] not in (")", ""):
            member, after = _complete_type(signature, after, inside)
            members.append(member)
        if not members or signature[after : after + 1] != ")":
            raise BrokenMessage(f"signature {signature!r}: an empty or open struct")
        return ("(", members), after + 1
    raise BrokenMessage(f"signature {signature!r}: unknown type at {index}")


def _alignment(kind):
    return ALIGNMENT[kind if isinstance(kind, str) else kind[0]]


# ---------------------------------------------------------------- reading


class _Reader:
    """Values read from a message's bytes; offsets count from the message's
    start, which alignment is relative to."""

    def __init__(self, data, order):
        self.data, self.order, self.offset = data, order, 0

    def _take(self, size):
        end = self.offset + size
        if end > len(self.data):
            raise BrokenMessage("a value runs past the end of the message")
        chunk, self.offset = self.data[self.offset : end], end
        return chunk

    def align(self, boundary):
        padding = -self.offset % boundary
        if any(self._take(padding)):
            raise BrokenMessage("padding that is not zero")

    def number(self, code):
        self.align(ALIGNMENT[code])
        fmt = self.order + NUMBERS[code]
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def text(self, length):
        raw = self._take(length + 1)
        if raw[-1] != 0 or 0 in raw[:-1]:
            raise BrokenMessage("a string that is not ended by, or holds, a NUL")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BrokenMessage("a string that is not UTF-8") from exc

    def value(self, kind, depth=0):
        if depth > NESTING_MAX:
            raise BrokenMessage("values nested too deep")
        if isinstance(kind, tuple):
            return self._container(kind, depth)
        if kind in ("s", "o"):
            return self.text(self.number("u"))
        if kind == "g":
            return self.text(self.number("y"))
        if kind == "b":
            flag = self.number("u")
            if flag > 1:
                raise BrokenMessage(f"a boolean of {flag}")
            return bool(flag)
        if kind == "v":
            inner = parse_signature(self.text(self.number("y")))
            if len(inner) != 1:
                raise BrokenMessage("a variant that is not one complete type")
            return self.value(inner[0], depth + 1)
        return self.number(kind)

    def _container(self, kind, depth):
        if kind[0] == "(":
            self.align(8)
            return tuple(self.value(member, depth + 1) for member in kind[1])
        length = self.number("u")
        if length > MESSAGE_MAX // 2:
            raise BrokenMessage(f"an array of {length} bytes")
        element = kind[1]
        self.align(_alignment(element))
        end = self.offset + length
        if end > len(self.data):
            raise BrokenMessage("an array runs past the end of the message")
        if element in ("s", "o"):
            return self._strings(end)
        items = []
        while self.offset < end:
            if element[0] == "{":
                self.align(8)
                inside = depth + 2  # the array, then the dict entry (as libdbus counts)
                items.append((self.value(element[1], inside), self.value(element[2], inside)))
            else:
                items.append(self.value(element, depth + 1))
        if self.offset != end:
            raise BrokenMessage("an array's elements overrun its length")
        return dict(items) if element[0] == "{" else items

    def _strings(self, end):
        """An array's strings up to ``end``: ``value`` inlined (an ipset's
        thousands of entries)."""
        data, offset, items = self.data, self.offset, []
        length_at = struct.Struct(self.order + "I").unpack_from
        while offset < end:
            padding = -offset % 4
            if any(data[offset : offset + padding]):
                raise BrokenMessage("padding that is not zero")
            offset += padding
            if offset + 4 > end:
                raise BrokenMessage("an array's elements overrun its length")
            start = offset + 4
            stop = start + length_at(data, offset)[0]
            if stop >= end or data[stop] != 0:
                raise BrokenMessage("a string that is not ended by a NUL within its array")
            raw = data[start:stop]
            if 0 in raw:
                raise BrokenMessage("a string that is not ended by, or holds, a NUL")
            try:
                items.append(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise BrokenMessage("a string that is not UTF-8") from exc
            offset = stop + 1  # at most end: each string ends before it
        self.offset = offset
        return items


def _byte_order(data):
    """struct's byte order of the message ``data`` starts: its first byte says."""
    if data[0:1] == b"l":
        return "<"
    if data[0:1] == b"B":
        return ">"
    raise BrokenMessage("not a D-Bus message")


def message_sizes(head):
    """(header size, whole size) of the message whose first 16 bytes are
    ``head``; its body starts at the header's size, a multiple of 8."""
    if len(head) < FIXED.size:
        raise BrokenMessage("not a D-Bus message")
    order = _byte_order(head)
    body_length, _serial, fields_length = struct.unpack(order + "III", head[4:16])
    header = FIXED.size + fields_length + (-fields_length % 8)
    if header + body_length > MESSAGE_MAX:
        raise BrokenMessage(f"a message of {header + body_length} bytes")
    return header, header + body_length


def read_header(header):
    """(type, header fields) of a message's header bytes (message_sizes'
    first size), each known field of the type the specification gives it."""
    reader = _Reader(header, _byte_order(header))
    reader.offset = 12
    end = reader.number("u") + FIXED.size
    fields = {}
    while reader.offset < end:
        reader.align(8)
        code, signature = reader.number("y"), reader.text(reader.number("y"))
        kinds = parse_signature(signature)
        if len(kinds) != 1 or FIELD_TYPES.get(code, signature) != signature:
            raise BrokenMessage(f"a header field {code} of type {signature!r}")
        fields[code] = reader.value(kinds[0], 1)
    if reader.offset != end:
        raise BrokenMessage("header fields that overrun their length")
    reader.align(8)
    if reader.offset != len(header):
        raise BrokenMessage("a header of another length than it says")
    return header[1], fields


def read_body(body, fields, order="<"):
    """The values of a message's body bytes, of its SIGNATURE field's types."""
    reader = _Reader(body, order)
    values = [reader.value(kind) for kind in parse_signature(fields.get(SIGNATURE, ""))]
    if reader.offset != len(body):
        raise BrokenMessage("a body of another length than its header says")
    return values


def read_message(data):
    """(type, header fields, body values) of one whole message's bytes."""
    header_size, size = message_sizes(data[: FIXED.size])
    if size != len(data):
        raise BrokenMessage("a message of another length than its header says")
    kind, fields = read_header(data[:header_size])
    return kind, fields, read_body(data[header_size:], fields, _byte_order(data))


# ---------------------------------------------------------------- writing


class Variant(namedtuple("Variant", "signature value")):
    """A value to marshal as a variant: ``value`` of ``signature`` (one complete type)."""


OBJECT_PATH = re.compile(r"/|(/[A-Za-z0-9_]+)+")
_ELEMENT, _BUS_ELEMENT = r"[A-Za-z_][A-Za-z0-9_]*", r"[A-Za-z_-][A-Za-z0-9_-]*"
NAMES = {  # the specification's names, each at most 255 bytes
    "member": re.compile(_ELEMENT),
    "interface": re.compile(rf"{_ELEMENT}(\.{_ELEMENT})+"),
    "destination": re.compile(rf":[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+|{_BUS_ELEMENT}(\.{_BUS_ELEMENT})+"),
}
ARRAY_MAX = 64 * 1024 * 1024  # the specification's limit of an array's bytes
HEADER = parse_signature("yyyyuua(yv)")  # a message's header as values


class _Writer:
    """Values marshalled little-endian, each checked against its type: a
    value that does not fit raises ValueError. Offsets count from the start
    of the message, or of its body (8-aligned in the message)."""

    def __init__(self):
        self.data = bytearray()

    def align(self, boundary):
        self.data += bytes(-len(self.data) % boundary)

    def value(self, kind, item, depth=0):
        if depth > NESTING_MAX:
            raise ValueError("values nested too deep")
        if isinstance(kind, tuple):
            self._container(kind, item, depth)
        elif kind in ("s", "o", "g"):
            self._text(kind, item)
        elif kind == "v":
            if not isinstance(item, Variant):
                raise ValueError(f"a variant's value is not a Variant: {item!r:.80}")
            inner = _signature_types(item.signature)
            if len(inner) != 1:
                raise ValueError(f"a variant's signature is not one complete type: {item.signature!r}")
            self._text("g", item.signature)
            self.value(inner[0], item.value, depth + 1)
        elif kind == "h":
            raise ValueError("a unix file descriptor is not sent")
        elif kind == "b":
            if not isinstance(item, bool):
                raise ValueError(f"not a boolean: {item!r:.80}")
            self.number("u", int(item))
        else:
            self.number(kind, item)

    def number(self, code, item):
        if isinstance(item, bool) or not isinstance(item, float if code == "d" else int):
            raise ValueError(f"not a D-Bus {code!r}: {item!r:.80}")
        self.align(ALIGNMENT[code])
        try:
            self.data += struct.pack("<" + NUMBERS[code], item)
        except struct.error as exc:
            raise ValueError(f"out of range of a D-Bus {code!r}: {item!r}") from exc

    def _text(self, kind, text):
        if not isinstance(text, str):
            raise ValueError(f"not a D-Bus string: {text!r:.80}")
        if "\0" in text:
            raise ValueError(f"a D-Bus string cannot hold a NUL: {text!r}")
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"a D-Bus string is UTF-8: {text!r:.80}") from exc
        if kind == "o" and not OBJECT_PATH.fullmatch(text):
            raise ValueError(f"not a D-Bus object path: {text!r:.80}")
        if kind == "g":
            _signature_types(text)
            self.data += struct.pack("<B", len(raw))
        else:
            self.number("u", len(raw))
        self.data += raw + b"\0"

    def _container(self, kind, item, depth):
        if kind[0] == "(":
            if not isinstance(item, (tuple, list)) or len(item) != len(kind[1]):
                raise ValueError(f"not a struct of {len(kind[1])}: {item!r:.80}")
            self.align(8)
            for member, value in zip(kind[1], item, strict=True):
                self.value(member, value, depth + 1)
            return
        element = kind[1]
        entries = isinstance(element, tuple) and element[0] == "{"
        if not isinstance(item, dict if entries else (list, tuple)):
            raise ValueError(f"not a D-Bus {'dict' if entries else 'array'}: {item!r:.80}")
        self.number("u", 0)
        length_at = len(self.data) - 4
        self.align(_alignment(element))
        start = len(self.data)
        for value in item.items() if entries else item:
            if entries:
                self.align(8)
                self.value(element[1], value[0], depth + 2)  # the array, then the dict entry
                self.value(element[2], value[1], depth + 2)
            else:
                self.value(element, value, depth + 1)
        length = len(self.data) - start
        if length > ARRAY_MAX:
            raise ValueError(f"an array of {length} bytes")
        struct.pack_into("<I", self.data, length_at, length)


def _signature_types(signature):
    """``parse_signature`` of a signature this process sends: ValueError when it is not one."""
    if not isinstance(signature, str):
        raise ValueError(f"not a D-Bus signature: {signature!r:.80}")
    if len(signature.encode("utf-8")) > 255:
        raise ValueError(f"a signature longer than 255 bytes: {signature!r:.80}")
    try:
        return parse_signature(signature)
    except BrokenMessage as exc:
        raise ValueError(str(exc)) from exc


def method_call(serial, target, member, args=(), signature=None):
    """A METHOD_CALL message's bytes: ``member`` of ``target`` (destination,
    object path, interface or None) with ``args`` of ``signature`` (by
    default all strings). Raises ValueError for a value that its type cannot hold."""
    destination, path, interface = target
    for kind, name in (("destination", destination), ("interface", interface), ("member", member)):
        if (name is not None or kind != "interface") and not (
            isinstance(name, str) and len(name) <= 255 and NAMES[kind].fullmatch(name)
        ):
            raise ValueError(f"not a D-Bus {kind} name: {name!r:.80}")
    signature = "s" * len(args) if signature is None else signature
    kinds = _signature_types(signature)
    if len(kinds) != len(args):
        raise ValueError(f"{len(args)} arguments for the signature {signature!r}")
    body = _Writer()
    for kind, value in zip(kinds, args, strict=True):
        body.value(kind, value)
    fields = [(PATH, Variant("o", path)), (MEMBER, Variant("s", member)), (DESTINATION, Variant("s", destination))]
    if interface:
        fields.append((INTERFACE, Variant("s", interface)))
    if args:
        fields.append((SIGNATURE, Variant("g", signature)))
    head = _Writer()
    header = (ord("l"), METHOD_CALL, NO_AUTO_START, 1, len(body.data), serial, fields)
    for kind, value in zip(HEADER, header, strict=True):
        head.value(kind, value)
    head.align(8)
    if len(head.data) + len(body.data) > MESSAGE_MAX:
        raise ValueError(f"a message of {len(head.data) + len(body.data)} bytes")
    return bytes(head.data + body.data)


# ---------------------------------------------------------------- the connection


def bus_path(address):
    """The socket of the first unix address in a D-Bus address list: (path,
    abstract or not), or raise Unreachable."""
    for entry in address.split(";"):
        transport, _, options = entry.partition(":")
        if transport != "unix":
            continue
        values = dict(option.partition("=")[::2] for option in options.split(",") if option)
        for key, abstract in (("path", False), ("abstract", True)):
            if key in values:
                return _unescape(values[key]), abstract
    raise Unreachable(f"the system bus address {address!r} names no unix socket")


def _unescape(value):
    parts = value.split("%")
    try:
        raw = parts[0].encode() + b"".join(bytes([int(part[:2], 16)]) + part[2:].encode() for part in parts[1:])
    except ValueError as exc:
        raise Unreachable(f"a bus address with a bad escape: {value!r}") from exc
    if b"\0" in raw or not raw:
        raise Unreachable(f"a bus address with an empty path or a NUL: {value!r}")
    return os.fsdecode(raw)


class SystemBus:
    """A connection to the system bus (DBUS_SYSTEM_BUS_ADDRESS, else its
    usual socket), authenticated as this process's user, for the calls of
    one task: ``wait`` bounds the whole of it, from connecting to the last
    reply."""

    def __init__(self, wait=REPLY_WAIT):
        path, abstract = bus_path(os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_ADDRESS)
        self.wait, self._serials, self._pending, self.sock = wait, itertools.count(1), bytearray(), None
        self.deadline = time.monotonic() + wait
        try:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(wait)
            try:
                self.sock.connect("\0" + path if abstract else path)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise NoBus(f"no system bus at {path}: {exc}") from exc
            self._authenticate()
            self.call(*BUS, "Hello")
        except OSError as exc:
            self.close()
            raise Unreachable(f"cannot talk to the system bus at {path}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _authenticate(self):
        uid = str(os.geteuid()).encode().hex()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\n")
        answer = self._line()
        if not answer.startswith(b"OK "):
            raise Unreachable(f"the system bus refused us: {answer[:80]!r}")
        self.sock.sendall(b"BEGIN\r\n")

    def _line(self):
        while b"\r\n" not in self._pending:
            if len(self._pending) > 4096:
                raise Unreachable("the system bus's answer to our authentication is too long")
            self._wait_until()
        line, _, rest = bytes(self._pending).partition(b"\r\n")
        self._pending = bytearray(rest)
        return line

    def _receive(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise Unreachable("the system bus closed the connection")
        self._pending += chunk

    def _reply(self, serial):
        """(type, header fields, body values) of the reply to ``serial``. Any
        other message (a signal anyone on the bus may send us) is dropped
        unread past its header: its body costs no more than its bytes."""
        while True:
            self._fill(FIXED.size)
            header_size, size = message_sizes(bytes(self._pending[: FIXED.size]))
            if header_size <= HEADER_MAX:
                self._fill(header_size)
                kind, fields = read_header(bytes(self._pending[:header_size]))
                if kind in (METHOD_RETURN, ERROR) and fields.get(REPLY_SERIAL) == serial:
                    self._fill(size)
                    order = _byte_order(self._pending)
                    body = bytes(self._pending[header_size:size])
                    del self._pending[:size]
                    return kind, fields, read_body(body, fields, order)
            self._drop(size)

    def _fill(self, size):
        while len(self._pending) < size:
            self._wait_until()

    def _drop(self, size):
        while size > 0:
            if not self._pending:
                self._wait_until()
            dropped = min(size, len(self._pending))
            del self._pending[:dropped]
            size -= dropped

    def _wait_until(self):
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            self._receive()
        except TimeoutError as exc:
            raise Unreachable(f"no answer from the system bus within {self.wait:g} s") from exc

    def call(self, destination, path, interface, member, *args, signature=None):
        """The reply's values (a list) of one method call with ``args`` of
        ``signature`` (by default all strings)."""
        serial = next(self._serials)
        message = method_call(serial, (destination, path, interface), member, args, signature)
        try:
            self.sock.sendall(message)
            kind, fields, body = self._reply(serial)
        except OSError as exc:
            raise Unreachable(f"the system bus connection failed: {exc}") from exc
        if kind == ERROR:
            text = body[0] if body and isinstance(body[0], str) else ""
            raise BusError(fields.get(ERROR_NAME, "an error"), text)
        return body

    def close(self):
        if self.sock is not None:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
