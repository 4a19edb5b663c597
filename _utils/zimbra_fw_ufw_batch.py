"""
Helper of the zimbra_fw execution module, not an execution module itself:
``zimbra_fw`` runs this file with ufw's own Python to apply a list of ufw
commands in one process, as ``python3 -I zimbra_fw_ufw_batch.py
/usr/sbin/ufw`` with the commands (a JSON list of argument lists) on stdin.
``-I`` keeps the modules synced beside it from shadowing ufw's.
"""

import builtins
import contextlib
import errno
import functools
import gettext
import io
import json
import os
import re
import stat
import subprocess
import sys


def __virtual__():
    return (False, "zimbra_fw_ufw_batch is a helper script run by zimbra_fw, not an execution module")


def match_key(rule):
    """What ufw's ``UFWRule.match`` compares before the action: two rules with
    different keys never match."""
    return (
        rule.dport, rule.sport, rule.protocol, rule.src, rule.dst, rule.v6, rule.dapp, rule.sapp,
        rule.interface_in, rule.interface_out, rule.direction, rule.forward,
    )  # fmt: skip


class RuleFamily:
    """One of ufw's rule lists (``backend.rules`` or ``rules6``) with lookups:
    by match key, by application tuple, and each rule's place in the list.
    A rule removed leaves a hole (None) until ``compact``."""

    def __init__(self, rules):
        self.rules, self.length = rules, len(rules)
        self.place, self.by_key, self.by_app, self.plain, self.holes = {}, {}, {}, 0, 0
        for index, rule in enumerate(rules):
            rule.normalize()  # as ufw's own set_rule does to every rule it compares
            self.place[id(rule)] = index
            self._index(rule)

    def _index(self, rule):
        self.by_key.setdefault(match_key(rule), []).append(rule)
        if rule.dapp or rule.sapp:
            self.by_app.setdefault(rule.get_app_tuple(), []).append(rule)
        else:
            self.plain += 1

    def _unindex(self, rule):
        for table, key in ((self.by_key, match_key(rule)), (self.by_app, rule.get_app_tuple())):
            if key in table and any(found is rule for found in table[key]):
                table[key] = [found for found in table[key] if found is not rule]
                if not table[key]:
                    del table[key]
        if not (rule.dapp or rule.sapp):
            self.plain -= 1

    def current(self, rules):
        """Do the lookups still describe ``rules`` (the backend's list now)?"""
        return rules is self.rules and len(rules) == self.length

    def count(self):
        """ufw's get_rules_count: an application's rules count once."""
        return self.plain + len(self.by_app)

    def drop(self, rule):
        self.rules[self.place.pop(id(rule))] = None
        self.holes += 1
        self._unindex(rule)

    def put(self, old, new):
        """``new`` in ``old``'s place (old None: at the end)."""
        new.normalize()
        if old is None:
            self.rules.append(new)
            self.length += 1
            self.place[id(new)] = self.length - 1
        else:
            index = self.place.pop(id(old))
            self._unindex(old)
            self.rules[index] = new
            self.place[id(new)] = index
        self._index(new)

    def compact(self):
        """The list without holes (a new list: the lookups describe it no more)."""
        return [rule for rule in self.rules if rule is not None] if self.holes else self.rules


