"""Demo: apply pillar.example to a sandboxed minion and show what it did.

Run with ``make demo`` (every backend, one after the other) or ``make demo
BACKEND=ufw`` / ``BACKEND=firewalld`` / ``BACKEND=nftables``. Prints the state result,
``zimbra_fw.open_ports``, the firewall's own view (``ufw status verbose``,
or ``firewall-cmd --list-all`` and the ``zimbra`` service) and a
reachability table measured with real TCP connections from a trusted-LAN
client and an internet client. Everything happens in network namespaces
this run creates and deletes.
"""

import argparse
import os
import sys

import yaml

from harness.sandbox import REPO, Lab

SSH_PORT = 22

SHOWN_PORTS = [
    22, 25, 80, 110, 143, 443, 465, 587, 993, 995, 3443, 5222, 5223, 7071, 9071,
    389, 636, 7025, 7072, 8080, 8443, 11211, 3310, 7171, 7306, 10024, 10032,
]  # fmt: skip


def section(title):
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)))


def expected_exposure(open_ports, port):
    if port == SSH_PORT:
        return "management"  # pillar.example: ssh from any
    for exposure in ("public", "cluster", "localhost"):
        if f"{port}/tcp" in open_ports[exposure]:
            return exposure
    return "no role here"


def reachability_table(lab, open_ports):
    lab.minion.listen(SHOWN_PORTS)
    from_lan = lab.lan.probe(lab.MINION_LAN, SHOWN_PORTS)
    from_internet = lab.internet.probe(lab.MINION_INTERNET, SHOWN_PORTS)
    print(f"{'port':>6}  {'exposure':<12} {'from LAN':<9} {'from internet':<13} verdict")
    failures = 0
    for port in SHOWN_PORTS:
        exposure = expected_exposure(open_ports, port)
        should_be_public = exposure in ("public", "management")
        ok = from_lan[port] and from_internet[port] == should_be_public
        failures += not ok
        print(
            f"{port:>6}  {exposure:<12} {'open' if from_lan[port] else 'closed':<9} "
            f"{'open' if from_internet[port] else 'closed':<13} {'ok' if ok else 'UNEXPECTED'}"
        )
    return failures


VIEWS = {
    "ufw": "ufw status verbose",
    "firewalld": "firewall-cmd --list-all; --info-service zimbra",
    "nftables": "nft list table inet zimbra_fw",
}
PRIVATE = {
    "ufw": "/etc/ufw",
    "firewalld": "/etc/firewalld and its own firewalld and system bus",
    "nftables": "/etc (nftables.conf, nftables.d) and the namespace's own ruleset",
}


def firewall_view(minion, backend):
    if backend == "nftables":
        return minion.nft("list", "table", "inet", "zimbra_fw").stdout
    if backend == "ufw":
        return minion.ufw("status", "verbose").stdout
    zone = minion.guarded(["firewall-cmd", "--list-all"]).stdout
    return zone + "\n" + minion.guarded(["firewall-cmd", "--info-service", "zimbra"]).stdout


def demo(pillar, backend):
    with Lab(firewalld=backend == "firewalld", nftables=backend == "nftables") as lab:
        minion = lab.minion
        minion.set_pillar(dict(pillar, backend=backend))
        private = PRIVATE[backend]
        print(f"Sandboxed minion: network namespace {minion.name} with a private {private}")
        print(f"Trusted LAN client {lab.lan.name} (192.168.1.10), internet client {lab.internet.name} (203.0.113.10)")
        minion.sync()
        section(f"salt-call state.apply zimbra_fw   (pillar.example, backend: {backend})")
        print(minion.salt_text("state.apply", "zimbra_fw"))
        section("salt-call zimbra_fw.open_ports")
        open_ports = minion.salt("zimbra_fw.open_ports")
        print(yaml.safe_dump(open_ports, default_flow_style=None, sort_keys=False))
        section(VIEWS[backend])
        print(firewall_view(minion, backend))
        section("reachability, measured with TCP connections")
        failures = reachability_table(lab, open_ports)
        section("second state.apply")
        minion.reset_ufw_counts()
        if backend == "nftables":
            minion.reset_nft_counts()
        results = minion.apply()
        changed = [state for state, result in results.items() if result["changes"]]
        counted = {
            "ufw": f"; ufw processes started: {len(minion.ufw_processes())}",
            "nftables": f"; nft processes started: {len(minion.nft_commands())}",
        }.get(backend, "")
        print(f"states with changes: {changed or 'none'}{counted}")
    return failures or changed


def main(argv=None):
    parser = argparse.ArgumentParser(description="apply pillar.example in a sandbox and show the result")
    parser.add_argument("--backend", choices=["ufw", "firewalld", "nftables", "both", "all"], default="all")
    args = parser.parse_args(argv)
    with open(os.path.join(REPO, "pillar.example"), encoding="utf-8") as handle:
        pillar = yaml.safe_load(handle)["zimbra_fw"]
    every = {"both": ["ufw", "firewalld"], "all": ["ufw", "firewalld", "nftables"]}
    backends = every.get(args.backend, [args.backend])
    failed = [backend for backend in backends if demo(pillar, backend)]
    if failed:
        print(f"\nUNEXPECTED results with: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
