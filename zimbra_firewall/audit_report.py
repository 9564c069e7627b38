"""The audit's report for people: a terminal table (findings first) and one self-contained HTML page (a
node × port matrix coloured by verdict, the findings with the command that fixes each). Pure: text in,
text out, from zimbra_firewall.audit.as_json's document."""

import html
from collections.abc import Sequence

from zimbra_firewall.audit import OK, VERDICTS, rank
from zimbra_firewall.untrusted import terminal_safe

COLOURS = {
    "too open": "#e53935",
    "unknown listener": "#8e24aa",
    "probe got in": "#b71c1c",
    "rules not loaded": "#3949ab",
    "relay trusted too broadly": "#d81b60",
    "relay trust not judged": "#6d4c41",
    "proxy not trusted": "#00897b",
    "memcached unreachable from proxy": "#fb8c00",
    "probe disagrees": "#fdd835",
    "not judged": "#bdbdbd",
    "too closed": "#1e88e5",
    "rule without listener": "#90a4ae",
    OK: "#43a047",
    "loopback only": "#e0e0e0",
}


def port_text(port: int | str, proto: str = "tcp") -> str:
    return str(port) if proto == "tcp" else f"{port}/{proto}"


def reach_short(socket: dict) -> str:
    """A cell's few characters: who reaches the socket."""
    if socket["reach"] == ["loopback only"]:
        return "lo"
    reached = [s for s in socket["sources"] if s["reachable"]]
    if not reached:
        return "–"
    kinds = {s["kind"] for s in reached}
    if "world" in kinds:
        return "world"
    parts = ["mgmt"] if "management" in kinds else []
    parts += ["nodes"] if "zimbra_nodes" in kinds else []
    peers = {s["name"] for s in reached if s["kind"] == "peer"}
    parts += [f"{len(peers)} peer{'s' * (len(peers) > 1)}"] if peers else []
    others = {s["name"] for s in reached if s["kind"] == "rule"}
    parts += [f"+{len(others)}"] if others else []
    return " ".join(parts)


def _node_line(node: dict) -> str:
    if not node["complete"]:
        return f"{node['name']}  {node['server'] or ''}\n  NOT AUDITED"
    ufw = node["ufw"]
    state = "active" if ufw["active"] else "INACTIVE"
    services = " ".join(node["services"]) or "roles unknown"
    rollback = node["rollback"]["last"] or "none"
    armed = ", a rollback is ARMED now" if node["rollback"]["armed"] else ""
    if node["firewall"] == "firewalld":
        firewall = f"firewalld {'running' if ufw['active'] else 'STOPPED'}, default zone {ufw['incoming']}"
    else:
        # a ufw that loaded IPv4's rules and not IPv6's lets IPv6 through: "on" would say it is filtered
        ipv6 = "off" if not ufw["ipv6"] else "on" if ufw["active6"] or not ufw["active"] else "on but NOT LOADED"
        firewall = f"ufw {state}, default {ufw['incoming']} incoming / {ufw['outgoing']} outgoing, IPv6 {ipv6}"
    return f"{node['name']}  {node['server']} ({services})\n  {firewall}; last rollback: {rollback}{armed}"


def render_text(document: dict) -> str:
    """The terminal table: a summary, then per node its findings (with their fixes), then its ok sockets
    grouped by who reaches them."""
    summary = document["summary"]
    counts = " · ".join(f"{verdict} {n}" for verdict, n in summary["findings"].items() if n)
    lines = [f"Exposure audit: {summary['nodes']} node(s), {summary['sockets']} sockets; {counts or 'no finding'}"]
    failed = summary["failed"]
    width = max([len("rule without listener")] + [len(f["verdict"]) for n in document["nodes"] for f in n["findings"]])
    # a port, or the attribute a finding about Zimbra's trust names (zimbraHttpThrottleSafeIPs)
    port_width = max([10] + [len(f["port"]) for n in document["nodes"] for f in n["findings"]])
    for node in sorted(document["nodes"], key=lambda n: (n["name"] not in failed, n["name"])):
        lines += ["", _node_line(node)]
        if node["error"]:
            lines.append(f"  ERROR: {node['error']}")
        lines += [f"  warning: {w}" for w in node["warnings"]]
        findings = node["findings"]
        for i, finding in enumerate(findings):
            lines.append(f"  {finding['verdict']:<{width}} {finding['port']:<{port_width}} {finding['detail']}")
            if i + 1 == len(findings) or findings[i + 1]["fix"] != finding["fix"]:  # once for a run of the same
                lines += [f"  {'':<{width}} {'':<{port_width}} fix: {fix}" for fix in finding["fix"]]
        groups: dict[str, list[str]] = {}
        for spec, reach in _ok_ports(node["sockets"]).items():
            groups.setdefault(reach, []).append(spec)
        for reach, ports in groups.items():
            lines.append(f"  {'ok':<{width}} {reach}: {' '.join(ports)}")
    # process names, rollback lines and Zimbra's messages are the hosts' words
    return terminal_safe("\n".join(lines) + "\n")


