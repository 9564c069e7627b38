"""Who talks to whom in a Zimbra install, written down from Zimbra's own sources, and `python -m lab
flows`: every flow run for real, from its source node to its destination node.

This is the lab's own record, kept apart from the deploy's port catalogue on purpose: the lab judges the
deploy, so a flow missing from one shows up as a failure in the other.

The flows of a running lab are planned (pure functions, below) from what its Zimbra LDAP holds at that
moment: every server's zimbraServiceEnabled and zimbraServiceHostname, the port attributes (inherited from
cn=config) and the attributes that switch flows on and off. Each source node then resolves the names
itself (its /etc/hosts, as Zimbra's processes do) and connects, all flows at once (lab/guest/flowcheck.py).
"""

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import topology
from .errors import LabError

INSTALL_GUIDE = "Zimbra/installguides multi-server-install-intro.adoc"
ZMPROXYCONFIG = "Zimbra/zm-core-utils src/libexec/zmproxyconfig"
PROXYCONFGEN = "Zimbra/zm-mailbox store/src/java/com/zimbra/cs/util/ProxyConfGen.java"
SPAM_EXTRACT = "Zimbra/zm-mailbox store/src/java/com/zimbra/cs/util/SpamExtract.java (getServerURL)"
ATTRS_XML = "Zimbra/zm-mailbox store/conf/attrs/zimbra-attrs.xml"
NGINX_LOOKUP = "Zimbra/zm-nginx-lookup-store NginxLookupExtension.java (chooseUsingReverseProxyUpstreamImapServer)"
IMAP_CONNECTION = "Zimbra/zm-mailbox store/src/java/com/zimbra/cs/imap/ImapConnection.java"
IMAP_LISTENER = "Zimbra/zm-mailbox store/src/java/com/zimbra/cs/imap/ImapServerListener.java"
NGINX_TEMPLATES = "Zimbra/zm-nginx-conf conf/nginx/templates (listen directives)"


@dataclass(frozen=True)
class Flow:
    """source: a Zimbra service, "*" (every Zimbra node), or the lab's `mgmt` / `outside` clients.
    destination: a service; "*"; or "@attr", the host names in the source server's attribute.
    port: a number, or a port attribute read on the destination server (cn=config as default).
    when: (side, attribute, values): the flow exists only when that server's attribute has one of the values.
    named_in: (attribute, service): the destination must also be named in that attribute on a server running the
    service (zimbraReverseProxyUpstreamImapServers, the mailbox's).
    client: how the connecting program picks the address family from its server's zimbraIPMode (CLIENTS);
    "" = the system resolver's choice, both families."""

    source: str
    destination: str
    port: object
    proto: str
    what: str
    reference: str
    when: tuple = ()
    client: str = ""
    named_in: tuple = ()


# zimbraIPMode → the families a client uses (any other mode: both). "postfix": zm-jython serverconfig.py sets
# inet_protocols from the mode; "nginx": ProxyConfGen.java getLookupTargetIPbyIPMode, the proxy's own mode, for
# the IP literals it writes; "java": zm-core-utils zmiptool starts Zimbra's JVMs with
# -Djava.net.preferIPv4Stack=true in ipv4 mode (IPv4 alone), a preference only in ipv6 mode.
CLIENTS = {
    "postfix": {"IPV4": (4,), "IPV6": (6,)},
    "nginx": {"IPV4": (4,), "IPV6": (6,)},
    "java": {"IPV4": (4,)},
}
IPMODE_REFERENCE = "Zimbra/zm-core-utils src/libexec/zmiptool; Zimbra/zm-jython jylibs/serverconfig.py"


