"""
nftables' formats, as the nftables backend writes and reads them.

A rule is built as nft's own JSON expressions (the shape ``nft -j`` prints)
and ``rule_text`` prints expressions as nft syntax, one canonical way: the
rules the policy asks for and the rules read back from ``nft -j list table``
go through the same printer, so they compare by content. Set values are
printed sorted and a one-element set as its element, as nft prints them;
an expression the printer does not know is printed as its JSON, which no
wanted rule equals.
"""

import ipaddress
import json
from collections import namedtuple


def __virtual__():
    return (False, "zimbra_fw_nftables_files is a library of the zimbra_fw module, not a Salt util")


FAMILY = "inet"
TABLE = "zimbra_fw"
CHAIN = "input"
HEADER = "# Managed by Salt (zimbra_fw formula). Local changes are overwritten.\n"
SET_TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}
SET_FLAGS = ("interval",)
ADDRESS_PROTOCOLS = {4: "ip", 6: "ip6"}
QUOTED_META = ("iif", "iifname", "oif", "oifname")  # nft prints their values quoted
VERDICTS = ("accept", "drop", "reject")
CHAIN_SPEC = ("filter", "input", 0)  # type, hook, priority (filter)

Chain = namedtuple("Chain", "type hook prio policy")
NftSet = namedtuple("NftSet", "type flags elements")  # elements: a tuple of texts
# chains: {name: Chain}; rules: {chain: ((text, exprs), ...)} in order; sets: {name: NftSet};
# flags: the table's flags (texts; "dormant" unhooks every chain of the table).
Table = namedtuple("Table", "chains rules sets flags", defaults=((),))


# ---------------------------------------------------------------- expressions


def match(left, right, op="=="):
    return {"match": {"op": op, "left": left, "right": right}}


def payload(protocol, field):
    return {"payload": {"protocol": protocol, "field": field}}


def address(network):
    """An ip_network as nft's JSON value: a host's address, or a prefix."""
    host = ipaddress.ip_address(network.network_address.packed)  # its bytes: nothing rides along
    if network.prefixlen == network.max_prefixlen:
        return host.compressed
    return {"prefix": {"addr": host.compressed, "len": network.prefixlen}}


def ports_value(specs):
    """PortSpecs of one protocol as nft's JSON value: a port, a range, or a set."""
    values = [spec.first if spec.first == spec.last else {"range": [spec.first, spec.last]} for spec in specs]
    return values[0] if len(values) == 1 else {"set": values}


def sort_key(text):
    head = text.split("-")[0].split("/")[0]
    if head.isdigit():
        return (0, int(head), text)
    try:
        return (1, ipaddress.ip_address(head).version, int(ipaddress.ip_address(head)), text)
    except ValueError:
        return (2, 0, 0, text)


def _address_text(text):
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text


def value_text(value, quoted=False):
    """A JSON value (right side of a match, a set element) as nft prints it."""
    if isinstance(value, bool) or value is None:
        text = None
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = f'"{value}"' if quoted else _address_text(value)
    elif isinstance(value, list):  # flags: ct state established,related
        text = ",".join(sorted(value_text(item) for item in value))
    elif isinstance(value, dict) and len(value) == 1:
        text = _composite_text(*next(iter(value.items())), quoted)
    else:
        text = None
    return "json:" + json.dumps(value, sort_keys=True) if text is None else text


def _composite_text(kind, inner, quoted):
    """A prefix, range, set or element with options as nft prints it; None if unknown."""
    if kind == "prefix" and isinstance(inner, dict) and set(inner) == {"addr", "len"}:
        return f"{_address_text(inner['addr'])}/{inner['len']}"
    if kind == "range" and isinstance(inner, list) and len(inner) == 2:
        return f"{value_text(inner[0])}-{value_text(inner[1])}"
    if kind == "set" and isinstance(inner, list):
        intervals = _port_intervals(inner)
        if intervals is not None:  # merged as nft merges them in a set with a range
            items = [str(first) if first == last else f"{first}-{last}" for first, last in intervals]
        else:
            items = sorted((value_text(item, quoted) for item in inner), key=sort_key)
        return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"
    if kind == "elem" and isinstance(inner, dict):  # an element with options (timeout, ...)
        return value_text(inner.get("val"), quoted)
    return None


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _port_intervals(items):
    """Numbers and number ranges as sorted (first, last) intervals, adjacent
    ones merged; None when any item is something else."""
    bounds = []
    for item in items:
        if _is_int(item):
            bounds.append((item, item))
        elif isinstance(item, dict) and isinstance(item.get("range"), list) and len(item["range"]) == 2:
            first, last = item["range"]
            if not (_is_int(first) and _is_int(last)):
                return None
            bounds.append((first, last))
        else:
            return None
    merged = []
    for first, last in sorted(bounds):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


# The exact keys of a match's left side the printer knows; any other key (an
# inner tunnel header, a direction) makes the expression print as its JSON.
LEFT_KEYS = {"payload": {"protocol", "field"}, "meta": {"key"}, "ct": {"key"}}
# Flag types: nft reads ``ct state established`` as a mask test, listed as op "in".
MASK_LEFTS = ("ct state", "ct status")
OPS = ("==", "!=", "in")