def _ok_ports(sockets: Sequence[dict]) -> dict[str, str]:
    """The ok ports → who reaches them (through any of the port's sockets: IPv4, IPv6, several addresses)."""
    reach: dict[str, list[str]] = {}
    for socket in sockets:
        if socket["verdict"] != OK:
            continue
        spec = port_text(socket["port"], socket["proto"])
        names = reach.setdefault(spec, [])
        names += [name for name in socket["reach"] or ["nobody off the host"] if name not in names]
    for names in reach.values():
        if len(names) > 1 and "loopback only" in names:
            names.remove("loopback only")  # a socket off loopback too: who reaches that one says more
    # subnets first, then host names: "10.77.1.0/24, fd5a::/64, mta.example.com"
    return {spec: ", ".join(sorted(names, key=lambda n: ("/" not in n, n))) for spec, names in reach.items()}


def _matrix_ports(nodes: Sequence[dict]) -> list[tuple[int, str]]:
    ports = {(s["port"], s["proto"]) for n in nodes for s in n["sockets"]}
    for node in nodes:
        for finding in node["findings"]:
            number, _, proto = finding["port"].partition("/")
            if number.isdigit():
                ports.add((int(number), proto))
    return sorted(ports, key=lambda p: (p[1] != "tcp", p[0]))


