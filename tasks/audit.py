"""The audit's controller side. pyinfra loads audit.py for every host at once; the first load of a run does
the whole audit in one explicit step, whatever order pyinfra loads the hosts in: every host's group_data
checked, every node read at once (one command each) and, with `audit_probe`, connected to; then every node
judged, the report printed, the JSON and HTML files asked for written, and the run ended, with status 1
when a node's findings fail the audit. The other loads find it begun and return. Nothing runs on a host but the
read."""

import dataclasses
import datetime
import json
import os
import shlex
import subprocess
import sys
import weakref
from dataclasses import dataclass

import click
import gevent.pool
from pyinfra import logger, state
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.api.state import State
from pyinfra.context import ctx_config, ctx_host, ctx_state

from facts.audit import ExposureRead
from zimbra_firewall import audit
from zimbra_firewall.audit_report import render_html, render_text
from zimbra_firewall.policy import PolicyError, build_policy, catalogue_cache, topology_attributes
from zimbra_firewall.settings import Settings, read_settings
from zimbra_firewall.topology import seen_from

PROBE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zimbra_firewall", "probe.py")


@dataclass
class Visit:
    """What the audit gathered of one host: its read (None when it failed, with `error`), its group_data."""

    name: str
    settings: Settings  # its group_data, checked
    read: audit.NodeRead | None = None
    error: str = ""
    probe: dict | None = None
    probe_warning: str = ""


_audited: "weakref.WeakSet[State]" = weakref.WeakSet()  # the runs whose audit has begun


def deploy_command() -> str:
    """The deploy command that fixes what the audit finds, with the inventory this run was given."""
    words = sys.argv[1:]
    inventory = next(
        (words[i - 1] for i, word in enumerate(words) if os.path.basename(word) == "audit.py" and i > 0),
        "inventories/<env>.py",
    )
    return f"pyinfra -y {inventory} deploy.py"


def audit_inventory() -> None:
    """The whole audit, once per run (see the module's text): pyinfra calls this for every host's load."""
    run = ctx_state.get()
    if run in _audited:
        return
    _audited.add(run)
    hosts = [h for h in state.inventory if h in state.active_hosts]  # the inventory's order, every run
    visits = [Visit(target.name, checked_settings(target)) for target in hosts]
    files = report_files(visits)
    # a pool of its own, as wide as pyinfra's (--parallel): this load holds one of pyinfra's slots
    readers = gevent.pool.Pool(state.pool.size)
    for target, visit in zip(hosts, visits, strict=True):
        readers.spawn(read_in_context, target, visit)
    readers.join(raise_error=True)
    read = {visit.name for visit in visits}
    unreached = [audit.unread_node(h.name, "could not connect") for h in state.failed_hosts if h.name not in read]
    report([judge(v, visits) for v in visits] + unreached, files)


def checked_settings(target: Host) -> Settings:
    try:
        return read_settings(target.data.dict())
    except PolicyError as error:
        raise PyinfraError(f"{target.name}: {error}") from None


def report_files(visits: list[Visit]) -> dict[str, str]:
    """The report's files: one run writes one JSON and one HTML page, so every host must name the same."""
    files = {}
    for key in ("audit_json", "audit_html"):
        named = {getattr(visit.settings, key) for visit in visits}
        if len(named) > 1:
            listed = ", ".join(sorted(name or "none" for name in named))
            raise PyinfraError(f"group_data {key}: the hosts name different files ({listed})")
        files[key] = named.pop() if named else ""
    return files


def read_in_context(target: Host, visit: Visit) -> None:
    """read_node in its own greenlet, with the host and config pyinfra gives a host's load."""
    with ctx_config.use(state.config.copy()), ctx_host.use(target):
        read_node(target, visit)