class RuleIndex:
    """ufw's rule code, made linear for a rule command on a firewall whose
    chains it does not touch (inactive, or while the batch defers loading).
    ufw's ``set_rule`` compares the new rule with every rule (and formats
    both for a debug message each time), ``get_app_rules_from_system`` copies
    and normalizes every rule, ``get_rules_count`` walks them all: N rules
    cost N^2. Here ufw's own ``set_rule`` runs on the few rules that can
    match (same match key), and the result is put in their places in the
    whole list; application rules and the count come from lookups."""

    def __init__(self, backend):
        self.backend = backend
        self.ufw_set_rule = backend.set_rule
        self.families = {}
        backend.set_rule = self.set_rule
        backend.get_app_rules_from_system = self.get_app_rules_from_system
        backend.get_rules_count = lambda v6: self.family(v6).count()

    def _attribute(self, v6):
        return "rules6" if v6 else "rules"

    def family(self, v6):
        rules = getattr(self.backend, self._attribute(v6))
        found = self.families.get(v6)
        if found is None or not found.current(rules):
            found = self.families[v6] = RuleFamily(rules)
        return found

    def compact(self):
        """Give ufw its lists without holes, before any of its code reads them whole."""
        for v6, family in list(self.families.items()):
            attribute = self._attribute(v6)
            if family.holes and family.current(getattr(self.backend, attribute)):
                setattr(self.backend, attribute, family.compact())
                del self.families[v6]

    def set_rule(self, rule, allow_reload=True):
        if rule.position != 0 or self.backend.is_enabled():
            self.compact()
            return self.ufw_set_rule(rule, allow_reload)
        family = self.family(rule.v6)
        rule.normalize()
        candidates = list(family.by_key.get(match_key(rule), []))
        attribute = self._attribute(rule.v6)
        setattr(self.backend, attribute, list(candidates))
        try:
            message = self.ufw_set_rule(rule, allow_reload)
            result = getattr(self.backend, attribute)
        finally:
            setattr(self.backend, attribute, family.rules)
        self._merge(family, candidates, result, rule.remove)
        return message

    @staticmethod
    def _merge(family, candidates, result, remove):
        """Put what ufw made of ``candidates`` (``result``) into the whole list.
        A delete keeps some of them; an add keeps or replaces each in its place
        and may append one."""
        if remove:
            kept = {id(rule) for rule in result}
            if len(kept) != len(result) or not kept <= {id(rule) for rule in candidates}:
                raise RuntimeError("ufw's delete made rules of its own")
            for rule in candidates:
                if id(rule) not in kept:
                    family.drop(rule)
            return
        if len(result) not in (len(candidates), len(candidates) + 1):
            raise RuntimeError(f"ufw's add made {len(result)} rules of {len(candidates)}")
        for old, new in zip([*candidates, None], result, strict=False):
            if new is not old:
                family.put(old, new)

    def get_app_rules_from_system(self, template, v6):
        """ufw's: normalized copies of the rules of ``template``'s application tuple."""
        norm = template.dup_rule()
        norm.set_v6(v6)
        norm.normalize()
        found = []
        for rule in self.family(v6).by_app.get(norm.get_app_tuple(), []):
            copy = rule.dup_rule()
            copy.normalize()
            found.append(copy)
        return found


class CommandParser:
    """ufw's ``parse_command``, once per shape. A rule command from one source
    address (``allow from 10.0.0.5 to any app Zimbra-mta comment zimbra_fw``,
    or its ``delete``) differs from another of its shape only in that
    address: ufw's parser reads the address in one place, where it tells
    IPv6 from IPv4 (``valid_address(address, "6")``, part of the shape) and
    calls ``rule.set_src``. So the first command of a shape is parsed by
    ufw; each next one is a copy of that parse (``dup_rule``) whose source
    ufw's own ``set_src`` sets and checks. Other commands are parsed by ufw."""

    RULE_ACTIONS = ("allow", "deny", "reject", "limit")

    def __init__(self, ufw):
        self.ufw, self.templates = ufw, {}

    def shape(self, argv):
        """(shape, source address) of a rule command from one address, or None."""
        action = 1 if argv[:1] == ["delete"] else 0
        if len(argv) <= action or argv[action] not in self.RULE_ACTIONS or argv.count("from") != 1:
            return None
        comments = [at for at, word in enumerate(argv) if word.lower() == "comment"]
        if comments not in ([], [len(argv) - 2]):
            return None  # ufw takes its first "comment" and the next word out first, wherever they are
        source = argv.index("from") + 1
        if (source - 1 - action) % 2 != 1 or source >= len(argv) or argv[source].lower() == "any":
            return None  # "from" is not a key of the full syntax here, or from anyone
        address = argv[source]
        v6 = bool(self.ufw.util.valid_address(address.lower(), "6"))
        return (*argv[:source], None, *argv[source + 1 :], v6), address

    def parse(self, argv):
        shaped = self.shape(argv)
        template = self.templates.get(shaped[0]) if shaped else None
        if template is None:
            parsed = self.ufw.frontend.parse_command(["ufw", *argv])
            rule = parsed.data.get("rule")
            if shaped and rule and rule.src == shaped[1].lower():  # ufw read the address as the source
                # a copy before ufw's rule code changes the rule it is given
                self.templates[shaped[0]] = (parsed, rule.dup_rule())
            return parsed
        parsed, rule = template
        copy = rule.dup_rule()
        try:
            copy.set_src(shaped[1])
        except self.ufw.common.UFWError:
            return self.ufw.frontend.parse_command(["ufw", *argv])  # refused: ufw says why, in its words
        response = self.ufw.parser.UFWParserResponse(parsed.action)
        response.dryrun, response.force = parsed.dryrun, parsed.force
        response.data = {**parsed.data, "rule": copy}
        return response


