"""
Least-privilege firewall for Zimbra Collaboration servers: the Salt face.

It gathers what the core needs once (the ``zimbra_fw`` pillar, installed
packages, the Salt Mine, the minion's Salt master and addresses), computes
the policy with the core in ``_utils/`` (catalogue -> config -> policy) and
hands it to the firewall backend the pillar's ``backend`` names (the
registry and the contract are in ``zimbra_fw_backend``). Only the functions in
``__load__`` are published; none takes a plan, a path or a command.
"""

import ipaddress
import logging
import os
import time

import salt.utils.systemd

try:
    import zimbra_fw_audit
    import zimbra_fw_backend
    import zimbra_fw_catalogue
    import zimbra_fw_commands
    import zimbra_fw_config
    import zimbra_fw_noop
    import zimbra_fw_policy
    import zimbra_fw_rollback
    import zimbra_fw_sessions

    CORE_MISSING = None
    FACE_AT_IMPORT = zimbra_fw_noop.files_digest([os.path.abspath(__file__)])  # see zimbra_fw_noop.code_digest
    zimbra_fw_noop.imported_later()  # the core imported after zimbra_fw_noop in the lines above
except ImportError as exc:  # _utils not synced
    CORE_MISSING = str(exc)

from salt.exceptions import CommandExecutionError

__virtualname__ = "zimbra_fw"
__load__ = [
    "audit",
    "catalogue",
    "confirm",
    "converge",
    "drift",
    "identity",
    "open_ports",
    "plan",
    "prepare",
    "profile",
    "status",
]
log = logging.getLogger(__name__)

MINE_FUNCTION = "zimbra_fw.identity"
# Where the minion's connections (to its Salt master too) take their source port.
LOCAL_PORT_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
# Set by the zimbra_fw states: within one state run the policy is computed once.
RUN_CACHE = "zimbra_fw.state_run"


def __virtual__():
    if CORE_MISSING:
        return (False, f"zimbra_fw's core in _utils is not on this minion ({CORE_MISSING}): run saltutil.sync_all")
    return __virtualname__


def _backend(config=None, settings=None):
    """The backend module of ``config``; before the pillar is parsed, the one
    its raw ``settings`` name (ufw when that is not valid: the pillar check
    reports it)."""
    if config is not None:
        return zimbra_fw_backend.load(config.backend)
    value = (settings or {}).get("backend")
    name = zimbra_fw_config.backend_name(value, __grains__.get("os_family"))
    return zimbra_fw_backend.load(name or zimbra_fw_backend.NAMES[0])


def _run(argv, stdin=None):
    """Run a command as an argument list: (retcode, stdout, stderr)."""
    result = __salt__["cmd.run_all"](
        argv,
        stdin=stdin,
        python_shell=False,
        env={"LC_ALL": "C", "LANG": "C"},
        ignore_retcode=True,
        output_loglevel="debug",
    )
    return result["retcode"], result["stdout"], result.get("stderr") or ""


# Deeper than any pillar key or mine entry of ours: what lies below is
# replaced by TOO_DEEP (the config check then names it), so hostile mine data
# cannot exhaust the stack here or in the check's messages.
MAX_DEPTH = 8
TOO_DEEP = "<nested too deep>"
NESTED = (dict, list, tuple)


def _plain(value, depth=0):
    """Pillar or mine data as plain dicts and lists (Salt may wrap them to
    mask output; a tuple becomes a list), at most MAX_DEPTH levels deep."""
    if isinstance(value, NESTED) and depth >= MAX_DEPTH:
        return TOO_DEEP
    # Anything else is returned in place, without a call each: a large
    # cluster's pillar holds tens of thousands of strings.
    if isinstance(value, dict):
        return {key: _plain(item, depth + 1) if isinstance(item, NESTED) else item for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, depth + 1) if isinstance(item, NESTED) else item for item in value]
    return value