def read_node(target: Host, visit: Visit) -> None:
    """Read one node (and probe it); a node that cannot be read is reported unread, the others go on."""
    settings = visit.settings
    try:
        visit.read = target.get_fact(
            ExposureRead,
            attributes=topology_attributes(),
            read=settings.zimbra_read,
            lock_wait=settings.xtables_lock_wait,
        )
        if visit.read is None:  # pyinfra's answer when the fact's required command is missing
            raise RuntimeError("`ss` is missing (Debian/Ubuntu package iproute2)")
    except Exception as error:
        visit.read, visit.error = None, f"cannot read the node: {error}"
        logger.warning(f"{target.name}: {visit.error}")
        return
    if settings.audit_probe and audit.observed_of(visit.read) is not None:  # rules to compare the probe with
        probe(visit, settings.audit_probe_via)
    logger.info(f"{target.name}: read, {len(visit.read.listeners)} listening sockets")


def probe(visit: Visit, via: str) -> None:
    """The active check: connect from the controller (through `via`) to the node's TCP listeners."""
    assert visit.read is not None  # probed only once read
    target, ports = audit.probe_plan(visit.read)
    if not target:
        visit.probe_warning = "no active check: the node did not show the SSH connection's addresses"
        return
    if not ports:
        return
    command = [*shlex.split(via), sys.executable, PROBE, target, *map(str, ports)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        visit.probe_warning = f"no active check: {shlex.join(command)} failed: {done.stderr.strip()}"
        return
    visit.probe = json.loads(done.stdout)


def judge(visit: Visit, visits) -> audit.NodeAudit:
    """One node against its policy. A node that could not read Zimbra's LDAP itself is judged on the read of
    another node of this run that lists it (names as that node resolves them), as the deploy does."""
    if visit.read is None:
        return audit.unread_node(visit.name, visit.error)
    read, topology = visit.read, visit.read.topology
    if topology.this is None and topology.name:
        for other in visits:
            found = other.read.topology if other.read else None
            if found and found.this and any(s.name.lower() == topology.name.lower() for s in found.servers):
                resolved = {s.hostname.lower(): s.addresses for s in found.servers}
                kept = dict(topology.last_known)
                topology = seen_from(found, topology.name, resolved, topology.own_addresses, other.name, kept)
                read = dataclasses.replace(read, topology=topology)
                break
    try:
        policy = build_policy(visit.settings, topology)
    except PolicyError as error:
        raise PyinfraError(f"{visit.name}: {error}") from None
    warnings = [
        *(f"untrusted value left out: {value}" for value in policy.refused),
        *policy.warnings,
        *([visit.probe_warning] if visit.probe_warning else []),
    ]
    if topology.borrowed_from:
        warnings.insert(0, f"cannot read Zimbra's LDAP itself: judged on what {topology.borrowed_from} read")
    looks = audit.nginx_looks(topology, [v.read.topology for v in visits if v.read])
    node = audit.audit_node(visit.name, read, policy, catalogue_cache(), deploy_command(), warnings, looks)
    audit.add_trust_findings(node, topology, policy)
    if visit.probe:
        audit.apply_probe(node, read, visit.probe)
    return node


def report(nodes: list[audit.NodeAudit], files: dict[str, str]) -> None:
    generated = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    document = audit.as_json(nodes, generated)
    click.echo(render_text(document))
    for key, render in (("audit_json", lambda d: json.dumps(d, indent=1) + "\n"), ("audit_html", render_html)):
        if files[key]:
            with open(files[key], "w") as f:
                f.write(render(document))
            logger.info(f"audit: wrote {files[key]}")
    failed = document["summary"]["failed"]
    if failed:
        names = ", ".join(failed)
        why = "too open, unknown listener, probe got in, rules not loaded, relay trusted too broadly, or not read"
        logger.error(f"--> the audit fails on {len(failed)} node(s): {names} ({why})")
    # the report is the run: end it here, with its status, rather than let pyinfra go on to an empty
    # operation run (and, without -y, ask to confirm it: from cron, with no stdin, that fails)
    raise SystemExit(1 if failed else 0)
