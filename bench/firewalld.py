"""firewalld against ufw in the same lab: N single servers on ufw and N on firewalld (RHEL's default zone),
each side converged then re-run with pyinfra's --limit, alternately, so both meet the same machine load.
Per side: converge wall time and remote commands per host, no-op wall time (median of --runs) and remote
commands per host, zmprov calls on a no-op. The targets (issue 22): a firewalld no-op at most 1.5 times the
ufw one, at most 4 remote commands per host, no zmprov. Prints a table and writes docs/benchmarks-firewalld.md.

    python bench/firewalld.py [--hosts 1 5] [--runs 5]
"""

import argparse
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.run import BIN, counters, short_document, timed  # noqa: E402
from lab import client  # noqa: E402

DEPLOY = [os.path.join(BIN, "pyinfra"), "-y", "inventories/lab.py", "deploy.py"]


def limited(names):
    """pyinfra's --limit, once per host (it takes one name or pattern each time)."""
    return [word for name in names for word in ("--limit", name)]


def per_host(before, after, names, index):
    return max(after[n][index] - before[n][index] for n in names)


def measure(hosts, runs):
    """{side: (converge s, converge commands/host, no-op median s, no-op commands/host, no-op zmprov/host)}."""
    client.lab("down")
    names = [f"zimbra-{i}" if i > 1 else "zimbra" for i in range(1, 2 * hosts + 1)]
    client.lab("up", "--zimbra-hosts", str(2 * hosts), "--firewalld", ",".join(names[hosts:]))
    sides = {"ufw": names[:hosts], "firewalld": names[hosts:]}
    result = {}
    for side, members in sides.items():
        limit = limited(members)
        before = counters(members)
        converge, _ = timed(DEPLOY + limit)
        result[side] = [converge, per_host(before, counters(members), members, 1)]
    walls = {side: [] for side in sides}
    noop = {}
    for _ in range(runs):
        for side, members in sides.items():
            before = counters(members)
            wall, _ = timed(DEPLOY + limited(members))
            after = counters(members)
            walls[side].append(wall)
            noop[side] = (per_host(before, after, members, 1), per_host(before, after, members, 0))
    client.lab("down")
    return {side: (*result[side], statistics.median(walls[side]), *noop[side]) for side in sides}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", default=os.path.join(REPO, "docs/benchmarks-firewalld.md"))
    args = parser.parse_args()
    rows = [
        "| hosts per side | firewall | converge s | commands/host converge | no-op s (median) | commands/host no-op "
        "| zmprov/host no-op | no-op vs ufw |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for hosts in args.hosts:
        print(f"firewalld against ufw, {hosts} host(s) each", file=sys.stderr, flush=True)
        found = measure(hosts, args.runs)
        for side, (converge, converge_commands, noop, noop_commands, zmprov) in found.items():
            ratio = noop / found["ufw"][2]
            rows.append(
                f"| {hosts} | {side} | {converge:.2f} | {converge_commands} | {noop:.2f} | {noop_commands} | "
                f"{zmprov} | {ratio:.2f}x |"
            )
            print(rows[-1], flush=True)
    short_document(
        args.output,
        "firewalld benchmark",
        "The deploy on lab single servers, half on ufw and half on firewalld (RHEL's default zone at first), in "
        f"one lab; each side run with `--limit`, alternately; no-op: median of {args.runs} runs.",
        rows,
        "`make bench` (every benchmark) or `.venv/bin/python bench/firewalld.py`.",
    )


if __name__ == "__main__":
    main()
