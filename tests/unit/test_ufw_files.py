"""ufw's formats (zimbra_fw_ufw_files), case by case: rules-file tuples in every
form ufw writes, read as ufw show added prints them; rules as the audit reads
them; profile files and multiport groups; ufw's status output, its defaults
file and its port syntax."""

import pytest
import zimbra_fw_catalogue as catalogue
import zimbra_fw_ufw_files as ufw_files
from zimbra_fw_catalogue import PortSpec

TUPLES = [
    ("allow_log tcp 22 0.0.0.0/0 any 0.0.0.0/0 in", ("allow", "log", "22/tcp")),
    (
        "allow_log-all tcp 25 0.0.0.0/0 any 10.0.0.0/8 out",
        ("allow", "out", "log-all", "from", "10.0.0.0/8", "to", "any", "port", "25", "proto", "tcp"),
    ),
    ("deny any any 0.0.0.0/0 any 0.0.0.0/0 in_eth0", ("deny", "in", "on", "eth0")),
    ("allow any any 0.0.0.0/0 any 0.0.0.0/0 in", ("allow", "to", "any")),
    ("reject udp 53 10.0.0.1 any 0.0.0.0/0 in", ("reject", "to", "10.0.0.1", "port", "53", "proto", "udp")),
    ("allow tcp any 0.0.0.0/0 80 0.0.0.0/0 in", ("allow", "from", "any", "port", "80", "proto", "tcp")),
    (
        "allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 out_eth1",
        ("allow", "out", "on", "eth1", "to", "any", "port", "22", "proto", "tcp"),
    ),
    (
        "limit tcp 22 0.0.0.0/0 any 0.0.0.0/0 in_eth0!out_eth1",
        ("limit", "in", "on", "eth0", "out", "on", "eth1", "to", "any", "port", "22", "proto", "tcp"),
    ),
    (
        "allow udp 514 ::/0 any 2001:db8::/64 in",
        ("allow", "from", "2001:db8::/64", "to", "any", "port", "514", "proto", "udp"),
    ),
    ("allow any 8000 0.0.0.0/0 any 0.0.0.0/0 in", ("allow", "8000")),
]


@pytest.mark.parametrize("line, words", TUPLES, ids=[t[0] for t in TUPLES])
def test_tuple_lines_read_as_ufw_show_added_prints_them(line, words):
    assert ufw_files.rules_from_files([f"### tuple ### {line}\n"]) == [(words, None)]


@pytest.mark.parametrize(
    "line",
    [
        "allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 bad_field",
        "allow tcp 22",
        "allow tcp 22 0.0.0.0/0 any",  # five fields: one short of a source
        "allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 a b c d",
    ],
)
def test_malformed_tuple_lines_are_skipped(line):
    assert ufw_files.rules_from_files([f"### tuple ### {line}\n"]) == []


def test_comments_that_are_not_hex_are_kept_as_written():
    assert ufw_files.rules_from_files(["### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment=zz\n"]) == [
        (("allow", "22/tcp"), "zz")
    ]


def test_only_tuple_lines_count_and_each_rule_once():
    text = "-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n"
    assert ufw_files.rules_from_files([text, text.replace("0.0.0.0/0", "::/0")]) == [(("allow", "22/tcp"), None)]


PROFILES = {"Zimbra-mta": ufw_files.parse_ufw_ports("7025,7073/tcp")}


TCP_UDP_22 = [PortSpec(22, 22, "tcp"), PortSpec(22, 22, "udp")]