NODE_FLOWS = [
    # LDAP's port is each node's localconfig (ldap_url), not an LDAP attribute: 389, as the installer writes it
    Flow("*", "ldap", 389, "tcp", "LDAP: every service reads its configuration", INSTALL_GUIDE),
    Flow(
        "*",
        "@zimbraLogHostname",
        514,
        "udp",
        "remote syslog to the logger",
        "Zimbra/zm-core-utils src/bin/zmsyslogsetup",
    ),
    Flow("mta", "mailbox", "zimbraLmtpBindPort", "tcp", "LMTP delivery", INSTALL_GUIDE, client="postfix"),
    Flow("mta", "mailbox", "zimbraMtaAuthPort", "tcp", "SMTP AUTH: saslauthd asks the mailbox", INSTALL_GUIDE),
    Flow(
        "mailbox",
        "@zimbraSmtpHostname",
        "zimbraSmtpPort",
        "tcp",
        "mail sent by the mailbox",
        INSTALL_GUIDE,
    ),
    Flow("ldap", "@zimbraSmtpHostname", "zimbraSmtpPort", "tcp", "mail sent by the LDAP node", INSTALL_GUIDE),
    Flow(
        "proxy",
        "mailbox",
        "zimbraExtensionBindPort",
        "tcp",
        "nginx route lookup",
        PROXYCONFGEN,
        ("destination", "zimbraReverseProxyLookupTarget", ("TRUE",)),
        client="nginx",
    ),
    *[
        Flow(
            "proxy",
            "mailbox",
            attr,
            "tcp",
            f"{what} upstream, SSL to upstream",
            ZMPROXYCONFIG,
            ("source", "zimbraReverseProxySSLToUpstreamEnabled", ("TRUE",)),
        )
        for attr, what in (
            ("zimbraMailSSLPort", "HTTPS"),
            ("zimbraImapSSLBindPort", "IMAPS"),
            ("zimbraPop3SSLBindPort", "POP3S"),
        )
    ],
    *[
        Flow(
            "proxy",
            "mailbox",
            attr,
            "tcp",
            f"{what} upstream, plain to upstream",
            ZMPROXYCONFIG,
            ("source", "zimbraReverseProxySSLToUpstreamEnabled", ("FALSE",)),
        )
        for attr, what in (("zimbraMailPort", "HTTP"), ("zimbraImapBindPort", "IMAP"), ("zimbraPop3BindPort", "POP3"))
    ],
    Flow(
        "proxy",
        "mailbox",
        "zimbraAdminPort",
        "tcp",
        "admin console through the proxy",
        PROXYCONFGEN,
        ("source", "zimbraReverseProxyAdminEnabled", ("TRUE",)),
    ),
    # the MTA's nightly zmtrainsa (Zimbra/zm-build rpmconf/Env/crontabs/crontab.mta) runs zmspamextract: admin
    # SOAP auth on the training accounts' mailbox, then their mail over the scheme zimbraMailMode gives
    Flow("mta", "mailbox", "zimbraAdminPort", "tcp", "spam training: admin SOAP auth", SPAM_EXTRACT, client="java"),
    Flow(
        "mta",
        "mailbox",
        "zimbraMailSSLPort",
        "tcp",
        "spam training: the accounts over https",
        SPAM_EXTRACT,
        ("destination", "zimbraMailMode", ("HTTPS", "REDIRECT")),
        client="java",
    ),
    Flow(
        "mta",
        "mailbox",
        "zimbraMailPort",
        "tcp",
        "spam training: the accounts over http",
        SPAM_EXTRACT,
        ("destination", "zimbraMailMode", ("HTTP", "BOTH", "MIXED")),
        client="java",
    ),
    # imapd, the standalone IMAP server: nginx's lookup sends IMAP logins to the imapd servers the account's
    # mailbox lists in zimbraReverseProxyUpstreamImapServers (the imapd servers any mailbox names, from every
    # proxy; none named: IMAP stays on mailboxd); mailboxd reaches imapd on its plain port; imapd keeps its
    # waitsets on the mailboxes' admin port
    *[
        Flow(
            "proxy",
            "imapd",
            attr,
            "tcp",
            f"{what} to imapd",
            NGINX_LOOKUP,
            named_in=("zimbraReverseProxyUpstreamImapServers", "mailbox"),
        )
        for attr, what in (("zimbraRemoteImapBindPort", "IMAP"), ("zimbraRemoteImapSSLBindPort", "IMAPS"))
    ],
    Flow("mailbox", "imapd", "zimbraRemoteImapBindPort", "tcp", "mailboxd to imapd", IMAP_CONNECTION, client="java"),
    Flow("imapd", "mailbox", "zimbraAdminPort", "tcp", "imapd's waitsets (admin SOAP)", IMAP_LISTENER),
    # document editing: nginx proxies the editor to the OnlyOffice document server, which fetches the document
    # back from the mailbox on its callback port
    *[
        Flow("proxy", "onlyoffice", port, "tcp", what, f"{PROXYCONFGEN} ({variable})")
        for port, what, variable in (
            (7084, "OnlyOffice document service", "OnlyOfficeDocServiceServersVar"),
            (7085, "OnlyOffice spell checker", "OnlyOfficeSpellCheckerServersVar"),
        )
    ],
    Flow("onlyoffice", "mailbox", "zimbraDocumentEditingCallbackPort", "tcp", "document editing callback", ATTRS_XML),
    *[
        Flow("mailbox", destination, port, "tcp", what, reference, client="java")
        for destination, port, what, reference in (
            ("mailbox", "zimbraAdminPort", "admin SOAP between mailboxes", INSTALL_GUIDE),
            ("mailbox", "zimbraMailSSLPort", "user SOAP/REST proxied between mailboxes", INSTALL_GUIDE),
            ("@zimbraSpellCheckURL", "url", "spell checking", ATTRS_XML),
            ("*", "zimbraRemoteManagementPort", "remote management (zmrcd over SSH)", ATTRS_XML),
        )
    ],
]
CLIENT_FLOWS = [
    *[
        Flow("outside", "mta", port, "tcp", what, "Zimbra/zm-postfix conf/master.cf.in")
        for port, what in ((25, "SMTP from other MTAs"), (465, "SMTPS"), (587, "submission"))
    ],
    # nginx listens where the proxy's attributes say (ProxyConfGen's web.https.port, mail.imaps.port, ...)
    *[
        Flow("outside", "proxy", attr, "tcp", what, f"{NGINX_TEMPLATES}; {PROXYCONFGEN}")
        for attr, what in (
            ("zimbraMailSSLProxyPort", "webmail, SOAP, ActiveSync"),
            ("zimbraImapSSLProxyBindPort", "IMAPS"),
            ("zimbraPop3SSLProxyBindPort", "POP3S"),
        )
    ],
    Flow("mgmt", "*", 22, "tcp", "administrators' SSH", INSTALL_GUIDE),
    Flow("mgmt", "mailbox", "zimbraAdminPort", "tcp", "admin console", INSTALL_GUIDE),
]
MEMCACHE_REFERENCE = f"{PROXYCONFGEN} (MemcacheServersVar)"
SITE_FLOW = "the site's policy (lab flows --allow)"
CLIENT_LIST_REFERENCE = f"{ATTRS_XML} (zimbraMemcachedClientServerList)"
# Zimbra leaves these to site policy: 80/110/143 on the proxy (Zimbra/adminguide proxy.adoc); LDAP, LMTP and
# SASL auth, which the seed how-to opens to the local networks. Nothing is judged for them from there.
SITE_POLICY = {
    "outside": {(80, "tcp"), (110, "tcp"), (143, "tcp")},
    "mgmt": {(80, "tcp"), (110, "tcp"), (143, "tcp"), (389, "tcp"), (7025, "tcp"), (7073, "tcp")},
}
FAMILIES = (4, 6)


