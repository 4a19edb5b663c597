"""The firewalls' own parsers as oracles for the rules the backends render.

Each function starts ONE process of the system Python (where Debian's
python3-firewall and ufw packages live) for a whole batch of rules. Nothing
here touches a firewall: firewalld's ``Rich_Rule(rule_str=...)`` and ufw's
``frontend.parse_command`` only parse text.
"""

import json
import os
import subprocess

SYSTEM_PYTHON = "/usr/bin/python3"

_FIREWALLD = r"""
import json, sys
from firewall.core.rich import Rich_Rule
results = []
for rule in json.load(sys.stdin):
    try:
        parsed = Rich_Rule(rule_str=rule)
        results.append({"ok": True, "text": str(parsed), "invert": bool(parsed.source and parsed.source.invert)})
    except Exception as exc:  # firewalld raises FirewallError, and others on odd text
        results.append({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
json.dump(results, sys.stdout)
"""

_UFW = r"""
import gettext, io, json, sys
import ufw.common
gettext.install(ufw.common.programName)
import ufw.frontend
results = []
real = sys.stdout, sys.stderr
for words in json.load(sys.stdin):
    sys.stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    sys.stderr = err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    try:
        parsed = ufw.frontend.parse_command(["ufw", *words])
        rule = parsed.data.get("rule")
        results.append(
            {
                "ok": True,
                "action": parsed.action,
                "src": rule.src if rule else None,
                "dport": rule.dport if rule else None,
                "sport": rule.sport if rule else None,
                "dapp": rule.dapp if rule else None,
                "protocol": rule.protocol if rule else None,
            }
        )
    except BaseException as exc:  # ufw's error() exits
        err.flush()
        message = err.buffer.getvalue().decode("utf-8", "replace").strip()
        results.append({"ok": False, "error": f"{type(exc).__name__}: {message or exc}"})
sys.stdout, sys.stderr = real
json.dump(results, sys.stdout)
"""


_UFW_BY_SHAPE = r"""
import gettext, io, json, sys
sys.path.insert(0, sys.argv[1])  # _utils: zimbra_fw_ufw_batch's CommandParser
import ufw.common
gettext.install(ufw.common.programName)
import ufw.frontend, ufw.parser, ufw.util
from zimbra_fw_ufw_batch import CommandParser, UfwBatch

def parsed(parse, words):
    real = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = said = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    try:
        response = parse(list(words))
    except BaseException as exc:  # ufw's error() exits
        said.flush()
        return {"error": type(exc).__name__, "said": said.buffer.getvalue().decode("utf-8", "replace")}
    finally:
        sys.stdout, sys.stderr = real
    rule = response.data.get("rule")
    data = {key: value for key, value in response.data.items() if key != "rule"}
    return {"action": response.action, "dryrun": response.dryrun, "force": response.force, "data": data,
            "rule": vars(rule) if rule else None}

def copies(words):  # ufw's dup_rule and the batch's of ufw's parse of words, fresh and normalized, as vars
    try:
        data = ufw.frontend.parse_command(["ufw", *words]).data
    except BaseException:
        return None
    rule = data.get("rule")
    if not rule:
        return None
    rule.set_v6(data["iptype"] == "v6")  # as ufw's frontend does before normalizing
    found = []
    for _ in range(2):
        batchs = {key: value for key, value in vars(rule.dup_rule()).items() if key != "normalized_fields"}
        found.append([vars(ufws_dup(rule)), batchs])
        rule.normalize()
    return found

ufws_dup = ufw.common.UFWRule.dup_rule
UfwBatch.normalize_rules_once(ufw.common.UFWRule, ufw.util.supported_protocols)
by_shape = CommandParser(ufw)
results = []
for words in json.load(sys.stdin):
    results.append({"ufw": parsed(lambda argv: ufw.frontend.parse_command(["ufw", *argv]), words),
                    "shaped": parsed(by_shape.parse, words), "templates": len(by_shape.templates),
                    "copies": copies(words)})
json.dump(results, sys.stdout)
"""