ACCESS = [
    (("allow", "log", "22/tcp"), ("allow", "any", [PortSpec(22, 22, "tcp")])),
    (("allow", "log-all", "from", "10.0.0.0/8"), ("allow", "10.0.0.0/8", None)),
    (("reject", "25"), ("reject", "any", [PortSpec(25, 25, "tcp"), PortSpec(25, 25, "udp")])),
    (("limit", "22/tcp"), ("limit", "any", [PortSpec(22, 22, "tcp")])),
    (("allow", "in", "22/tcp"), ("allow", "any", [PortSpec(22, 22, "tcp")])),
    (
        ("allow", "in", "on", "eth0", "from", "10.0.0.0/8", "to", "any", "port", "22"),
        ("allow", "10.0.0.0/8", TCP_UDP_22),
    ),
    (
        ("allow", "from", "10.0.0.1", "to", "any", "app", "Zimbra-mta"),
        ("allow", "10.0.0.1", [PortSpec(7025, 7025, "tcp"), PortSpec(7073, 7073, "tcp")]),
    ),
    (("allow", "from", "10.0.0.1", "to", "any", "app", "Unknown"), ("allow", "10.0.0.1", [])),  # not every port
    (("allow", "Unknown"), ("allow", "any", [])),
    (("allow", "to", "any", "port", "80"), ("allow", "any", [PortSpec(80, 80, "tcp"), PortSpec(80, 80, "udp")])),
    (("allow", "from", "10.0.0.0/8", "to", "10.1.1.1"), ("allow", "10.0.0.0/8", None)),
    (("allow", "proto", "udp", "from", "10.0.0.0/8"), ("allow", "10.0.0.0/8", [PortSpec(1, 65535, "udp")])),
    (
        ("allow", "from", "10.0.0.0/8", "port", "53", "proto", "udp"),
        ("allow", "10.0.0.0/8", [PortSpec(1, 65535, "udp")]),
    ),
]


@pytest.mark.parametrize("words, rule", ACCESS, ids=[" ".join(a[0]) for a in ACCESS])
def test_rules_as_the_audit_reads_them(words, rule):
    assert tuple(ufw_files.access_rule(words, PROFILES)) == rule


@pytest.mark.parametrize("words", [("allow", "out", "53"), ("route", "allow", "80"), ("bogus", "80"), ()])
def test_rules_the_audit_ignores(words):
    assert ufw_files.access_rule(words, PROFILES) is None


@pytest.mark.parametrize(
    "text, state",
    [
        ("Status: active\n", (True, None)),
        (
            "Status: active\nLogging: off\nDefault: deny (incoming), allow (outgoing), disabled (routed)\n",
            (True, "deny"),
        ),
        ("Status: inactive\n", (False, None)),
        ("Status: inactive\nDefault: allow (incoming), allow (outgoing)\n", (False, "allow")),
        ("Status: activeX\n", (False, None)),
        ("Default:   reject (incoming), deny (outgoing)\n", (False, "reject")),
        ("garbage", (False, None)),
    ],
)
def test_status_output(text, state):
    assert ufw_files.parse_status(text) == state


def test_port_groups_split_by_protocol_then_by_weight():
    specs = [PortSpec(p, p, "udp") for p in (5, 1)] + [PortSpec(p, p, "tcp") for p in range(100, 116)]
    assert ufw_files.port_groups(specs) == [",".join(str(p) for p in range(100, 115)) + "/tcp", "115/tcp", "1,5/udp"]
    assert ufw_files.port_groups([]) == []


def test_profile_file_with_a_section_without_ports_and_bad_ports():
    text = "[A]\ntitle=a\n\n[B]\nports=80/tcp\n\n[C]\nports=x/tcp\n"
    assert ufw_files.profile_file_ports(text) == {"A": None, "B": "80/tcp", "C": "x/tcp"}
    assert ufw_files.parse_app_profiles([text]) == {"B": [PortSpec(80, 80, "tcp")]}
    assert ufw_files.profile_file_ports(None) == {}


def test_defaults_file_policies():
    assert ufw_files.parse_defaults_file('IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\n') == "deny"
    assert ufw_files.parse_defaults_file('DEFAULT_INPUT_POLICY="ACCEPT"\n') == "allow"
    assert ufw_files.parse_defaults_file("") is None
    assert ufw_files.parse_defaults_file('DEFAULT_INPUT_POLICY="REJECT"\n') == "reject"
    assert ufw_files.parse_defaults_file("DEFAULT_INPUT_POLICY=drop\n") == "deny"
    assert ufw_files.parse_defaults_file("DEFAULT_INPUT_POLICY=WEIRD\n") == "weird"
    assert ufw_files.parse_defaults_file("# DEFAULT_INPUT_POLICY=ACCEPT\n") is None


