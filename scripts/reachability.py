"""Print which Zimbra catalogue ports the lab's `mgmt` and `outside` hosts reach on each Zimbra host; with
--audit FILE, check instead the exposure audit's JSON (audit.py --data audit_json=FILE) against what those
two hosts really reach: for every socket the audit found listening, its computed reachability from the
viewer's address against a probe from the viewer. Exits 1 on a disagreement."""

import argparse
import concurrent.futures
import ipaddress
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import client  # noqa: E402
from zimbra_firewall.audit import Listener  # noqa: E402
from zimbra_firewall.catalogue import load_catalogue  # noqa: E402

VIEWERS = ("mgmt", "outside")
FAMILIES = ("ipv4", "ipv6")


def catalogue_specs():
    specs = ["22/tcp"]
    for entry in load_catalogue().ports:
        port = entry.port
        specs += [f"{n}/{port.proto}" for n in range(port.first, port.last + 1)]
    return specs + ["11211/udp"]


def print_reachability(info, title):
    specs = catalogue_specs()
    print(f"\n== reachability {title} ==")
    for server in [h for h in info["hosts"] if h["role"] == "zimbra"]:
        for viewer in VIEWERS:
            for family in FAMILIES:
                result = client.probe(viewer, server[family], specs)
                opened = [s for s in specs if result[s] == "open"]
                print(
                    f"{viewer:>7} -> {server['name']} ({family}): {len(opened)} of {len(specs)} answer: "
                    f"{' '.join(s.replace('/tcp', '') for s in opened) or 'none'}"
                )


def bound(socket):
    """A socket of the audit's JSON as the Listener it was read as (its binding)."""
    return Listener(socket["proto"], socket["address"], socket["port"])


def computed(socket, address):
    """The audit's answer for one source address: the most specific source network it judged that holds it."""
    ip = ipaddress.ip_address(address)
    holding = [s for s in socket["sources"] if ip in ipaddress.ip_network(s["network"])]
    if not holding:
        return None
    return max(holding, key=lambda s: ipaddress.ip_network(s["network"]).prefixlen)["reachable"]


def check_audit(info, path):
    with open(path) as f:
        document = json.load(f)
    hosts = {h["name"]: h for h in info["hosts"]}
    plans = []  # (node, viewer, address, source, sockets): one probe each, all at once
    for node in document["nodes"]:
        server = hosts[node["name"]]
        for viewer in VIEWERS:
            for family in FAMILIES:
                address = server[family]
                sockets = [s for s in node["sockets"] if s["sources"] and bound(s).accepts(address)]
                plans.append((node["name"], viewer, address, hosts[viewer][family], sockets))

    def probe(plan):
        specs = sorted({f"{s['port']}/{s['proto']}" for s in plan[4]})
        return client.probe(plan[1], plan[2], specs) if specs else {}

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(probe, plans))
    checked, disagreements = 0, []
    for (name, viewer, address, source, sockets), seen in zip(plans, answers, strict=True):
        for socket in sockets:
            spec, expected = f"{socket['port']}/{socket['proto']}", computed(socket, source)
            if expected is None:
                continue
            checked += 1
            if (seen[spec] != "filtered") != expected:
                disagreements.append(
                    f"{viewer} -> {name} {address} {spec}: probe {seen[spec]}, audit says "
                    f"{'reachable' if expected else 'blocked'}"
                )
    print(f"audit vs probes from {' and '.join(VIEWERS)}: {checked} checked, {len(disagreements)} disagree")
    for line in disagreements:
        print(f"  {line}")
    return 1 if disagreements else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--title", default="")
    parser.add_argument("--audit", metavar="FILE", help="the audit's JSON to check against probes")
    args = parser.parse_args()
    info = client.status()
    if args.audit:
        sys.exit(check_audit(info, args.audit))
    print_reachability(info, args.title)


if __name__ == "__main__":
    main()