def _local_port_range():
    """(low, high): the minion's ephemeral port range, Linux's default when it cannot be read."""
    try:
        with open(LOCAL_PORT_RANGE, encoding="ascii") as handle:
            low, high = (int(word) for word in handle.read().split())
    except (OSError, ValueError):  # ValueError: not two integers (UnicodeDecodeError is one too)
        return zimbra_fw_config.DEFAULT_LOCAL_PORTS
    return low, high


def _salt_master():
    """(address, ports, (low, high)) of this minion's Salt master: its address,
    its ports and the minion's ephemeral range its connections start from;
    None for a masterless minion."""
    if __opts__.get("file_client") == "local" or not __opts__.get("master_ip"):
        return None
    ports = (int(__opts__.get("publish_port", 4505)), int(__opts__.get("master_port", 4506)))
    return __opts__["master_ip"], ports, _local_port_range()


def _facts(settings, with_mine):
    packages = None
    if settings.get("roles") is None:
        packages = list(__salt__["pkg.list_pkgs"]())
    mine_data = None
    cluster = settings.get("cluster")
    if with_mine and isinstance(cluster, dict) and cluster.get("mine") is True:
        target = cluster.get("mine_target", zimbra_fw_config.DEFAULTS["cluster"]["mine_target"])
        mine_data = _plain(dict(__salt__["mine.get"](target, MINE_FUNCTION, tgt_type="compound")))
    backend = _backend(settings=settings)
    return zimbra_fw_config.Facts(
        packages=packages,
        mine_data=mine_data,
        minion_id=__opts__.get("id"),
        salt_master=_salt_master(),
        ipv6_off=backend.ipv6_off(),
        name_taken=backend.name_taken,
        os_family=__grains__.get("os_family"),
    )


def _inputs(with_mine=True):
    """(pillar, facts): what the policy is computed from; read once per state run."""
    cache = __context__.get(RUN_CACHE) if with_mine else None
    if cache is not None and "inputs" in cache:
        return cache["inputs"]
    # __pillar__ rather than pillar.get: Salt 3008 masks values pillar.get returns.
    pillar = _plain(__pillar__.get(zimbra_fw_config.PILLAR_KEY))
    settings = pillar if isinstance(pillar, dict) else {}
    inputs = pillar, _facts(settings, with_mine)
    if cache is not None:
        cache["inputs"] = inputs
    return inputs


def _policy(with_mine=True):
    """The policy from this minion's pillar; computed once per state run."""
    cache = __context__.get(RUN_CACHE) if with_mine else None
    if cache is not None and "policy" in cache:
        return cache["policy"]
    asked = {}  # the facts asked while parsing, with their answers (see _verified_record)
    with zimbra_fw_commands.collector_paused():
        pillar, facts = _inputs(with_mine)
        name_taken = facts.name_taken
        facts = facts._replace(name_taken=lambda name: asked.setdefault(name, name_taken(name)))
        config = zimbra_fw_config.parse_config(pillar, facts)
        policy = zimbra_fw_policy.build(config)
    if cache is not None:
        cache["policy"], cache["asked"] = policy, asked
    return policy


# ---------------------------------------------------------------- the verified no-op (zimbra_fw_noop)


def _noop_directory():
    """Where the record of the last verified no-op lives: the minion's cache."""
    cachedir = __opts__.get("cachedir")
    return os.path.join(cachedir, "zimbra_fw") if cachedir else None


def _inputs_digest():
    """The digest of the code, the pillar and the facts of this state run
    (None: not digestible, or the code on disk is not the code running)."""
    cache = __context__[RUN_CACHE]
    if "inputs_digest" not in cache:
        cache["inputs_digest"] = None
        pillar, facts = _inputs()
        code = zimbra_fw_noop.code_digest(os.path.abspath(__file__), FACE_AT_IMPORT)
        plain_facts = {name: value for name, value in facts._asdict().items() if name != "name_taken"}
        # name_taken's answers are in the record's "asked"; a callable fact
        # other than it would be a fact whose answers no record holds.
        if code is not None and not any(callable(value) for value in plain_facts.values()):
            cache["inputs_digest"] = zimbra_fw_noop.inputs_digest(code, pillar, plain_facts)
    return cache["inputs_digest"]