class LiteralFirst:
    """A compiled pattern whose every match holds ``literal``: a text
    without it is not searched, as no match can be in it. ufw's patterns
    that begin with ``(.*)`` take time quadratic in a text's length to
    search, and ufw searches each rule it writes with one (``pat_log``)."""

    def __init__(self, pattern, literal):
        self.pattern, self.literal = pattern, literal

    def search(self, text):
        return self.pattern.search(text) if self.literal in text else None

    def match(self, text):
        return self.pattern.match(text) if self.literal in text else None

    def sub(self, repl, text):
        return self.pattern.sub(repl, text) if self.literal in text else text


# ufw's patterns (backend_iptables) -> text in each of their matches
LITERAL_IN_EVERY_MATCH = {
    r"(.*)-j ([A-Z]+)_log(-all)?(.*)": "_log",
    r'(.*) --log-prefix (".* ")(.*)': ' --log-prefix "',
}


class LiteralFirstRe:
    """The ``re`` module as a ufw module sees it, with the patterns in
    ``LITERAL_IN_EVERY_MATCH`` compiled as ``LiteralFirst``."""

    def compile(self, pattern, flags=0):
        compiled = re.compile(pattern, flags)
        literal = LITERAL_IN_EVERY_MATCH.get(pattern) if flags == 0 else None
        return LiteralFirst(compiled, literal) if literal else compiled

    def __getattr__(self, name):
        return getattr(re, name)


SIMPLE_WORD = re.compile(r"[A-Za-z0-9_./:,=+-]+")
QUOTED_WORD = re.compile(r"[A-Za-z0-9_./:,=+ \[\]-]*")


def restore_line(args):
    """An iptables command's arguments (``["-A", CHAIN, ...]``) as a line of
    ``iptables-restore``'s input for the filter table, words with a space or
    bracket in double quotes; None for a word this does not quote as
    iptables reads it, or a table option."""
    words = []
    for arg in args:
        if arg.startswith(("-t", "--ta")):
            return None
        if SIMPLE_WORD.fullmatch(arg):
            words.append(arg)
        elif QUOTED_WORD.fullmatch(arg):
            words.append(f'"{arg}"')
        else:
            return None
    return " ".join(words)


def translated(text):
    """ufw's messages go through the ``_`` that ``gettext.install`` puts in builtins."""
    return getattr(builtins, "_", str)(text)


def run_restore(restore, lines):
    """One ``RESTORE -n`` of ``lines`` in the filter table: one commit, all
    or nothing; a restore that cannot start is one that failed."""
    text = "*filter\n" + "".join(line + "\n" for line in lines) + "COMMIT\n"
    try:
        return subprocess.run([restore, "-n"], input=text, capture_output=True, errors="replace", check=False)
    except OSError as exc:
        return subprocess.CompletedProcess([restore, "-n"], 127, "", str(exc))


def probe_restores(commands, exe):
    """ufw's probe of netfilter's capabilities (its commands as recorded:
    make a chain, append a rule per capability, flush and delete the chain)
    as the lines of two restores, (make and append, flush and delete); None
    if the commands are not of that shape."""
    chain = commands[0][2] if commands and len(commands[0]) == 3 else None
    if (
        chain is None
        or commands[0] != [exe, "-N", chain]
        or commands[-2:] != [[exe, "-F", chain], [exe, "-X", chain]]
        or any(args[:3] != [exe, "-A", chain] for args in commands[1:-2])
    ):
        return None
    lines = [restore_line(args[1:]) for args in commands]
    return None if None in lines else (lines[:-2], lines[-2:])


LOGGING_CHANGES = (["-F"], ["-Z"], ["-A"], ["-I"], ["-D"])  # what a logging restore may do to a chain


def logging_plan(commands):
    """ufw's ``update_logging`` commands ((chain, args, fail_ok), recorded in
    ufw's order: ``-L`` checks of every chain, then changes) as (checks,
    lines, rest), to run in that order: the checks left (one iptables
    process each, as ufw runs them), ``lines`` ({v6: lines} of one ``-n``
    restore a family) and ``rest`` (ufw's processes, in ufw's order).
    A chain goes into a restore when ufw flushes it first and none of its
    commands may fail. The restore run first (IPv4) commits nothing if one
    of its chains is missing (its ``-F`` fails as the ``-L`` check would),
    so its chains' checks are left out; every other chain is checked first.
    None if the commands are not of that shape, or if a command of ``rest``
    that stops ufw's run when it fails comes before a restored one (the
    restores would do what ufw does only after it)."""
    checks = [command for command in commands if command[1][:1] == ["-L"]]
    changes = commands[len(checks) :]
    if commands[: len(checks)] != checks or any(args != ["-L", chain, "-n"] or may for chain, args, may in checks):
        return None
    if any(args[:1] not in LOGGING_CHANGES or args[1:2] != [chain] for chain, args, _ in changes):
        return None
    may_fail = {chain for chain, _, may in changes if may}
    first = {}
    for chain, args, _ in changes:
        first.setdefault(chain, args)
    restored = {chain for chain, args in first.items() if chain not in may_fail and args == ["-F", chain]}
    rest = [command for command in changes if command[0] not in restored]
    lines, last = {}, -1
    for at, (chain, args, _) in enumerate(changes):
        if chain in restored:
            lines.setdefault(chain.startswith("ufw6"), []).append(restore_line(args))
            last = at
    stops = [at for at, (chain, _, may) in enumerate(changes) if chain not in restored and not may]
    if stops and stops[0] < last:
        return None
    if any(None in family for family in lines.values()):
        return None
    # The first family's restore commits before the next one's -F lines
    # are tried: the next families' chains are checked first, as in ufw.
    first_restored = min(lines, default=None)
    unchecked = {chain for chain in restored if chain.startswith("ufw6") == first_restored}
    return [command for command in checks if command[0] not in unchecked], lines, rest