def _cell(node: dict, port: int, proto: str) -> tuple[str, str, str]:
    """(verdict, text, tooltip) of one node × port cell."""
    spec = f"{port}/{proto}"
    sockets = [s for s in node["sockets"] if s["port"] == port and s["proto"] == proto]
    findings = [f for f in node["findings"] if f["port"] == spec]
    verdict = min([f["verdict"] for f in findings] + [s["verdict"] for s in sockets] or [""], key=rank)
    if not sockets and not findings:
        return "", "", ""
    if sockets and all(s["reach"] == ["loopback only"] for s in sockets) and not findings:
        return "loopback only", "lo", f"{spec}: {sockets[0]['process']} on loopback only"
    best = min(sockets, key=lambda s: rank(s["verdict"])) if sockets else None
    text = reach_short(best) if best else "no listener"
    tip = [f"{spec} {best['service'] or ''} {best['process']} on {best['address']}".strip()] if best else [spec]
    tip += [f"reach: {', '.join(best['reach']) or 'nobody off the host'}"] if best else []
    tip += [f"{f['verdict']}: {f['detail']}" for f in findings]
    return verdict, text, "\n".join(tip)


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #212121; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 6px; }
.summary span { display: inline-block; margin: 4px 8px 4px 0; padding: 2px 8px; border-radius: 10px; color: #fff; }
.summary span.none { opacity: 0.35; }
table.matrix { border-collapse: collapse; font-size: 12px; }
.matrix th, .matrix td { border: 1px solid #fff; padding: 2px 1px; text-align: center; min-width: 26px; }
.matrix td { font-size: 10px; line-height: 1.2; }
.matrix thead th { background: #37474f; color: #fff; writing-mode: vertical-rl; transform: rotate(180deg); }
.matrix th.node { background: #37474f; color: #fff; text-align: left; writing-mode: horizontal-tb; transform: none; }
.matrix td.empty { background: #fafafa; }
.legend span { display: inline-block; margin-right: 12px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
table.findings { border-collapse: collapse; margin-top: 6px; }
.findings td, .findings th { border-bottom: 1px solid #e0e0e0; padding: 4px 8px; text-align: left;
  vertical-align: top; }
code { background: #f5f5f5; padding: 1px 4px; border-radius: 3px; display: inline-block; margin: 1px 0; }
.verdict { color: #fff; border-radius: 3px; padding: 1px 6px; white-space: nowrap; }
.meta { color: #546e7a; }
"""


def _colour(verdict: str) -> str:
    return COLOURS.get(verdict, "#fafafa")


def render_html(document: dict) -> str:
    """One HTML page, no external asset: summary, legend, the node × port matrix, each node's findings."""
    esc = html.escape
    nodes = sorted(document["nodes"], key=lambda n: n["name"])
    summary = document["summary"]
    ports: list = []
    loopback: list = []
    for port, proto in _matrix_ports(nodes):
        cells = [_cell(node, port, proto)[0] for node in nodes]
        everywhere_loopback = all(cell in ("", "loopback only") for cell in cells)
        (loopback if everywhere_loopback else ports).append((port, proto))
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>zimbra-firewall exposure audit</title><style>{STYLE}</style></head><body>",
        "<h1>Exposure audit</h1>",
        f"<div class='meta'>{summary['nodes']} node(s), {summary['sockets']} listening sockets, "
        f"generated {esc(document['generated'])}; failing: {esc(', '.join(summary['failed']) or 'none')}</div>",
        "<div class='summary'>",
    ]
    for verdict, count in summary["findings"].items():
        none = " class='none'" if not count else ""
        out.append(f"<span{none} style='background:{_colour(verdict)}'>{esc(verdict)}: {count}</span>")
    out += ["</div>", "<div class='legend'>"]
    for verdict in (OK, *VERDICTS, "loopback only"):
        out.append(f"<span><i style='background:{_colour(verdict)}'></i>{esc(verdict)}</span>")
    out.append(
        "</div><p class='meta'>A cell says who reaches the port: world, mgmt (management subnets), nodes "
        "(zimbra_nodes), N peers (Zimbra nodes by name), +N (other networks a rule names), – (nobody off the "
        "host), lo (bound to loopback). Hover a cell for its details.</p>"
    )
    out.append("<table class='matrix'><thead><tr><th class='node'>node</th>")
    out += [f"<th>{esc(port_text(port, proto))}</th>" for port, proto in ports]
    out.append("</tr></thead><tbody>")
    for node in nodes:
        out.append(f"<tr><th class='node'>{esc(node['name'])}</th>")
        for port, proto in ports:
            verdict, text, tip = _cell(node, port, proto)
            if not verdict:
                out.append("<td class='empty'></td>")
                continue
            ink = "#fff" if verdict not in ("loopback only", "probe disagrees", "not judged") else "#424242"
            out.append(
                f"<td style='background:{_colour(verdict)};color:{ink}' title='{esc(tip)}' "
                f"data-verdict='{esc(verdict)}'>{esc(text)}</td>"
            )
        out.append("</tr>")
    out.append("</tbody></table>")
    if loopback:
        listed = " ".join(port_text(port, proto) for port, proto in loopback)
        out.append(f"<p class='meta'>Bound to loopback only wherever they listen (not in the matrix): {listed}</p>")
    for node in nodes:
        out.append(f"<h2>{esc(node['name'])} <span class='meta'>{esc(node['server'])}</span></h2>")
        out.append(f"<div class='meta'>{esc(_node_line(node).split(chr(10), 1)[1].strip())}</div>")
        if node["error"]:
            out.append(f"<p><b>Error:</b> {esc(node['error'])}</p>")
        out += [f"<p class='meta'>warning: {esc(w)}</p>" for w in node["warnings"]]
        if not node["findings"]:
            out.append("<p>No finding: every socket is as the policy wants.</p>")
            continue
        out.append("<table class='findings'><tr><th>verdict</th><th>port</th><th>what</th><th>fix</th></tr>")
        for finding in node["findings"]:
            fixes = "<br>".join(f"<code>{esc(fix)}</code>" for fix in finding["fix"])
            out.append(
                f"<tr><td><span class='verdict' style='background:{_colour(finding['verdict'])}'>"
                f"{esc(finding['verdict'])}</span></td><td>{esc(finding['port'])}</td>"
                f"<td>{esc(finding['detail'])}</td><td>{fixes}</td></tr>"
            )
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
