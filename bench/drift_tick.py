"""What one tick of the zimbra_fw beacon costs: CPU time, its own and its
child processes', on a converged sandboxed minion with 0 and 2,000 peers,
ufw and firewalld.

Run with ``python -m bench.drift_tick`` from the repository root (under the
sandbox lock). For each case it converges a fresh sandbox
(``state.apply zimbra_fw``), then, inside the sandbox, loads the minion's
modules and beacons with Salt's loader as the salt-minion daemon does and
times ``TICKS`` ticks of the beacon (after one tick to warm up): the policy
from the pillar, the firewall read (ufw: its files and netlink, or one
``iptables`` process; firewalld: D-Bus calls in the beacon's process), the
plans and the audit. Peers come from the pillar here; from the Salt Mine, a tick also
asks the master for the mine data (one request, not measured).
"""

import argparse
import json
import os
import sys
import time

from harness.sandbox import Lab

TICKS = 10
PEERS = (0, 2000)


def inside(config_dir, ticks):
    """In the sandbox: ``ticks`` beacon ticks, timed; prints the JSON result."""
    import salt.client  # pylint: disable=import-outside-toplevel
    import salt.loader  # pylint: disable=import-outside-toplevel

    caller = salt.client.Caller(os.path.join(config_dir, "minion"))
    beacons = salt.loader.beacons(caller.opts, caller.sminion.functions)
    tick = beacons["zimbra_fw.beacon"]
    config = [{"_beacon_name": "zimbra_fw"}]
    warm = tick(config)
    before, started = os.times(), time.perf_counter()
    events = [tick(config) for _ in range(ticks)]
    after, wall = os.times(), time.perf_counter() - started
    own = (after.user - before.user) + (after.system - before.system)
    children = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    result = {
        "own_cpu_ms": 1000 * own / ticks,
        "children_cpu_ms": 1000 * children / ticks,
        "wall_ms": 1000 * wall / ticks,
        "warm_up_events": [event["tag"] for event in warm],
        "events": sum(len(found) for found in events),
    }
    print(json.dumps(result))


def pillar(peers, backend):
    from bench.bench import cluster_policy  # pylint: disable=import-outside-toplevel

    return dict(cluster_policy(peers).pillar, backend=backend)


def measure(backend, peers, ticks):
    with Lab(firewalld=backend == "firewalld") as lab:
        minion = lab.minion
        minion.sync()
        minion.set_pillar(pillar(peers, backend))
        states = minion.apply()
        failed = [state for state, result in states.items() if result["result"] is not True]
        if failed:
            raise RuntimeError(f"converge failed: {failed}")
        argv = [sys.executable, "-m", "bench.drift_tick", "--inside", minion.config_dir, "--ticks", str(ticks)]
        out = minion.guarded(argv, timeout=600)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    parser.add_argument("--ticks", type=int, default=TICKS)
    args = parser.parse_args(argv)
    if args.inside:
        inside(args.inside, args.ticks)
        return
    print(f"{'backend':<10} {'peers':>5} {'own CPU ms':>10} {'child CPU ms':>12} {'wall ms':>8}  events")
    for backend in ("ufw", "firewalld"):
        for peers in PEERS:
            found = measure(backend, peers, args.ticks)
            print(
                f"{backend:<10} {peers:>5} {found['own_cpu_ms']:>10.1f} {found['children_cpu_ms']:>12.1f} "
                f"{found['wall_ms']:>8.1f}  {found['events']} (warm-up: {found['warm_up_events'] or 'none'})"
            )


if __name__ == "__main__":
    main()
