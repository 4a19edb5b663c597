"""zimbra_fw_ufw_batch.RuleIndex on a model of ufw's rule code: ufw's own
``set_rule`` (as in backend_iptables: compare the rule with each rule, keep,
replace, drop or append) runs on the rules that can match only, and the whole
list ends as ufw's full loop would leave it. The sandbox tests
(test_ufw_batch.py) hold the batch to real ufw."""

import ipaddress

import pytest
from zimbra_fw_ufw_batch import RuleFamily, RuleIndex, match_key


class Rule:
    """The fields of ufw's UFWRule that RuleIndex reads."""

    def __init__(self, action, src, dapp="", comment="", *, v6=False, remove=False, position=0):
        self.action, self.src, self.dapp, self.comment, self.v6 = action, src, dapp, comment, v6
        self.remove, self.position = remove, position
        self.dport = "25,389" if dapp else "any"
        self.sport, self.protocol, self.dst, self.sapp = "any", "tcp", "any", ""
        self.interface_in = self.interface_out = ""
        self.direction, self.forward, self.logtype = "in", False, ""
        self.normalized = 0

    def normalize(self):
        """As ufw's: an IPv6 rule's addresses are written short (an IPv4 rule's are left to IPv4's rules)."""
        self.normalized += 1
        if self.v6 and self.src != "any":
            self.src = ipaddress.ip_interface(self.src).compressed.removesuffix("/128")

    def dup_rule(self):
        copy = Rule(
            self.action, self.src, self.dapp, self.comment, v6=self.v6, remove=self.remove, position=self.position
        )
        copy.dport = self.dport
        return copy

    def set_v6(self, v6):
        self.v6 = v6

    def get_app_tuple(self):
        return f"{self.dapp} {self.dst} {self.sport} {self.src} {self.direction}" if self.dapp else ""

    def fields(self):
        return (self.action, self.src, self.dapp, self.comment, self.v6)


def match(x, y):
    """ufw's UFWRule.match: 1 no match, 0 exact, -2 all but the comment, -1 all but the action."""
    same = (x.dport, x.src, x.dapp, x.v6) == (y.dport, y.src, y.dapp, y.v6)
    if not same:
        return 1
    if x.action == y.action:
        return 0 if x.comment == y.comment else -2
    return -1


class Backend:
    """ufw's backend as far as RuleIndex uses it; ``set_rule`` is ufw's loop."""

    def __init__(self, rules=(), rules6=()):
        self.rules, self.rules6, self.enabled, self.compared = list(rules), list(rules6), False, []
        self.reloads = []  # allow_reload of each set_rule call

    def is_enabled(self):
        return self.enabled

    def set_rule(self, rule, allow_reload=True):
        rules = self.rules6 if rule.v6 else self.rules
        self.compared.append(len(rules))
        self.reloads.append(allow_reload)
        newrules, found = [], False
        for current in rules:
            ret = match(current, rule)
            if ret == 0 and not found:
                found = True
                if not rule.remove:
                    newrules.append(rule.dup_rule())
            elif ret == -2 and rule.remove and rule.comment == "":
                found = True
            elif ret < 0 and not rule.remove:
                found = True
                newrules.append(rule.dup_rule())
            else:
                newrules.append(current)
        if not found and rule.remove:
            return "Could not delete non-existent rule"
        if found and not rule.remove and newrules == rules:
            return "Skipping adding existing rule"
        if not found and not rule.remove:
            newrules.append(rule.dup_rule())
        if rule.v6:
            self.rules6 = newrules
        else:
            self.rules = newrules
        return "Rules updated"

    def get_app_rules_from_system(self, template, v6):
        tuple_ = template.get_app_tuple()
        return [r.dup_rule() for r in (self.rules6 if v6 else self.rules) if r.get_app_tuple() == tuple_]

    def get_rules_count(self, v6):
        rules = self.rules6 if v6 else self.rules
        return len([r for r in rules if not r.dapp]) + len({r.get_app_tuple() for r in rules if r.dapp})


