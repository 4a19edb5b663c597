"""
zimbra_fw's fleet report, run on the master: ``salt-run zimbra_fw.report``.

It asks the targeted minions for ``zimbra_fw.drift``, ``audit``,
``open_ports`` and ``identity`` (one job per function), and turns their
answers into one table and an HTML page with the reachability matrix; the
logic is ``_utils/zimbra_fw_report.py``, which a runner imports like the
execution module does once ``saltutil.sync_all`` (or ``sync_utils``) ran
on the master.
"""

import datetime
import os

import salt.client
import salt.utils.atomicfile

try:
    import zimbra_fw_report

    CORE_MISSING = None
except ImportError as exc:  # _utils not synced to the master
    CORE_MISSING = str(exc)

__virtualname__ = "zimbra_fw"

# Under the master's cachedir, written by the master's user only: the
# caller chooses no path (a runner may be granted through external auth).
REPORT_DIR = "zimbra_fw"
REPORT_FILE = "report.html"


def __virtual__():
    if CORE_MISSING:
        return (False, f"zimbra_fw_report is not on this master ({CORE_MISSING}): run salt-run saltutil.sync_all")
    return __virtualname__


def _ask(tgt, tgt_type, timeout):
    """``{function: {minion: full return}}``. The first job finds who
    answers; the others go to those minions only, so a dead minion costs
    one timeout, not one per function."""
    answers = {}
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        for function in zimbra_fw_report.FUNCTIONS:
            answers[function] = (
                client.cmd(tgt, f"zimbra_fw.{function}", timeout=timeout, tgt_type=tgt_type, full_return=True) or {}
            )
            answered = sorted(
                name
                for name, raw in answers[function].items()
                if zimbra_fw_report.answer(raw)[1] != zimbra_fw_report.NO_ANSWER
            )
            if not answered:
                break
            tgt, tgt_type = answered, "list"
    return answers


def _write_page(text):
    directory = os.path.join(__opts__["cachedir"], REPORT_DIR)
    os.makedirs(directory, mode=0o750, exist_ok=True)
    path = os.path.join(directory, REPORT_FILE)
    with salt.utils.atomicfile.atomic_open(path, "w") as handle:
        handle.write(text)
    return path


def report(tgt="*", tgt_type="glob", timeout=15, html=True):
    """
    Ask every targeted minion for its drift and its audit, and return one
    table: minion, backend, drifted (yes, no, unknown: the minion has no
    ``zimbra_fw.drift`` or it failed, or no answer), critical / high /
    medium findings, Zimbra roles and what went wrong. With ``html=True``
    (the default) it also writes the reachability matrix (who reaches which
    ports of each server, drift and findings marked) as a self-contained
    page to ``<cachedir>/zimbra_fw/report.html`` on the master and returns
    its path. ``timeout``: seconds each job waits for the minions.

    CLI Example:

    .. code-block:: bash

        salt-run zimbra_fw.report
        salt-run zimbra_fw.report tgt='mail*'
        salt-run zimbra_fw.report tgt='G@roles:zimbra' tgt_type=compound html=False
    """
    servers = zimbra_fw_report.servers(_ask(tgt, tgt_type, timeout))
    result = {"report": zimbra_fw_report.table_lines(servers)}
    if html:
        generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        result["html"] = _write_page(zimbra_fw_report.page(servers, generated))
    return result
