"""Catalogue and whitelist per role set."""

import zimbra_fw_catalogue as catalogue
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies

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


def test_catalogue_rows_are_complete():
    rows = catalogue.as_dicts()
    assert {row["exposure"] for row in rows} == {"public", "cluster", "localhost"}
    assert all(row["role"] in set(catalogue.ROLES) | {"core"} for row in rows)
    memcached = [row for row in rows if row["port"] == 11211]
    assert memcached[0]["critical"] and memcached[0]["exposure"] == "cluster"
    assert [row["port"] for row in rows] == sorted(row["port"] for row in rows)