_UFW_LITERAL_FIRST = r"""
import json, sys, types
sys.path.insert(0, sys.argv[1])  # _utils: zimbra_fw_ufw_batch's LiteralFirstRe
import ufw.backend_iptables as backend
from zimbra_fw_ufw_batch import LiteralFirstRe

methods = backend.UFWBackendIptables
me = types.SimpleNamespace(_get_rules_from_formatted=lambda *args: methods._get_rules_from_formatted(me, *args))

def made(frule):
    return {"rules": methods._get_rules_from_formatted(me, frule, "ufw", "input"),
            "lists": methods._get_lists_from_formatted(me, frule, "ufw6", "output")}

frules = json.load(sys.stdin)
plain = [made(frule) for frule in frules]
backend.re = LiteralFirstRe()
json.dump([{"re": one, "literal_first": made(frule)} for one, frule in zip(plain, frules)], sys.stdout)
"""


_UFW_REMEMBERED = r"""
import gettext, json, sys, types
sys.path.insert(0, sys.argv[1])  # _utils: zimbra_fw_ufw_batch's remember_pure_helpers
import ufw.common
gettext.install(ufw.common.programName)
import ufw.util
from zimbra_fw_ufw_batch import UfwBatch

def answers(util, cases):
    found = []
    for kind, args in cases:
        try:
            if kind == "address":
                found.append(list(util.normalize_address(*args)))
            else:
                ports = list(args)
                found.append([util.human_sort(ports), ports])
        except Exception as exc:
            found.append({"error": type(exc).__name__})
    return found

cases = json.load(sys.stdin)
ufws = answers(ufw.util, cases)
remembered = types.SimpleNamespace(normalize_address=ufw.util.normalize_address, human_sort=ufw.util.human_sort)
UfwBatch.remember_pure_helpers(remembered)
first, again = answers(remembered, cases), answers(remembered, cases)
json.dump([{"ufw": one, "first": two, "again": three} for one, two, three in zip(ufws, first, again)], sys.stdout)
"""


_UFW_READ_BY_SHAPE = r"""
import gettext, io, json, os, sys, tempfile
sys.path.insert(0, sys.argv[1])  # _utils: zimbra_fw_ufw_batch's read_rules_by_shape
import ufw.common
gettext.install(ufw.common.programName)
import ufw.backend_iptables as backend
from zimbra_fw_ufw_batch import UfwBatch

files = json.load(sys.stdin)[0]
folder = tempfile.mkdtemp()
paths = {}
for name, lines in files.items():
    paths[name] = os.path.join(folder, name + ".rules")
    with open(paths[name], "w") as handle:
        handle.write("".join(line + "\n" for line in lines))

def read():
    me = object.__new__(backend.UFWBackendIptables)
    me.files, me.rules, me.rules6, me.use_ipv6 = paths, [], [], lambda: True
    real, sys.stderr = sys.stderr, io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # ufw writes bytes
    try:
        me._read_rules()
        sys.stderr.flush()
        said = sys.stderr.buffer.getvalue().decode("utf-8", "replace")
    finally:
        sys.stderr = real
    return {"rules": [vars(rule) for rule in me.rules], "rules6": [vars(rule) for rule in me.rules6], "said": said}

ufws = read()
UfwBatch.read_rules_by_shape(backend, ufw.common.UFWRule)
shaped, again = read(), read()
json.dump([{"ufw": ufws, "shaped": shaped, "again": again}], sys.stdout)
"""


_UFW_APP_RULES = r"""
import gettext, json, os, sys, tempfile, types
sys.path.insert(0, sys.argv[1])  # _utils: zimbra_fw_ufw_batch
import ufw.common
gettext.install(ufw.common.programName)
import ufw.applications, ufw.backend, ufw.frontend, ufw.util
from zimbra_fw_ufw_batch import UfwBatch
request = json.load(sys.stdin)[0]
apps = tempfile.mkdtemp()
with open(os.path.join(apps, "zimbra"), "w", encoding="utf-8") as handle:
    handle.write(request["profile"])
owner = types.SimpleNamespace(profiles=ufw.applications.get_profiles(apps))

def ufws(template):
    return ufw.backend.UFWBackend.get_app_rules_from_template(owner, template)

def made(make, template):
    try:
        rules = make(template)
        fields = [{name: value for name, value in vars(rule).items() if name != "normalized_fields"} for rule in rules]
        for rule in rules:  # as ufw's code goes on to change them
            rule.set_v6(not rule.v6)
            rule.set_port("1", "dst")
            rule.src = "10.255.255.255"
        return fields
    except Exception as exc:  # pylint: disable=broad-except
        return {"error": f"{type(exc).__name__}: {exc}"}

templates = [ufw.frontend.parse_command(["ufw", *words]).data["rule"] for words in request["commands"]]
own = [made(ufws, template.dup_rule()) for template in templates]
UfwBatch.normalize_rules_once(ufw.common.UFWRule, ufw.util.supported_protocols)  # as in the batch
shaped = UfwBatch.app_rules_by_shape(ufws, owner)
results = [{"ufw": mine, "shaped": made(shaped, template.dup_rule())} for mine, template in zip(own, templates)]
json.dump([results], sys.stdout)
"""