# --- planning (pure) ------------------------------------------------------------------------------


def effective(server, config):
    """A server's attributes as Zimbra reads them: its own, else cn=config's."""
    return {**config, **server}


def value(attrs, name, default=None):
    values = attrs.get(name) or []
    return values[0] if values else default


def server_index(snapshot):
    """zimbraServiceHostname (lower case) → (effective attributes, set of enabled services)."""
    index = {}
    for server in snapshot["servers"]:
        attrs = effective(server, snapshot["config"])
        index[value(attrs, "zimbraServiceHostname", "").lower()] = (attrs, set(server.get("zimbraServiceEnabled", [])))
    return index


def condition_holds(flow, source_attrs, destination_attrs):
    if not flow.when:
        return True
    side, attribute, wanted = flow.when
    attrs = source_attrs if side == "source" else destination_attrs
    return str(value(attrs, attribute, "")).upper() in wanted


def port_of(flow, attrs):
    return number(value(attrs, flow.port, "")) if isinstance(flow.port, str) else flow.port


def number(text, default=None):
    """A port attribute's number; None for what is no port (a value written into LDAP by hand or by an
    attacker: such a server is outside the lab, whose own entries hold real numbers)."""
    text = str(text if text is not None else default)
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) < 65536 else None


def destinations(flow, source_attrs, index):
    """(fqdn, port) pairs a flow of this source goes to."""
    if flow.destination.startswith("@"):
        targets = []
        for item in source_attrs.get(flow.destination[1:], []):
            if flow.port == "url":
                try:
                    parts = urlsplit(item)
                    targets.append((parts.hostname or "", parts.port or 80))
                except ValueError:
                    continue  # no URL: nothing of the lab's to connect to
            else:
                name = item.lower()
                targets.append((name, port_of(flow, index.get(name, (source_attrs,))[0])))
        return targets
    named = None
    if flow.named_in:
        attribute, service = flow.named_in
        # a server name, as nginx's lookup takes it: host, host:port (the port is imapd's own, not this one)
        named = {
            v.lower().partition(":")[0]
            for attrs, services in index.values()
            if service in services
            for v in attrs.get(attribute, [])
        }
    return [
        (name, port_of(flow, attrs))
        for name, (attrs, services) in index.items()
        if (flow.destination == "*" or flow.destination in services)
        and condition_holds(flow, source_attrs, attrs)
        and (named is None or name in named)
    ]


