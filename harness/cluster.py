"""A real salt-master with salt-minion daemons, each minion sandboxed.

``Cluster`` builds, under names it owns (``zfw<pid>c<k>-...``):

* a "switch" namespace holding a bridge, 10.77.0.0/24;
* a master namespace (10.77.0.1) running ``salt-master`` with this
  repository's formula as file_roots and a pillar per minion;
* per minion a ``Minion`` sandbox (own netns, private /etc/ufw and
  /etc/default/ufw through the guard, or a private firewalld or nftables
  files) running ``salt-minion``, which
  publishes ``zimbra_fw.identity`` to the Salt Mine;
* an "internet" namespace (10.77.0.200) that is on the LAN but no peer.

Commands run from the master: ``cluster.salt('*', 'state.apply', 'zimbra_fw')``,
runners with ``cluster.run('zimbra_fw.report')``.
``close()`` stops every daemon and deletes every namespace it made.
"""

import json
import os
import subprocess
import sys
import threading
import time

import yaml

from harness.sandbox import Minion, Namespace, Topology, _run, formula_root

BIN = os.path.dirname(sys.executable)
SUBNET_PREFIX = "10.77.0."


class Cluster(Topology):
    MASTER = SUBNET_PREFIX + "1"
    INTERNET = SUBNET_PREFIX + "200"
    kind = "c"

    def __init__(self, master_config=None):
        super().__init__()
        self.master_config = master_config or {}
        self.minions = {}
        self.addresses = {}
        self.pillars = {}
        self.synced = set()
        try:
            self.switch = self._add(Namespace(f"{self.prefix}-sw"))
            self.switch.exec(["ip", "link", "add", "br0", "type", "bridge"])
            self.switch.exec(["ip", "link", "set", "br0", "up"])
            self.master = self._add(Namespace(f"{self.prefix}-m"))
            self._plug(self.master, self.MASTER)
            self.internet = self._add(Namespace(f"{self.prefix}-inet"))
            self._plug(self.internet, self.INTERNET)
            self._start_master()
        except BaseException:
            self.close()
            raise

    def _plug(self, namespace, address):
        port = f"p{len(self.namespaces)}{self.prefix[-4:]}"
        _run(["ip", "link", "add", "eth0", "netns", namespace.name, "type", "veth",
              "peer", "name", port, "netns", self.switch.name])  # fmt: skip
        self.switch.exec(["ip", "link", "set", port, "master", "br0", "up"])
        namespace.exec(["ip", "addr", "add", f"{address}/24", "dev", "eth0"])
        namespace.exec(["ip", "link", "set", "eth0", "up"])

    def _start_master(self):
        self.master_dir = os.path.join(self.workdir, "master")
        self.pillar_dir = os.path.join(self.master_dir, "pillar")
        os.makedirs(self.pillar_dir)
        config = {
            "interface": self.MASTER,
            "root_dir": os.path.join(self.master_dir, "root"),
            "file_roots": {"base": [formula_root(os.path.join(self.master_dir, "srv"))]},
            "pillar_roots": {"base": [self.pillar_dir]},
            "auto_accept": True,
            "enable_fqdns_grains": False,
            "log_level_logfile": "warning",
            "worker_threads": 3,
            **self.master_config,
        }
        with open(os.path.join(self.master_dir, "master"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle)
        self._write_pillar_top()
        log = open(os.path.join(self.master_dir, "daemon.log"), "ab")  # closed when the process ends
        self.master.spawn(
            [os.path.join(BIN, "salt-master"), "-c", self.master_dir], stdout=log, stderr=subprocess.STDOUT
        )

    def _write_pillar_top(self):
        top = {"base": {name: [f"zfw_{name}"] for name in self.pillars}}
        with open(os.path.join(self.pillar_dir, "top.sls"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(top, handle)
        for name, pillar in self.pillars.items():
            with open(os.path.join(self.pillar_dir, f"zfw_{name}.sls"), "w", encoding="utf-8") as handle:
                yaml.safe_dump({"zimbra_fw": pillar}, handle)

    def set_pillar(self, name, pillar):
        self.pillars[name] = pillar
        self._write_pillar_top()

    def add_minion(self, name, host, pillar, extra_config=None, *, firewalld=False, nftables=False):
        """Start a sandboxed salt-minion ``name`` at 10.77.0.``host`` with ``pillar``
        (``extra_config``: more minion settings; ``firewalld``: run a private firewalld;
        ``nftables``: private nftables files)."""
        minion = self._add(
            Minion(f"{self.prefix}-{name}", self.workdir, minion_id=name, master=self.MASTER, extra_config=extra_config)
        )
        if firewalld:
            minion.start_firewalld()
        if nftables:
            minion.use_nftables()
        address = SUBNET_PREFIX + str(host)
        self._plug(minion, address)
        self.minions[name] = minion
        self.addresses[name] = address
        self.set_pillar(name, pillar)
        minion.spawn_guarded([os.path.join(BIN, "salt-minion"), "-c", minion.config_dir])
        return minion

    def stop_minion(self, name):
        """Stop ``name``'s salt-minion and delete its key; its namespace stays for probes."""
        minion = self.minions.pop(name)
        for process in minion.processes:
            if process.args[-3:] == [os.path.join(BIN, "salt-minion"), "-c", minion.config_dir]:
                process.terminate()
                process.wait(timeout=30)
        self.pillars.pop(name)
        self._write_pillar_top()
        self.master.exec([os.path.join(BIN, "salt-key"), "-c", self.master_dir, "-y", "-d", name])

    def watch_events(self, tagmatch):
        """Start ``salt-run state.event TAGMATCH`` on the master: its events
        arrive in the returned EventWatch as they are fired."""
        command = [os.path.join(BIN, "salt-run"), "-c", self.master_dir, "state.event", tagmatch]
        return EventWatch(self.master.spawn(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))

    @property
    def master_log(self):
        with open(os.path.join(self.master_dir, "root", "var", "log", "salt", "master"), encoding="utf-8") as handle:
            return handle.read()

    def salt(self, target, *args, timeout=300, attempts=5):
        """Run ``salt TARGET ARGS`` on the master (a list TARGET: those minions);
        returns {minion: return}.

        Retried (bounded) while the master does not answer yet.
        """
        targeting = ["-L", ",".join(target)] if isinstance(target, list) else [target]
        command = [os.path.join(BIN, "salt"), "-c", self.master_dir, "--out", "json", "--no-color",
                   "-t", "20", *targeting, *args]  # fmt: skip
        for attempt in range(attempts):
            out = self.master.exec(command, check=False, timeout=timeout)
            try:
                return _json_stream(out.stdout)
            except (RuntimeError, ValueError) as exc:
                if attempt == attempts - 1:
                    raise RuntimeError(f"salt {target} {args}: {exc}\n{out.stderr[-2000:]}") from exc
            time.sleep(2)
        raise AssertionError("not reached")

    def run(self, *args, timeout=120):
        """Run ``salt-run ARGS`` on the master; returns what the runner returned."""
        command = [os.path.join(BIN, "salt-run"), "-c", self.master_dir, "--out", "json", "--no-color", *args]
        return json.loads(self.master.exec(command, timeout=timeout).stdout)

    def wait_for_minions(self, timeout=300):
        """Wait until every running minion answers test.ping (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            answers = self.salt("*", "test.ping", timeout=60, attempts=30)
            if all(answers.get(name) is True for name in self.minions):
                return
            if time.monotonic() > deadline:
                silent = {name: answers.get(name) for name in self.minions if answers.get(name) is not True}
                raise RuntimeError(f"minions did not answer test.ping with True: {silent}")
            time.sleep(1)

    def apply(self, target="*"):
        """sync_all (on minions not synced yet: the formula does not change
        during a run), mine.update and state.apply zimbra_fw; returns
        {minion: {state id: result}}."""
        unsynced = sorted(set(self.minions) - self.synced) if target == "*" else [target]
        if unsynced:
            self.salt(unsynced, "saltutil.sync_all")
            self.synced.update(unsynced)
        self.salt(target, "mine.update")
        results = self.salt(target, "state.apply", "zimbra_fw")
        return {
            name: {key.split("_|-")[1]: value for key, value in states.items()} if isinstance(states, dict) else states
            for name, states in results.items()
        }


class EventWatch:
    """The events a ``salt-run state.event`` prints, each as (time.monotonic()
    when read, tag, data), read by a thread while the test goes on."""

    def __init__(self, process):
        self.seen = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            tag, _, data = line.rstrip("\n").partition("\t")
            if data:
                with self._changed:
                    self.seen.append((time.monotonic(), tag, json.loads(data)))
                    self._changed.notify_all()

    def wait_for(self, tag, seconds, since=0.0):
        """The first event with ``tag`` read at or after ``since`` (a
        time.monotonic()), waiting up to ``seconds``; TimeoutError when none came."""

        def found():
            return next((event for event in self.seen if event[1] == tag and event[0] >= since), None)

        with self._changed:
            if not self._changed.wait_for(found, timeout=seconds):
                raise TimeoutError(f"no event {tag} in {seconds} s; seen: {[event[1] for event in self.seen]}")
            return found()


def _json_stream(text):
    """Merge the JSON objects ``salt --out json`` prints, one per minion."""
    decoder = json.JSONDecoder()
    merged, index = {}, 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        value, index = decoder.raw_decode(text, index)
        if not isinstance(value, dict):
            raise RuntimeError(f"salt said: {value}")  # e.g. the master is not up yet
        merged.update(value)
    return merged