def _every_part_in_run(backend):
    return _run_parts(backend, backend.PARTS) == tuple(backend.PARTS)


def _verified_record():
    """In a state run of every part: the record of the last verified no-op
    when this run's code, pillar and facts are the ones it verified, else None."""
    cache = __context__.get(RUN_CACHE)
    if cache is None:
        return None
    if "record" not in cache:
        cache["record"] = _matching_record()
    return cache["record"]


def _matching_record():
    directory = _noop_directory()
    record = zimbra_fw_noop.load(directory) if directory else None
    if record is None or record["backend"] not in zimbra_fw_backend.NAMES:
        return None
    backend = zimbra_fw_backend.load(record["backend"])
    if not _every_part_in_run(backend):
        return None
    if set(record["comments"]) != set(backend.PARTS) or record["inputs"] != _inputs_digest():
        return None
    name_taken = _inputs()[1].name_taken
    for name, answer in record["asked"]:  # the same answers, asked again
        if not isinstance(name, str) or name_taken(name) != answer:
            return None
    return record


def _verified_noop(part):
    """In a state run that matches the record (_verified_record): the results
    of ``part`` (every part when None) when the firewall reads as it did then
    (by its backend's fingerprint, one read a run), else None."""
    record = _verified_record()
    if record is None:
        return None
    cache = __context__[RUN_CACHE]
    backend = zimbra_fw_backend.load(record["backend"])
    parts = _parts(part, backend)
    if "fingerprint" not in cache:
        with zimbra_fw_commands.collector_paused():
            cache["fingerprint"] = backend.read_fingerprint(_run, zone=record["zone"])
    if cache["fingerprint"] != record["firewall"]:
        cache["record"] = None  # the firewall changed: this run computes and plans
        return None
    cache.setdefault("converged", set()).update(parts)
    log.debug("zimbra_fw: inputs and firewall as in the last verified no-op: nothing to change")
    return {name: {"changes": {}, "applied": [], "comment": record["comments"][name]} for name in parts}


def _record_noop(policy, backend, snapshot, plans):
    """After a state run planned every part and found nothing to change:
    record it (see zimbra_fw_noop). A record that cannot be written is none."""
    directory = _noop_directory()
    fingerprint = getattr(snapshot, "fingerprint", None)
    if directory is None or fingerprint is None:
        return
    if not _every_part_in_run(backend) or any(p.steps or p.changes or p.waits_for for p in plans.values()):
        return
    inputs = _inputs_digest()
    if inputs is None:
        return
    asked = __context__[RUN_CACHE].get("asked", {})
    record = {
        "inputs": inputs,
        "asked": sorted([name, answer] for name, answer in asked.items()),
        "backend": backend.NAME,
        "zone": policy.config.zone,  # what firewalld reads: the pillar's zone, else the default one
        "firewall": fingerprint,
        "open_ports": zimbra_fw_policy.open_ports(policy),
        "comments": {name: plans[name].comment or backend.DONE[name] for name in backend.PARTS},
    }
    try:
        zimbra_fw_noop.save(directory, record)
    except (OSError, RuntimeError, TypeError, ValueError) as exc:
        log.debug("zimbra_fw: the verified no-op was not recorded: %s", exc)


def _parts(part, backend):
    if part is None:
        return backend.PARTS
    if part not in backend.PARTS:
        raise CommandExecutionError(f"part {part!r} is not one of {', '.join(backend.PARTS)}")
    return (part,)


def _plan_view(plan_):
    view = {"changes": plan_.changes, "steps": [step.describe for step in plan_.steps]}
    if plan_.comment:
        view["comment"] = plan_.comment
    return view


def _snapshot(policy, parts):
    """One read of the firewall. Within a state run the read is shared by the
    states until one of them changes something."""
    backend = _backend(policy.config)
    cache = __context__.get(RUN_CACHE)
    if cache is not None and "snapshot" in cache:
        return cache["snapshot"]
    live = cache is not None or any(p in backend.LIVE_PARTS for p in parts)
    with zimbra_fw_commands.collector_paused():
        snapshot = backend.read_snapshot(_run, live=live, config=policy.config)
    if cache is not None:
        cache["snapshot"], cache["plans"] = snapshot, {}
    return snapshot


