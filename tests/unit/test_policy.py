"""The policy (zimbra_fw_policy), in one place: its port groups and its
accesses in order, as any backend receives them; the whitelist per role set;
a cluster's per-role groups and peers, admin subnets and the Salt master; the
flows of a split install (spam training, imapd, zmrcd, mail modes) and
per-port sources (only_from); restrictions that compose (no key undoes what
another narrows, and narrowing a port for the internet does not take it from
the cluster)."""

import ipaddress

import pytest
import zimbra_fw_catalogue as catalogue
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
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


def test_a_public_port_is_never_put_in_a_peer_group():
    config = cfg.parse_config(
        {"roles": ["mta"], "cluster": {"peers": [{"name": "mb", "addresses": ["10.0.0.3"], "roles": ["mailbox"]}]}}
    )
    policy = policies.build(config)
    # 25 is public: the mailbox gets it as anyone does, not in its group (22 is zmrcd's ssh)
    assert policy.groups["Zimbra-mailbox"].ports == specs("22")
    assert catalogue.row_for(80, "tcp", ["mailbox"]).role == "mailbox"


SEED_PUBLIC = [25, 80, 110, 143, 443, 465, 587, 993, 995, 3443, 5222, 5223, 7071, 9071]


def whitelist(pillar):
    return policies.open_ports(policies.build(cfg.parse_config(pillar)))


def config(**pillar):
    return dict({"roles": ["ldap", "mta", "proxy", "mailbox"]}, **pillar)


def test_single_server_public_is_the_seeds_14():
    public = whitelist(config())["public"]
    assert public == [f"{port}/tcp" for port in SEED_PUBLIC]


def test_internal_ports_are_never_public():
    ports = whitelist(config())
    for internal in ("389/tcp", "636/tcp", "7306/tcp", "7171/tcp", "10024/tcp"):
        assert internal not in ports["public"]
    assert {"389/tcp", "636/tcp", "7025/tcp", "8080/tcp"} <= set(ports["cluster"])


def test_localhost_ports():
    localhost = whitelist(config())["localhost"]
    for port in (3310, 7171, 7306, 10024, 10025, 10026, 10028, 10029, 10032, 23232, 23233):
        assert f"{port}/tcp" in localhost
    assert localhost == sorted(localhost, key=lambda p: int(p.split("/")[0]))


def test_mta_alone():
    ports = whitelist({"roles": ["mta"]})
    assert ports["public"] == ["25/tcp", "465/tcp", "587/tcp"]
    assert "10024/tcp" in ports["localhost"]


def test_mailbox_without_proxy_serves_web_and_mail_itself():
    public = whitelist({"roles": ["mailbox"]})["public"]
    assert public == [f"{p}/tcp" for p in (80, 110, 143, 443, 993, 995, 5222, 5223, 7071)]


def test_memcached_and_ldap_only_roles_have_nothing_public():
    for role, port in (("memcached", "11211/tcp"), ("ldap", "389/tcp")):
        ports = whitelist({"roles": [role]})
        assert ports["public"] == []
        assert port in ports["cluster"]


def test_snmp_opens_nothing():
    ports = whitelist({"roles": ["snmp"]})
    assert ports["public"] == [] and ports["cluster"] == ["22/tcp"]


def test_extra_and_excluded_ports():
    public = whitelist(config(extra_ports=[8448, "1194/udp", "6000:6010/tcp"], exclude_ports=[5222, "5223/tcp"]))[
        "public"
    ]
    expected = [f"{port}/tcp" for port in SEED_PUBLIC if port not in (5222, 5223)]
    assert public == sorted(
        [*expected, "8448/tcp", "1194/udp", "6000:6010/tcp"], key=lambda p: int(p.split("/")[0].split(":")[0])
    )


def test_exclusion_of_a_whole_range():
    public = whitelist(config(extra_ports=["6000:6010/tcp"], exclude_ports=["5000:7000/tcp"]))["public"]
    assert "6000:6010/tcp" not in public


CLUSTER_PEERS = [
    {"name": "ldap", "addresses": ["10.0.0.11"], "roles": ["ldap"]},
    {"name": "mta", "addresses": ["10.0.0.12", "2001:db8::12"], "roles": ["mta"]},
    {"name": "mailbox", "addresses": ["10.0.0.13"], "roles": ["mailbox", "memcached"]},
    {"name": "proxy", "addresses": ["10.0.0.14"], "roles": ["proxy"]},
]


def cluster_node(name, **pillar):
    """The policy of one node of the 4-node cluster."""
    roles = next(p["roles"] for p in CLUSTER_PEERS if p["name"] == name)
    peers = [p for p in CLUSTER_PEERS if p["name"] != name]
    return policy_of(dict({"roles": roles, "cluster": {"peers": peers}}, **pillar))