def memcached_servers(index):
    """(fqdn, port) of every memcached server, as `zmprov gamcs` lists them."""
    return [
        (fqdn, number(value(attrs, "zimbraMemcachedBindPort", 11211)))
        for fqdn, (attrs, services) in index.items()
        if "memcached" in services
    ]


def site_flow(spec: str, hosts: list[dict]) -> tuple[str, str, int, str]:
    """ "SOURCE:DESTINATION:PORT/PROTO" (lab host names) → (source, destination, port, proto), or LabError."""
    names = {h["name"] for h in hosts}
    parts = spec.split(":")
    port, slash, proto = parts[-1].partition("/") if len(parts) == 3 else ("", "", "")
    if not slash or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise LabError(f"--allow {spec!r}: write SOURCE:DESTINATION:PORT/PROTO, e.g. outside:mailbox:7071/tcp")
    if proto not in ("tcp", "udp"):
        raise LabError(f"--allow {spec!r}: the protocol is tcp or udp")
    for name in parts[:2]:
        if name not in names:
            raise LabError(f"--allow {spec!r}: no lab host {name!r} (hosts: {', '.join(sorted(names))})")
    return parts[0], parts[1], int(port), proto


def plan(snapshot: dict, hosts: list[dict], listen_mode: str = "roles", site: list | tuple = ()) -> list[dict]:
    """Every flow to run: [{source, destination, name, port, proto, kind, expect, what, reference}].
    hosts: the lab's hosts (dicts of lab status). Legitimate flows expect "allow"; every other port a
    destination listens on from off the host, from every other host, expects "deny" (site-policy ports
    from clients are not judged). site: (source, destination, port, proto) flows the site itself allows
    (site_flow), legitimate too."""
    index = server_index(snapshot)
    by_fqdn = {h["fqdn"].lower(): h for h in hosts}
    flows = []

    def add(source, fqdn, port, proto, kind, expect, what, reference, families=FAMILIES):
        destination = by_fqdn.get(fqdn)
        if destination is None or not port:
            return  # a name outside the lab (a relay, a removed node): nothing to connect to here
        if expect == "deny" and destination is source:
            return  # a host's own traffic goes over loopback, which no host firewall filters
        flows.append(
            {
                "source": source["name"],
                "destination": destination["name"],
                "name": fqdn,
                "port": port,
                "proto": proto,
                "kind": kind,
                "expect": expect,
                "what": what,
                "reference": reference,
                "families": families,
            }
        )

    for source in hosts:
        kind = source["role"]
        if kind == "zimbra":
            if source["fqdn"].lower() not in index:
                continue
            source_attrs, services = index[source["fqdn"].lower()]
            rules = [f for f in NODE_FLOWS if f.source == "*" or f.source in services]
        else:
            source_attrs, services = snapshot["config"], set()
            rules = [f for f in CLIENT_FLOWS if f.source == kind]
        for flow in rules:
            families = CLIENTS.get(flow.client, {}).get(str(value(source_attrs, "zimbraIPMode", "")).upper(), FAMILIES)
            for fqdn, port in destinations(flow, source_attrs, index):
                add(
                    source,
                    fqdn,
                    port,
                    flow.proto,
                    "datagram" if flow.proto == "udp" else "connect",
                    "allow",
                    flow.what,
                    flow.reference,
                    families,
                )
        for name, destination, port, proto in site:
            target = next((h for h in hosts if h["name"] == destination), None)
            if name == source["name"] and target is not None:
                check = "datagram" if proto == "udp" else "connect"
                add(source, target["fqdn"].lower(), port, proto, check, "allow", "the site's own flow", SITE_FLOW)
        if "proxy" in services:
            # where nginx really looks is read on the proxy itself (lab/guest/flowcheck.py)
            flows.append(
                {
                    "source": source["name"],
                    "destination": None,
                    "name": None,
                    "port": None,
                    "proto": "tcp",
                    "kind": "nginx-memcache",
                    "families": (4,),
                    "expect": "allow",
                    "what": "nginx's route cache: every server in nginx.conf.memcache",
                    "reference": MEMCACHE_REFERENCE,
                }
            )
        if "mailbox" in services:
            client_list = source_attrs.get("zimbraMemcachedClientServerList", [])
            for entry in client_list:
                name, _, port = entry.partition(":")
                add(
                    source,
                    name.lower(),
                    number(port or 11211),
                    "tcp",
                    "memcache",
                    "allow",
                    "mailboxd's memcached client",
                    CLIENT_LIST_REFERENCE,
                    (4,),  # the memcache exchange is checked on IPv4
                )
            for fqdn, port in [] if client_list else memcached_servers(index):
                add(
                    source,
                    fqdn,
                    port,
                    "tcp",
                    "memcache",
                    "deny",
                    "memcached, with zimbraMemcachedClientServerList empty",
                    CLIENT_LIST_REFERENCE,
                    (4,),
                )
    flows += unused_families(flows)
    return flows + forbidden(flows, hosts, index, listen_mode)


