"""Run one command inside a sandboxed minion, or refuse.

Started by ``harness.sandbox`` as::

    ip netns exec NS unshare --mount --propagation private \\
        python guard.py --netns NS --host-netns DEV:INO --state DIR -- CMD ...

Before anything else it proves that it runs in the network namespace NS
that the harness created and not in the host's (compared with
/proc/1/ns/net, kthreadd's /proc/2/ns/net and the harness's own namespace).
Then it bind-mounts, in its private mount namespace, the sandbox's private
/etc/ufw, /etc/default/ufw, /run (where a sandbox's firewalld has its
private system bus, /run/dbus), its copy of ufw's package ``__init__.py``
(which logs ufw processes and injects faults, see ufw_hook.py) and, for a
firewalld minion, /etc/firewalld and a copy of firewalld's
firewall/server/config_ipset.py (see firewalld_hook.py), and for an
nftables minion, first, a copy of all of /etc (the backend renames files
onto /etc/nftables.conf) and an nft that
logs its commands; adds any fault a test asked for (marker files
``fault-*`` in DIR) and executes CMD. It exits
97 on refusal.
"""

import argparse
import os
import subprocess
import sys

REFUSED = 97


def _netns_id(path):
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino)


def host_references(host_netns):
    """Namespaces that are surely the host's: init (pid 1, kthreadd) and the launcher's."""
    refs = {tuple(int(part) for part in host_netns.split(":"))}
    for path in ("/proc/1/ns/net", "/proc/2/ns/net"):
        try:
            refs.add(_netns_id(path))
        except OSError:
            continue  # pid 1 may be unreadable even for root; kthreadd is in init_net
    return refs


def check_isolated(netns, host_netns):
    """Return None when this process is inside sandbox netns ``netns``, else why not."""
    own = _netns_id("/proc/self/ns/net")
    if own in host_references(host_netns):
        return "this process is in the host's network namespace"
    try:
        expected = _netns_id(f"/run/netns/{netns}")
    except OSError:
        return f"network namespace {netns!r} does not exist"
    if own != expected:
        return f"this process is not in network namespace {netns!r}"
    return None


def _bind(source, target):
    subprocess.run(["mount", "--bind", source, target], check=True)


def _bind_hooked(state, name):
    """Bind the sandbox's hooked copy NAME/ (see Minion._make_hooked_copy) over
    the file it copies, and its __pycache__ over the original's, so byte code
    compiled from the copy stays in the sandbox; with no __pycache__ there,
    Python writes none."""
    with open(os.path.join(state, f"{name}.path"), encoding="utf-8") as handle:
        original = handle.read().strip()
    hooked = os.path.join(state, name)
    _bind(os.path.join(hooked, os.path.basename(original)), original)
    cache = os.path.join(os.path.dirname(original), "__pycache__")
    if os.path.isdir(cache):
        _bind(os.path.join(hooked, "__pycache__"), cache)
    else:
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"


def _inject_faults(state):
    """Faults the tests ask for with marker files, inside this mount namespace only."""
    if os.path.exists(os.path.join(state, "fault-no-ufw")):
        _bind("/dev/null", "/usr/sbin/ufw")  # present but not executable: "not installed"
    if os.path.exists(os.path.join(state, "fault-readonly-apps")):
        _bind("/etc/ufw/applications.d", "/etc/ufw/applications.d")
        subprocess.run(["mount", "-o", "remount,bind,ro", "/etc/ufw/applications.d"], check=True)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--netns", required=True)
    parser.add_argument("--host-netns", required=True)
    parser.add_argument(
        "--state", required=True, help="sandbox dir: etc-ufw/, default-ufw, run/, etc-firewalld/, etc/ ..."
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    reason = check_isolated(args.netns, args.host_netns)
    if reason:
        print(f"sandbox guard: refusing to run {command!r}: {reason}", file=sys.stderr)
        return REFUSED
    if os.path.isdir(os.path.join(args.state, "etc")):  # an nftables minion's private /etc
        _bind(os.path.join(args.state, "etc"), "/etc")
    _bind(os.path.join(args.state, "etc-ufw"), "/etc/ufw")
    _bind(os.path.join(args.state, "default-ufw"), "/etc/default/ufw")
    _bind(os.path.join(args.state, "run"), "/run")  # a private /run/ufw.lock and /run/dbus
    if os.path.isdir(os.path.join(args.state, "etc-firewalld")):
        _bind(os.path.join(args.state, "etc-firewalld"), "/etc/firewalld")
        _bind_hooked(args.state, "firewalld-ipset-config")
    _bind_hooked(args.state, "ufw-package")
    if os.path.exists(os.path.join(args.state, "nft-counted")):  # logs each nft command (Minion.nft_commands)
        _bind(os.path.join(args.state, "nft-counted"), "/usr/sbin/nft")
    _inject_faults(args.state)
    os.environ["LC_ALL"] = "C"
    # As on a real minion, Salt keeps the bytecode of the synced modules
    # (extmods/*/__pycache__) instead of compiling them on every run.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.execvp(command[0], command)
    return REFUSED  # not reached


if __name__ == "__main__":
    sys.exit(main())