def rest_plan(rest):
    """The commands ``logging_plan`` leaves to ufw's processes, in ufw's
    order, as ``(v6, units)`` items: a run of units of one family on chains
    of their own goes into one restore, a unit being a ``-D`` that may fail,
    alone or followed by the ``-I`` of the same rule in that chain (how ufw
    puts its rule first in a user logging chain, once). Any other command
    is an item ``(None, command)``."""
    items, at = [], 0
    while at < len(rest):
        size = _delete_unit(rest[at : at + 2])
        if not size:
            items.append((None, rest[at]))
            at += 1
            continue
        unit, chain = tuple(rest[at : at + size]), rest[at][0]
        v6, last = chain.startswith("ufw6"), items[-1] if items else (None, ())
        if last[0] is v6 and all(chain != earlier[0][0] for earlier in last[1]):
            last[1].append(unit)
        else:
            items.append((v6, [unit]))
        at += size
    return items


# What a unit's rule may jump to: no chain, as a restore checks for loops
# once, where ufw's processes check after each command.
UNIT_TARGETS = ("RETURN", "LOG")


def _target(spec):
    """What a rule's one ``-j`` jumps to; None for no jump, a goto or several."""
    jumps = [at for at, word in enumerate(spec) if word in ("-j", "--jump", "-g", "--goto")]
    return next(iter(spec[jumps[0] + 1 :]), None) if len(jumps) == 1 and spec[jumps[0]] == "-j" else None


def _delete_unit(commands):
    """2 for a -D that may fail followed by the -I of its rule in its
    chain, 1 for such a -D alone, 0 for anything else (a rule by number,
    or one that jumps elsewhere than UNIT_TARGETS)."""
    (chain, delete, may_fail), *after = commands
    if not (
        may_fail
        and delete[:2] == ["-D", chain]
        and _target(delete[2:]) in UNIT_TARGETS
        and delete[2].startswith("-")
        and restore_line(delete) is not None
    ):
        return 0
    return 2 if after and tuple(after[0][:2]) == (chain, ["-I", *delete[1:]]) else 1


