"""
The policy: who may reach which port of this server, computed once from a
Config. Knows no firewall: a backend turns its groups and accesses into
rules of its own.

* ``groups``: named sets of ports, in order: the public group (the profile
  name, e.g. ``Zimbra``), one per role of peers that connect (``Zimbra-mta``,
  ``Zimbra-all`` for ports every node uses) and ``Zimbra-admin`` when
  ``admin_subnets`` takes the admin console off the internet.
* ``accesses``: who gets what, in the order a firewall should add them:
  management (ssh, the Salt master) first, then trusted subnets, admin
  subnets, peers and the public group.
"""

from collections import namedtuple

import zimbra_fw_catalogue as catalogue
from zimbra_fw_catalogue import CLUSTER, LOCALHOST, PUBLIC
from zimbra_fw_config import ConfigInvalid, Problems, shortest_prefix, source_text


def __virtual__():
    return (False, "zimbra_fw_policy is a library of the zimbra_fw module, not a Salt util")


ADMIN_SUFFIX = "admin"
ALL_PEERS = "all"

MANAGEMENT, SALT_MASTER, TRUSTED, ADMIN, ONLY_FROM, PEER, ANYONE = (
    "ssh",
    "salt-master",
    "trusted",
    "admin",
    "only-from",
    "peer",
    "public",
)
MANAGEMENT_KINDS = (MANAGEMENT, SALT_MASTER)

Group = namedtuple("Group", "name title description ports")
# source: an ip_network, or None for anyone. ports: PortSpecs, or None for
# every port. group: the group whose ports these are, if any. source_ports:
# the peer's ports the packets come from (the Salt master's replies), or ().
# limit: rate-limited (ssh:limit), for the firewall to refuse brute force.
Access = namedtuple("Access", "kind source ports group source_ports limit")
Access.__new__.__defaults__ = (False,)
# public: every port opened to anyone or, with only_from, to some networks;
# restricted: {PortSpec: networks} of only_from.
Policy = namedtuple("Policy", "config public restricted cluster localhost admin groups accesses peers_by_port")


def _cluster_roles(config):
    """Roles present anywhere in the cluster: this node's and its peers'."""
    return set(config.roles).union(*(peer.roles for peer in config.peers))


def _spec(row, config):
    """A row's port on this server: zmrcd's ssh follows ssh:port."""
    if row is catalogue.ZMRCD:
        return catalogue.PortSpec(config.ssh_port, config.ssh_port, "tcp")
    return catalogue.spec_of(row)


def _exposed(rows, exposure, config):
    return {_spec(row, config) for row in rows if row.exposure == exposure}


def _by_consumer(rows, anyone, config):
    """``{consumer role or 'all': {PortSpec}}``: the ports not open to anyone,
    by who connects. A public port that only_from or admin_subnets narrows
    stays in the groups of the peers that use it: the restriction is for the
    internet, not the cluster."""
    groups = {}
    for row in rows:
        spec = _spec(row, config)
        if row.exposure == LOCALHOST or spec in anyone:
            continue
        for consumer in catalogue.consumers(row, config.mail_mode):
            if consumer in catalogue.ROLES or consumer == ALL_PEERS:
                groups.setdefault(consumer, set()).add(spec)
    return groups


def _consumers_of(roles, by_consumer):
    """The consumer groups whose ports a peer with ``roles`` may reach."""
    return sorted(c for c in by_consumer if c == ALL_PEERS or c in roles)


def _group_name(config, suffix):
    return f"{config.profile_name}-{suffix}"


def _management(config):
    ssh = (catalogue.PortSpec(config.ssh_port, config.ssh_port, "tcp"),)
    accesses = [
        Access(MANAGEMENT, None if source == "any" else source, ssh, None, (), config.ssh_limit)
        for source in config.ssh_from
    ]
    # The master's packets (from its ports 4505/4506) to the minion's ephemeral ports only.
    accesses += [
        Access(SALT_MASTER, master.address, (master.local_ports,), None, master.ports) for master in config.salt_masters
    ]
    return accesses


def build(config):
    """The Policy of a validated Config."""
    rows = catalogue.rows_for(config.roles, _cluster_roles(config))
    admin = set()
    if config.admin_subnets:
        admin = {catalogue.spec_of(row) for row in rows if row.exposure == PUBLIC and "admins" in row.consumers}
    wanted = (_exposed(rows, PUBLIC, config) - admin) | set(config.extra_ports)
    public = sorted(spec for spec in wanted if not any(ex.overlaps(spec) for ex in config.exclude_ports))
    restricted = dict(config.only_from)
    _check_restrictions(config, public, restricted, admin)
    anyone = [spec for spec in public if spec not in restricted]
    by_consumer = _by_consumer(rows, set(anyone), config)

    groups = {}
    if anyone:
        groups[config.profile_name] = Group(
            config.profile_name, config.profile_title, config.profile_description, anyone
        )
    # Per distinct set of roles, not per peer: thousands of peers share a few.
    consumers = {roles: _consumers_of(roles, by_consumer) for roles in {peer.roles for peer in config.peers}}
    used = sorted({c for found in consumers.values() for c in found})
    for suffix in used + ([ADMIN_SUFFIX] if admin else []):
        who = {ADMIN_SUFFIX: "admin_subnets", ALL_PEERS: "all peers"}.get(suffix, f"{suffix} peers")
        ports = admin if suffix == ADMIN_SUFFIX else by_consumer[suffix]
        name = _group_name(config, suffix)
        groups[name] = Group(
            name, f"{config.profile_title} ({who})", f"Zimbra ports that {who} connect to", sorted(ports)
        )

    accesses = _management(config)
    accesses += [Access(TRUSTED, network, None, None, ()) for network in config.trusted_subnets]
    if admin:
        group = groups[_group_name(config, ADMIN_SUFFIX)]
        accesses += [Access(ADMIN, network, group.ports, group.name, ()) for network in config.admin_subnets]
    for spec, networks in restricted.items():
        accesses += [Access(ONLY_FROM, network, (spec,), None, ()) for network in networks]
    group_of = {consumer: groups[_group_name(config, consumer)] for consumer in used}
    peers_of = {consumer: set() for consumer in used}  # peer names, per group: one add a peer, not one a port
    for peer in config.peers:
        for consumer in consumers[peer.roles]:
            group = group_of[consumer]
            accesses += [Access(PEER, address, group.ports, group.name, ()) for address in peer.addresses]
            peers_of[consumer].add(peer.name)
    peers_by_port = {}
    for consumer, names in peers_of.items():
        for spec in group_of[consumer].ports:
            peers_by_port.setdefault(spec, set()).update(names)
    if anyone:
        accesses.append(Access(ANYONE, None, tuple(anyone), config.profile_name, ()))
    return Policy(
        config=config,
        public=public,
        restricted=restricted,
        cluster=sorted(_exposed(rows, CLUSTER, config)),
        localhost=sorted(_exposed(rows, LOCALHOST, config)),
        admin=sorted(admin),
        groups=groups,
        accesses=accesses,
        peers_by_port={spec: sorted(names) for spec, names in peers_by_port.items()},
    )