def policy_of(pillar, facts=cfg.NO_FACTS):
    return policies.build(cfg.parse_config(pillar, facts))


def port_texts(specs):
    return [str(s) for s in specs]


def test_mailbox_profiles_per_consumer_role():
    groups = cluster_node("mailbox").groups
    assert list(groups) == ["Zimbra", "Zimbra-mta", "Zimbra-proxy"]
    assert port_texts(groups["Zimbra-mta"].ports) == ["7025/tcp", "7073/tcp", "8443/tcp"]  # 7071 is public here
    assert "11211/tcp" in port_texts(groups["Zimbra-proxy"].ports) and "8080/tcp" in port_texts(
        groups["Zimbra-proxy"].ports
    )
    assert "Zimbra-mailbox" not in groups  # no other mailbox in this cluster


def test_mailbox_public_ports_depend_on_a_proxy_in_the_cluster():
    assert policies.open_ports(cluster_node("mailbox"))["public"] == ["5222/tcp", "5223/tcp", "7071/tcp"]
    alone = policy_of({"roles": ["mailbox"], "cluster": {"peers": CLUSTER_PEERS[:2]}})
    assert "443/tcp" in policies.open_ports(alone)["public"]


def test_admin_subnets_take_the_console_off_the_internet():
    policy = policy_of({"roles": ["mailbox", "proxy"], "admin_subnets": ["10.9.0.0/24"]})
    ports_ = policies.open_ports(policy)
    assert "7071/tcp" not in ports_["public"] and "9071/tcp" not in ports_["public"]
    assert ports_["admin"] == {"7071/tcp": ["10.9.0.0/24"], "9071/tcp": ["10.9.0.0/24"]}
    assert ("allow", "from", "10.9.0.0/24", "to", "any", "app", "Zimbra-admin") in ufw.desired_rules(policy)


def test_open_ports_lists_peers_per_port():
    result = policies.open_ports(cluster_node("mailbox"))
    assert result["peers"]["7025/tcp"] == ["mta"]
    assert result["peers"]["11211/tcp"] == ["proxy"]
    assert result["roles"] == {"roles": ["mailbox", "memcached"], "source": "pillar"}


def test_salt_master_stays_reachable():
    master = cfg.Facts(salt_master=("10.77.0.1", (4505, 4506), (32768, 60999)))
    policy = policy_of({"roles": ["mta"]}, master)
    # From the master's ports 4505/4506, to the minion's ephemeral ports only.
    assert policies.management(policy)[1] == policies.Access(
        "salt-master",
        ipaddress.ip_network("10.77.0.1/32"),
        (catalogue.PortSpec(32768, 60999, "tcp"),),
        None,
        (4505, 4506),
    )
    management = [ufw.rule_words(access) for access in policies.management(policy)]
    assert ufw.desired_rules(policy)[:2] == management
    off = policy_of({"roles": ["mta"], "allow_salt_master": False}, master)
    assert [ufw.rule_words(access) for access in policies.management(off)] == [("allow", "22/tcp")]


MTA = {"name": "mta1", "addresses": ["10.0.0.12"], "roles": ["mta"]}


IMAPD = {"name": "imap1", "addresses": ["10.0.0.16"], "roles": ["imapd"]}


MAILBOX = {"name": "mb1", "addresses": ["10.0.0.13"], "roles": ["mailbox"]}


def group_ports(policy, name):
    return [str(spec) for spec in policy.groups[name].ports]


@pytest.mark.parametrize(
    "mode, soap",
    [
        ("https", ["8443/tcp"]),
        ("http", ["8080/tcp"]),
        ("both", ["8080/tcp", "8443/tcp"]),
        ("mixed", ["8080/tcp", "8443/tcp"]),
        ("redirect", ["8080/tcp", "8443/tcp"]),
    ],
)
def test_spam_training_and_imapd_reach_admin_soap_and_the_soap_port_of_the_mail_mode(mode, soap):
    policy = policy_of(
        {"roles": ["mailbox"], "admin_subnets": ["10.8.0.0/24"], "mail_mode": mode, "cluster": {"peers": [MTA, IMAPD]}}
    )
    assert group_ports(policy, "Zimbra-mta") == sorted(
        ["7025/tcp", "7071/tcp", "7073/tcp", *soap], key=lambda p: int(p[:4])
    )
    assert group_ports(policy, "Zimbra-imapd") == sorted(["7071/tcp", *soap], key=lambda p: int(p[:4]))