def available():
    """None, or why the oracles cannot run on this machine."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import firewall.core.rich, ufw.frontend"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if probe.returncode == 0 else f"python3-firewall or ufw is missing: {probe.stderr.strip()}"


def _run(script, batch, *args):
    done = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", script, *args],
        input=json.dumps(batch),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    )
    if done.returncode != 0:
        why = available() or done.stderr[-2000:]
        raise RuntimeError(f"oracle failed (exit {done.returncode}): {why}")
    results = json.loads(done.stdout)
    assert len(results) == len(batch)
    return results


def firewalld_rich_rules(rules):
    """For each rich rule text: ``{"ok", "text" (as firewalld prints it
    back), "invert"}``, or ``{"ok": False, "error"}``."""
    return _run(_FIREWALLD, list(rules))


def ufw_commands(commands):
    """For each rule (a sequence of ufw words): what ufw's parser made of it, or ``{"ok": False, "error"}``."""
    return _run(_UFW, [list(words) for words in commands])


def ufw_parse_by_shape(commands, utils_dir):
    """For each command, in order: ufw's own parse of it (``"ufw"``), and
    zimbra_fw_ufw_batch.CommandParser's (``"shaped"``: after the first of a
    shape, a copy of that parse with the source set), each the response's
    fields and ``vars`` of its rule, or ``{"error"}``; ``"templates"``: the
    shapes parsed by ufw so far; ``"copies"``: ``[ufw's dup_rule, the
    batch's]`` of the rule ufw parsed, before and after normalizing (None
    where ufw refused the command)."""
    return _run(_UFW_BY_SHAPE, [list(words) for words in commands], utils_dir)


def ufw_formatted_rules(frules, utils_dir):
    """For each rule as ufw's ``format_rule`` writes it: the iptables rules
    ufw's backend makes of it (``_get_rules_from_formatted``, and
    ``_get_lists_from_formatted``'s argument lists) with the ``re`` module
    (``"re"``) and with zimbra_fw_ufw_batch's ``LiteralFirstRe``."""
    return _run(_UFW_LITERAL_FIRST, list(frules), utils_dir)


def ufw_remembered_helpers(cases, utils_dir):
    """For each case, ``["address", [text, v6]]`` or ``["ports", [port, ...]]``:
    ufw's own ``normalize_address`` / ``human_sort`` answer (``"ufw"``: the
    result, or for a sort its return value and the sorted list; or
    ``{"error"}``), and zimbra_fw_ufw_batch's remembering ones, asked for all
    cases twice (``"first"``, ``"again"``)."""
    return _run(_UFW_REMEMBERED, [list(case) for case in cases], utils_dir)


def ufw_rules_read_by_shape(rules, rules6, utils_dir):
    """ufw's ``_read_rules`` of a user.rules and a user6.rules holding these
    lines: with ufw's own ``UFWRule`` (``"ufw"``) and with
    zimbra_fw_ufw_batch's ``read_rules_by_shape`` (``"shaped"``, then
    ``"again"`` with its shapes known), each ``vars`` of every rule read and
    what ufw warned."""
    return _run(_UFW_READ_BY_SHAPE, [{"rules": list(rules), "rules6": list(rules6)}], utils_dir)[0]


def ufw_app_rules_by_shape(commands, profile, utils_dir):
    """For each rule command (parsed by ufw, with an application), the rules
    ufw's ``get_app_rules_from_template`` makes of it (``"ufw"``) and those
    zimbra_fw_ufw_batch's ``app_rules_by_shape`` makes, asked in order
    (``"shaped"``), each ``vars`` of every rule, for the profiles in the
    text ``profile``."""
    return _run(_UFW_APP_RULES, [{"commands": [list(words) for words in commands], "profile": profile}], utils_dir)[0]
