"""Sandboxed Zimbra minions with real ufw, and client namespaces to probe them.

A ``Lab`` creates, under names it owns (``zfw<pid>n<k>-...``):

* a minion network namespace with a private copy of /etc/ufw and
  /etc/default/ufw (bind-mounted by ``guard.py`` in a private mount
  namespace for every command), and a ``salt-call --local`` configuration
  whose file_roots serves this repository's formula;
* client namespaces ("lan", "internet") linked to it by veth pairs.

Every command for the minion goes through ``guard.py``, which refuses to run
outside the minion's own network namespace. Probes only target addresses of
these namespaces. ``Lab.close()`` deletes each namespace and process it made,
by name and pid.
"""

import atexit
import functools
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUARD = os.path.join(REPO, "harness", "guard.py")
PROBE = os.path.join(REPO, "harness", "probe.py")
SALT_CALL = os.path.join(os.path.dirname(sys.executable), "salt-call")
UFW = "/usr/sbin/ufw"
UFW_HOOK = os.path.join(REPO, "harness", "ufw_hook.py")
FIREWALLD_HOOK = os.path.join(REPO, "harness", "firewalld_hook.py")
_counter = itertools.count()


def _run(argv, check=True, timeout=120, **kwargs):
    return subprocess.run(argv, check=check, timeout=timeout, capture_output=True, text=True, **kwargs)


# The first real sync of this process, copied for its later --local minions.
_SYNCED_CACHE = []

# What saltutil.sync_all writes into a minion's cache (roots/mtime_map names
# the minion's own paths: each minion keeps its own).
SYNCED = ("extmods", "files", "roots", "file_lists", "module_refresh")


def _copy_synced(source, target):
    for name in SYNCED:
        path = os.path.join(source, name)
        if os.path.isdir(path):
            shutil.copytree(
                path, os.path.join(target, name), dirs_exist_ok=True, ignore=shutil.ignore_patterns("mtime_map")
            )
        elif os.path.exists(path):
            shutil.copy2(path, os.path.join(target, name))


FORMULA_PARTS = ("_beacons", "_modules", "_runners", "_states", "_utils", "zimbra_fw")


def formula_root(directory):
    """A file root holding just the formula (links into this repository), as a
    master would serve it: Salt's file server then never walks .venv/ or .git/."""
    os.makedirs(directory, exist_ok=True)
    for part in FORMULA_PARTS:
        os.symlink(os.path.join(REPO, part), os.path.join(directory, part))
    return directory


def host_netns_id():
    stat = os.stat("/proc/self/ns/net")
    return f"{stat.st_dev}:{stat.st_ino}"


@functools.cache
def ufw_package_dir():
    """Where ufw's Python package is, found without importing (running) it."""
    python = "/usr/bin/python3"
    with open(UFW, "rb") as handle:
        words = handle.readline().decode().lstrip("#!").split()
    if words:
        python = words[0]
    code = "import importlib.util; print(importlib.util.find_spec('ufw').submodule_search_locations[0])"
    return _run([python, "-c", code]).stdout.strip()


@functools.cache
def firewalld_ipset_config_path():
    """Where firewalld's permanent-ipset D-Bus objects are defined
    (firewall/server/config_ipset.py), found without importing them."""
    code = "import importlib.util; print(importlib.util.find_spec('firewall.server.config_ipset').origin)"
    return _run(["/usr/bin/python3", "-c", code]).stdout.strip()


def formula_marks(etc_ufw):
    """The files under ``etc_ufw`` (a /etc/ufw) that zimbra_fw writes or marks:
    on the host there must be none (the sandboxes copy the host's)."""
    found = []
    if os.path.exists(os.path.join(etc_ufw, "applications.d", "zimbra")):
        found.append(os.path.join(etc_ufw, "applications.d", "zimbra"))
    for name in ("user.rules", "user6.rules"):
        try:
            with open(os.path.join(etc_ufw, name), encoding="utf-8", errors="replace") as handle:
                if "comment=" + b"zimbra_fw".hex() in handle.read():  # ufw writes a comment in hex
                    found.append(os.path.join(etc_ufw, name))
        except FileNotFoundError:
            pass
    return found


