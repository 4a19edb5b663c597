"""TCP and UDP listeners and probes, run inside the harness's own namespaces.

A PORT is ``25`` (TCP) or ``514/udp``.

``python probe.py listen PORT...`` binds every port on 0.0.0.0 and ::,
prints ``ready``, accepts (and closes) TCP connections and echoes UDP
datagrams until killed.

``python probe.py listen --hold PORT...`` does the same but keeps each TCP
connection open (an ssh server's sessions) until killed.

``python probe.py session ADDRESS PORT`` opens one TCP connection, prints
``connected`` and holds it until stdin closes (an admin's ssh session).

``python probe.py connect ADDRESS TIMEOUT PORT...`` tries each port once, all
at once, each bounded by TIMEOUT seconds (TCP: a connection; UDP: one
datagram and its echo), and prints a JSON object ``{port: true|false}``.

``python probe.py repeat ADDRESS TIMEOUT PORT COUNT`` connects COUNT times
(at most 20), one after another, and prints the JSON list of outcomes.

``python probe.py watch ADDRESS TIMEOUT PORT SECONDS`` connects to one TCP
port again and again, every 20 ms or after TIMEOUT, until stdin closes or
SECONDS (at most 300) pass; it prints ``watching`` after the first try and,
at the end, ``{"open": [...], "closed": [...]}``: when each try started.
"""

import asyncio
import json
import selectors
import socket
import sys
import threading
import time

PAYLOAD = b"zimbra_fw probe"


def _port(text):
    """(number, is UDP) from ``25`` or ``514/udp``."""
    number, _, proto = text.partition("/")
    return int(number), proto == "udp"


def listen(ports, hold=False):
    held = []
    selector = selectors.DefaultSelector()
    for port, udp in map(_port, ports):
        for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
            if not udp:
                sock.listen(16)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, udp)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            try:
                if key.data:  # UDP: echo
                    data, peer = key.fileobj.recvfrom(512)
                    key.fileobj.sendto(data, peer)
                else:
                    conn, _ = key.fileobj.accept()
                    if hold and len(held) < 64:
                        held.append(conn)
                    else:
                        conn.close()
            except OSError:
                pass


async def _try(address, port, timeout):
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def _try_udp(address, port, timeout):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    loop = asyncio.get_running_loop()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (address, port))
            await loop.sock_sendall(sock, PAYLOAD)
            return await asyncio.wait_for(loop.sock_recv(sock, 512), timeout) == PAYLOAD
        except (OSError, TimeoutError):
            return False


async def _connect_all(address, timeout, ports):
    tries = []
    for port, udp in map(_port, ports):
        tries.append((_try_udp if udp else _try)(address, port, timeout))
    results = await asyncio.gather(*tries)
    return dict(zip(ports, results, strict=True))


def watch(address, timeout, port, seconds):
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    outcomes = {"open": [], "closed": []}
    deadline = time.monotonic() + min(seconds, 300)
    while not stop.is_set() and time.monotonic() < deadline:
        started = time.time()
        outcomes["open" if asyncio.run(_try(address, port, timeout)) else "closed"].append(started)
        if len(outcomes["open"]) + len(outcomes["closed"]) == 1:
            print("watching", flush=True)
        stop.wait(0.02)
    print(json.dumps(outcomes), flush=True)


def session(address, port):
    with socket.create_connection((address, port), timeout=5):
        print("connected", flush=True)
        sys.stdin.read()


def main(argv):
    if argv[0] == "listen":
        hold = argv[1:2] == ["--hold"]
        listen(argv[2:] if hold else argv[1:], hold)
    elif argv[0] == "session":
        session(argv[1], int(argv[2]))
    elif argv[0] == "repeat":
        address, timeout, port, count = argv[1], float(argv[2]), int(argv[3]), min(int(argv[4]), 20)
        print(json.dumps([asyncio.run(_try(address, port, timeout)) for _ in range(count)]))
    elif argv[0] == "watch":
        watch(argv[1], float(argv[2]), int(argv[3]), float(argv[4]))
    elif argv[0] == "connect":
        address, timeout = argv[1], float(argv[2])
        print(json.dumps(asyncio.run(_connect_all(address, timeout, argv[3:]))))
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