def _plans(policy, parts, snapshot=None):
    """``{part: Plan}`` from one read of the firewall (see _snapshot), or from
    ``snapshot``. Within a state run a part is planned once per read: the
    check before any change and the part's own state share its plan."""
    backend = _backend(policy.config)
    snapshot = snapshot or _snapshot(policy, parts)
    cache = __context__.get(RUN_CACHE)
    shared = cache is not None and cache.get("snapshot") is snapshot and cache.get("policy") is policy
    plans = cache.setdefault("plans", {}) if shared else {}
    with zimbra_fw_commands.collector_paused():
        for name in parts:
            if name not in plans:
                plans[name] = backend.plan(name, policy, snapshot)
    return {name: plans[name] for name in parts}


def _sessions():
    """The established TCP sessions of this host, IPv4 and IPv6 (a fact)."""
    return [session for name in ("tcp", "tcp6") for session in zimbra_fw_sessions.established(_read_proc(name))]


ALLOW_CUT_HINT = "set zimbra_fw:allow_cut_sessions: true to apply anyway (with zimbra_fw:confirm to be safe)"


def _refused(problems):
    return CommandExecutionError("Refused, nothing was changed:\n- " + "\n- ".join(problems))


def _own_addresses():
    """This host's addresses (a fact), by their bytes: no zone ID rides along."""
    found = __salt__["network.ip_addrs"]() + __salt__["network.ip_addrs6"]()
    return {ipaddress.ip_address(ipaddress.ip_address(address).packed) for address in found}


def _session_notes(policy, test, held=(), kept=(), starts=False):
    """Notes on the live sessions a firewall admitting what ``policy`` does
    (and the live rules ``kept``) would cut, or a refusal. ``held``: the live
    rules of ours, as zimbra_fw_sessions.cut_sessions reads them; ``starts``:
    the firewall does not run now (the Salt master connection is checked)."""
    config = policy.config
    try:
        found = _sessions()
        # This host's addresses only take sessions off the list (a session
        # from one is no admin's): they are asked for when one is left.
        cuts = zimbra_fw_sessions.cut_sessions(policy, found, held, (), kept)
        if cuts:
            cuts = zimbra_fw_sessions.cut_sessions(policy, found, held, _own_addresses(), kept)
        cuts += zimbra_fw_sessions.master_cuts(policy, found) if starts else []
    except zimbra_fw_sessions.TooManySessions as exc:
        if not config.allow_cut_sessions:
            raise _refused([f"{exc}: cannot tell which this run would cut", ALLOW_CUT_HINT]) from exc
        return [f"{exc}: not checked, allowed by zimbra_fw:allow_cut_sessions"]
    if cuts and not config.allow_cut_sessions:
        raise _refused([cut.text for cut in cuts] + [ALLOW_CUT_HINT])
    verb = "would cut" if test else "cuts"
    return [f"{cut.text.replace('would cut', verb, 1)}, allowed by zimbra_fw:allow_cut_sessions" for cut in cuts]


def _run_session_notes(policy, backend, parts, snapshot, test):
    """The session check of a run of ``parts``; only while the firewall
    filters, or will: it is enabled by the pillar, or runs not allowing what
    no rule allows. A run without the backend's ``RULE_PARTS`` leaves the
    rules in the firewall as they are: what admits then is those of ours
    and the management accesses the other parts make sure of."""
    config = policy.config
    if not (config.enabled or (snapshot.active and snapshot.incoming != "allow")):
        return []
    held, starts = backend.own_rules(snapshot), snapshot.active is False  # None: not read, not turned on here
    if set(parts) & set(backend.RULE_PARTS):
        return _session_notes(policy, test, held, starts=starts)
    return _session_notes(_management_only(policy), test, held, kept=held, starts=starts)


def _management_only(policy):
    return policy._replace(accesses=tuple(zimbra_fw_policy.management(policy)))


