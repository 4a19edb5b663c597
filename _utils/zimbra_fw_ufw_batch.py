"""
Helper of the zimbra_fw execution module, not an execution module itself:
``zimbra_fw`` runs this file with ufw's own Python to apply a list of ufw
commands in one process, as ``python3 -I zimbra_fw_ufw_batch.py
/usr/sbin/ufw`` with the commands (a JSON list of argument lists) on stdin.
``-I`` keeps the modules synced beside it from shadowing ufw's.
"""

import contextlib
import gettext
import io
import json
import os
import sys


def __virtual__():
    return (False, "zimbra_fw_ufw_batch is a helper script run by zimbra_fw, not an execution module")


class UfwBatch:
    """Runs ufw commands as /usr/sbin/ufw runs one, all in one process: ufw
    starts, reads its rules and probes iptables once. This class runs in
    ufw's own Python (see ``_ufw_batch``): commands come as JSON on stdin;
    it reports ``{"done": i}`` per applied command, then ``{"failed": i,
    "error": ...}`` or ``{"unavailable": ...}``, as JSON lines on a copy of
    stdout, while ufw's own messages go to stderr.

    Two things ufw redoes for every rule over all its rules are done once
    here, so N rules cost N, not N^2: writing the rules files (while ufw is
    inactive they are written after the last rule, or before any command that
    is not a rule) and normalizing each rule's addresses and ports (a rule
    whose fields are still what normalizing made of them is left as it is).
    """

    # pylint: disable=protected-access

    RULE_ACTIONS = ("allow", "deny", "reject", "limit")

    def __init__(self, ufw, report):
        self.ufw, self.report = ufw, report
        self.completed, self.reported, self.pending = 0, 0, set()
        self.ui = ufw.frontend.UFWFrontend(False)
        self.write_rules = self.ui.backend._write_rules
        self.ui.backend._write_rules = self.deferred_write
        self.normalize_rules_once(ufw.common.UFWRule)

    @staticmethod
    def normalize_rules_once(rule_class):
        normalize = rule_class.normalize

        def normalize_once(rule):
            if getattr(rule, "normalized_fields", None) != (rule.src, rule.dst, rule.dport, rule.sport, rule.v6):
                normalize(rule)
                rule.normalized_fields = (rule.src, rule.dst, rule.dport, rule.sport, rule.v6)

        rule_class.normalize = normalize_once

    @staticmethod
    def tell(report, **fields):
        report.write(json.dumps(fields) + "\n")
        report.flush()

    def deferred_write(self, v6=False):
        self.pending.add(v6)
        if self.ui.backend.is_enabled():  # a running firewall reloads from these files
            self.write_pending()

    def write_pending(self):
        for v6 in sorted(self.pending):
            self.write_rules(v6)
        self.pending.clear()
        for index in range(self.reported, self.completed):
            self.tell(self.report, done=index)
        self.reported = self.completed

    def run(self, argv):
        parsed = self.ufw.frontend.parse_command(["ufw", *argv])
        if parsed.action not in self.RULE_ACTIONS:
            self.write_pending()  # anything else may read the rules files
        if argv[:1] == ["app"] and parsed.data.get("type") == "app":
            self.ui.do_application_action(parsed.action, parsed.data["name"])
        elif "rule" in parsed.data:
            self.ui.do_action(parsed.action, parsed.data["rule"], parsed.data["iptype"], parsed.force)
        else:
            self.ui.do_action(parsed.action, "", "", parsed.force)
        self.completed += 1
        if not self.pending:
            self.write_pending()

    @classmethod
    def main(cls):
        report = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        sys.argv = sys.argv[1:]  # ufw checks its own program file, sys.argv[0]
        try:  # pylint: disable=import-outside-toplevel
            import ufw.common
            import ufw.frontend
            import ufw.util
        except ImportError as exc:
            cls.tell(report, unavailable=str(exc))
            sys.exit(3)
        gettext.install(ufw.common.programName)
        commands = json.load(sys.stdin)
        lockfile = "/run/ufw.lock" if os.getuid() == 0 else os.path.join(ufw.common.state_dir, "ufw.lock")
        lock = ufw.util.create_lock(lockfile=lockfile)
        # ufw writes its messages as bytes to sys.stderr.buffer, or as text.
        errors = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="replace", write_through=True)
        batch, failure = None, None
        try:
            with contextlib.redirect_stderr(errors):
                batch = cls(ufw, report)
                for argv in commands:
                    batch.run(argv)
        except ufw.common.UFWError as exc:
            failure = "ERROR: " + str(exc.value)
        except (Exception, SystemExit) as exc:  # pylint: disable=broad-except
            failure = errors.buffer.getvalue().decode("utf-8", "replace").strip() or repr(exc)
        try:
            if batch is not None:
                batch.write_pending()  # what was applied stays applied, as with ufw itself
        finally:
            ufw.util.release_lock(lock)
            sys.stderr.write(errors.buffer.getvalue().decode("utf-8", "replace"))
        if failure is not None:
            cls.tell(report, failed=batch.completed if batch else 0, error=failure)
            sys.exit(1)


if __name__ == "__main__":
    UfwBatch.main()