class UfwBatch:
    """Runs ufw commands as /usr/sbin/ufw runs one, all in one process: ufw
    starts, reads its rules and probes iptables once. This class runs in
    ufw's own Python (see ``_ufw_batch``): commands come as JSON on stdin;
    it reports ``{"done": i}`` per applied command, then ``{"failed": i,
    "error": ...}`` or ``{"unavailable": ...}``, as JSON lines on a copy of
    stdout, while ufw's own messages go to stderr.

    What ufw redoes for every rule over all its rules is done once here, so
    N rules cost N, not N^2: writing the rules files (after the last rule, or
    before any command that is not a rule), normalizing each rule's addresses
    and ports (a rule whose fields are still what normalizing made of them is
    left as it is), comparing a new or deleted rule with every rule (see
    ``RuleIndex``) and, on a running firewall, loading the rules. Writing a
    rule skips ufw's slowest pattern where it cannot match (``LiteralFirst``).
    Two pure helpers of ufw's ``normalize`` keep their answers
    (``remember_pure_helpers``): every peer rule has the same destination
    and ports. ufw's rules files are read by shape (``read_rules_by_shape``),
    and an application's rules made by shape (``app_rules_by_shape``).
    ufw's probe of netfilter's capabilities and its logging chains take a
    restore or two a family, not an iptables process a command
    (``probe_capabilities_in_restores``, ``restore_logging_chains``).

    On a running firewall ufw inserts each new rule with iptables processes of
    its own and reloads its chains from its rules files for each deleted rule.
    Here rules and profile updates only change ufw's rules and files; then
    ``iptables-restore -n`` loads each rules file once, as ufw's reload does:
    a ``-n`` restore replaces the chains its input declares, in one commit per
    table (ufw also flushes its user logging chains first; they are declared
    in the file, so the restore replaces them as well). If the load fails,
    the rules files get their old contents back.
    """

    # pylint: disable=protected-access

    RULE_ACTIONS = CommandParser.RULE_ACTIONS

    def __init__(self, ufw, report):
        self.ufw, self.report = ufw, report
        self.completed, self.reported, self.pending = 0, 0, set()
        self.read_rules_by_shape(ufw.backend_iptables, ufw.common.UFWRule)
        self.ui = ufw.frontend.UFWFrontend(False)
        backend = self.ui.backend
        self.running = backend.is_enabled  # ufw's own test: ENABLED=yes in ufw.conf
        self.rules_only = False  # while True, ufw's rule code sees an inactive firewall
        self.old_files = None  # the rules files before the pending changes
        self.unloaded = False  # the rules files hold rules the running chains do not
        self.write_rules = backend._write_rules
        backend._write_rules = self.deferred_write
        backend.is_enabled = lambda: self.running() and not self.rules_only
        self.normalize_rules_once(ufw.common.UFWRule, ufw.util.supported_protocols)
        self.remember_pure_helpers(ufw.util)
        backend.get_app_rules_from_template = self.app_rules_by_shape(backend.get_app_rules_from_template, backend)
        restores = {backend.iptables: backend.iptables_restore, backend.ip6tables: backend.ip6tables_restore}
        self.probe_ahead = self.probe_capabilities_in_restores(ufw.util, restores)
        self.restore_logging_chains(backend, ufw.common.UFWError)
        ufw.backend_iptables.re = LiteralFirstRe()
        self.index = RuleIndex(backend)
        self.parser = CommandParser(ufw)

    @staticmethod
    def normalize_rules_once(rule_class, protocols=()):
        """ufw's ``normalize`` reads and rewrites only the fields of the mark;
        a copy (``dup_rule``) of a rule whose fields are as normalizing made
        them is normalized as well. ufw's ``dup_rule`` builds a rule (checking
        default addresses and ports on the way) and then overwrites each of
        its attributes with the original's: a rule with those attributes
        only, an action and a protocol (one of ``protocols``) that ufw's
        setters keep as they are, is copied attribute by attribute instead."""
        normalize, dup_rule = rule_class.normalize, rule_class.dup_rule
        copied = {}  # "keys": the attributes of ufw's first copy

        def fields(rule):
            return (rule.src, rule.dst, rule.dport, rule.sport, rule.v6)

        def normalize_once(rule):
            if getattr(rule, "normalized_fields", None) != fields(rule):
                normalize(rule)
                rule.normalized_fields = fields(rule)

        def as_ufw_copies(attributes):
            return (
                attributes.keys() - {"normalized_fields"} == copied.get("keys")
                and attributes.get("action") in CommandParser.RULE_ACTIONS
                and attributes.get("protocol") in (*protocols, "any")
            )

        def dup_marked(rule):
            attributes = vars(rule)
            if as_ufw_copies(attributes):
                copy = object.__new__(type(rule))
                copy.__dict__.update({key: attributes[key] for key in copied["keys"]})
            else:
                copy = dup_rule(rule)
                copied.setdefault("keys", frozenset(vars(copy)))
            if getattr(rule, "normalized_fields", None) == fields(rule) == fields(copy):
                copy.normalized_fields = fields(copy)
            return copy

        rule_class.normalize, rule_class.dup_rule = normalize_once, dup_marked

    @staticmethod
    def read_rules_by_shape(backend_module, rule_class):
        """ufw builds a rule from each ``### tuple ###`` line of its rules
        files (``_read_rules``, in every ufw process), checking every field;
        thousands of lines differ only in their source. Here ufw builds the
        first line of each shape (every field but the source); each next one
        is a copy of what it built, taken before ``_read_rules`` changed it,
        whose source ufw's own ``set_src`` sets and checks as the constructor
        does (the constructor sets the source after the ports, which never
        look at it, and before the destination, which the copy already has
        in its final form). A line ufw refuses leaves no shape."""
        built = {}

        def rule_from_tuple(*args, **named):
            """UFWRule(action, protocol, dport, dst, sport, src, direction, forward, comment)."""
            if named or len(args) < 6:  # not as _read_rules calls it: ufw builds it
                return rule_class(*args, **named)
            shape, src = args[:5] + args[6:], args[5]
            made = built.get(shape)
            if made is None:
                rule = rule_class(*args)
                built[shape] = dict(vars(rule))
                return rule
            rule = object.__new__(rule_class)
            rule.__dict__.update(made)
            rule.set_src(src)
            return rule

        rule_from_tuple.match = getattr(rule_class, "match", None)  # ufw's module also calls UFWRule.match
        backend_module.UFWRule = rule_from_tuple

    @staticmethod
    def remember_pure_helpers(util):
        """ufw's ``normalize_address(address, v6)`` (an address's standard
        form, or an error) and ``human_sort(ports)`` (sorts a list in place)
        depend on their arguments only; each answers once per argument here.
        Normalizing a peer rule's destination (0.0.0.0/0) takes ufw 14 us,
        sorting its ports 9 us, for every rule. An error is not kept: it is
        raised anew each time, as ufw raises it. (With ufw's debugging on,
        its debug line for an address is printed once, not per rule.)"""
        sort = util.human_sort

        @functools.lru_cache(maxsize=4096)
        def sorted_ports(ports):
            listed = list(ports)
            sort(listed)
            return tuple(listed)

        def human_sort(ports):
            ports[:] = sorted_ports(tuple(ports))

        util.normalize_address = functools.lru_cache(maxsize=4096)(util.normalize_address)
        util.human_sort = human_sort

    @staticmethod
    def app_rules_by_shape(get_app_rules, owner):
        """ufw's ``get_app_rules_from_template(template)`` makes a rule a port
        group of the template's profile: a copy of the template (``dup_rule``)
        with its ports and protocol set, which never read the source. So
        templates that differ only in their source (the peers of a run) make
        the same rules but for it: the rules of the first template of a shape
        are kept (copies, taken before ufw's code changes them), and each next
        template gets copies of those with its source, as ``dup_rule`` copies
        it. A shape whose rules did not all take the template's source, or
        with a field that cannot be a key, is left to ufw each time; the kept
        rules go when ``owner.profiles`` (ufw's profiles) is another object."""
        made, profiles = {}, [owner.profiles]

        def get_app_rules_from_template(template):
            if owner.profiles is not profiles[0]:
                made.clear()
                profiles[0] = owner.profiles
            try:
                fields = [(name, type(value), value) for name, value in vars(template).items()]
                shape = frozenset(field for field in fields if field[0] not in ("src", "normalized_fields"))
            except TypeError:
                return get_app_rules(template)
            kept = made.get(shape)
            if kept is None:
                rules = get_app_rules(template)
                if all(rule.src == template.src for rule in rules):
                    made[shape] = [rule.dup_rule() for rule in rules]
                return rules
            copies = [rule.dup_rule() for rule in kept]
            for copy in copies:
                copy.src = template.src
            return copies

        return get_app_rules_from_template

    @staticmethod
    def probe_capabilities_in_restores(util, restores):
        """ufw's ``get_netfilter_capabilities(exe)`` (in every ufw process
        that writes rules or loads logging) makes a chain, appends a rule
        per capability, flushes and deletes the chain: five iptables
        processes a family. Here ufw's function runs with its commands
        recorded, each as if it succeeded; then one ``-n`` restore
        (``restores[exe]``) makes the chain and its rules, a second flushes
        and deletes it. If the first fails (it commits nothing), ufw's
        function runs as in ufw, one process a command, to tell which
        capability is missing. Returns ``probe_ahead(exe)``: that probe by
        restores now, its answer kept for ufw's next probe of ``exe``; on a
        failure nothing is kept, and ufw probes when it would."""
        probe, ahead = util.get_netfilter_capabilities, {}

        def by_restores(exe, do_checks):
            commands, run = [], util.cmd
            util.cmd = lambda args, *more, **named: commands.append(list(args)) or (0, "")
            try:
                capabilities = probe(exe, do_checks)
            finally:
                util.cmd = run
            restored = probe_restores(commands, exe)
            if restored is None or run_restore(restores[exe], restored[0]).returncode != 0:
                return None
            if run_restore(restores[exe], restored[1]).returncode != 0:  # ufw's own clean-up, as its probe ends
                chain = commands[0][2]
                run([exe, "-F", chain])
                code, out = run([exe, "-X", chain])
                if code != 0:
                    raise OSError(errno.ENOENT, out)
            return capabilities

        def get_netfilter_capabilities(exe=None, do_checks=True):
            if (exe, do_checks) in ahead:
                return ahead.pop((exe, do_checks))
            capabilities = by_restores(exe, do_checks) if exe in restores else None
            return probe(exe, do_checks) if capabilities is None else capabilities

        def probe_ahead(exe):
            try:
                capabilities = by_restores(exe, True)
            except OSError:
                return
            if capabilities is not None:
                ahead[(exe, True)] = capabilities

        util.get_netfilter_capabilities = get_netfilter_capabilities
        return probe_ahead

    @staticmethod
    def restore_logging_chains(backend, error):
        """ufw's ``update_logging`` (enabling ufw, or a new log level) checks
        ufw's 22 logging chains with ``iptables -L``, flushes and zeroes 16
        and fills them: about 70 iptables processes. Here its commands are
        recorded first (ufw's code does not read what they print); the
        chains it flushes are then filled by one ``-n`` restore a family
        (see ``logging_plan``), its deletes and re-inserts of one rule go
        into another (see ``rest_plan``; as ufw runs them when ``-C`` does
        not find every rule or that restore fails), and the other commands
        run as ufw runs them. Whenever the first cannot be done exactly
        (commands of another shape) or a check or restore fails, ufw's
        ``update_logging`` runs as in ufw: it flushes every chain it fills
        again first, and ends where its one run would have ended, or stops
        at the same error. A command after the restores that fails stops
        the run with ufw's error, the chains as ufw's run leaves them there."""
        update_logging, chain_cmd = backend.update_logging, backend._chain_cmd
        restores = {False: backend.iptables_restore, True: backend.ip6tables_restore}

        def restored(plan):
            checks, lines, rest = plan
            try:
                for chain, args, _ in checks:
                    chain_cmd(chain, args)
            except error:
                return False
            if any(run_restore(restores[v6], lines[v6]).returncode != 0 for v6 in sorted(lines)):
                return False
            try:
                for v6, item in rest_plan(rest):  # a command, or a family's units
                    if v6 is None:
                        chain_cmd(*item)
                    else:
                        restore_units(v6, item)
            except error as exc:
                # The chains are where ufw's run stops, and this is its error
                # (update_logging's, for any command that fails).
                raise error(translated("Could not update running firewall")) from exc
            return True

        def present(chain, delete):
            try:
                chain_cmd(chain, ["-C", *delete[1:]])  # finds a rule as -D finds it
            except error:
                return False
            return True

        def restore_units(v6, units):
            # Each -D that deletes is a commit of its own (10-26 ms). When -C
            # finds every -D's rule, the units go into one restore; if -C
            # finds one not (or fails), or the restore fails (committing
            # nothing), the units run as ufw runs them.
            if all(present(chain, delete) for (chain, delete, _), *_ in units):
                lines = [restore_line(args) for unit in units for _, args, _ in unit]
                if run_restore(restores[v6], lines).returncode == 0:
                    return
            for command in (command for unit in units for command in unit):
                chain_cmd(*command)

        def update_logging_restored(level):
            commands = []
            backend._chain_cmd = lambda chain, args, fail_ok=False: commands.append((chain, list(args), fail_ok))
            try:
                update_logging(level)
            finally:
                del backend._chain_cmd
            if not commands:
                return  # the firewall is not running: ufw changed no chain
            plan = logging_plan(commands)
            if not (plan and restored(plan)):
                update_logging(level)

        backend.update_logging = update_logging_restored

    @staticmethod
    def tell(report, **fields):
        report.write(json.dumps(fields) + "\n")
        report.flush()

    def rules_files(self):
        backend = self.ui.backend
        return [backend.files["rules"], *([backend.files["rules6"]] if backend.use_ipv6() else [])]

    def deferred_write(self, v6=False):
        if self.ui.backend.is_enabled():  # not a rule: ufw reloads from this file right after
            self.index.compact()
            self.write_rules(v6)
            return
        if self.old_files is None:
            self.old_files = {}
            for path in self.rules_files():
                with open(path, "rb") as handle:
                    self.old_files[path] = (handle.read(), os.fstat(handle.fileno()))
        self.pending.add(v6)

    def write_files(self):
        self.index.compact()
        for v6 in sorted(self.pending):
            self.write_rules(v6)
        self.unloaded = self.unloaded or bool(self.pending and self.running())
        self.pending.clear()

    def write_pending(self):
        self.write_files()
        if self.unloaded:
            self.load_rules_files()
        self.unloaded, self.old_files = False, None
        for index in range(self.reported, self.completed):
            self.tell(self.report, done=index)
        self.reported = self.completed

    def load_rules_files(self):
        """Load ufw's rules files into its running chains; on failure put back
        the files (and the chains already loaded from them) as they were."""
        backend = self.ui.backend
        restores = {
            backend.files["rules"]: backend.iptables_restore,
            backend.files["rules6"]: backend.ip6tables_restore,
        }
        loaded = []
        for path in self.rules_files():
            result = subprocess.run([restores[path], "-n", path], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                self.put_back(loaded, restores)
                self.unloaded, self.old_files = False, None
                self.completed = self.reported  # none of the unloaded commands stays applied
                raise self.ufw.common.UFWError(
                    f"loading {path} into the running firewall ('{restores[path]} -n') failed "
                    f"(exit {result.returncode}): {result.stderr.strip()}; the rules files are as they were"
                )
            loaded.append(path)

    def put_back(self, loaded, restores):
        """The rules files as they were, with their mode (ufw's is 0640) and
        owner, each replaced by rename; then the chains loaded from them."""
        for path, (text, old) in self.old_files.items():
            temp = path + ".zimbra_fw"
            with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
                os.fchmod(handle.fileno(), stat.S_IMODE(old.st_mode))
                if (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
                    os.fchown(handle.fileno(), old.st_uid, old.st_gid)
                handle.write(text)
            os.replace(temp, path)
        for path in loaded:
            subprocess.run([restores[path], "-n", path], capture_output=True, check=False)

    def probe_before_start(self):
        """ufw probes netfilter's capabilities once it has started its
        chains, where each restore of the probe takes longer the more rules
        they hold (a large cluster: twice as long). The probe runs before
        the start instead, on the assumption that the kernel answers the
        same before ``ufw-init`` (its modprobes, ``before.init``) as after:
        a rule command on a stopped ufw probes before it too."""
        backend = self.ui.backend
        if backend.caps is None:
            self.probe_ahead(backend.iptables)
            if backend.use_ipv6():
                self.probe_ahead(backend.ip6tables)

    def run(self, argv):
        parsed = self.parser.parse(argv)
        app_update = argv[:1] == ["app"] and parsed.action == "update"
        self.rules_only = parsed.action in self.RULE_ACTIONS or app_update
        rule = parsed.data.get("rule")
        if not (parsed.action in self.RULE_ACTIONS and getattr(rule, "position", None) == 0):
            self.index.compact()  # ufw's code for anything but a plain rule reads its lists whole
        if not self.rules_only:
            self.write_pending()  # anything else may read the rules files or the chains
        if parsed.action == "enable" and not self.running():
            self.probe_before_start()
        try:
            if argv[:1] == ["app"] and parsed.data.get("type") == "app":
                self.ui.do_application_action(parsed.action, parsed.data["name"])
            elif "rule" in parsed.data:
                self.ui.do_action(parsed.action, parsed.data["rule"], parsed.data["iptype"], parsed.force)
            else:
                self.ui.do_action(parsed.action, "", "", parsed.force)
        finally:
            self.rules_only = False
        if app_update:
            # Rules remade from a profile keep flags of the rule they were
            # copied from (multiport on a single port); the next ufw process
            # reads them back without. Read them back now, as it would.
            self.write_files()
            self.ui.backend.rules, self.ui.backend.rules6 = [], []  # _read_rules appends
            self.ui.backend._read_rules()
        self.completed += 1
        if not self.pending:
            self.write_pending()

    @classmethod
    def main(cls):
        report = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        sys.argv = sys.argv[1:]  # ufw checks its own program file, sys.argv[0]
        try:  # pylint: disable=import-outside-toplevel
            import ufw.common
            import ufw.frontend
            import ufw.parser
            import ufw.util
        except ImportError as exc:
            cls.tell(report, unavailable=str(exc))
            sys.exit(3)
        gettext.install(ufw.common.programName)
        commands = json.load(sys.stdin)
        lockfile = "/run/ufw.lock" if os.getuid() == 0 else os.path.join(ufw.common.state_dir, "ufw.lock")
        lock = ufw.util.create_lock(lockfile=lockfile)
        # ufw writes its messages as bytes to sys.stderr.buffer, or as text.
        errors = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="replace", write_through=True)
        batch, failure = None, None
        try:
            with contextlib.redirect_stderr(errors):
                batch = cls(ufw, report)
                for argv in commands:
                    batch.run(argv)
        except ufw.common.UFWError as exc:
            failure = "ERROR: " + str(exc.value)
        except (Exception, SystemExit) as exc:  # pylint: disable=broad-except
            failure = errors.buffer.getvalue().decode("utf-8", "replace").strip() or repr(exc)
        try:
            if batch is not None:
                batch.write_pending()  # what was applied stays applied, as with ufw itself
        except ufw.common.UFWError as exc:
            failure = "ERROR: " + str(exc.value)
        finally:
            ufw.util.release_lock(lock)
            sys.stderr.write(errors.buffer.getvalue().decode("utf-8", "replace"))
        if failure is not None:
            cls.tell(report, failed=batch.reported if batch else 0, error=failure)
            sys.exit(1)


if __name__ == "__main__":
    UfwBatch.main()