def _rollback_notes(policy, backend, snapshot, test):
    """Refuse while a rollback is pending, unless this run carries confirm;
    with confirm, arm the rollback (it saves the firewall, or keeps the copy
    a pending rollback holds). Returns (notes saying when it rolls back, the
    armed rollback's token or None)."""
    seconds = policy.config.confirm
    scope = getattr(snapshot, "zone", None)  # firewalld's zone: a rollback puts back that one
    try:
        record = zimbra_fw_rollback.pending()
    except RuntimeError as exc:  # its directory is not ours
        raise _refused([str(exc)]) from exc
    if record is not None and seconds is None:
        raise _refused(
            [
                f"a rollback is pending, due {zimbra_fw_rollback.due_text(record['due'], time.time())}: confirm the "
                "last change first (zimbra_fw.confirm), or run with zimbra_fw:confirm, which keeps that rollback's "
                "saved firewall and sets a new delay"
            ]
        )
    if seconds is None:
        return [], None
    if test:
        return [f"would be rolled back {seconds} s after it is applied unless zimbra_fw.confirm is called"], None
    try:
        armed = zimbra_fw_rollback.arm(
            _run,
            backend.NAME,
            lambda: backend.save(_run, policy.config),
            seconds,
            systemd=salt.utils.systemd.booted(__context__),
            log_file=__opts__.get("log_file"),
            scope=scope,
        )
    except zimbra_fw_rollback.Refused as exc:
        raise _refused([str(exc)]) from exc
    except (OSError, RuntimeError, ValueError, CommandExecutionError) as exc:
        raise _refused([f"zimbra_fw:confirm: the rollback could not be armed: {exc}"]) from exc
    due = zimbra_fw_rollback.due_text(armed["due"], time.time())
    log.warning("zimbra_fw: the firewall change is rolled back at %s unless zimbra_fw.confirm is called", due)
    kept = "" if record is None else " (to the firewall saved before the earlier unconfirmed change)"
    return [f"rolled back at {due}{kept} unless zimbra_fw.confirm is called"], armed["token"]


def _before_changes(policy, backend, parts, test):
    """Once per run, before anything changes: the checks and the rollback of
    a run that changes something in ``parts`` (in a state run: in any part
    whose state it holds, as the first state runs before the others; see
    _run_parts, _session_notes, _rollback_notes). Returns (the notes for
    the comment of the first part that changes, the token of the rollback
    armed or None). Refuses a part that waits for another first."""
    cache = __context__.get(RUN_CACHE)
    run_parts = _run_parts(backend, parts)
    snapshot = _snapshot(policy, run_parts)
    plans = _plans(policy, parts, snapshot)
    _refuse_waiting(plans, parts)
    if cache is not None and "notes" in cache:
        return cache["notes"], cache["armed"]
    notes, armed = [], None
    if run_parts != parts:  # a state run: its other states' parts too
        plans = _plans(policy, run_parts, snapshot)
    if any(plan_.steps for plan_ in plans.values()):
        notes = _run_session_notes(policy, backend, run_parts, snapshot, test)
        rollback_notes, armed = _rollback_notes(policy, backend, snapshot, test)
        notes += rollback_notes
    elif cache is not None:
        _record_noop(policy, backend, snapshot, plans)
    if cache is not None:
        cache["notes"], cache["armed"] = notes, armed
    return notes, armed


def _run_parts(backend, parts):
    """The parts this run converges: in a state run, those whose states it
    holds (every part when it cannot tell), else ``parts``."""
    cache = __context__.get(RUN_CACHE)
    if cache is None:
        return parts
    held = cache.get("parts")
    return tuple(part for part in backend.PARTS if part in held) if held else backend.PARTS


def _refuse_waiting(plans, parts):
    """Refuse a part whose plan waits for another part (Plan.waits_for) that
    this run has not converged: earlier in this call, or in an earlier state
    of this state run (``state.single`` of the rules state alone is refused)."""
    cache = __context__.get(RUN_CACHE)
    converged = cache.get("converged", set()) if cache is not None else set()
    waiting = [
        name
        for index, name in enumerate(parts)
        if plans[name].waits_for and plans[name].waits_for not in converged | set(parts[:index])
    ]
    if waiting:
        raise _refused(
            [f"part {name}: {plans[name].comment}: converge part={plans[name].waits_for} first" for name in waiting]
        )


