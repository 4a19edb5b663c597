"""TCP listeners and probes, run inside the harness's own namespaces.

``python probe.py listen PORT...`` binds every port on 0.0.0.0 and ::,
prints ``ready`` and accepts (and closes) connections until killed.

``python probe.py connect ADDRESS TIMEOUT PORT...`` tries each port once, all
at once, each bounded by TIMEOUT seconds, and prints a JSON object
``{port: true|false}``.
"""

import asyncio
import json
import selectors
import socket
import sys


def listen(ports):
    selector = selectors.DefaultSelector()
    for port in ports:
        for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
            sock.listen(16)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            try:
                conn, _ = key.fileobj.accept()
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


async def _connect_all(address, timeout, ports):
    results = await asyncio.gather(*(_try(address, port, timeout) for port in ports))
    return dict(zip(ports, results, strict=True))


def main(argv):
    if argv[0] == "listen":
        listen([int(p) for p in argv[1:]])
    elif argv[0] == "connect":
        address, timeout = argv[1], float(argv[2])
        ports = [int(p) for p in argv[3:]]
        print(json.dumps(asyncio.run(_connect_all(address, timeout, ports))))
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