def requirements_missing():
    """Why sandbox tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "the sandbox needs root (network and mount namespaces)"
    for tool in ("ip", "unshare", "iptables", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists(UFW) or not os.path.isdir("/etc/ufw"):
        return "ufw is not installed"
    if not os.path.exists(SALT_CALL):
        return "salt-call is not installed beside this Python"
    return None


class Namespace:
    """A network namespace this run created."""

    def __init__(self, name):
        self.name = name
        self.processes = []
        _run(["ip", "netns", "add", name])
        self.exec(["ip", "link", "set", "lo", "up"])

    def exec(self, argv, check=True, timeout=120):
        return _run(["ip", "netns", "exec", self.name, *argv], check=check, timeout=timeout)

    def spawn(self, argv, **popen):
        """Start a long-running ``argv`` in this namespace; stopped by close()."""
        return self._track(subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **popen))

    def _track(self, process):
        self.processes.append(process)
        return process

    def probe(self, address, ports, timeout=0.8):
        """Which ``ports`` of ``address`` answer from here: TCP ports (ints) accept
        a connection, UDP ports (``"514/udp"``) echo a datagram."""
        out = self.exec([sys.executable, PROBE, "connect", address, str(timeout), *map(str, ports)]).stdout
        return {int(port) if port.isdigit() else port: is_open for port, is_open in json.loads(out).items()}

    def session(self, address, port):
        """Open a TCP session to ``address``:``port`` and hold it (an admin's
        ssh session); ``stop(process)`` ends it."""
        argv = [sys.executable, PROBE, "session", address, str(port)]
        process = self.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if process.stdout.readline().strip() != "connected":
            raise RuntimeError(f"no session to {address}:{port}")
        return process

    def probe_repeatedly(self, address, port, count, timeout=0.8):
        """``count`` TCP connections to ``port``, one after another: which got in."""
        argv = [sys.executable, PROBE, "repeat", address, str(timeout), str(port), str(count)]
        return json.loads(self.exec(argv).stdout)

    def watch(self, address, port, timeout=0.3, seconds=240):
        """Start connecting to ``address``:``port`` over and over; ``watched(w)`` stops it."""
        argv = [sys.executable, PROBE, "watch", address, str(timeout), str(port), str(seconds)]
        watcher = self.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if watcher.stdout.readline().strip() != "watching":
            raise RuntimeError(f"probe of {address}:{port} did not start")
        return watcher

    @staticmethod
    def watched(watcher):
        """Stop a ``watch``: {"open": [times], "closed": [times]}."""
        out, _ = watcher.communicate("", timeout=30)
        return json.loads(out)

    def close(self):
        for process in self.processes:
            stop(process)
        # Anything still running inside this namespace was started by us.
        leftover = _run(["ip", "netns", "pids", self.name], check=False).stdout.split()
        for pid in leftover:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        _run(["ip", "netns", "del", self.name], check=False)


def stop(process, timeout=10):
    """Stop a process we started: SIGTERM, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Minion(Namespace):
    """A sandboxed Zimbra server: private ufw configuration and salt-call --local."""

    def __init__(self, name, workdir, minion_id="zimbra-sandbox", master=None, extra_config=None):
        super().__init__(name)
        self.minion_id = minion_id
        self.master = master
        self.state = os.path.join(workdir, name)
        self.pillar_dir = os.path.join(self.state, "pillar")
        self.config_dir = os.path.join(self.state, "salt")
        self.ufw_processes_log = os.path.join(self.state, "ufw-processes.log")
        self.ufw_commands_log = os.path.join(self.state, "ufw-commands.log")
        self.ufw_fail_at = os.path.join(self.state, "ufw-fail-at")
        self._make_private_ufw()
        self._make_salt_config(minion_id, master, extra_config or {})

    def _make_private_ufw(self):
        etc = os.path.join(self.state, "etc-ufw")
        host_marks = formula_marks("/etc/ufw")
        if host_marks:  # every sandbox would start from them: refuse, and say where
            raise RuntimeError(f"the host's /etc/ufw holds zimbra_fw's files ({', '.join(host_marks)}): "
                               "something wrote the host outside a sandbox; remove them")  # fmt: skip
        shutil.copytree("/etc/ufw", etc)
        shutil.copyfile("/etc/default/ufw", os.path.join(self.state, "default-ufw"))
        # An inactive, quiet ufw that loads no kernel modules and sets no
        # sysctls: nothing it does reaches outside the namespace.
        replace_line(os.path.join(etc, "ufw.conf"), "ENABLED=", "ENABLED=no")
        replace_line(os.path.join(etc, "ufw.conf"), "LOGLEVEL=", "LOGLEVEL=off")
        with open(os.path.join(etc, "sysctl.conf"), "w", encoding="utf-8"):
            pass
        replace_line(os.path.join(self.state, "default-ufw"), "IPT_MODULES=", 'IPT_MODULES=""')
        os.makedirs(os.path.join(self.state, "run"))
        # ufw's package with harness/ufw_hook.py: logs ufw processes, injects faults
        self._make_hooked_copy("ufw-package", os.path.join(ufw_package_dir(), "__init__.py"), UFW_HOOK)

    def _make_hooked_copy(self, name, original, hook):
        """In NAME/: a copy of the Python file ``original`` with the harness
        file ``hook`` added (its STATE is this sandbox's dir), and a copy of
        the original's __pycache__; NAME.path names the original. The guard
        binds both over the real ones (guard._bind_hooked)."""
        hooked = os.path.join(self.state, name)
        os.makedirs(hooked)
        with open(original, encoding="utf-8") as handle:
            text = handle.read()
        with open(hook, encoding="utf-8") as handle:
            addition = handle.read().replace("STATE)", f"{self.state!r})")
        with open(os.path.join(hooked, os.path.basename(original)), "w", encoding="utf-8") as handle:
            handle.write(text + "\n" + addition)
        cache = os.path.join(os.path.dirname(original), "__pycache__")
        if os.path.isdir(cache):
            shutil.copytree(cache, os.path.join(hooked, "__pycache__"))
        with open(os.path.join(self.state, f"{name}.path"), "w", encoding="utf-8") as handle:
            handle.write(original)

    def _make_salt_config(self, minion_id, master, extra_config):
        """salt-call --local serving this repository's formula, or a minion of
        ``master``; ``extra_config`` is merged over it (mine functions, grains)."""
        os.makedirs(self.config_dir)
        os.makedirs(self.pillar_dir)
        config = {
            "id": minion_id,
            "root_dir": os.path.join(self.state, "salt-root"),
            "enable_fqdns_grains": False,
            "log_level_logfile": "warning",
        }
        if master is None:
            config.update(
                file_client="local",
                file_roots={"base": [formula_root(os.path.join(self.state, "srv"))]},
                pillar_roots={"base": [self.pillar_dir]},
            )
        else:
            config.update(master=master, mine_functions={"zimbra_fw.identity": []}, acceptance_wait_time=1)
        config.update(extra_config)
        with open(os.path.join(self.config_dir, "minion"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle)
        with open(os.path.join(self.pillar_dir, "top.sls"), "w", encoding="utf-8") as handle:
            yaml.safe_dump({"base": {"*": ["zimbra_fw"]}}, handle)

    def guarded_argv(self, argv):
        """The command line that runs ``argv`` in this minion through the guard."""
        guard = [sys.executable, GUARD, "--netns", self.name, "--host-netns", host_netns_id(), "--state", self.state]
        return ["ip", "netns", "exec", self.name, "unshare", "--mount", "--propagation", "private", *guard, "--", *argv]

    def guarded(self, argv, check=True, timeout=300, stdin=None):
        """Run ``argv`` in this minion's netns with its private ufw files, via the guard."""
        return _run(self.guarded_argv(argv), check=check, timeout=timeout, input=stdin)

    def ufw(self, *args, check=True):
        return self.guarded(["ufw", *args], check=check)

    def show_added(self):
        """``ufw show added`` as (argument tuple, comment or None) per rule."""
        rules = []
        for line in self.ufw("show", "added").stdout.splitlines()[1:]:
            if line.startswith("ufw "):
                words = shlex.split(line)[1:]
                comment = words[-1] if words[-2:-1] == ["comment"] else None
                rules.append((tuple(words[:-2] if comment is not None else words), comment))
        return rules

    def set_pillar(self, pillar):
        with open(os.path.join(self.pillar_dir, "zimbra_fw.sls"), "w", encoding="utf-8") as handle:
            yaml.safe_dump({"zimbra_fw": pillar}, handle)

    def salt_text(self, *args):
        """``salt-call --local`` in the sandbox with Salt's own readable output."""
        color = "--force-color" if sys.stdout.isatty() else "--no-color"
        out = self.guarded([SALT_CALL, "--local", "-c", self.config_dir, color, *args], check=False)
        return out.stdout + out.stderr

    def salt_call(self, *args):
        """``salt-call --local`` in the sandbox: (the JSON ``local`` value, exit code)."""
        out = self.guarded(
            [SALT_CALL, "--local", "-c", self.config_dir, "--out", "json", "--no-color", *args], check=False
        )
        try:
            return json.loads(out.stdout)["local"], out.returncode
        except (ValueError, KeyError) as exc:
            raise RuntimeError(f"salt-call {args} gave no JSON:\n{out.stdout}\n{out.stderr}") from exc

    def salt(self, *args):
        """``salt-call --local`` in the sandbox; returns the JSON ``local`` value."""
        return self.salt_call(*args)[0]

    def sync(self):
        """``saltutil.sync_all``. A process's later ``--local`` minions get a
        copy of the cache the first one's real sync wrote (the same formula,
        byte for byte): a sync costs ~2.5 s of CPU, a copy a few ms."""
        cache = os.path.join(self.state, "salt-root", "var", "cache", "salt", "minion")
        if self.master is None and _SYNCED_CACHE:
            _copy_synced(_SYNCED_CACHE[0], cache)
            return None
        result = self.salt("saltutil.sync_all")
        if self.master is None:
            template = tempfile.mkdtemp(prefix="zfw-synced-")
            atexit.register(shutil.rmtree, template, ignore_errors=True)
            _copy_synced(cache, template)
            _SYNCED_CACHE.append(template)
        return result

    def apply(self, test=False):
        """``state.apply zimbra_fw``: the state results, keyed by state id."""
        result = self.salt("state.apply", "zimbra_fw", *(["test=True"] if test else []))
        if not isinstance(result, dict):
            raise RuntimeError(f"state.apply did not run: {result}")
        return {key.split("_|-")[1]: value for key, value in result.items()}

    def _log_lines(self, path):
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().splitlines()
        except FileNotFoundError:
            return []

    def ufw_processes(self):
        """Command lines of the processes that loaded ufw since the last reset."""
        return self._log_lines(self.ufw_processes_log)

    def fail_ufw_command(self, number):
        """Make the ``number``-th ufw command from now fail (None: stop
        failing); commands are counted in the ufw processes that start while
        it is set."""
        self.reset_ufw_counts()
        if number is None:
            if os.path.exists(self.ufw_fail_at):
                os.unlink(self.ufw_fail_at)
            return
        with open(self.ufw_fail_at, "w", encoding="utf-8") as handle:
            handle.write(f"{number}\n")

    def set_fault(self, name, on=True):
        """Turn a fault on or off: ``readonly-apps`` or ``no-ufw`` (made by the
        guard), ``ip6tables-restore`` (ufw's ip6tables-restore is /bin/false)."""
        marker = os.path.join(self.state, f"fault-{name}")
        if on:
            open(marker, "w", encoding="utf-8").close()
        elif os.path.exists(marker):
            os.unlink(marker)

    def reset_ufw_counts(self):
        for path in (self.ufw_processes_log, self.ufw_commands_log):
            if os.path.exists(path):
                os.unlink(path)

    def snapshot(self):
        """The firewall as bytes: private ufw files and the loaded iptables rules;
        with a firewalld, also its private /etc/firewalld and the nft ruleset."""
        files = {}
        roots = ["etc-ufw", "default-ufw", *(["etc-firewalld"] if self.runs_firewalld else [])]
        roots += ["etc/nftables.conf", "etc/nftables.d"] if self.runs_nftables else []
        for root in (os.path.join(self.state, name) for name in roots):
            paths = (
                [root] if os.path.isfile(root) else [os.path.join(d, f) for d, _, names in os.walk(root) for f in names]
            )
            for path in sorted(paths):
                with open(path, "rb") as handle:
                    files[os.path.relpath(path, self.state)] = handle.read()
        for tool in ("iptables-save", "ip6tables-save"):
            out = self.guarded([tool]).stdout
            files[tool] = re.sub(r"\[\d+:\d+\]|^#.*$", "", out, flags=re.MULTILINE).encode()
        if self.runs_firewalld or self.runs_nftables:
            files["nft"] = self.guarded(["nft", "list", "ruleset"]).stdout.encode()
        return files

    @property
    def runs_firewalld(self):
        return os.path.isdir(os.path.join(self.state, "etc-firewalld"))

    @property
    def runs_nftables(self):
        return os.path.isdir(os.path.join(self.state, "etc"))

    def use_nftables(self):
        """Give this minion a private copy of /etc, which the guard binds over
        the real one: the nftables backend replaces /etc/nftables.conf by
        renaming a file onto it (a bind-mounted file cannot be renamed over)
        and makes /etc/nftables.d. The kernel's ruleset is the namespace's own."""
        if shutil.which("nft") is None or not os.path.exists("/etc/nftables.conf"):
            raise RuntimeError("nftables is not installed here: 'make setup' installs it")
        shutil.copytree("/etc", os.path.join(self.state, "etc"), symlinks=True)
        # nft as a script that logs its arguments and runs a copy of the real
        # program; the guard binds it over /usr/sbin/nft (see nft_commands)
        real = os.path.join(self.state, "nft-real")
        shutil.copy2(shutil.which("nft"), real)
        counted = os.path.join(self.state, "nft-counted")
        with open(counted, "w", encoding="utf-8") as handle:
            handle.write(f'#!/bin/sh\necho "$*" >> {shlex.quote(self.nft_log)}\nexec {shlex.quote(real)} "$@"\n')
        os.chmod(counted, 0o755)

    @property
    def nft_log(self):
        return os.path.join(self.state, "nft-commands.log")

    def nft_commands(self):
        """The nft command lines run since the last reset_nft_counts(), in order."""
        return self._log_lines(self.nft_log)

    def reset_nft_counts(self):
        if os.path.exists(self.nft_log):
            os.unlink(self.nft_log)

    def nft(self, *args, check=True, stdin=None):
        """``nft ARGS`` in this minion's namespace, through the guard."""
        return self.guarded(["nft", *args], check=check, stdin=stdin)

    def start_firewalld(self):
        """Run a private firewalld in this minion: a copy of /etc/firewalld and
        its own system bus (dbus-daemon) in the sandbox's /run/dbus; both stop
        with the namespace. Returns once ``firewall-cmd --state`` says running."""
        if shutil.which("firewalld") is None or not os.path.isdir("/etc/firewalld"):
            raise RuntimeError("firewalld is not installed here: 'make setup' installs it (and dbus)")
        shutil.copytree("/etc/firewalld", os.path.join(self.state, "etc-firewalld"))
        # firewalld's permanent ipsets with harness/firewalld_hook.py: a D-Bus method fails on demand
        self._make_hooked_copy("firewalld-ipset-config", firewalld_ipset_config_path(), FIREWALLD_HOOK)
        socket_path = os.path.join(self.state, "run", "dbus", "system_bus_socket")
        os.makedirs(os.path.dirname(socket_path), exist_ok=True)
        self.spawn_guarded(["dbus-daemon", "--system", "--nofork", "--nopidfile"])
        _wait_for(lambda: os.path.exists(socket_path), "the sandbox's system bus")
        log = os.path.join(self.state, "firewalld.log")
        self.spawn_guarded(["firewalld", "--nofork", "--nopid", "--log-file", log])
        _wait_for(lambda: self.guarded(["firewall-cmd", "--state"], check=False).returncode == 0, "firewalld")

    def fail_firewalld_call(self, method):
        """Make firewalld answer its D-Bus method ``CLASS.METHOD`` (of
        firewall/server/config_ipset.py, e.g. FirewallDConfigIPSet.setEntries)
        with an error from now on (None: stop)."""
        marker = os.path.join(self.state, "firewalld-fail")
        if method is None:
            if os.path.exists(marker):
                os.unlink(marker)
            return
        with open(marker, "w", encoding="utf-8") as handle:
            handle.write(method)

    def stop_firewalld(self):
        """Stop this minion's firewalld (its system bus keeps running)."""
        daemon = next(p for p in self.processes if "firewalld" in p.args and "--nofork" in p.args)
        stop(daemon)

    def spawn_guarded(self, argv):
        """Start a long-running ``argv`` (a salt-minion) in this minion, through the guard."""
        log = open(os.path.join(self.state, "daemon.log"), "ab")  # closed when the process ends
        return self._track(subprocess.Popen(self.guarded_argv(argv), stdout=log, stderr=subprocess.STDOUT))

    def listen(self, ports, hold=False):
        """Listen on ``ports``; with ``hold``, keep the TCP connections open (sessions)."""
        argv = [sys.executable, PROBE, "listen", *(["--hold"] if hold else []), *map(str, ports)]
        process = self.spawn(argv, stdout=subprocess.PIPE, text=True)
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("listener did not start")
        return process


def _wait_for(ready, what, seconds=60):
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start in {seconds} s")
        time.sleep(0.1)


def replace_line(path, prefix, line):
    """Each line of the file at ``path`` that starts with ``prefix`` becomes ``line``."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    lines = [line if current.startswith(prefix) else current for current in lines]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


class Topology:
    """Namespaces made for one test or demo, under a prefix of their own, and
    a work directory; ``close()`` (or leaving the ``with``) removes them all."""

    kind = "n"

    def __init__(self):
        reason = requirements_missing()
        if reason:
            raise RuntimeError(reason)
        self.prefix = f"zfw{os.getpid()}{self.kind}{next(_counter)}"
        self.workdir = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        self.namespaces = []

    def _add(self, namespace):
        self.namespaces.append(namespace)
        return namespace

    def close(self):
        # Every daemon is told to stop first: they stop side by side (a
        # salt-minion takes ~10 s), then each namespace waits for its own.
        for namespace in self.namespaces:
            for process in namespace.processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
        for namespace in reversed(self.namespaces):
            namespace.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Lab(Topology):
    """One sandboxed minion with a trusted LAN client and an internet client.

    With ``firewalld``, the minion runs a private firewalld (see
    ``Minion.start_firewalld``); with ``nftables``, it has private nftables
    files (see ``Minion.use_nftables``). Addresses: minion 192.168.1.1 (LAN,
    192.168.1.0/24) and 203.0.113.1 (internet side); clients 192.168.1.10
    and 203.0.113.10. Over IPv6 (from
    the documentation prefix): minion 2001:db8:1::1 (LAN, 2001:db8:1::/64)
    and 2001:db8:113::1; clients 2001:db8:1::10 and 2001:db8:113::10.
    """

    MINION_LAN = "192.168.1.1"
    MINION_INTERNET = "203.0.113.1"
    MINION_LAN6 = "2001:db8:1::1"
    MINION_INTERNET6 = "2001:db8:113::1"

    def __init__(self, firewalld=False, nftables=False):
        super().__init__()
        try:
            self.minion = self._add(Minion(f"{self.prefix}-srv", self.workdir))
            if firewalld:
                self.minion.start_firewalld()
            if nftables:
                self.minion.use_nftables()
            self.lan = self._add(Namespace(f"{self.prefix}-lan"))
            self.internet = self._add(Namespace(f"{self.prefix}-inet"))
            self._link(
                self.lan,
                "l",
                ("192.168.1.10/24", "2001:db8:1::10/64"),
                (self.MINION_LAN + "/24", self.MINION_LAN6 + "/64"),
            )
            self._link(
                self.internet,
                "i",
                ("203.0.113.10/24", "2001:db8:113::10/64"),
                (self.MINION_INTERNET + "/24", self.MINION_INTERNET6 + "/64"),
            )
        except BaseException:
            self.close()
            raise

    def _link(self, client, tag, client_addresses, minion_addresses):
        inside, outside = f"{self.prefix[-6:]}{tag}0", f"{self.prefix[-6:]}{tag}1"
        _run(
            [
                "ip",
                "link",
                "add",
                inside,
                "netns",
                self.minion.name,
                "type",
                "veth",
                "peer",
                "name",
                outside,
                "netns",
                client.name,
            ]
        )
        for namespace, device, addresses in (
            (self.minion, inside, minion_addresses),
            (client, outside, client_addresses),
        ):
            for address in addresses:  # nodad: usable at once, not after duplicate detection
                namespace.exec(["ip", "addr", "add", address, "dev", device, *(["nodad"] if ":" in address else [])])
            namespace.exec(["ip", "link", "set", device, "up"])
