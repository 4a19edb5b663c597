"""
What every firewall backend needs to run things: a command checked for its
exit code, the Python a firewall's own program runs with (its helpers run
with that Python, where the firewall's library is), and the error raised
when applying a plan fails half-way.
"""

import os

import salt.utils.path
from salt.exceptions import CommandExecutionError


def __virtual__():
    return (False, "zimbra_fw_commands is a library of the zimbra_fw module, not a Salt util")


class ApplyFailed(CommandExecutionError):
    """A step failed; ``info`` has the failed step and the steps applied before it."""


def checked(run, argv, succeeded=(0,)):
    """Run ``argv``; its exit code, or an error naming the command and what it said."""
    retcode, stdout, stderr = run(argv)
    if retcode not in succeeded:
        message = (stderr or stdout or "").strip()
        raise CommandExecutionError(f"'{' '.join(argv)}' failed (exit {retcode}): {message}")
    return retcode


def program_python(path):
    """The Python that runs the program at ``path`` (its #! line), or None."""
    try:
        with open(path, "rb") as handle:
            first_line = handle.readline(200).decode("utf-8", "replace")
    except (OSError, TypeError):
        return None
    words = first_line[2:].split() if first_line.startswith("#!") else []
    if words and os.path.basename(words[0]) == "env" and len(words) > 1:
        words = [salt.utils.path.which(words[1]) or ""]
    if words and os.path.basename(words[0]).startswith("python") and os.access(words[0], os.X_OK):
        return words[0]
    return None
