"""The shipped port reference (docs/zimbra-ports.yaml) and the catalogue agree,
and every catalogue row cites a Zimbra source."""

import os

import yaml
import zimbra_fw_catalogue as catalogue

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def reference():
    with open(os.path.join(REPO, "docs", "zimbra-ports.yaml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_every_catalogue_row_is_in_the_reference_with_its_exposure_and_consumers():
    rows = {(row.port, row.proto, row.role): row for row in catalogue.CATALOGUE}
    entries = {(entry["port"], entry["proto"], entry["role"]): entry for entry in reference()}
    assert set(rows) == set(entries)
    for key, row in rows.items():
        entry = entries[key]
        assert (entry["exposure"], tuple(entry["consumers"])) == (row.exposure, row.consumers), key
        assert entry["package"] == catalogue.ROLES.get(row.role, "zimbra-core"), key
        assert entry.get("scheme") == row.scheme, key
        assert entry["source"].strip(), key
