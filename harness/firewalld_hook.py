# Appended to a copy of firewalld's client.py (the firewall.client library)
# that harness/guard.py binds over the real one inside a sandbox's private
# mount namespace only. When the sandbox dir has a file firewalld-fail naming
# CLASS.METHOD (e.g. FirewallClientConfigIPSet.setEntries), that method raises
# a FirewallError: a step of zimbra_fw's firewalld helper fails half-way
# (fault injection). STATE is replaced by the sandbox dir.


def _zimbra_fw_sandbox_fault(state):
    import os  # pylint: disable=import-outside-toplevel

    try:
        with open(os.path.join(state, "firewalld-fail"), encoding="utf-8") as handle:
            class_name, method = handle.read().strip().split(".")
    except FileNotFoundError:
        return

    def broken(self, *args, **kwargs):
        raise FirewallError(errors.COMMAND_FAILED, "injected failure")  # noqa: F821

    setattr(globals()[class_name], method, broken)


_zimbra_fw_sandbox_fault(STATE)  # noqa: F821