def unused_families(planned):
    """A "deny" flow for each family no client of a legitimate flow uses (zimbraIPMode): what the client
    never sends needs no rule, and one there would open the port to that peer for nothing."""
    used = {}
    for flow in planned:
        if flow["expect"] == "allow" and flow["kind"] in ("connect", "datagram"):
            key = (flow["source"], flow["destination"], flow["port"], flow["proto"])
            used.setdefault(key, (flow, set()))[1].update(flow["families"])
    denied = []
    for flow, families in used.values():
        unused = tuple(f for f in FAMILIES if f not in families)
        if unused and flow["source"] != flow["destination"]:
            what = f"{flow['what']}, over IPv{'/IPv'.join(map(str, unused))}: its client does not use it (zimbraIPMode)"
            denied.append({**flow, "expect": "deny", "what": what, "reference": IPMODE_REFERENCE, "families": unused})
    return denied


def listening(host, attrs, services, listen_mode):
    """(port, proto) a destination node answers on from other hosts: the stand-in's listeners bound to
    every address (for its lab roles and the services LDAP says it runs now: a service enabled later gets
    listeners of its own) and the real services (sshd, slapd, memcached)."""
    roles = sorted(set(host["roles"]) | services)
    ports = {(e["port"], e["proto"]) for e in topology.listen_ports(roles, listen_mode) if e["bind"] == "::"}
    ports.add((22, "tcp"))
    if "ldap" in host["roles"]:
        ports.add((389, "tcp"))
    if "memcached" in host["roles"]:
        ports.add((number(value(attrs, "zimbraMemcachedBindPort", 11211)), "tcp"))
    return ports


