"""Write docs/zimbra-ports.yaml from the port catalogue (_utils/zimbra_fw_catalogue.py).

The catalogue is the one source; the YAML is its readable copy for admins,
with the Zimbra source each port was read from. ``make ports`` runs this;
a unit test (tests/unit/test_ports_yaml.py) fails when the file is stale.
"""

import os
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(REPO, "docs", "zimbra-ports.yaml")
sys.path.insert(0, os.path.join(REPO, "_utils"))

import zimbra_fw_catalogue as catalogue  # noqa: E402

HEADER = """\
# The Zimbra ports zimbra_fw knows, each with where in Zimbra's own sources its
# port, its listener and its consumers were read (github.com/Zimbra
# repositories, 'develop' ~10.1 unless noted).
# Generated from _utils/zimbra_fw_catalogue.py by tools/ports_yaml.py (make
# ports): edit the catalogue, not this file.
# exposure: public (anyone), cluster (trusted subnets and the peers whose
# roles connect), localhost (never opened). consumers: who connects.
# scheme: the SOAP/REST clients on other nodes (zmtrainsa on the MTA, imapd)
# follow zimbraMailMode (pillar mail_mode) to the mailbox's 8080 (http) or
# 8443 (https). critical: reachable from anyone, a critical audit finding.
# only_without: the row applies only when no node has that role.
---
"""


def entries():
    """The catalogue's rows as the YAML lists them, sorted by port, protocol, role."""
    listed = []
    for row in sorted(catalogue.CATALOGUE):
        entry = {
            "port": row.port,
            "proto": row.proto,
            "role": row.role,
            "package": catalogue.ROLES.get(row.role, "zimbra-core"),
            "exposure": row.exposure,
            "consumers": list(row.consumers),
        }
        if row.scheme:
            entry["scheme"] = row.scheme
        entry["purpose"] = row.purpose
        if row.critical:
            entry["critical"] = True
        if row.when_missing:
            entry["only_without"] = row.when_missing
        entry["source"] = catalogue.SOURCES[(row.port, row.proto, row.role)]
        listed.append(entry)
    return listed


def render():
    """The file's text: the header, then one YAML mapping per row."""
    body = yaml.safe_dump(entries(), sort_keys=False, width=10**6, default_flow_style=None, allow_unicode=True)
    return HEADER + body


def main():
    temporary = OUTPUT + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(render())
    os.replace(temporary, OUTPUT)


if __name__ == "__main__":
    main()
