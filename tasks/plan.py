"""Say, per node and before anything changes, what the run will change: the firewall's commands, the zmprov
change, whether memcached restarts (zimbra_firewall/plan.py), from the reads made while pyinfra loads the
deploy. No command of its own: --dry shows it too."""

from pyinfra import host, logger

from facts.firewalld import FirewalldState
from facts.safety import Preflight
from facts.ufw import UfwState
from tasks import run
from zimbra_firewall.plan import node_plan
from zimbra_firewall.policy import Policy
from zimbra_firewall.safety import FIREWALLD_RECORD, chosen_firewall, preflight_problem
from zimbra_firewall.topology import Topology
from zimbra_firewall.ufw import PROFILE_PATH
from zimbra_firewall.untrusted import terminal_safe


def show(policy: Policy, topology: Topology) -> None:
    reads = run.of()
    found = reads.peek(Preflight, _sudo=False)
    backend = chosen_firewall(policy.firewall, found or {})
    if backend == "firewalld":
        state = reads.peek(FirewalldState, record=FIREWALLD_RECORD)
    else:
        state = reads.peek(UfwState, profile_path=PROFILE_PATH, lock_wait=policy.xtables_lock_wait)
    if state is None or found is None:
        logger.info(f"{host.name}: plan: not known yet (a read failed; the step that needs it says why)")
        return
    current = topology.this.attributes if topology.this else {}
    refused = preflight_problem(policy, found, backend) or ""
    lines = node_plan(state, policy, current, refused=refused, firewall=backend)
    text = "".join(f"\n        {line}" for line in lines) if lines else " nothing to change"
    logger.info(f"{host.name}: plan:{terminal_safe(text)}")  # rules as ufw's files hold them