def left_text(left):
    """The left side of a match: ``tcp dport``, ``ip saddr``, ``iif``, ``ct state``; None if unknown."""
    if not isinstance(left, dict) or len(left) != 1:
        return None
    ((kind, inner),) = left.items()
    if not isinstance(inner, dict) or set(inner) != LEFT_KEYS.get(kind):
        return None
    if not all(isinstance(value, str) for value in inner.values()):
        return None
    if kind == "payload":
        return f"{inner['protocol']} {inner['field']}"
    if kind == "meta":
        return inner["key"] if inner["key"] in QUOTED_META else f"meta {inner['key']}"
    return f"ct {inner['key']}"


def _op_text(left, op):
    """The op as nft prints it: nothing for the op nft reads when none is written."""
    implicit = "in" if left in MASK_LEFTS else "=="
    return "" if op == implicit else f"{op} "


def expr_text(expr):
    """One expression of a rule as nft prints it; its JSON when the printer
    cannot print it exactly (no wanted rule prints so)."""
    if isinstance(expr, dict) and len(expr) == 1:
        ((kind, inner),) = expr.items()
        if kind in VERDICTS and inner is None:
            return kind
        if kind == "match" and isinstance(inner, dict) and set(inner) == {"op", "left", "right"}:
            left = left_text(inner["left"])
            if left is not None and inner["op"] in OPS:
                right = value_text(inner["right"], left in QUOTED_META)
                return f"{left} {_op_text(left, inner['op'])}{right}"
    return "json:" + json.dumps(expr, sort_keys=True)


def rule_text(exprs):
    return " ".join(expr_text(expr) for expr in exprs)


# ---------------------------------------------------------------- the table as text


def set_text(name, nft_set):
    lines = [f"\tset {name} {{", f"\t\ttype {nft_set.type}", f"\t\tflags {','.join(nft_set.flags)}"]
    if nft_set.elements:
        elements = ",\n".join(f"\t\t\t{element}" for element in nft_set.elements)
        lines.append(f"\t\telements = {{\n{elements}\n\t\t}}")
    return [*lines, "\t}"]


def table_text(sets, rules, policy):
    """The table's definition: ``sets`` ({name: NftSet}), the input chain
    hooked at filter priority with ``policy``, and ``rules`` (texts) in order."""
    lines = [f"table {FAMILY} {TABLE} {{"]
    for name, nft_set in sets.items():
        lines += set_text(name, nft_set)
    lines += [f"\tchain {CHAIN} {{", f"\t\ttype filter hook input priority filter; policy {policy};"]
    lines += [f"\t\t{rule}" for rule in rules]
    return "\n".join([*lines, "\t}", "}"]) + "\n"


def replacing(table):
    """One ``nft -f`` file that replaces our table whole, in one transaction:
    the empty declaration makes the delete work when the table is absent."""
    return f"{HEADER}table {FAMILY} {TABLE} {{}}\ndelete table {FAMILY} {TABLE}\n{table}"


def policy_text(policy):
    """One ``nft -f`` file that sets our input chain's policy."""
    return f"chain {FAMILY} {TABLE} {CHAIN} {{ type filter hook input priority filter; policy {policy}; }}\n"


# ---------------------------------------------------------------- reading nft -j


def _elements(found):
    """A set's elements as nft lists them (an address as nft prints it: no
    parse per element; the planner compares them as sets)."""
    return tuple(element if isinstance(element, str) else value_text(element) for element in found.get("elem") or ())


def _flags(found):
    """A table's or a set's flags as sorted texts (nft prints one flag as a string)."""
    flags = found.get("flags") or []
    flags = [flags] if not isinstance(flags, list) else flags
    return tuple(sorted(flag if isinstance(flag, str) else json.dumps(flag) for flag in flags))


def parse_table(text):
    """``nft -j list table inet zimbra_fw`` output as a Table; ValueError if it is not nft's JSON."""
    document = json.loads(text)
    items = document.get("nftables") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise ValueError("no 'nftables' list")
    chains, rules, sets, flags = {}, {}, {}, ()
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        ((kind, found),) = item.items()
        if kind == "table" and isinstance(found, dict) and found.get("name") == TABLE and found.get("family") == FAMILY:
            flags = _flags(found)
            continue
        if not isinstance(found, dict) or found.get("table", TABLE) != TABLE or found.get("family") != FAMILY:
            continue
        if kind in ("chain", "set") and not isinstance(found.get("name"), str):
            raise ValueError(f"a {kind} whose name is not a string: {found.get('name')!r}")
        if kind == "chain":
            chains[found["name"]] = Chain(found.get("type"), found.get("hook"), found.get("prio"), found.get("policy"))
        elif kind == "rule":
            exprs = found.get("expr") or []
            rules.setdefault(found.get("chain"), []).append((rule_text(exprs), exprs))
        elif kind == "set":
            type_ = found.get("type")
            sets[found["name"]] = NftSet(
                type_ if isinstance(type_, str) else json.dumps(type_), _flags(found), _elements(found)
            )
    return Table(chains, {chain: tuple(found) for chain, found in rules.items()}, sets, flags)
