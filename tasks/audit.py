"""The audit's controller side. pyinfra loads audit.py for every host at once: each host's load reads the
node (one command) and, with `audit_probe`, connects to it; the last host in judges every node, prints the
report, writes the JSON and HTML files asked for, and ends the run, with status 1 when a node's findings
fail the audit. Nothing runs on a host but the read."""

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
from pyinfra import host, logger, state
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.state import State
from pyinfra.context import ctx_state

from facts.audit import ExposureRead
from zimbra_firewall import audit
from zimbra_firewall.audit_report import render_html, render_text
from zimbra_firewall.policy import PolicyError, build_policy, catalogue_cache, topology_attributes
from zimbra_firewall.settings import read_settings
from zimbra_firewall.topology import seen_from

PROBE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zimbra_firewall", "probe.py")


@dataclass
class Visit:
    """What one host's load gathered: its read (None when it failed, with `error`), its group_data."""

    name: str
    settings: dict  # its group_data, checked (read_settings)
    read: audit.NodeRead | None = None
    error: str = ""
    probe: dict | None = None
    probe_warning: str = ""


_runs: "weakref.WeakKeyDictionary[State, dict[str, Visit]]" = weakref.WeakKeyDictionary()  # host name → visit


def deploy_command() -> str:
    """The deploy command that fixes what the audit finds, with the inventory this run was given."""
    words = sys.argv[1:]
    inventory = next(
        (words[i - 1] for i, word in enumerate(words) if os.path.basename(word) == "audit.py" and i > 0),
        "inventories/<env>.py",
    )
    return f"pyinfra -y {inventory} deploy.py"


def audit_host() -> None:
    """Read the current host (and probe it); the last host in judges and reports (see the module's text)."""
    try:
        settings = read_settings(host.data.dict())
    except PolicyError as error:
        raise PyinfraError(f"{host.name}: {error}") from None
    visit = Visit(host.name, settings)
    try:
        visit.read = host.get_fact(
            ExposureRead,
            attributes=topology_attributes(),
            read=settings["zimbra_read"],
            lock_wait=settings["xtables_lock_wait"],
        )
        if visit.read is None:  # pyinfra's answer when the fact's required command is missing
            raise RuntimeError("`ss` is missing (Debian/Ubuntu package iproute2)")
    except Exception as error:  # this node is reported unread, the others go on
        visit.read, visit.error = None, f"cannot read the node: {error}"
        logger.warning(f"{host.name}: {visit.error}")
    else:
        if settings["audit_probe"] and visit.read.status:
            probe(visit, settings["audit_probe_via"])
        logger.info(f"{host.name}: read, {len(visit.read.listeners)} listening sockets")
    runs = _runs.setdefault(ctx_state.get(), {})
    runs[host.name] = visit
    if len(runs) == len(state.inventory.get_active_hosts()):
        unreached = [audit.unread_node(h.name, "could not connect") for h in state.failed_hosts if h.name not in runs]
        report([judge(v, runs.values()) for v in runs.values()] + unreached, settings)


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
    if visit.probe:
        audit.apply_probe(node, read, visit.probe)
    return node


def report(nodes: list[audit.NodeAudit], settings: dict) -> None:
    generated = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    document = audit.as_json(nodes, generated)
    click.echo(render_text(document))
    for key, render in (("audit_json", lambda d: json.dumps(d, indent=1) + "\n"), ("audit_html", render_html)):
        if settings[key]:
            with open(settings[key], "w") as f:
                f.write(render(document))
            logger.info(f"audit: wrote {settings[key]}")
    failed = document["summary"]["failed"]
    if failed:
        names = ", ".join(failed)
        logger.error(f"--> the audit fails on {len(failed)} node(s): {names} (too open, unknown listener, or not read)")
    # the report is the run: end it here, with its status, rather than let pyinfra go on to an empty
    # operation run (and, without -y, ask to confirm it: from cron, with no stdin, that fails)
    raise SystemExit(1 if failed else 0)