def test_zmrcd_follows_the_ssh_port():
    policy = policy_of(
        {"roles": ["ldap"], "ssh": {"port": 2222, "from": ["192.0.2.0/24"]}, "cluster": {"peers": [MAILBOX, MTA]}}
    )
    assert group_ports(policy, "Zimbra-mailbox") == ["2222/tcp"]
    assert "22/tcp" not in [str(s) for s in policy.cluster] and "2222/tcp" in [str(s) for s in policy.cluster]
    assert ufw.desired_rules(policy) == [
        ("allow", "from", "192.0.2.0/24", "to", "any", "port", "2222", "proto", "tcp"),
        ("allow", "from", "10.0.0.13", "to", "any", "app", "Zimbra-all"),
        ("allow", "from", "10.0.0.13", "to", "any", "app", "Zimbra-mailbox"),
        ("allow", "from", "10.0.0.12", "to", "any", "app", "Zimbra-all"),
    ]


def test_only_from_narrows_a_public_port_to_its_networks():
    policy = policy_of(
        {
            "roles": ["mta", "mailbox", "proxy"],
            "trusted_subnets": ["192.168.1.0/24"],
            "only_from": {"25": ["198.51.100.0/24"], "7071/tcp": ["10.8.0.0/16", "10.9.0.0/16"]},
        }
    )
    assert "25/tcp" not in group_ports(policy, "Zimbra") and "587/tcp" in group_ports(policy, "Zimbra")
    assert "7071/tcp" not in group_ports(policy, "Zimbra")
    assert ufw.desired_rules(policy) == [
        ("allow", "22/tcp"),
        ("allow", "from", "192.168.1.0/24"),
        ("allow", "from", "198.51.100.0/24", "to", "any", "port", "25", "proto", "tcp"),
        ("allow", "from", "10.8.0.0/16", "to", "any", "port", "7071", "proto", "tcp"),
        ("allow", "from", "10.9.0.0/16", "to", "any", "port", "7071", "proto", "tcp"),
        ("allow", "Zimbra"),
    ]
    ports = policies.open_ports(policy)
    assert ports["only_from"] == {"25/tcp": ["198.51.100.0/24"], "7071/tcp": ["10.8.0.0/16", "10.9.0.0/16"]}
    assert "25/tcp" in ports["public"]


MINE = {"mine": True, "networks": ["10.0.0.0/24"]}


def test_only_from_as_accesses_and_every_bad_port_named():
    policy = policy_of({"roles": ["mta"], "only_from": {"25": ["198.51.100.0/24"]}})
    assert policy.accesses[1] == policies.Access(
        "only-from", ipaddress.ip_network("198.51.100.0/24"), tuple(policy.public[:1]), None, ()
    )
    with pytest.raises(cfg.ConfigInvalid) as info:
        policy_of({"roles": ["mta"], "only_from": {"x": ["10.0.0.0/8"], "y": ["10.0.0.0/8"]}})
    assert [p.split(":")[2] for p in info.value.problems] == ["x", "y"]
    with pytest.raises(cfg.ConfigInvalid) as info:
        policy_of({"roles": ["ldap"], "only_from": {"25": ["10.0.0.0/8"]}})
    assert info.value.problems == [
        "zimbra_fw:only_from:25/tcp: '25/tcp' is not a public port of this server (its public ports: none)"
    ]


PROXY = {"name": "px1", "addresses": ["10.0.0.14"], "roles": ["proxy"]}


def problems(pillar):
    with pytest.raises(cfg.ConfigInvalid) as info:
        policy_of(pillar)
    return info.value.problems


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


def test_a_mailbox_peer_keeps_smtp_when_only_from_narrows_it_for_the_internet():
    policy = policy_of({"roles": ["mta"], "only_from": {"25": ["198.51.100.0/24"]}, "cluster": {"peers": [MAILBOX]}})
    assert group_ports(policy, "Zimbra-mailbox") == ["22/tcp", "25/tcp"]
    assert policies.open_ports(policy)["peers"]["25/tcp"] == ["mb1"]
    assert "25/tcp" not in group_ports(policy, "Zimbra")
    # Open to anyone, 25 needs no peer rule.
    policy = policy_of({"roles": ["mta"], "cluster": {"peers": [MAILBOX]}})
    assert group_ports(policy, "Zimbra-mailbox") == ["22/tcp"]


def test_proxy_and_mta_peers_keep_admin_soap_when_only_from_narrows_7071():
    policy = policy_of(
        {"roles": ["mailbox"], "only_from": {"7071": ["10.8.0.0/16"]}, "cluster": {"peers": [PROXY, MTA]}}
    )
    assert "7071/tcp" in group_ports(policy, "Zimbra-proxy") and "7071/tcp" in group_ports(policy, "Zimbra-mta")
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