def _restrictions(config, restricted, admin):
    """``[(PortSpec, why, by only_from)]``: the ports a key opens to some sources only."""
    found = [(spec, f"which zimbra_fw:only_from:{spec} opens only to its networks", True) for spec in restricted]
    found += [
        (spec, "the admin console, which zimbra_fw:admin_subnets opens only to those networks", False) for spec in admin
    ]
    if config.ssh_from != ("any",):
        ssh = catalogue.PortSpec(config.ssh_port, config.ssh_port, "tcp")
        why = "the ssh port, which zimbra_fw:ssh:from opens only to its networks (and zmrcd to peers)"
        found.append((ssh, why, False))
    return found


def _check_restrictions(config, public, restricted, admin):
    """only_from may only narrow this server's own public ports, and no
    public range of extra_ports may cover a port another key restricts."""
    problems = Problems()
    for spec in restricted:
        if spec not in public:
            listed = ", ".join(str(p) for p in public) or "none"
            problems.add(
                f"only_from:{spec}", str(spec), f"is not a public port of this server (its public ports: {listed})"
            )
        for other in public:  # a range would narrow itself, not the catalogue's ports it overlaps
            if other != spec and other.overlaps(spec) and other not in config.extra_ports:
                problems.add(
                    f"only_from:{spec}", str(spec), f"overlaps {other}, another public port: name each port alone"
                )
    restrictions = _restrictions(config, restricted, admin)
    for extra in config.extra_ports:
        if extra not in public:  # excluded: opened to no one
            continue
        for spec, why, by_only_from in restrictions:
            if extra.overlaps(spec) and not (extra == spec and by_only_from):
                problems.add(
                    "extra_ports",
                    str(extra),
                    f"covers {spec}, {why}: it would open {spec} to anyone; leave {spec} out of the range",
                )
    if problems:
        raise ConfigInvalid(problems)


def management(policy):
    """The accesses that keep the server manageable: they go in before default-deny."""
    return [access for access in policy.accesses if access.kind in MANAGEMENT_KINDS]


def open_ports(policy):
    """The whitelist by exposure, where the roles came from and who gets cluster ports."""
    config = policy.config
    result = {
        PUBLIC: [str(s) for s in policy.public],
        CLUSTER: [str(s) for s in policy.cluster],
        LOCALHOST: [str(s) for s in policy.localhost],
        "roles": {"roles": list(config.roles), "source": config.roles_source},
        "peers": {str(spec): policy.peers_by_port[spec] for spec in sorted(policy.peers_by_port)},
        "trusted": [str(network) for network in config.trusted_subnets],
    }
    if policy.restricted:
        result["only_from"] = {str(spec): [str(n) for n in nets] for spec, nets in policy.restricted.items()}
    if config.left_out:
        result["left_out"] = {name: list(reasons) for name, reasons in config.left_out.items()}
    if config.admin_subnets:
        result["admin"] = {str(spec): [str(n) for n in config.admin_subnets] for spec in policy.admin}
    result["admin_console_open"] = admin_console_open(policy)
    result["warnings"] = warnings(policy)
    return result


def admin_console_open(policy):
    """True when one of this server's admin console ports (7071, 9071) is
    open to anyone, by its own group or by a range that covers it."""
    config = policy.config
    console = [
        catalogue.spec_of(row)
        for row in catalogue.rows_for(config.roles, _cluster_roles(config))
        if row.exposure == PUBLIC and "admins" in row.consumers
    ]
    anyone = [spec for spec in policy.public if spec not in policy.restricted]
    return any(spec.overlaps(port) for spec in anyone for port in console)


def warnings(policy):
    """What the pillar allows but should be said on every run (the pillar_valid state's comment)."""
    config = policy.config
    found = [
        f"zimbra_fw:{key}: {source_text(network)} is wider than /{shortest_prefix(network)[0]}, allowed by "
        "zimbra_fw:allow_wide_networks: it gives a large part of the internet access"
        for key, network in config.wide_networks
    ]
    if config.mine and config.mine_target.strip() == "*":
        found.append(
            "zimbra_fw:cluster:mine_target: '*' reads every minion's mine data: any minion inside cluster:networks "
            "can claim Zimbra roles and get their ports (the mailbox role gets ssh through zmrcd); target the "
            "Zimbra servers only"
        )
    return found