def catalogue():
    """
    Return every Zimbra port the formula knows: port, protocol, owning role,
    exposure (public / cluster / localhost), who connects and what it is.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.catalogue
    """
    return zimbra_fw_catalogue.as_dicts()


def identity():
    """
    Return what this minion publishes to the Salt Mine for its peers: its
    Zimbra roles and its addresses. Publish it with the minion (or pillar)
    setting ``mine_functions: {zimbra_fw.identity: []}``.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.identity
        salt '*' mine.update
    """
    policy = _policy(with_mine=False)  # what it publishes must not depend on the mine
    # Only what a peer's config accepts (no link-local, loopback, IPv4-mapped,
    # ...): one such address would leave this minion out of its peers' firewalls.
    hosts = {ipaddress.ip_network(address.packed) for address in _own_addresses()}
    own = sorted((h for h in hosts if zimbra_fw_config.special_reason(h) is None), key=lambda h: (h.version, h))
    return {"roles": list(policy.config.roles), "addresses": [str(h.network_address) for h in own]}


def open_ports():
    """
    Return this minion's whitelist from its ``zimbra_fw`` pillar, by exposure:
    ``public`` is opened to anyone, ``cluster`` to trusted subnets and to the
    peers whose roles use each port (``peers``), ``localhost`` is never
    opened. ``trusted`` lists the trusted subnets (they reach every port).
    ``roles`` says where the roles came from (pillar or packages);
    ``admin`` lists the admin console ports when ``admin_subnets`` is set;
    ``admin_console_open`` says whether one of them is open to anyone.
    ``left_out`` lists, per minion, why mine data was left out (malformed,
    outside ``cluster:networks``, IPv6 while IPv6 is off); ``warnings``
    what the pillar allows but should be said (wide networks).
    Reads the minion's pillar as loaded: after editing pillar, run
    ``saltutil.refresh_pillar`` first.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.open_ports
    """
    record = _verified_record()
    if record is not None:  # this state run's pillar and facts are those it verified
        backend, ports = zimbra_fw_backend.load(record["backend"]), dict(record["open_ports"])
    else:
        policy = _policy()
        backend, ports = _backend(policy.config), zimbra_fw_policy.open_ports(policy)
    ports["firewall"] = {
        "backend": backend.NAME,
        "package": backend.PACKAGE,
        "program": backend.PROGRAM,
        "service": backend.SERVICE,
    }
    return ports


def profile():
    """
    Return the firewall's port groups for this minion (ufw application
    profiles or firewalld services: the public one and one per peer role or
    admin_subnets) with their ports, where they live and, for ufw, the file
    text (None when none is needed).

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.profile
    """
    policy = _policy()
    return _backend(policy.config).profiles(policy)


def plan(part=None):
    """
    Show what a converge would change now, and the steps it would run,
    changing nothing. ``part`` limits it to one of ``profile``, ``rules`` or
    ``firewall``.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.plan
        salt '*' zimbra_fw.plan part=rules
    """
    policy = _policy()
    plans = _plans(policy, _parts(part, _backend(policy.config)))
    if part is not None:
        return _plan_view(plans[part])
    return {name: _plan_view(plan_) for name, plan_ in plans.items()}


def _apply(backend, steps):
    """``backend.apply``; a failure says when a pending rollback puts the saved firewall back."""
    try:
        return backend.apply(steps, _run)
    except CommandExecutionError as exc:
        record = zimbra_fw_rollback.pending()
        if record is None:
            raise
        due = zimbra_fw_rollback.due_text(record["due"], time.time())
        raise type(exc)(
            f"{exc.error}; the saved firewall is put back at {due} unless zimbra_fw.confirm is called",
            info=getattr(exc, "info", None),
        ) from exc


