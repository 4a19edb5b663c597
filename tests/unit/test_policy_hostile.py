"""Restrictions compose (issue 18): no key undoes what another narrows, and
narrowing a port for the internet does not take it from the cluster."""

import pytest
import zimbra_fw_catalogue as catalogue
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies

MAILBOX = {"name": "mb1", "addresses": ["10.0.0.13"], "roles": ["mailbox"]}
PROXY = {"name": "px1", "addresses": ["10.0.0.14"], "roles": ["proxy"]}
MTA = {"name": "mta1", "addresses": ["10.0.0.12"], "roles": ["mta"]}


def policy_of(pillar):
    return policies.build(cfg.parse_config(pillar))


def problems(pillar):
    with pytest.raises(cfg.ConfigInvalid) as info:
        policy_of(pillar)
    return info.value.problems


def ports(policy, group):
    return [str(spec) for spec in policy.groups[group].ports]


ONLY_25 = "which zimbra_fw:only_from:25/tcp opens only to its networks"
CONSOLE = "the admin console, which zimbra_fw:admin_subnets opens only to those networks"
SSH = "the ssh port, which zimbra_fw:ssh:from opens only to its networks (and zmrcd to peers)"


@pytest.mark.parametrize(
    "pillar, expected",
    [
        (
            {"roles": ["mta"], "extra_ports": ["24:26/tcp"], "only_from": {"25": ["198.51.100.0/24"]}},
            [
                f"zimbra_fw:extra_ports: '24:26/tcp' covers 25/tcp, {ONLY_25}: it would open 25/tcp to anyone; "
                "leave 25/tcp out of the range"
            ],
        ),
        (
            {"roles": ["mailbox", "proxy"], "admin_subnets": ["10.8.0.0/24"], "extra_ports": ["7070:7071/tcp"]},
            [
                f"zimbra_fw:extra_ports: '7070:7071/tcp' covers 7071/tcp, {CONSOLE}: it would open 7071/tcp to anyone; "
                "leave 7071/tcp out of the range"
            ],
        ),
        (
            {"roles": ["mailbox", "proxy"], "admin_subnets": ["10.8.0.0/24"], "extra_ports": ["9050:9080/tcp"]},
            [
                f"zimbra_fw:extra_ports: '9050:9080/tcp' covers 9071/tcp, {CONSOLE}: it would open 9071/tcp to anyone; "
                "leave 9071/tcp out of the range"
            ],
        ),
        (
            {"roles": ["mailbox"], "admin_subnets": ["10.8.0.0/24"], "extra_ports": [7071]},
            [
                f"zimbra_fw:extra_ports: '7071/tcp' covers 7071/tcp, {CONSOLE}: it would open 7071/tcp to anyone; "
                "leave 7071/tcp out of the range"
            ],
        ),
        (
            {"roles": ["mta"], "ssh": {"port": 2222, "from": ["10.8.0.0/16"]}, "extra_ports": ["2200:2300/tcp"]},
            [
                f"zimbra_fw:extra_ports: '2200:2300/tcp' covers 2222/tcp, {SSH}: it would open 2222/tcp to anyone; "
                "leave 2222/tcp out of the range"
            ],
        ),
        (
            {"roles": ["mta"], "ssh": {"port": 2222, "from": []}, "allow_no_management": True, "extra_ports": [2222]},
            [
                f"zimbra_fw:extra_ports: '2222/tcp' covers 2222/tcp, {SSH}: it would open 2222/tcp to anyone; "
                "leave 2222/tcp out of the range"
            ],
        ),
        (
            {
                "roles": ["mta"],
                "extra_ports": ["6000:6010/tcp", "6005/tcp"],
                "only_from": {"6000:6010/tcp": ["10.1.0.0/16"]},
            },
            [
                "zimbra_fw:extra_ports: '6005/tcp' covers 6000:6010/tcp, which zimbra_fw:only_from:6000:6010/tcp "
                "opens only to its networks: it would open 6000:6010/tcp to anyone; "
                "leave 6000:6010/tcp out of the range"
            ],
        ),
    ],
)
def test_a_public_range_may_not_cover_a_restricted_port(pillar, expected):
    assert problems(pillar) == expected


def test_an_excluded_extra_port_does_not_end_the_check_of_the_others():
    found = problems(
        {
            "roles": ["mta"],
            "ssh": {"port": 2222, "from": ["10.8.0.0/16"]},
            "extra_ports": ["2000/tcp", "2200:2300/tcp"],
            "exclude_ports": ["2000/tcp"],
        }
    )
    assert found == [
        f"zimbra_fw:extra_ports: '2200:2300/tcp' covers 2222/tcp, {SSH}: it would open 2222/tcp to anyone; "
        "leave 2222/tcp out of the range"
    ]


