"""Print which Zimbra catalogue ports the lab's `mgmt` and `outside` hosts reach on each Zimbra host."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import client  # noqa: E402
from zimbra_firewall.policy import catalogue_port, load_catalogue  # noqa: E402


def catalogue_specs():
    specs = ["22/tcp"]
    for entry in load_catalogue()["ports"]:
        port = catalogue_port(entry)
        specs += [f"{n}/{port.proto}" for n in range(port.first, port.last + 1)]
    return specs + ["11211/udp"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    info = client.status()
    specs = catalogue_specs()
    print(f"\n== reachability {args.title} ==")
    for server in [h for h in info["hosts"] if h["role"] == "zimbra"]:
        for viewer in ("mgmt", "outside"):
            for family in ("ipv4", "ipv6"):
                result = client.probe(viewer, server[family], specs)
                opened = [s for s in specs if result[s] == "open"]
                print(
                    f"{viewer:>7} -> {server['name']} ({family}): {len(opened)} of {len(specs)} answer: "
                    f"{' '.join(s.replace('/tcp', '') for s in opened) or 'none'}"
                )


if __name__ == "__main__":
    main()