@pytest.mark.parametrize(
    "words, profile",
    [
        (("allow", "Zimbra"), "Zimbra"),
        (("allow", "from", "10.0.0.1", "to", "any", "app", "Zimbra-mta"), "Zimbra-mta"),
        (("allow", "22/tcp"), None),
        (("allow", "from", "10.0.0.0/8"), None),
        (("allow", "in", "Zimbra"), None),
        (("allow", "from", "10.0.0.1", "app"), None),
    ],
)
def test_rule_profile(words, profile):
    assert ufw_files.rule_profile(words) == profile


@pytest.mark.parametrize(
    "line, words",
    [
        # older ufw wrote no direction: six fields, or eight with applications
        ("allow tcp 22 0.0.0.0/0 any 0.0.0.0/0", ("allow", "22/tcp")),
        (
            "allow tcp 25,80 0.0.0.0/0 any 10.0.0.5 Zimbra -",
            ("allow", "from", "10.0.0.5", "to", "any", "app", "Zimbra"),
        ),
        ("allow tcp 25,80 0.0.0.0/0 any 0.0.0.0/0 Zimbra - out", ("allow", "out", "Zimbra")),
    ],
)
def test_tuple_lines_of_every_length(line, words):
    assert ufw_files.rules_from_files([f"### tuple ### {line}\n"]) == [(words, None)]


def test_lines_that_merely_look_like_tuples_are_not_rules():
    text = "-A ufw-user-input -p tcp --dport 22 -j ACCEPT -m comment\n# tuple allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n"
    assert ufw_files.rules_from_files([text]) == []


def test_a_profile_with_bad_ports_does_not_hide_the_next():
    text = "[C]\nports=x/tcp\n\n[D]\nports=81/tcp\n"
    assert ufw_files.parse_app_profiles([text]) == {"D": [PortSpec(81, 81, "tcp")]}


def test_a_group_after_a_full_one_takes_fifteen_again():
    groups = ufw_files.port_groups([PortSpec(p, p, "tcp") for p in range(1, 31)])
    assert [len(group.split("/")[0].split(",")) for group in groups] == [15, 15]


@pytest.mark.parametrize(
    "words, rule",
    [
        (("allow", "log-all", "22/tcp"), ("allow", "any", [PortSpec(22, 22, "tcp")])),
        (("allow", "in", "on", "eth0", "22/tcp"), ("allow", "any", [PortSpec(22, 22, "tcp")])),
        (("allow", "8/tcp"), ("allow", "any", [PortSpec(8, 8, "tcp")])),
    ],
)
def test_more_rule_forms_as_the_audit_reads_them(words, rule):
    assert tuple(ufw_files.access_rule(words, PROFILES)) == rule


def test_a_port_is_not_a_profile():
    assert ufw_files.rule_profile(("allow", "8/tcp")) is None


def test_groups_respect_the_multiport_limit():
    specs = [catalogue.PortSpec(p, p, "tcp") for p in range(1000, 1020)]
    specs += [catalogue.PortSpec(2000 + 10 * i, 2005 + 10 * i, "tcp") for i in range(3)]
    specs += [catalogue.PortSpec(514, 514, "udp")]
    groups = ufw_files.port_groups(specs)
    assert groups[-1] == "514/udp"
    for group in groups:
        entries = group.split("/")[0].split(",")
        assert sum(2 if ":" in e else 1 for e in entries) <= 15
    listed = [e for g in groups for e in g.split("/")[0].split(",")]
    assert len(listed) == len(specs)


ZF = "7a696d6272615f6677"  # "zimbra_fw", hex as ufw stores comments