def test_ranges_that_leave_restricted_ports_alone_and_excluded_ranges_pass():
    policy = policy_of({"roles": ["mta"], "extra_ports": ["26:30/tcp"], "only_from": {"25": ["198.51.100.0/24"]}})
    assert "26:30/tcp" in [str(s) for s in policy.groups["Zimbra"].ports]
    # An excluded range is opened to no one: nothing to widen.
    policy = policy_of(
        {
            "roles": ["mailbox", "proxy"],
            "admin_subnets": ["10.8.0.0/24"],
            "extra_ports": ["7060:7071/tcp"],
            "exclude_ports": ["7060:7071/tcp"],
        }
    )
    assert all(not spec.overlaps(catalogue.PortSpec(7071, 7071, "tcp")) for spec in policy.public)
    assert policies.open_ports(policy)["admin_console_open"] is False
    # ssh open to anyone: a range over it opens nothing more.
    assert policy_of({"roles": ["mta"], "ssh": {"port": 2222}, "extra_ports": ["2200:2300/tcp"]})
    # only_from on an extra port is the extra port itself, narrowed.
    policy = policy_of({"roles": ["mta"], "extra_ports": [8448], "only_from": {"8448": ["10.1.0.0/16"]}})
    assert "8448/tcp" in policies.open_ports(policy)["only_from"]


@pytest.mark.parametrize(
    "pillar, is_open",
    [
        ({"roles": ["mailbox", "proxy"]}, True),
        ({"roles": ["mailbox", "proxy"], "admin_subnets": ["10.8.0.0/24"]}, False),
        ({"roles": ["mailbox"], "only_from": {"7071": ["10.8.0.0/16"]}}, False),
        ({"roles": ["mailbox", "proxy"], "only_from": {"7071": ["10.8.0.0/16"]}}, True),  # 9071 still open
        ({"roles": ["mailbox"], "exclude_ports": [7071]}, False),
        ({"roles": ["mta"]}, False),
        ({"roles": ["mta"], "extra_ports": ["7060:7071/tcp"]}, False),  # no console on an MTA
    ],
)
def test_open_ports_says_whether_the_admin_console_is_open_to_anyone(pillar, is_open):
    assert policies.open_ports(policy_of(pillar))["admin_console_open"] is is_open


# ---------------------------------------------------------------- item 4


def test_a_mailbox_peer_keeps_smtp_when_only_from_narrows_it_for_the_internet():
    policy = policy_of({"roles": ["mta"], "only_from": {"25": ["198.51.100.0/24"]}, "cluster": {"peers": [MAILBOX]}})
    assert ports(policy, "Zimbra-mailbox") == ["22/tcp", "25/tcp"]
    assert policies.open_ports(policy)["peers"]["25/tcp"] == ["mb1"]
    assert "25/tcp" not in ports(policy, "Zimbra")
    # Open to anyone, 25 needs no peer rule.
    policy = policy_of({"roles": ["mta"], "cluster": {"peers": [MAILBOX]}})
    assert ports(policy, "Zimbra-mailbox") == ["22/tcp"]


def test_proxy_and_mta_peers_keep_admin_soap_when_only_from_narrows_7071():
    policy = policy_of(
        {"roles": ["mailbox"], "only_from": {"7071": ["10.8.0.0/16"]}, "cluster": {"peers": [PROXY, MTA]}}
    )
    assert "7071/tcp" in ports(policy, "Zimbra-proxy") and "7071/tcp" in ports(policy, "Zimbra-mta")
    assert policies.open_ports(policy)["peers"]["7071/tcp"] == ["mta1", "px1"]


@pytest.mark.parametrize("port", [25, 443, 389, 11211, 7071, 514])
def test_the_ssh_port_may_not_be_a_zimbra_port(port):
    found = problems({"roles": ["mta"], "ssh": {"port": port, "from": ["10.8.0.0/16"]}})
    assert len(found) == 1 and found[0].startswith(f"zimbra_fw:ssh:port: {port} is a Zimbra port ({port}/"), found
    assert found[0].endswith("sshd cannot share it, and the ssh rule would open it to ssh:from")


def test_an_extra_port_named_in_only_from_still_may_not_open_ssh_or_the_admin_console():
    ssh = problems(
        {
            "roles": ["mta"],
            "ssh": {"port": 2222, "from": ["192.0.2.0/24"]},
            "extra_ports": [2222],
            "only_from": {"2222": ["198.51.100.0/24"]},
        }
    )
    assert ssh == [
        "zimbra_fw:extra_ports: '2222/tcp' covers 2222/tcp, the ssh port, which zimbra_fw:ssh:from opens only to "
        "its networks (and zmrcd to peers): it would open 2222/tcp to anyone; leave 2222/tcp out of the range"
    ]
    admin = problems(
        {
            "roles": ["mailbox"],
            "admin_subnets": ["192.0.2.0/24"],
            "extra_ports": [7071],
            "only_from": {"7071": ["198.51.100.0/24"]},
        }
    )
    assert admin == [
        "zimbra_fw:extra_ports: '7071/tcp' covers 7071/tcp, the admin console, which zimbra_fw:admin_subnets opens "
        "only to those networks: it would open 7071/tcp to anyone; leave 7071/tcp out of the range"
    ]


def test_an_only_from_range_over_a_catalogue_port_is_refused():
    found = problems(
        {"roles": ["mailbox"], "extra_ports": ["7070:7071/tcp"], "only_from": {"7070:7071/tcp": ["198.51.100.0/24"]}}
    )
    assert found == [
        "zimbra_fw:only_from:7070:7071/tcp: '7070:7071/tcp' overlaps 7071/tcp, another public port: name each port "
        "alone"
    ]
