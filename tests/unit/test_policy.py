"""The policy, whole: its port groups and its accesses in order, as any backend receives them."""

import ipaddress

import zimbra_fw_catalogue as catalogue
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
from zimbra_fw_policy import Access, Group

PEERS = [
    {"name": "mta1", "addresses": ["10.0.0.12"], "roles": ["mta"]},
    {"name": "ldap1", "addresses": ["10.0.0.11"], "roles": ["ldap"]},
]


def specs(*texts):
    return [catalogue.parse_port_spec(text) for text in texts]


def net(text):
    return ipaddress.ip_network(text)


def test_a_mailbox_with_proxy_trusted_admin_and_peers():
    config = cfg.parse_config(
        {
            "roles": ["mailbox", "proxy"],
            "trusted_subnets": ["10.9.0.0/16"],
            "admin_subnets": ["10.8.0.0/24"],
            "cluster": {"peers": PEERS},
        },
        cfg.Facts(salt_master=("10.77.0.1", (4505, 4506))),
    )
    policy = policies.build(config)
    public = specs("80", "110", "143", "443", "993", "995", "3443", "5222", "5223")
    assert list(policy.groups.values()) == [
        Group(
            "Zimbra",
            "Zimbra Collaboration Server",
            "Open source server for email, contacts, calendar and collaboration",
            public,
        ),
        Group(
            "Zimbra-mta",
            "Zimbra Collaboration Server (mta peers)",
            "Zimbra ports that mta peers connect to",
            specs("7025", "7071", "7073", "8443"),  # admin SOAP and SOAP/REST for spam training
        ),
        Group(
            "Zimbra-admin",
            "Zimbra Collaboration Server (admin_subnets)",
            "Zimbra ports that admin_subnets connect to",
            specs("7071", "9071"),
        ),
    ]
    assert policy.accesses == [
        Access("ssh", None, tuple(specs("22")), None, ()),
        Access("salt-master", net("10.77.0.1/32"), tuple(specs("32768:60999")), None, (4505, 4506)),
        Access("trusted", net("10.9.0.0/16"), None, None, ()),
        Access("admin", net("10.8.0.0/24"), specs("7071", "9071"), "Zimbra-admin", ()),
        Access("peer", net("10.0.0.12/32"), specs("7025", "7071", "7073", "8443"), "Zimbra-mta", ()),
        Access("public", None, tuple(public), "Zimbra", ()),
    ]
    assert policies.management(policy) == policy.accesses[:2]
    assert policy.public == public and policy.admin == specs("7071", "9071")
    assert policies.open_ports(policy)["peers"] == {
        "7025/tcp": ["mta1"],
        "7071/tcp": ["mta1"],
        "7073/tcp": ["mta1"],
        "8443/tcp": ["mta1"],
    }
    assert policies.open_ports(policy)["admin"] == {"7071/tcp": ["10.8.0.0/24"], "9071/tcp": ["10.8.0.0/24"]}


def test_ports_every_node_uses_form_the_all_group():
    config = cfg.parse_config({"roles": ["ldap", "logger"], "cluster": {"peers": PEERS}})
    policy = policies.build(config)
    assert list(policy.groups.values()) == [
        Group(
            "Zimbra-all",
            "Zimbra Collaboration Server (all peers)",
            "Zimbra ports that all peers connect to",
            specs("389", "514/udp", "636"),
        )
    ]
    assert [(a.kind, str(a.source), a.group) for a in policy.accesses[1:]] == [
        ("peer", "10.0.0.11/32", "Zimbra-all"),  # peers in name order: ldap1, mta1
        ("peer", "10.0.0.12/32", "Zimbra-all"),
    ]
    assert policy.public == [] and policy.cluster == specs("22", "389", "514/udp", "636")
    assert policy.localhost == specs("7171", "7307")


def test_an_excluded_public_port_goes_to_no_one_and_a_cluster_port_stays_cluster():
    policy = policies.build(cfg.parse_config({"roles": ["mailbox"], "exclude_ports": ["5222:5223/tcp"]}))
    assert "5222/tcp" not in [str(s) for s in policy.public]
    policy = policies.build(cfg.parse_config({"roles": ["mailbox"], "extra_ports": [8448]}))
    assert catalogue.parse_port_spec(8448) in policy.public
    assert not any(catalogue.parse_port_spec(8448) in g.ports for g in policy.groups.values() if g.name != "Zimbra")


def test_admin_subnets_without_admin_ports_list_none():
    policy = policies.build(cfg.parse_config({"roles": ["mta"], "admin_subnets": ["10.8.0.0/24"]}))
    assert policy.admin == [] and policies.open_ports(policy)["admin"] == {}
    assert [a.kind for a in policy.accesses] == ["ssh", "public"]


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


def test_a_public_port_is_never_put_in_a_peer_group():
    config = cfg.parse_config(
        {"roles": ["mta"], "cluster": {"peers": [{"name": "mb", "addresses": ["10.0.0.3"], "roles": ["mailbox"]}]}}
    )
    policy = policies.build(config)
    # 25 is public: the mailbox gets it as anyone does, not in its group (22 is zmrcd's ssh)
    assert policy.groups["Zimbra-mailbox"].ports == specs("22")
    assert catalogue.row_for(80, "tcp", ["mailbox"]).role == "mailbox"
