"""
A D-Bus client for method calls with string arguments, in this process:
the system bus's unix socket, EXTERNAL authentication, messages marshalled
and read here. zimbra_fw reads firewalld with it (zimbra_fw_firewalld_read)
without starting a process or loading dbus-python, which Salt's Python may
not have; changes still go through the helper (zimbra_fw_firewalld_client).

* ``SystemBus()``: a connection (a context manager); ``call(destination,
  path, interface, member, *strings)`` returns the reply's values: strings,
  numbers and bools as such, arrays as lists, dicts as dicts, structs as
  tuples, variants as their value. An error reply raises ``BusError``.
* ``Unreachable``: the bus cannot be talked to (``NoBus``: none listens
  where the address points); ``BrokenMessage``: a reply not in D-Bus's
  wire format. All are ``DBusFailure``, as ``BusError`` is.
* ``method_call`` builds a message; ``message_sizes``, ``read_header``,
  ``read_body`` (and ``read_message``, all three) read one: pure. A
  message that is not the reply awaited is dropped past its header.

Calls carry NO_AUTO_START: reading never starts a service.
"""

import itertools
import os
import socket
import struct
import time


def __virtual__():
    return (False, "zimbra_fw_dbus is a library of the zimbra_fw module, not a Salt util")


DEFAULT_ADDRESS = "unix:path=/run/dbus/system_bus_socket"
BUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
REPLY_WAIT = 25.0  # seconds for a connection's calls, libdbus's default for one
MESSAGE_MAX = 128 * 1024 * 1024  # the specification's limit
HEADER_MAX = 64 * 1024  # a reply's header is a few hundred bytes; a larger one is not read
# A signature nests at most 32 arrays, 32 structs and 32 dict entries deep;
# a value, variants included, at most 64 containers deep (as libdbus checks).
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
                items.append((self.value(element[1], depth + 1), self.value(element[2], depth + 1)))
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


def _string(offset, text, length_code="u"):
    """``text`` marshalled to go at ``offset``, padding first; its length is
    a ``u`` (a string or object path) or a ``y`` (a signature)."""
    raw = text.encode("utf-8")
    if "\0" in text:
        raise ValueError(f"a D-Bus string cannot hold a NUL: {text!r}")
    size = struct.pack("<B", len(raw)) if length_code == "y" else struct.pack("<I", len(raw))
    padding = b"\0" * (-offset % ALIGNMENT[length_code])
    return padding + size + raw + b"\0"


def method_call(serial, target, member, strings):
    """A METHOD_CALL message's bytes: ``member`` of ``target`` (destination,
    object path, interface or None), its arguments all strings."""
    destination, path, interface = target
    body = b""
    for text in strings:
        body += _string(len(body), text)
    fields = [(PATH, "o", path), (MEMBER, "s", member), (DESTINATION, "s", destination)]
    if interface:
        fields.append((INTERFACE, "s", interface))
    if strings:
        fields.append((SIGNATURE, "g", "s" * len(strings)))
    array = b""
    for code, kind, text in fields:
        array += b"\0" * (-(FIXED.size + len(array)) % 8) + bytes([code])
        array += _string(0, kind, "y")
        array += _string(FIXED.size + len(array), text, "y" if kind == "g" else "u")
    head = FIXED.pack(ord("l"), METHOD_CALL, NO_AUTO_START, 1, len(body), serial, len(array))
    return head + array + b"\0" * (-len(array) % 8) + body


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

    def call(self, destination, path, interface, member, *strings):
        """The reply's values (a list) of one method call."""
        serial = next(self._serials)
        message = method_call(serial, (destination, path, interface), member, strings)
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
