"""The exposure audit's speed on the lab: wall time of `pyinfra -y inventories/lab.py audit.py` on N
deployed single servers and on a cluster, and the remote commands each node received (the target: one;
30 nodes in at most 3 s). Median of --runs. Prints a table and writes docs/benchmarks-audit.md.

    python bench/audit.py [--hosts 1 10 30] [--runs 3] [--cluster PROXIES MAILBOXES]
"""

import argparse
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.run import BIN, counters, short_document, timed  # noqa: E402
from lab import client  # noqa: E402

AUDIT = [os.path.join(BIN, "pyinfra"), "-y", "inventories/lab.py", "audit.py"]
DEPLOY = [os.path.join(BIN, "pyinfra"), "-y", "inventories/lab.py", "deploy.py"]


def measure(lab_arguments, runs):
    """Bring the lab up, deploy, then audit `runs` times: (nodes, median wall s, commands per node per
    audit, peak MiB)."""
    client.lab("down")
    client.lab("up", *lab_arguments)
    nodes = [h["name"] for h in client.status()["hosts"] if h["role"] == "zimbra"]
    timed(DEPLOY)
    walls, peaks, commands = [], [], []
    for _ in range(runs):
        before = counters(nodes)
        wall, peak = timed(AUDIT)
        after = counters(nodes)
        walls.append(wall)
        peaks.append(peak)
        commands.append(max(after[n][1] - before[n][1] for n in nodes))
    return len(nodes), statistics.median(walls), max(commands), max(peaks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cluster", type=int, nargs=2, default=[2, 10], metavar=("PROXIES", "MAILBOXES"))
    parser.add_argument("--output", default=os.path.join(REPO, "docs/benchmarks-audit.md"))
    args = parser.parse_args()
    setups = [(f"{n} single server(s)", ("--zimbra-hosts", str(n))) for n in args.hosts]
    proxies, mailboxes = args.cluster
    if proxies:
        cluster = ("--topology", "cluster", "--proxies", str(proxies), "--mailboxes", str(mailboxes))
        setups.append((f"cluster: 1 ldap, 1 mta, {proxies} proxies, {mailboxes} mailboxes", cluster))
    rows = ["| lab | nodes | audit wall s | remote commands per node | peak MiB |", "|---|---|---|---|---|"]
    for title, arguments in setups:
        print(f"audit on {title}", file=sys.stderr, flush=True)
        nodes, wall, commands, peak = measure(arguments, args.runs)
        rows.append(f"| {title} | {nodes} | {wall:.2f} | {commands} | {peak:.0f} |")
        print(rows[-1], flush=True)
    client.lab("down")
    short_document(
        args.output,
        "Audit benchmark",
        "`pyinfra -y inventories/lab.py audit.py` on deployed lab nodes (no finding, no active check), "
        f"median of {args.runs} runs. Remote commands: the most any node received per audit.",
        rows,
        "`make bench` (every benchmark) or `.venv/bin/python bench/audit.py`.",
    )


if __name__ == "__main__":
    main()
