"""Side-by-side benchmark on the lab: this pyinfra deploy against the idiomatic Ansible playbook
(bench/playbook.yml), on the same fresh lab hosts, with Zimbra's zmprov costing a realistic 2 s a call.

For each N and tool: fresh converge wall time, no-op rerun wall time, zmprov calls and remote commands
per host, peak controller memory. Both tools must reach the same end state (checked before any time
is reported). Prints a table with ratios and writes docs/benchmarks.md.

    python bench/run.py [--hosts 1 10 30] [--runs 3] [--zmprov-delay 2] [--cluster PROXIES MAILBOXES]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lab import client  # noqa: E402
from zimbra_firewall.policy import build_policy  # noqa: E402
from zimbra_firewall.settings import read_settings  # noqa: E402
from zimbra_firewall.topology import Server, Topology  # noqa: E402
from zimbra_firewall.ufw import render_profiles  # noqa: E402
from zimbra_firewall.zimbra import memcached_changes  # noqa: E402

BIN = os.path.dirname(sys.executable)
LAB_MGMT = ["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"]
ANSIBLE_DEFAULT_FORKS = 5


def lab_policy(host):
    """The policy the deploy computes for a lab single server, from what `lab status` says of it (its name
    resolves to its IPv6 address first, then its IPv4 one, as getent reads the lab's /etc/hosts)."""
    import runpy

    data = {k: v for k, v in runpy.run_path(os.path.join(REPO, "group_data/lab.py")).items() if not k.startswith("_")}
    server = Server(host["fqdn"], host["fqdn"], frozenset(host["roles"]), {}, (host["ipv6"], host["ipv4"]))
    return build_policy(read_settings(data), Topology(server, (server,), (host["ipv4"], host["ipv6"])))


def ansible_files(workdir, lab):
    """Inventory and variables for the playbook, from the lab's status and the deploy's policy per host."""
    ssh = lab["ssh"]
    hosts, policy = {}, None
    for host in [h for h in lab["hosts"] if h["role"] == "zimbra"]:
        policy = lab_policy(host)
        hosts[host["name"]] = {
            "ansible_host": host["name"],
            "zimbra_hostname": host["fqdn"],
            "memcached_ms_args": memcached_changes({}, policy.memcached),
            "memcached_expected_lines": [f"{n}: {v}" for n, values in policy.memcached.items() for v in values],
        }
    inventory = {"zimbra_servers": {"hosts": hosts}}
    names = {p.name for p in policy.profiles}
    public = next(p.name for p in policy.profiles if "public" in p.title)
    local = next(n for n in names if n != public)
    variables = {
        "ansible_user": "root",
        "ansible_ssh_common_args": f"-F {ssh['config']}",
        "ansible_ssh_private_key_file": ssh["key"],
        "ansible_python_interpreter": "/usr/bin/python3",
        "ufw_profile_text": render_profiles(policy.profiles),
        "management_subnets": [str(n) for n in policy.management_subnets],
        "ssh_port": policy.ssh_port,
        "rule_comment": policy.comment,
        "public_profile": public,
        "local_profile": local,
    }
    paths = {"inventory": os.path.join(workdir, "inventory.json"), "vars": os.path.join(workdir, "vars.json")}
    with open(paths["inventory"], "w") as f:
        json.dump(inventory, f)
    with open(paths["vars"], "w") as f:
        json.dump(variables, f)
    return paths


def tree_rss_kib(pid):
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS")), 0)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    stack += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def timed(command, env=None):
    """Run a command; wall seconds and the peak RSS of its whole process tree (sampled)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, **(env or {})),
    )
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_kib(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    output = proc.communicate()[0]
    sampler.join()
    wall = time.monotonic() - started
    if proc.returncode:
        client.lab("down", check=False)
        raise SystemExit(f"{' '.join(command[:3])}… failed:\n{output[-3000:]}")
    return wall, peak[0] / 1024


def on_each(hosts, read):
    """read(host) for every host, ten at a time (zmprov's delay would make 30 hosts one after another slow)."""
    with ThreadPoolExecutor(max_workers=10) as pool:
        return dict(zip(hosts, pool.map(read, hosts), strict=True))


def counters(zimbra_hosts):
    """Per host: zmprov calls made by the tool itself (not by zmmemcachedctl) and SSH commands so far."""

    def read(name):
        calls = client.run(name, "cat", "/opt/zimbra/log/zmprov-calls.log", check=False).stdout.splitlines()
        own = [c for c in map(json.loads, filter(None, calls)) if c["caller"] == ""]
        commands = client.run(name, "sh", "-c", "cat /var/log/lab-ssh-commands.log 2>/dev/null | wc -l").stdout
        return len(own), int(commands)

    return on_each(zimbra_hosts, read)


def end_state(lab):
    """What both tools must leave behind: ufw rules, policies and status, zmprov's values, memcached."""
    fqdns = {h["name"]: h["fqdn"] for h in lab["hosts"] if h["role"] == "zimbra"}
    return on_each(
        list(fqdns),
        lambda name: (
            client.run(
                name,
                "sh",
                "-c",
                (
                    "ufw status verbose; ufw show added | sort; "
                    f"runuser -u zimbra -- /opt/zimbra/bin/zmprov -l gs {fqdns[name]} zimbraMemcachedBindAddress "
                    "zimbraMemcachedClientServerList; ss -Hlnt 'sport = :11211' | awk '{print $4}' | sort"
                ),
            ).stdout
        ),
    )


def measure(tool, n, delay, workdir, topology=()):
    """topology: extra `lab up` arguments (a cluster); n: the number of Zimbra nodes it makes."""
    client.lab("down")
    client.lab("up", *(topology or ("--zimbra-hosts", str(n))), "--zmprov-delay", str(delay))
    lab = client.status()
    zimbra_hosts = [h["name"] for h in lab["hosts"] if h["role"] == "zimbra"]
    if tool == "pyinfra":
        command, env = [os.path.join(BIN, "pyinfra"), "-y", "inventories/lab.py", "deploy.py"], {}
    else:
        forks = ANSIBLE_DEFAULT_FORKS if tool == "ansible" else n
        paths = ansible_files(workdir, lab)
        command = [
            os.path.join(BIN, "ansible-playbook"),
            "-i",
            paths["inventory"],
            "-e",
            f"@{paths['vars']}",
            "-f",
            str(forks),
            os.path.join(REPO, "bench/playbook.yml"),
        ]
        # a fresh control-socket folder per lab: a persisting master from the last lab would hang
        control = tempfile.mkdtemp(prefix="cp-", dir=workdir)
        env = {
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": os.path.join(workdir, "ansible-tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": control,
        }
    converge, converge_mem = timed(command, env)
    if topology:
        client.lab("flows", "--strict")  # the judge: every flow of the install works, nothing else
    after_converge = counters(zimbra_hosts)
    noop, noop_mem = timed(command, env)
    after_noop = counters(zimbra_hosts)
    if tool != "pyinfra":
        for socket_name in os.listdir(control):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={os.path.join(control, socket_name)}", "-O", "exit", "lab"],
                capture_output=True,
            )
    per_host = lambda counts, index: statistics.mean(c[index] for c in counts.values())  # noqa: E731
    return {
        "converge": converge,
        "noop": noop,
        "zmprov_converge": per_host(after_converge, 0),
        "zmprov_noop": per_host(after_noop, 0) - per_host(after_converge, 0),
        "commands_converge": per_host(after_converge, 1),
        "commands_noop": per_host(after_noop, 1) - per_host(after_converge, 1),
        "memory_mib": max(converge_mem, noop_mem),
        "state": end_state(lab),
    }


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--zmprov-delay", type=float, default=2.0)
    parser.add_argument("--output", default=os.path.join(REPO, "docs/benchmarks.md"))
    parser.add_argument(
        "--cluster",
        type=int,
        nargs=2,
        default=[2, 10],
        metavar=("PROXIES", "MAILBOXES"),
        help="the cluster measured besides (ldap, mta, PROXIES, MAILBOXES; 0 0: none)",
    )
    args = parser.parse_args()
    tools = ["pyinfra", "ansible", "ansible-forks=N"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="zfw-bench-") as workdir:
        for n in args.hosts:
            results = {}
            for tool in tools:
                runs = []
                for run in range(args.runs):
                    print(f"N={n} {tool} run {run + 1}/{args.runs}", file=sys.stderr, flush=True)
                    runs.append(measure(tool, n, args.zmprov_delay, workdir))
                results[tool] = runs
            reference = results["pyinfra"][0]["state"]
            for tool, runs in results.items():
                for r in runs:
                    if r["state"] != reference:
                        raise SystemExit(
                            f"N={n}: {tool} left another end state than pyinfra; no times reported\n"
                            f"pyinfra: {json.dumps(reference)[:1500]}\n"
                            f"{tool}: {json.dumps(r['state'])[:1500]}"
                        )
            for tool, runs in results.items():
                rows.append(
                    {
                        "n": n,
                        "tool": tool if tool != "ansible-forks=N" else f"ansible forks={n}",
                        **{k: median_of(runs, k) for k in METRICS},
                    }
                )
            # each N is printed and written as soon as it is measured: a long run that stops keeps its results
            write(rows, args)
        proxies, mailboxes = args.cluster
        if proxies:
            n = 2 + proxies + mailboxes
            topology = ("--topology", "cluster", "--proxies", str(proxies), "--mailboxes", str(mailboxes))
            runs = []
            for run in range(args.runs):
                print(f"cluster of {n} pyinfra run {run + 1}/{args.runs}", file=sys.stderr, flush=True)
                runs.append(measure("pyinfra", n, args.zmprov_delay, workdir, topology))
            rows.append(
                {"n": n, "tool": "pyinfra", "cluster": f"1 ldap, 1 mta, {proxies} proxies, {mailboxes} mailboxes"}
            )
            rows[-1].update({k: median_of(runs, k) for k in METRICS})
            write(rows, args)
    client.lab("down")


METRICS = (
    "converge",
    "noop",
    "zmprov_converge",
    "zmprov_noop",
    "commands_converge",
    "commands_noop",
    "memory_mib",
)


def write(rows, args):
    table = render(rows, args)
    print(table, flush=True)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(document(table, args, done=sorted({r["n"] for r in rows if "cluster" not in r})))


def render(rows, args):
    lines = [
        "| N | tool | converge s | no-op s | converge ratio | no-op ratio | zmprov/host converge | "
        "zmprov/host no-op | commands/host converge | commands/host no-op | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ours = {r["n"]: r for r in rows if r["tool"] == "pyinfra" and "cluster" not in r}
    clusters = [r for r in rows if "cluster" in r]
    for r in [r for r in rows if "cluster" not in r]:
        base = ours[r["n"]]
        lines.append(
            f"| {r['n']} | {r['tool']} | {r['converge']:.1f} | {r['noop']:.1f} | "
            f"{r['converge'] / base['converge']:.1f}x | {r['noop'] / base['noop']:.1f}x | "
            f"{r['zmprov_converge']:.0f} | {r['zmprov_noop']:.0f} | {r['commands_converge']:.0f} | "
            f"{r['commands_noop']:.0f} | {r['memory_mib']:.0f} |"
        )
    if 1 in ours and max(ours) > 1:
        top = max(ours)
        lines.append("")
        lines.append(f"pyinfra no-op at N={top} / N=1: {ours[top]['noop'] / ours[1]['noop']:.2f}x")
    if clusters:
        lines += [
            "",
            "One Zimbra install over several nodes (pyinfra only: each node's rules from Zimbra's LDAP; the "
            "playbook has no equivalent):",
            "",
            "| nodes | cluster | converge s | no-op s | no-op / single-server no-op | zmprov/node converge | "
            "zmprov/node no-op | commands/node converge | commands/node no-op | peak MiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in clusters:
            single = f"{r['noop'] / ours[1]['noop']:.2f}x" if 1 in ours else "(N=1 not measured)"
            lines.append(
                f"| {r['n']} | {r['cluster']} | {r['converge']:.1f} | {r['noop']:.1f} | {single} | "
                f"{r['zmprov_converge']:.1f} | {r['zmprov_noop']:.0f} | {r['commands_converge']:.0f} | "
                f"{r['commands_noop']:.0f} | {r['memory_mib']:.0f} |"
            )
    return "\n".join(lines)


def short_document(path: str, title: str, intro: str, rows: list[str], reproduce: str) -> None:
    """Write a smaller benchmark's page: its title, what it measured, its table, the machine, how to rerun it."""
    machine = f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}."
    with open(path, "w") as f:
        f.write(
            "\n".join([f"# {title}", "", intro, "", *rows, "", machine, "", f"Reproduce (as root): {reproduce}", ""])
        )


def document(table, args, done):
    return f"""# Benchmarks

pyinfra deploy (`deploy.py`) against the idiomatic Ansible playbook (`bench/playbook.yml`:
community.general.ufw, `copy`, `command` with `changed_when`, a handler for `zmmemcachedctl restart`,
pipelining on), on the same fresh lab hosts, zmprov costing {args.zmprov_delay:g} s a call as Zimbra's JVM
start-up does. Median of {args.runs} runs. Ratios are tool / pyinfra (above 1: pyinfra is faster). Both tools
reached the same end state (ufw rules, policies, status, zmprov values, memcached listeners), checked
before any time was reported. "commands" counts the SSH commands each host received.

{table}

Measured: N = {", ".join(map(str, sorted(set(done))))} of {", ".join(map(str, args.hosts))}.
Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}.

Reproduce (as root): `make bench`, or
`.venv/bin/python bench/run.py --hosts {" ".join(map(str, args.hosts))} --runs {args.runs}`.
"""


if __name__ == "__main__":
    main()
