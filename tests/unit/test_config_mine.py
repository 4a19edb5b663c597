"""The Salt Mine is data any minion can write (issue 18, item 5): only
addresses inside cluster:networks count, a bad entry is left out (never an
error that stops every other minion's states), and there are caps."""

import pytest
import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
from hypothesis import given, settings
from hypothesis import strategies as st

MAILBOX = {"roles": ["mailbox"]}
NETWORKS = ["10.0.0.0/24", "2001:db8::/64"]
MINE = {"mine": True, "networks": NETWORKS}
GOOD = {"roles": ["mta"], "addresses": ["10.0.0.12", "2001:db8::12"]}


def parse(mine, pillar=None, **facts):
    pillar = pillar or {**MAILBOX, "cluster": MINE}
    return cfg.parse_config(pillar, cfg.Facts(mine_data=mine, minion_id="mb", **facts))


def test_the_mine_needs_cluster_networks():
    with pytest.raises(cfg.ConfigInvalid) as info:
        parse({"mta1": GOOD}, {**MAILBOX, "cluster": {"mine": True}})
    assert info.value.problems == [
        "zimbra_fw:cluster:networks: [] is empty, but cluster:mine is true: any minion can write mine data, so list "
        "the networks the Zimbra servers live in (e.g. [10.0.0.0/24]); mine addresses outside them are left out"
    ]
    # The pillar is refused the same way when the mine is not read (zimbra_fw.identity).
    with pytest.raises(cfg.ConfigInvalid):
        cfg.parse_config({**MAILBOX, "cluster": {"mine": True}})


def test_an_entry_outside_the_networks_gets_no_rule_and_no_role():
    evil = {"roles": ["proxy", "ldap"], "addresses": ["203.0.113.5"]}
    policy = policies.build(parse({"evil": evil, "mta1": GOOD}))
    assert [peer.name for peer in policy.config.peers] == ["mta1"]
    assert "443/tcp" in [str(s) for s in policy.public]  # no proxy claimed: the mailbox keeps its web ports
    assert "Zimbra-proxy" not in policy.groups
    assert policies.open_ports(policy)["left_out"] == {"evil": ["203.0.113.5 is outside cluster:networks"]}


@pytest.mark.parametrize(
    "identity, reason",
    [
        ("10.0.0.5", "zimbra_fw:cluster:mine[evil]: '10.0.0.5' must be a mapping with roles and addresses"),
        ({"roles": ["proxy"], "addresses": ["10.0.0.5%eth0"]}, "has an IPv6 zone ID"),
        ({"roles": ["proxy"], "addresses": ['2001:db8::5%" invert="true']}, "has an IPv6 zone ID"),
        ({"roles": ["proxy"], "addresses": ["::ffff:10.0.0.5"]}, "is an IPv4-mapped IPv6 address"),
        ({"roles": ["proxy"], "addresses": ["::10.0.0.5"]}, "is an IPv4-compatible IPv6 address"),
        ({"roles": ["proxy"], "addresses": ["fe80::5"]}, "is link-local"),
        ({"roles": ["proxy"], "addresses": ["127.0.0.1"]}, "is a loopback address"),
        ({"roles": ["proxy"], "addresses": ["224.0.0.5"]}, "is multicast"),
        ({"roles": ["proxy"], "addresses": ["::"]}, "is the unspecified address"),
        ({"roles": ["proxy"], "addresses": ["10.0.0.0/24"]}, "is not a host address"),
        ({"roles": ["proxy"], "addresses": ["10.0.0.5", "bad"]}, "is not a valid subnet"),
        ({"roles": ["proxy", "nope"], "addresses": ["10.0.0.5"]}, "is not a Zimbra role"),
        ({"roles": "proxy", "addresses": ["10.0.0.5"]}, "must be a list, not a str"),
        ({"roles": ["proxy"], "addresses": "10.0.0.5"}, "must be a list, not a str"),
        ({"roles": ["proxy"], "addresses": []}, "must list at least one address"),
        ({"roles": ["proxy"], "addresses": ["10.0.0.5"], "source": "pillar"}, "is not a known key"),
    ],
)
def test_a_malformed_entry_is_left_out_whole_and_the_others_stay(identity, reason):
    config = parse({"evil": identity, "mta1": GOOD})
    assert [(peer.name, peer.source) for peer in config.peers] == [("mta1", "mine")]
    assert any(reason in text for text in config.left_out["evil"]), config.left_out
    assert all(text.startswith("zimbra_fw:cluster:mine[evil]") for text in config.left_out["evil"])