def converge(part=None, test=False):
    """
    Make the firewall match this minion's pillar now, as ``state.apply
    zimbra_fw`` does (the states call this, one part each): ``profile``,
    ``rules`` and ``firewall``, in that order, or only ``part``. With
    ``test=True``, or the minion's own ``test: True`` option, it changes
    nothing and returns the pending changes. Returns ``{part: {changes,
    applied, comment}}`` (the comment says the changes in words); on failure the error names the
    failed step and the steps already applied, and later parts do not run.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.converge test=True
        salt '*' zimbra_fw.converge part=rules
    """
    test = bool(test or __opts__.get("test"))  # the minion's own test: True wins
    verified = _verified_noop(part)
    if verified is not None:
        return verified
    policy, results = _policy(), {}
    backend = _backend(policy.config)
    parts = _parts(part, backend)
    notes, armed = _before_changes(policy, backend, parts, test)
    try:
        # The rollback armed waits until this call has applied its changes.
        with zimbra_fw_rollback.held(armed):
            for name in parts:
                plan_ = _plans(policy, (name,))[name]  # each part reads the firewall as the previous one left it
                if plan_.steps and not test:
                    __context__.get(RUN_CACHE, {}).pop("snapshot", None)  # the next part reads the firewall anew
                applied = [] if test else _apply(backend, plan_.steps)
                comment = (
                    backend.describe(plan_.changes, test) if plan_.changes else plan_.comment or backend.DONE[name]
                )
                results[name] = {"changes": plan_.changes, "applied": applied, "comment": comment}
                if RUN_CACHE in __context__:
                    __context__[RUN_CACHE].setdefault("converged", set()).add(name)
                if plan_.steps and notes:  # told once, by the first part that changes
                    results[name].update(notes=notes, comment="; ".join([comment, *notes]))
                    notes = __context__.get(RUN_CACHE, {})["notes"] = []
    except zimbra_fw_rollback.NoLongerPending as exc:
        raise CommandExecutionError(str(exc)) from exc
    return results


def prepare(test=False):
    """
    Before a stopped firewall is started: check that it can hold the policy
    and put the management rules (ssh, the Salt master) into its permanent
    configuration, so that it starts with them and default-deny never shuts
    the admins out. firewalld: the zone is checked and the rich rules are
    added with ``firewall-offline-cmd``; ufw needs nothing (it is enabled
    only once its rules are in). Returns the rules added (with
    ``test=True``, or the minion's ``test`` option: that would be added).
    The ``zimbra_fw-installed`` state calls it.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.prepare test=True
    """
    policy = _policy()
    test = bool(test or __opts__.get("test"))
    # Once started, the firewall admits for sure only the management rules put in here.
    _session_notes(_management_only(policy), test, starts=True)
    return _backend(policy.config).prepare_stopped(policy, _run, test=test)


def audit():
    """
    Compare what listens on this minion with what the firewall lets in. For
    each listening port: who can reach it now (anyone, the listed sources,
    nobody, localhost) against what the catalogue says it should be, and
    findings by severity (critical: memcached, LDAP, MySQL, zmconfigd or
    amavis reachable from anyone). Exits 2 from salt-call when something
    critical is found.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.audit
        salt '*' zimbra_fw.audit --out=json
    """
    policy = _policy()
    backend = _backend(policy.config)
    report = _audit_report(policy, backend, backend.read_snapshot(_run, config=policy.config))
    if report["summary"]["critical"]:
        __context__["retcode"] = 2
    return report


def _audit_report(policy, backend, snapshot):
    """The audit of ``snapshot`` against what listens on this minion now."""
    proc = {name: _read_proc(name) for name, _ in zimbra_fw_audit.PROC_NET_FILES}
    return zimbra_fw_audit.audit(
        policy,
        zimbra_fw_audit.listeners(proc, policy),
        backend.access_rules(snapshot),
        active=snapshot.active,
        incoming=snapshot.incoming,
        firewall=backend.NAME,
        extra_findings=backend.audit_findings(snapshot),
    )


DRIFT_RETCODE = 2


