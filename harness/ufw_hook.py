# Appended to a copy of ufw's package __init__.py that harness/guard.py binds
# over the real one inside a sandbox's private mount namespace only. Every
# process that loads ufw's code (the ufw program, or zimbra_fw's batch of ufw
# commands) then logs itself, and can be made to fail the Nth command or
# every ip6tables-restore (fault injection). Commands are counted only in a
# process that starts while a failure is armed (ufw-fail-at): counting costs
# a file append per command, which production ufw does not pay, and the
# benchmark measures. STATE is replaced by the sandbox dir.


def _zimbra_fw_sandbox_hook(state):
    import os  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel

    from ufw import common, frontend  # pylint: disable=import-outside-toplevel

    RECORD = 32

    with open(os.path.join(state, "ufw-processes.log"), "a", encoding="utf-8") as log:
        log.write(" ".join(sys.argv) + "\n")

    try:
        with open(os.path.join(state, "ufw-fail-at"), encoding="utf-8") as handle:
            fail_at = int(handle.read())
    except FileNotFoundError:
        fail_at = None

    def counted(method):
        def run(self, action, *args, **kwargs):
            # One record of RECORD bytes a command: an append's end offset is
            # the command's number (a file read per command would make a batch
            # of N commands cost N^2 here).
            descriptor = os.open(os.path.join(state, "ufw-commands.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(descriptor, f"{str(action)[: RECORD - 1]:<{RECORD - 1}}\n".encode("ascii", "replace"))
                number = os.lseek(descriptor, 0, os.SEEK_CUR) // RECORD
            finally:
                os.close(descriptor)
            if number == fail_at:
                raise common.UFWError("injected failure")
            return method(self, action, *args, **kwargs)

        return run

    if os.path.exists(os.path.join(state, "fault-ip6tables-restore")):
        from ufw import backend  # pylint: disable=import-outside-toplevel

        setup = backend.UFWBackend.__init__

        def broken_ip6tables_restore(self, *args, **kwargs):
            setup(self, *args, **kwargs)
            self.ip6tables_restore = "/bin/false"

        backend.UFWBackend.__init__ = broken_ip6tables_restore

    if fail_at is not None:
        frontend.UFWFrontend.do_action = counted(frontend.UFWFrontend.do_action)
        frontend.UFWFrontend.do_application_action = counted(frontend.UFWFrontend.do_application_action)


_zimbra_fw_sandbox_hook(STATE)  # noqa: F821