START = [Rule("allow", f"10.0.0.{i}", dapp="Zimbra-mta", comment="zimbra_fw") for i in range(1, 41)]
START += [Rule("allow", "192.168.1.0/24"), Rule("allow", "any", dapp="Zimbra", comment="zimbra_fw")]
COMMANDS = [
    Rule("allow", "10.0.0.3", dapp="Zimbra-mta", comment="zimbra_fw"),  # there: skipped
    Rule("allow", "192.168.1.0/24", comment="zimbra_fw"),  # there without a comment: adopted in place
    Rule("deny", "10.0.0.5", dapp="Zimbra-mta", comment="zimbra_fw"),  # another action: replaced in place
    Rule("allow", "10.0.0.7", dapp="Zimbra-mta", remove=True),  # comment differs: deleted
    Rule("allow", "10.0.0.8", dapp="Zimbra-mta", comment="zimbra_fw", remove=True),  # exact: deleted
    Rule("deny", "10.0.0.9", dapp="Zimbra-mta", remove=True),  # another action: kept
    Rule("allow", "10.9.9.9", remove=True),  # not there
    Rule("allow", "10.8.8.8", comment="zimbra_fw"),
    Rule("allow", "10.8.8.8", comment="zimbra_fw"),  # twice
    Rule("allow", "10.8.8.8", remove=True),  # and gone again
    Rule("allow", "2001:db8::5", dapp="Zimbra-mta", comment="zimbra_fw", v6=True),
    *(Rule("allow", f"10.1.0.{i}", dapp="Zimbra-mta", comment="zimbra_fw") for i in range(1, 11)),
    *(Rule("allow", f"10.0.0.{i}", dapp="Zimbra-mta", remove=True) for i in range(20, 41)),
]


def copies(rules):
    return [rule.dup_rule() for rule in rules]


def test_each_command_ends_as_ufws_full_loop_leaves_it_comparing_only_rules_that_can_match():
    model, indexed = Backend(copies(START)), Backend(copies(START))
    index = RuleIndex(indexed)
    for command in COMMANDS:
        expected = model.set_rule(command.dup_rule())
        assert indexed.set_rule(command.dup_rule()) == expected, command.fields()
        assert indexed.get_rules_count(command.v6) == model.get_rules_count(command.v6)
    index.compact()
    for v6 in (False, True):
        got = indexed.rules6 if v6 else indexed.rules
        want = model.rules6 if v6 else model.rules
        assert [rule.fields() for rule in got] == [rule.fields() for rule in want]
    assert max(indexed.compared) == 1  # ufw's loop saw at most the one rule that can match
    assert model.compared[0] == len(START)  # ufw's full loop sees every rule


def test_an_applications_rules_and_the_count_come_from_the_lookups():
    backend = Backend(copies(START), [Rule("allow", "2001:db8::1", dapp="Zimbra-mta", v6=True)])
    index = RuleIndex(backend)
    template = Rule("allow", "10.0.0.4", dapp="Zimbra-mta")
    found = backend.get_app_rules_from_system(template, False)
    assert [rule.fields() for rule in found] == [START[3].fields()]
    assert found[0] is not backend.rules[3] and found[0].normalized == 1  # a normalized copy
    assert backend.get_app_rules_from_system(template, True) == []
    assert template.v6 is False  # the template itself is left as it was
    assert (backend.get_rules_count(False), backend.get_rules_count(True)) == (42, 1)
    backend.set_rule(Rule("allow", "10.0.0.4", dapp="Zimbra-mta", remove=True))
    assert backend.get_rules_count(False) == 41
    assert backend.get_app_rules_from_system(template, False) == []
    assert index.families[False].holes == 1


def test_compact_gives_ufw_its_lists_without_holes_and_the_lookups_are_rebuilt():
    backend = Backend(copies(START))
    index = RuleIndex(backend)
    listed = backend.rules
    backend.set_rule(Rule("allow", "10.0.0.1", dapp="Zimbra-mta", remove=True))
    assert listed[0] is None and backend.rules is listed
    index.compact()
    assert backend.rules is not listed and None not in backend.rules and len(backend.rules) == len(START) - 1
    assert False not in index.families
    index.compact()  # nothing left to compact
    assert backend.get_rules_count(False) == len(START) - 1  # rebuilt from the new list
    assert index.families[False].current(backend.rules)


@pytest.mark.parametrize("enabled, position", [(True, 0), (False, 2)])
def test_a_rule_on_running_chains_or_at_a_position_goes_through_ufw_whole(enabled, position):
    backend = Backend(copies(START))
    index = RuleIndex(backend)
    backend.set_rule(Rule("allow", "10.0.0.2", dapp="Zimbra-mta", remove=True))  # leaves a hole
    backend.enabled = enabled
    backend.set_rule(Rule("allow", "10.5.5.5", position=position))
    assert backend.compared[-1] == len(START) - 1  # the whole list, without the hole
    assert None not in backend.rules and backend.rules[-1].src == "10.5.5.5"
    assert index.families == {}


def test_a_list_replaced_by_ufw_is_indexed_anew():
    backend = Backend(copies(START))
    RuleIndex(backend)
    assert backend.get_rules_count(False) == len(START)  # each peer's rule is an application tuple of its own
    backend.rules = backend.rules[:2]  # e.g. ufw read its rules back
    assert backend.get_rules_count(False) == 2


