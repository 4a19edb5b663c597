"""The port catalogue (zimbra_fw_catalogue): its rows as data, port specs and
their edges, the internal ports, who connects in each mail mode, roles from
packages."""

import pytest
import zimbra_fw_catalogue as catalogue
import zimbra_fw_config as cfg
from zimbra_fw_catalogue import parse_port_spec


def test_catalogue_rows_are_complete():
    rows = catalogue.as_dicts()
    assert {row["exposure"] for row in rows} == {"public", "cluster", "localhost"}
    assert all(row["role"] in set(catalogue.ROLES) | {"core"} for row in rows)
    memcached = [row for row in rows if row["port"] == 11211]
    assert memcached[0]["critical"] and memcached[0]["exposure"] == "cluster"
    assert [row["port"] for row in rows] == sorted(row["port"] for row in rows)


def test_catalogue_rows_as_data():
    rows = catalogue.as_dicts()
    assert rows[0] == {
        "port": 22,
        "proto": "tcp",
        "role": "core",
        "exposure": "cluster",
        "consumers": ["mailbox"],
        "purpose": "sshd for Zimbra remote management (zmrcd)",
        "critical": False,
    }
    http = [row for row in rows if row["port"] == 80]
    assert [row["role"] for row in http] == ["mailbox", "proxy"]
    assert http[0]["only_without"] == "proxy" and "only_without" not in http[1]
    assert [(row["port"], row["proto"]) for row in rows[:4]] == [(22, "tcp"), (25, "tcp"), (53, "tcp"), (53, "udp")]


def test_port_edges_and_the_critical_list():
    assert str(catalogue.parse_port_spec(1)) == "1/tcp" and str(catalogue.parse_port_spec("65535/udp")) == "65535/udp"
    assert str(catalogue.parse_port_spec("1:65535")) == "1:65535/tcp"
    for bad, reason in (
        ("0:5", "is not a port"),
        ("5:65536", "is not a port"),
        ("5:5", "is a range whose first port is not below its last"),
        ("5/sctp", "has a protocol other than tcp or udp"),
    ):
        try:
            catalogue.parse_port_spec(bad)
        except ValueError as exc:
            assert str(exc).startswith(reason), (bad, exc)
        else:
            raise AssertionError(bad)
    internal = [(row.port, row.proto) for row in catalogue.internal_rows()]
    assert internal == sorted(internal) and (389, "tcp") in internal and (11211, "tcp") in internal
    assert (53, "tcp") in internal and (53, "udp") not in internal  # one row for each port number
    assert not {port for port, _ in internal} & {25, 80, 443, 7071, 9071}
    assert catalogue.row_for(80, "tcp", ["proxy"]).role == "proxy"
    assert catalogue.row_for(80, "tcp", ["mta"]).role == "proxy"  # not this node's: the first row
    assert catalogue.row_for(22, "tcp", ["mta"]).role == "core"
    assert catalogue.row_for(1, "tcp", ["mta"]) is None


def test_the_catalogue_shows_who_connects_in_each_mail_mode():
    (row,) = [row for row in catalogue.as_dicts() if row["port"] == 8443]
    assert row["consumers"] == ["proxy", "mailbox", "docs"]
    assert row["consumers_by_mail_mode"] == {
        "https": ["proxy", "mailbox", "docs", "mta", "imapd"],
        "http": ["proxy", "mailbox", "docs"],
        "both": ["proxy", "mailbox", "docs", "mta", "imapd"],
        "mixed": ["proxy", "mailbox", "docs", "mta", "imapd"],
        "redirect": ["proxy", "mailbox", "docs", "mta", "imapd"],
    }
    assert "consumers_by_mail_mode" not in next(row for row in catalogue.as_dicts() if row["port"] == 7025)


def test_roles_from_packages():
    packages = ["zimbra-core", "zimbra-store", "zimbra-mta", "zimbra-snmp", "bash"]
    assert catalogue.roles_from_packages(packages) == ["mailbox", "mta", "snmp"]
    config = cfg.parse_config({}, cfg.Facts(packages=packages))
    assert config.roles == ("mailbox", "mta", "snmp") and config.roles_source == "packages"
    with pytest.raises(cfg.ConfigInvalid, match=r"no zimbra-\* role package is installed"):
        cfg.parse_config({}, cfg.Facts(packages=["bash"]))


@pytest.mark.parametrize(
    "value, expected",
    [(8443, "8443/tcp"), ("8443", "8443/tcp"), ("514/udp", "514/udp"), ("6000:6010/tcp", "6000:6010/tcp")],
)
def test_port_spec_forms(value, expected):
    assert str(parse_port_spec(value)) == expected