def drift():
    """
    Compare the running firewall with this minion's policy, changing nothing:
    ``drifted`` (something would change, or a finding widens access),
    ``backend``, ``active`` (the firewall runs), ``parts`` (per part that
    would change, the changes ``test=True`` reports: rules missing or extra
    per family, profile, service and ipset differences, firewalld's runtime
    against permanent, the default policy, enabling), ``findings`` (the
    audit's critical, high and medium findings beyond what the policy opens:
    a hand-made ``ufw allow 11211``, a zone service someone added),
    ``roles`` and ``comment`` in words. Sets
    the return code to 2 on drift, for cron and monitoring
    (``salt-call --retcode-passthrough zimbra_fw.drift``). A stopped firewall
    is drift (``active: false``). The zimbra_fw beacon calls it.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.drift
    """
    policy = _policy()
    backend = _backend(policy.config)
    report = {"backend": backend.NAME, "roles": list(policy.config.roles)}
    try:
        snapshot = backend.read_snapshot(_run, live=True, config=policy.config)
    except zimbra_fw_commands.FirewallStopped as exc:
        report.update(drifted=True, active=False, parts={}, findings=[], comment=str(exc))
    else:
        plans = _plans(policy, backend.PARTS, snapshot)
        parts = {name: plan_.changes for name, plan_ in plans.items() if plan_.changes}
        audit_report = _audit_report(policy, backend, snapshot)
        findings = zimbra_fw_audit.beyond_policy(audit_report["findings"], policy)
        report.update(
            drifted=bool(parts or findings),
            active=bool(snapshot.active),
            parts=parts,
            findings=findings,
            comment=_drift_comment(backend, parts, findings),
        )
    if report["drifted"]:
        __context__["retcode"] = DRIFT_RETCODE
    return report


def _drift_comment(backend, parts, findings):
    """The drift in words: what a run would change, per part, and the findings."""
    if not parts and not findings:
        return f"{backend.NAME} matches the zimbra_fw policy and nothing reaches further than it allows"
    words = [f"{name}: {backend.describe(changes, True)}" for name, changes in parts.items()]
    words += [f"{f['severity']} {f['port'] or backend.NAME}: {f['message']}" for f in findings]
    return f"{backend.NAME} drifted from the zimbra_fw policy: " + "; ".join(words)


def _read_proc(name):
    try:
        with open(f"/proc/net/{name}", encoding="ascii") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def status():
    """
    Return the firewall as it is: active or not, the default incoming
    policy, the rules this formula manages and the rules it does not.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.status
    """
    policy = _policy()
    backend = _backend(policy.config)
    result = backend.status(backend.read_snapshot(_run, config=policy.config))
    result["rollback"] = _rollback_status()
    return result


def _rollback_status():
    """The pending rollback (when it is due, how it is armed), or None; and
    the last one that failed, if any."""
    record, failed = zimbra_fw_rollback.pending(), zimbra_fw_rollback.failed()
    status_ = None
    if record is not None:
        status_ = {
            "due": zimbra_fw_rollback.due_text(record["due"], time.time()),
            "armed_by": f"systemd timer {record['unit']}.timer" if record["unit"] else "a detached process",
            "confirm_with": "zimbra_fw.confirm",
        }
    if failed is not None:
        status_ = {**(status_ or {}), "last_failed": failed}
    return status_


def confirm():
    """
    Keep the firewall as the last run with ``zimbra_fw:confirm`` left it:
    the pending rollback is cancelled and its saved copy of the firewall
    dropped. With no rollback pending it says so and changes nothing.

    CLI Example:

    .. code-block:: bash

        salt '*' zimbra_fw.confirm
    """
    record = zimbra_fw_rollback.confirm(_run)
    if record is None:
        return {"confirmed": False, "comment": "No rollback is pending: nothing to confirm"}
    due = zimbra_fw_rollback.due_text(record["due"], time.time())
    log.warning("zimbra_fw: the firewall change was confirmed; the rollback due %s is cancelled", due)
    return {"confirmed": True, "comment": f"Confirmed: the rollback due {due} is cancelled; the firewall stays"}
