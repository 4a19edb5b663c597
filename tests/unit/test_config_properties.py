"""Any pillar, of any shape and type, either validates or is refused with
problems that each name a ``zimbra_fw`` key; nothing else is ever raised."""

import ipaddress

import zimbra_fw_config as cfg
import zimbra_fw_policy as policies
import zimbra_fw_ufw as ufw
from hypothesis import given, settings
from hypothesis import strategies as st
from test_config import special_reason_reference

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        ["any", "mta", "mailbox", "10.0.0.0/8", "10.0.0.5", "0.0.0.0/1", "::/0", "22", "514/udp", "6000:6010/tcp"]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from([*cfg.DEFAULTS, "nope"])
SUBKEYS = st.sampled_from(["port", "from", "name", "title", "description", "peers", "mine", "mine_target", 7])
PILLARS = st.one_of(
    VALUES,
    st.dictionaries(KEYS, VALUES | st.dictionaries(SUBKEYS, VALUES, max_size=3), max_size=6),
)
MINE = st.none() | st.dictionaries(st.text(min_size=1, max_size=6), VALUES, max_size=3)


def check(pillar, facts):
    try:
        config = cfg.parse_config(pillar, facts)
    except cfg.ConfigInvalid as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith("zimbra_fw:") or problem.startswith("zimbra_fw "), problem
        return
    policy = policies.build(config)
    for access in policy.accesses:  # nothing valid ever opens a port to the whole internet by address
        assert access.source is None or ipaddress.ip_network(access.source).prefixlen > 0
    ufw.desired_rules(policy)
    ufw.profile_text(policy)


@settings(max_examples=800, deadline=None)
@given(PILLARS)
def test_any_pillar_validates_or_names_its_key(pillar):
    check(pillar, cfg.Facts(packages=["zimbra-store"]))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["roles", "cluster", "trusted_subnets"]), VALUES, max_size=3), MINE)
def test_any_mine_data_validates_or_names_its_minion(pillar, mine):
    pillar = dict(pillar, cluster={"mine": True, "networks": ["10.0.0.0/8"]})
    check(pillar, cfg.Facts(packages=["zimbra-mta"], mine_data=mine, minion_id="self"))


NOT_OCTETS = ["00", "01", "007", "0x1", "-1", "", " 1", "\u0663", "\uff11"]  # Arabic-Indic 3, fullwidth 1
OCTETS = st.one_of(st.integers(0, 300).map(str), st.sampled_from(NOT_OCTETS))
QUADS = st.builds(
    lambda octets, tail: ".".join(octets) + tail,
    st.lists(OCTETS, min_size=3, max_size=5),
    st.sampled_from(["", "/32", "/032", "/31", "/0", "/", "/33", "%eth0", " ", "\n"]),
)


@given(st.one_of(QUADS, st.text(alphabet="0123456789./:%\u0661", max_size=20)))
@settings(max_examples=3000, deadline=None)
def test_a_dotted_quad_is_read_as_ipaddress_reads_it(text):
    """The dotted-quad shortcut of the address parser makes exactly the
    network ip_network makes, and only of text ip_network accepts."""
    problems = cfg.Problems()
    network = cfg._network_of_text(problems, "k", text)
    if cfg.IPV4_HOST_RE.fullmatch(text.strip()):
        assert network == ipaddress.ip_network(text.strip()) and network.prefixlen == 32
        assert str(network) == str(ipaddress.ip_network(text.strip()))
    if network is None:
        assert problems
    else:
        assert network == ipaddress.ip_network(text.strip()) and not problems


NETWORKS = st.one_of(
    st.builds(
        lambda value, length: ipaddress.IPv4Network((value, length), strict=False),
        st.integers(0, 2**32 - 1),
        st.integers(0, 32),
    ),
    st.builds(
        lambda value, length: ipaddress.IPv6Network((value, length), strict=False),
        st.integers(0, 2**128 - 1),
        st.integers(0, 128),
    ),
)


@given(NETWORKS)
@settings(max_examples=3000, deadline=None)
def test_source_text_is_the_address_ipaddress_prints_without_a_host_prefix(network):
    address = ipaddress.ip_address(network.network_address.packed).compressed
    want = address if network.prefixlen == network.max_prefixlen else f"{address}/{network.prefixlen}"
    assert cfg.source_text(network) == want
    assert ipaddress.ip_network(cfg.source_text(network)) == network


@given(st.lists(NETWORKS, max_size=40))
@settings(max_examples=500, deadline=None)
def test_network_order_sorts_as_ipaddress_compares(networks):
    by_family = sorted(networks, key=lambda network: (network.version, network))
    assert sorted(networks, key=cfg.network_order) == by_family


@given(st.lists(NETWORKS, max_size=12))
@settings(max_examples=500, deadline=None)
def test_unique_networks_are_each_network_once_in_ipaddress_order(networks):
    want = tuple(sorted(set(networks), key=lambda network: (network.version, network)))
    assert cfg._unique_networks(networks) == (tuple(networks) if len(networks) == 1 else want)


def _near(special, offset, length):
    """A network at ``offset`` addresses from the start of ``special`` (either
    side), of prefix ``length``: in it, around it, or just beside it."""
    top = 2**special.max_prefixlen - 1
    value = min(max(int(special.network_address) + offset, 0), top)
    return ipaddress.ip_network((value, min(length, special.max_prefixlen)), strict=False)


SPECIAL_ADJACENT = st.builds(
    _near,
    st.sampled_from([special for special, _, _ in cfg.SPECIAL_NETWORKS]),
    st.one_of(st.integers(-3, 3), st.integers(-(2**40), 2**40), st.integers(-(2**100), 2**100)),
    st.integers(0, 128),
)


@given(st.one_of(SPECIAL_ADJACENT, NETWORKS))
@settings(max_examples=2000, deadline=None)
def test_special_reason_answers_as_ipaddress_does(network):
    """The integer check with its index by block refuses exactly what
    ipaddress's subnet_of refuses, with the same reason."""
    assert cfg.special_reason(network) == special_reason_reference(network)
