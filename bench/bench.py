"""Benchmark: zimbra_fw converge cost beside ``salt-call --local test.ping``.

Run with ``make bench`` (``python -m bench.bench`` from the repository
root). In one run, alternating the cases each round, it measures in
sandboxed minions (real ufw, own network namespaces):

* ``test.ping``      -- the cost of starting salt-call at all (baseline);
* ``first converge`` -- ``state.apply zimbra_fw`` on a fresh sandbox;
* ``no-op converge`` -- ``state.apply zimbra_fw`` on a converged sandbox.

For each: median wall time, the ratio to test.ping, ufw processes started
and the peak RSS of salt-call. Figures are ratios from one run because the
machines are shared and noisy.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import yaml

from harness.sandbox import REPO, SALT_CALL, Lab


def timed_salt(minion, *args):
    """Wall seconds and peak RSS (MiB) of one salt-call in the sandbox."""
    command = minion.guarded_argv([SALT_CALL, "--local", "-c", minion.config_dir, "--out", "quiet", *args])
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss / 1024


def measure(case, pillar):
    """One sample of ``case``: (seconds, ufw processes, peak MiB)."""
    with Lab() as lab:
        minion = lab.minion
        minion.set_pillar(pillar)
        minion.sync()
        if case == "no-op converge":
            minion.apply()
        minion.reset_ufw_calls()
        args = ("test.ping",) if case == "test.ping" else ("state.apply", "zimbra_fw")
        seconds, peak = timed_salt(minion, *args)
        return seconds, len(minion.ufw_calls()), peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with open(os.path.join(REPO, "pillar.example"), encoding="utf-8") as handle:
        pillar = yaml.safe_load(handle)["zimbra_fw"]
    cases = ["test.ping", "first converge", "no-op converge"]
    samples = {case: [] for case in cases}
    for round_number in range(args.rounds):
        order = cases[round_number % 3 :] + cases[: round_number % 3]  # alternate who goes first
        for case in order:
            samples[case].append(measure(case, pillar))
    baseline = statistics.median(s[0] for s in samples["test.ping"])
    print(f"pillar.example, {args.rounds} rounds, cases alternated; median wall time")
    print(f"{'case':<16} {'median s':>9} {'x test.ping':>12} {'ufw procs':>10} {'peak MiB':>9}")
    for case in cases:
        seconds = statistics.median(s[0] for s in samples[case])
        ufw_calls = max(s[1] for s in samples[case])
        peak = statistics.median(s[2] for s in samples[case])
        print(f"{case:<16} {seconds:>9.2f} {seconds / baseline:>12.2f} {ufw_calls:>10} {peak:>9.0f}")
    noop_calls = max(s[1] for s in samples["no-op converge"])
    print(f"\nno-op converge starts {noop_calls} ufw processes (target: at most 2)")
    return 0 if noop_calls <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