def test_a_minion_id_that_is_not_one_printable_line_is_left_out():
    config = parse({"mail\n1": GOOD, "mta1": GOOD})
    assert [peer.name for peer in config.peers] == ["mta1"]
    assert config.left_out == {"mail\n1": ("zimbra_fw:cluster:mine[mail\n1]: 'mail\\n1' is not a minion id",)}


def test_mine_data_is_not_read_while_cluster_mine_is_off():
    config = parse({"mta1": GOOD}, {**MAILBOX, "cluster": {"mine": False, "networks": NETWORKS}})
    assert (config.peers, config.left_out, config.mine) == ((), {}, False)


def test_ipv6_addresses_are_left_out_while_ipv6_is_off_and_the_ipv4_ones_kept():
    config = parse({"mta1": GOOD, "v6": {"roles": ["mta"], "addresses": ["2001:db8::13"]}}, ipv6_off="IPv6 is off")
    assert [(p.name, [str(a) for a in p.addresses]) for p in config.peers] == [("mta1", ["10.0.0.12/32"])]
    assert config.left_out == {
        "mta1": ("2001:db8::12 is IPv6, but IPv6 is off",),
        "v6": ("2001:db8::13 is IPv6, but IPv6 is off",),
    }


def test_at_most_64_addresses_a_peer():
    many = [f"10.0.0.{i}" for i in range(1, 66)]
    config = parse({"big": {"roles": ["mta"], "addresses": many}, "mta1": GOOD})
    assert [peer.name for peer in config.peers] == ["mta1"]
    assert config.left_out["big"] == (
        "zimbra_fw:cluster:mine[big]:addresses: '65 addresses' are more than 64 for one peer (big)",
    )
    assert len(parse({"big": {"roles": ["mta"], "addresses": many[:64]}}).peers[0].addresses) == 64
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config({**MAILBOX, "cluster": {"peers": [{"name": "big", "addresses": many, "roles": ["mta"]}]}})
    assert info.value.problems == [
        "zimbra_fw:cluster:peers[0]:addresses: '65 addresses' are more than 64 for one peer (big)",
        f"zimbra_fw:cluster:peers[0]:addresses: {many!r} must list at least one address",
    ]


def test_at_most_5000_peers_from_pillar_and_mine():
    peers = [{"name": f"p{i}", "addresses": ["10.0.0.7"], "roles": ["mta"]} for i in range(10)]
    mine = {f"m{i}": {"roles": ["mta"], "addresses": ["10.0.0.8"]} for i in range(4991)}
    with pytest.raises(cfg.ConfigInvalid) as info:
        parse(mine, {**MAILBOX, "cluster": {**MINE, "peers": peers}})
    assert info.value.problems == [
        "zimbra_fw:cluster: '5001 peers' are more than 5000 (10 in cluster:peers, 4991 from the mine): "
        "narrow cluster:mine_target"
    ]
    mine.pop("m0")
    assert len(parse(mine, {**MAILBOX, "cluster": {**MINE, "peers": peers}}).peers) == 5000


ADDRESSES = st.sampled_from(
    ["10.0.0.5", "10.0.0.0/24", "203.0.113.5", "2001:db8::5", "fe80::1%eth0", "::ffff:10.0.0.5", "0.0.0.0/1", "bad"]
)
IDENTITIES = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.integers(),
    st.fixed_dictionaries(
        {"roles": st.lists(st.sampled_from(["mta", "proxy", "nope", 5]), max_size=2) | st.text(max_size=3)},
        optional={"addresses": st.lists(ADDRESSES, max_size=3) | ADDRESSES, "name": st.text(max_size=3)},
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4) | st.integers(), IDENTITIES, min_size=1, max_size=4))
def test_no_mine_data_stops_this_minions_states(mine):
    config = parse(mine)
    networks = [cfg.ipaddress.ip_network(n) for n in NETWORKS]
    for peer in config.peers:
        assert peer.source == "mine" and peer.addresses
        assert all(any(a.subnet_of(n) for n in networks if n.version == a.version) for a in peer.addresses)
    named = {peer.name for peer in config.peers}
    assert all(str(name) in config.left_out or name in named or name == "mb" for name in mine)


def test_at_most_5000_pillar_peers():
    peers = [{"name": f"p{i}", "addresses": ["10.0.0.7"], "roles": ["mta"]} for i in range(5001)]
    with pytest.raises(cfg.ConfigInvalid) as info:
        cfg.parse_config({**MAILBOX, "cluster": {"peers": peers}})
    assert info.value.problems == ["zimbra_fw:cluster:peers: '5001 peers' are more than 5000"]
    assert len(cfg.parse_config({**MAILBOX, "cluster": {"peers": peers[:5000]}}).peers) == 5000
