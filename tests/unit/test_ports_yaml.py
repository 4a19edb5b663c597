"""docs/zimbra-ports.yaml is the catalogue's generated copy (tools/ports_yaml.py):
it is up to date, and it carries every catalogue row with its Zimbra source."""

import yaml
import zimbra_fw_catalogue as catalogue

from tools import ports_yaml


def reference():
    with open(ports_yaml.OUTPUT, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_the_committed_file_is_what_the_catalogue_generates():
    with open(ports_yaml.OUTPUT, encoding="utf-8") as handle:
        committed = handle.read()
    assert committed == ports_yaml.render(), "docs/zimbra-ports.yaml is stale: run make ports"


def test_every_catalogue_row_is_in_the_reference_with_its_exposure_and_consumers():
    rows = {(row.port, row.proto, row.role): row for row in catalogue.CATALOGUE}
    entries = {(entry["port"], entry["proto"], entry["role"]): entry for entry in reference()}
    assert set(rows) == set(entries)
    for key, row in rows.items():
        entry = entries[key]
        assert (entry["exposure"], tuple(entry["consumers"])) == (row.exposure, row.consumers), key
        assert entry["package"] == catalogue.ROLES.get(row.role, "zimbra-core"), key
        assert entry.get("scheme") == row.scheme, key
        assert entry["purpose"] == row.purpose, key
        assert entry.get("critical", False) == row.critical, key
        assert entry.get("only_without") == row.when_missing, key
        assert entry["source"].strip(), key


def test_every_source_belongs_to_a_catalogue_row():
    rows = {(row.port, row.proto, row.role) for row in catalogue.CATALOGUE}
    assert set(catalogue.SOURCES) == rows


def test_the_reference_is_sorted_by_port_protocol_and_role():
    keys = [(entry["port"], entry["proto"], entry["role"]) for entry in reference()]
    assert keys == sorted(keys)