def test_what_ufw_could_not_have_made_is_refused():
    family = RuleFamily(copies(START[:2]))
    stranger = Rule("allow", "10.7.7.7")
    with pytest.raises(RuntimeError, match=r"^ufw's delete made rules of its own$"):
        RuleIndex._merge(family, family.rules[:1], [stranger], remove=True)
    with pytest.raises(RuntimeError, match="ufw's add made 3 rules of 1"):
        RuleIndex._merge(family, family.rules[:1], [stranger, stranger, stranger], remove=False)
    with pytest.raises(RuntimeError, match="ufw's delete made rules of its own"):
        RuleIndex._merge(family, family.rules[:1], [family.rules[0], family.rules[0]], remove=True)


def test_a_family_normalizes_each_rule_once_and_knows_its_places():
    rules = copies(START[:3])
    family = RuleFamily(rules)
    assert [rule.normalized for rule in rules] == [1, 1, 1]
    new = Rule("allow", "10.6.6.6")
    family.put(None, new)
    assert rules[-1] is new and family.place[id(new)] == 3 and family.length == 4 and new.normalized == 1
    replacement = Rule("deny", "10.0.0.2", dapp="Zimbra-mta")
    family.put(rules[1], replacement)
    assert rules[1] is replacement and family.place[id(replacement)] == 1
    assert family.by_key[match_key(replacement)] == [replacement]
    family.drop(rules[0])
    assert rules[0] is None and family.holes == 1 and family.compact() == rules[1:]
    assert family.count() == 3


def test_an_ipv6_hole_is_compacted_in_rules6_and_the_ipv4_list_is_left_alone():
    backend = Backend(copies(START), [Rule("allow", f"2001:db8::{i}", v6=True) for i in range(1, 4)])
    index = RuleIndex(backend)
    listed = backend.rules
    backend.set_rule(Rule("allow", "2001:db8::2", v6=True, remove=True))
    assert backend.rules6[1] is None
    index.compact()
    assert [rule.src for rule in backend.rules6] == ["2001:db8::1", "2001:db8::3"]
    assert backend.rules is listed and len(listed) == len(START) and None not in listed


def test_compact_never_puts_back_a_list_ufw_has_replaced():
    backend = Backend(copies(START))
    index = RuleIndex(backend)
    backend.set_rule(Rule("allow", "10.0.0.1", dapp="Zimbra-mta", remove=True))  # a hole
    replaced = backend.rules = copies(START[:2])  # e.g. ufw read its rules back
    index.compact()
    assert backend.rules is replaced and [rule.fields() for rule in replaced] == [r.fields() for r in START[:2]]


def test_a_list_replaced_by_one_as_long_is_indexed_anew():
    backend = Backend(copies(START[:2]))
    RuleIndex(backend)
    assert backend.get_app_rules_from_system(Rule("allow", "10.0.0.1", dapp="Zimbra-mta"), False) != []
    backend.rules = [Rule("allow", "10.7.0.1", dapp="Zimbra-mta"), Rule("allow", "10.7.0.2", dapp="Zimbra-mta")]
    assert backend.get_app_rules_from_system(Rule("allow", "10.0.0.1", dapp="Zimbra-mta"), False) == []
    (found,) = backend.get_app_rules_from_system(Rule("allow", "10.7.0.2", dapp="Zimbra-mta"), False)
    assert found.src == "10.7.0.2"


def test_an_applications_rule_of_each_protocol_stays_found_when_the_other_goes():
    tcp, udp = Rule("allow", "10.0.0.1", dapp="Zimbra"), Rule("allow", "10.0.0.1", dapp="Zimbra")
    udp.protocol = "udp"
    family = RuleFamily([tcp, udp, Rule("allow", "10.0.0.9")])
    assert family.count() == 2  # the application counts once, as in ufw
    family.drop(tcp)
    assert family.by_app[udp.get_app_tuple()] == [udp] and family.by_key[match_key(udp)] == [udp]
    assert family.count() == 2


def test_an_applications_ipv6_rules_are_found_from_a_template_written_long():
    backend = Backend(rules6=[Rule("allow", "2001:db8::1", dapp="Zimbra-mta", v6=True)])
    RuleIndex(backend)
    template = Rule("allow", "2001:db8:0:0::1", dapp="Zimbra-mta")  # normalized as IPv6 for rules6 only
    (found,) = backend.get_app_rules_from_system(template, True)
    assert found.src == "2001:db8::1" and found.v6 is True
    assert template.src == "2001:db8:0:0::1" and template.v6 is False


@pytest.mark.parametrize("enabled, position", [(False, 0), (True, 0), (False, 2)])
def test_allow_reload_goes_to_ufw_as_given_or_as_ufws_default(enabled, position):
    backend = Backend(copies(START))
    RuleIndex(backend)
    backend.enabled = enabled
    backend.set_rule(Rule("allow", "10.5.5.5", position=position))
    backend.set_rule(Rule("allow", "10.5.5.6", position=position), False)
    backend.set_rule(Rule("allow", "10.5.5.7", position=position), allow_reload=True)
    assert backend.reloads == [True, False, True]
