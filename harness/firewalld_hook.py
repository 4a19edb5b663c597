# Appended to a copy of firewalld's server module firewall/server/config_ipset.py
# that harness/guard.py binds over the real one inside a sandbox's private
# mount namespace only, so the sandbox's firewalld loads it. While the sandbox
# dir has a file firewalld-fail naming CLASS.METHOD (e.g.
# FirewallDConfigIPSet.setEntries), firewalld answers that D-Bus method with an
# error, as it answers any refusal: a step of a zimbra_fw firewalld change
# fails half-way (fault injection). STATE is replaced by the sandbox dir.


def _zimbra_fw_sandbox_faults(state):
    import functools  # pylint: disable=import-outside-toplevel
    import os  # pylint: disable=import-outside-toplevel

    from firewall.server.dbus import FirewallDBusException  # pylint: disable=import-outside-toplevel

    marker = os.path.join(state, "firewalld-fail")

    def failing(name, method):
        @functools.wraps(method)  # keeps dbus-python's marks: still the same D-Bus method
        def checked(*args, **kwargs):
            try:
                with open(marker, encoding="utf-8") as handle:
                    failed = handle.read().strip()
            except FileNotFoundError:
                failed = None
            if failed == name:
                raise FirewallDBusException("COMMAND_FAILED: injected failure")
            return method(*args, **kwargs)

        return checked

    for class_name, cls in list(globals().items()):
        if isinstance(cls, type) and cls.__module__ == __name__:
            for method_name, method in list(vars(cls).items()):
                if getattr(method, "_dbus_is_method", False):
                    setattr(cls, method_name, failing(f"{class_name}.{method_name}", method))


_zimbra_fw_sandbox_faults(STATE)  # noqa: F821