def forbidden(planned, hosts, index, listen_mode):
    """The "deny" flows: every port a Zimbra node answers on from off the host, from every host that no
    planned flow brings there (see plan)."""
    by_fqdn = {h["fqdn"].lower(): h["name"] for h in hosts}
    judged = {(f["source"], f["destination"], f["port"], f["proto"]) for f in planned}
    public = {(f["destination"], f["port"], f["proto"]) for f in planned if f["source"] == "outside"}
    # the ports that only Zimbra nodes use: memcached, and what node flows reach but admins do not
    node_only = {
        (f["destination"], f["port"], f["proto"])
        for f in planned
        if f["expect"] == "allow" and f["destination"] and f["source"] not in ("mgmt", "outside")
    }
    node_only -= {(d, p, proto) for (s, d, p, proto) in judged if s == "mgmt"}
    memcached = {(by_fqdn.get(fqdn), port, "tcp") for fqdn, port in memcached_servers(index)}
    node_only |= memcached
    proxies = {h["name"] for h in hosts if "proxy" in h.get("roles", ())}
    flows = []
    for destination in [h for h in hosts if h["role"] == "zimbra" and h["fqdn"].lower() in index]:
        attrs, services = index[destination["fqdn"].lower()]
        for port, proto in sorted(listening(destination, attrs, services, listen_mode)):
            if (destination["name"], port, proto) in public:
                continue
            for source in hosts:
                if source is destination or (source["name"], destination["name"], port, proto) in judged:
                    continue
                if source["name"] in proxies and (destination["name"], port, proto) in memcached:
                    continue  # proxy → every memcached server: judged through nginx.conf.memcache
                if (port, proto) in SITE_POLICY.get(source["role"], ()):
                    continue
                if source["role"] == "mgmt" and (destination["name"], port, proto) not in node_only:
                    continue  # admins may be let in: only the ports meant for Zimbra nodes alone are judged
                if source["role"] == "zimbra" and source["fqdn"].lower() not in index:
                    continue
                flows.append(
                    {
                        "source": source["name"],
                        "destination": destination["name"],
                        "name": destination["fqdn"],
                        "port": port,
                        "proto": proto,
                        "kind": "datagram" if proto == "udp" else "connect",
                        "families": FAMILIES,
                        "expect": "deny",
                        "what": "no Zimbra flow uses it from there",
                        "reference": "this file's flow tables",
                    }
                )
    return flows


def checks_by_source(flows):
    """Per source host, the checks lab/guest/flowcheck.py runs: TCP/UDP flows on IPv4 and IPv6."""
    checks = {}
    for number, flow in enumerate(flows):
        for family in flow["families"]:
            checks.setdefault(flow["source"], []).append(
                {
                    "flow": number,
                    "kind": flow["kind"],
                    "name": flow["name"],
                    "port": flow["port"],
                    "proto": flow["proto"],
                    "family": family,
                }
            )
    return checks


def verdict(expect, ok):
    if expect == "allow":
        return "pass" if ok else "broken"
    return "exposed" if ok else "pass"


def summarize(results):
    counts = {"pass": 0, "broken": 0, "exposed": 0}
    for result in results:
        counts[result["verdict"]] += 1
    return counts


# --- running ---------------------------------------------------------------------------------------

SNAPSHOT = (
    "import json, sys; sys.path.insert(0, '/opt/zimbra/common/lib/lab'); import standin; "
    "d = standin.Directory(standin.read_localconfig()); "
    "print(json.dumps({'config': standin.get_config(d), 'servers': [a for _, a in d.servers()]}))"
)