EVERY_FORM_RULES = f"""*filter
:ufw-user-input - [0:0]
### RULES ###

### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment={ZF}
-A ufw-user-input -p tcp --dport 22 -j ACCEPT

### tuple ### allow any any 0.0.0.0/0 any 192.168.1.0/24 in comment={ZF}
### tuple ### allow tcp 25,80,443 0.0.0.0/0 any 0.0.0.0/0 Zimbra - in comment={ZF}
### tuple ### allow tcp 25,389 0.0.0.0/0 any 10.1.0.5 Zimbra-mta - in comment={ZF}
### tuple ### allow udp 7026 0.0.0.0/0 any 10.1.0.5 Zimbra-mta - in comment={ZF}
### tuple ### allow any 8000 0.0.0.0/0 any 0.0.0.0/0 in
### tuple ### deny_log tcp 23 0.0.0.0/0 any 10.9.0.0/16 in_eth0 comment=736f6d656f6e6520656c7365
### tuple ### allow tcp 389 0.0.0.0/0 any 0.0.0.0/0 out
### tuple ### route:allow any any 10.0.0.0/8 any 0.0.0.0/0 in_eth0!out_eth1
### tuple ### limit tcp 22 0.0.0.0/0 any 0.0.0.0/0 My%20App - in
### tuple ### bad tuple
### END RULES ###
"""


EVERY_FORM_RULES6 = f"""### tuple ### allow tcp 22 ::/0 any ::/0 in comment={ZF}
### tuple ### allow any any ::/0 any 2001:db8::1 in comment={ZF}
"""


def test_rules_from_files_as_ufw_show_added_lists_them():
    assert ufw_files.rules_from_files([EVERY_FORM_RULES, EVERY_FORM_RULES6]) == [
        (("allow", "22/tcp"), "zimbra_fw"),
        (("allow", "from", "192.168.1.0/24"), "zimbra_fw"),
        (("allow", "Zimbra"), "zimbra_fw"),
        (("allow", "from", "10.1.0.5", "to", "any", "app", "Zimbra-mta"), "zimbra_fw"),
        (("allow", "8000"), None),
        (("deny", "in", "on", "eth0", "log", "from", "10.9.0.0/16", "to", "any", "port", "23", "proto", "tcp"),
         "someone else"),
        (("allow", "out", "389/tcp"), None),
        (("route", "allow", "in", "on", "eth0", "out", "on", "eth1", "to", "10.0.0.0/8"), None),
        (("limit", "My App"), None),
        (("allow", "from", "2001:db8::1"), "zimbra_fw"),
    ]  # fmt: skip


def test_no_rules_files():
    assert ufw_files.rules_from_files([None, ""]) == []


def test_rule_profile_of_app_and_plain_rules():
    assert ufw_files.rule_profile(("allow", "Zimbra")) == "Zimbra"
    assert ufw_files.rule_profile(("allow", "from", "10.0.0.1", "to", "any", "app", "Zimbra-mta")) == "Zimbra-mta"
    assert ufw_files.rule_profile(("allow", "22/tcp")) is None
    assert ufw_files.rule_profile(("allow", "from", "10.0.0.0/8")) is None


SOURCES = ["10.0.0.5", "10.1.0.0/16", "2001:db8::7", "2001:db8::/48", "0.0.0.0/0", "::/0", "any", "x", "-"]


@pytest.mark.parametrize("line", [line for line, _ in TUPLES] + ["allow tcp 25,80 0.0.0.0/0 any 10.0.0.5 Zimbra -"])
@pytest.mark.parametrize("source", SOURCES)
def test_a_line_read_through_its_shape_reads_as_the_line_itself(line, source):
    """Lines that differ only in their source share one parse; each reads as
    if parsed whole (the shape's cache bypassed)."""
    fields = line.split()
    fields[5] = source
    text = f"### tuple ### {' '.join(fields)} comment=7a696d6272615f6677"
    shape = ufw_files._tuple_shape.__wrapped__(tuple(fields), "7a696d6272615f6677")
    whole = None if shape is None else shape[:2]  # (rule, ports), without where the source goes
    assert ufw_files._tuple_rule(text) == whole
    assert ufw_files._tuple_rule(text) == whole  # read again, from the cache