def read_directory(exec_argv, master):
    """cn=config and every server entry, read on the LDAP master node (no zmprov: its calls are counted)."""
    result = subprocess.run(exec_argv(master, ["python3", "-c", SNAPSHOT]), capture_output=True, text=True)
    if result.returncode:
        raise LabError(f"cannot read the cluster's LDAP on {master}: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout)


# Silence for this long means filtered. A SYN lost under load is sent again after 1 s (Linux's initial
# retransmission timeout), so the wait covers one retransmission with room to spare.
TIMEOUT = 2.5


def run(
    status: dict, exec_argv: Callable[[str, list[str]], list[str]], timeout: float = TIMEOUT, site: list | tuple = ()
) -> dict:
    """Plan the running lab's flows and run them: {"flows": [...], "summary": {...}, "seconds": s}. site: the
    flows the site itself allows (site_flow)."""
    started = time.monotonic()
    hosts = status["hosts"]
    masters = [h for h in hosts if "ldap" in h.get("roles", ())]
    if not masters:
        raise LabError("no Zimbra node with an LDAP in this lab")
    results = []
    # single servers each hold their own directory: one plan per install
    installs = masters if status["topology"] == "single" else masters[:1]
    for master in installs:
        snapshot = read_directory(exec_argv, master["name"])
        members = [h for h in hosts if h["role"] != "zimbra" or status["topology"] != "single" or h is master]
        planned = plan(snapshot, members, status.get("listen") or "roles", site)
        results += execute(planned, exec_argv, timeout, hosts)
    return {"flows": results, "summary": summarize(results), "seconds": round(time.monotonic() - started, 2)}


def execute(flows, exec_argv, timeout, hosts):
    by_address = {h[family]: h["name"] for h in hosts for family in ("ipv4", "ipv6")}
    token = uuid.uuid4().hex[:12]
    runners = {}
    for source, checks in checks_by_source(flows).items():
        for check in checks:
            check["token"] = f"zfw-flow-{token}-{check['flow']}-{check['family']}"
        proc = subprocess.Popen(
            exec_argv(source, ["python3", "/opt/lab/flowcheck.py"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # every runner gets its checks before any answer is read: they all run at the same time
        proc.stdin.write(json.dumps({"timeout": timeout, "checks": checks}))
        proc.stdin.close()
        runners[source] = proc
    results = []
    datagrams = {}
    for source, proc in runners.items():
        out, err = proc.stdout.read(), proc.stderr.read()  # a runner prints once, when all its checks ended
        if proc.wait():
            raise LabError(f"flow checks on {source} failed: {err.strip().splitlines()[-1:]}")
        for outcome in json.loads(out):
            flow = flows[outcome["flow"]]
            entry = {
                **{
                    k: flow[k]
                    for k in ("source", "destination", "port", "proto", "kind", "expect", "what", "reference")
                },
                **outcome,
            }
            if entry["kind"] == "nginx-memcache":
                entry["destination"] = by_address.get(outcome["address"], outcome["address"])
            if entry["kind"] == "datagram":
                datagrams.setdefault(flow["destination"], []).append(entry)
            results.append(entry)
    for destination, entries in datagrams.items():
        received = read_udp_record(exec_argv, destination)
        for entry in entries:
            entry["ok"] = bool(entry.get("token")) and entry["token"] in received
            entry["detail"] = "recorded by the listener" if entry["ok"] else f"not recorded ({entry['detail']})"
    for entry in results:
        entry.pop("token", None)
        entry["result"] = "ok" if entry.pop("ok") else "blocked"
        entry["verdict"] = verdict(entry["expect"], entry["result"] == "ok")
    return results


def read_udp_record(exec_argv, host):
    result = subprocess.run(exec_argv(host, ["cat", "/var/log/lab-udp.log"]), capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else ""


FAILURE_TITLES = {"broken": "LEGITIMATE FLOWS THAT FAIL", "exposed": "flows that should fail but get through"}


def render(report: dict, show_all: bool = False) -> str:
    """The terminal view: failing flows first, grouped by source and destination (ports listed, IPv4
    and IPv6 together), then with show_all every flow, then the counts."""
    flows = report["flows"]
    lines = []
    for verdict_name, title in FAILURE_TITLES.items():
        groups = {}
        for f in flows:
            if f["verdict"] == verdict_name:
                why = "" if f["result"] == "ok" else f" ({f['detail']})"
                groups.setdefault((f["source"], f["destination"] or "?", f["what"]), set()).add(
                    f"{f['port']}/{f['proto']}{why}"
                )
        if groups:
            lines.append(f"{title}: {sum(1 for f in flows if f['verdict'] == verdict_name)}")
            for (source, destination, what), ports in sorted(groups.items()):
                lines.append(f"  {source:>10} -> {destination:<10} {what}: {', '.join(sorted(ports, key=port_order))}")
    if show_all:
        lines.append("every flow:")
        for f in flows:
            lines.append(
                f"  {f['verdict']:<8} {f['expect']:<5} {f['result']:<8} {f['source']:>10} -> "
                f"{(f['destination'] or '?'):<10} {f.get('address') or '-':>24} {f['port']}/{f['proto']:<4} "
                f"{f['what']} ({f['detail']})"
            )
    summary = report["summary"]
    allowed = sum(1 for f in flows if f["expect"] == "allow")
    lines.append(
        f"flows: {len(flows)} run in {report['seconds']} s; legitimate {allowed} "
        f"({allowed - summary['broken']} ok, {summary['broken']} broken); must fail {len(flows) - allowed} "
        f"({len(flows) - allowed - summary['exposed']} blocked, {summary['exposed']} exposed)"
    )
    return "\n".join(lines)


def port_order(spec):
    number = spec.split("/")[0]
    return (int(number) if number.isdigit() else 0, spec)
