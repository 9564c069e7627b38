"""The Zimbra stand-in: zmprov, zmlocalconfig, zmhostname, zmmemcachedctl and zmproxyconfgen as Zimbra's
own tools behave (formats and errors of Zimbra/zm-mailbox ProvUtil.java, Zimbra/zm-core-utils
zmmemcachedctl, ProxyConfGen.java), with their state in a real OpenLDAP slapd laid out like Zimbra's
directory.

Installed at /opt/zimbra/common/lib/lab/standin.py on lab Zimbra hosts; /opt/zimbra/bin/* call main().
"""

import base64
import datetime
import json
import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

from ldif import parse_ldif  # zimbra_firewall/ldif.py, laid next to this file

ZIMBRA_HOME = "/opt/zimbra"
LOCALCONFIG = f"{ZIMBRA_HOME}/conf/localconfig.xml"
CALL_LOG = f"{ZIMBRA_HOME}/log/zmprov-calls.log"
DELAY_FILE = f"{ZIMBRA_HOME}/conf/lab-zmprov-delay"
CA_CERT = f"{ZIMBRA_HOME}/conf/ca/ca.pem"
MEMCACHED_PIDFILE = f"{ZIMBRA_HOME}/log/memcached.pid"
SLAPD_CONF = f"{ZIMBRA_HOME}/conf/slapd.conf"
SCHEMA = f"{ZIMBRA_HOME}/conf/zimbra-lab.schema"
DATA_DIR = f"{ZIMBRA_HOME}/data/ldap/mdb/db"
BASE_DN = "cn=zimbra"
CONFIG_DN = "cn=config,cn=zimbra"
SERVERS_DN = "cn=servers,cn=zimbra"
ADMIN_DN = "uid=zimbra,cn=admins,cn=zimbra"

# The Zimbra attributes the stand-in knows: multi-valued?, inherited from cn=config when the server has
# none? (server attributes that zimbra-attrs.xml also declares optionalIn globalConfig, as zmprov gs shows)
PORT_ATTRIBUTES = [
    "zimbraAdminPort",
    "zimbraAdminProxyPort",
    "zimbraDocumentEditingCallbackPort",
    "zimbraExtensionBindPort",
    "zimbraImapBindPort",
    "zimbraImapProxyBindPort",
    "zimbraImapSSLBindPort",
    "zimbraImapSSLProxyBindPort",
    "zimbraLmtpBindPort",
    "zimbraMailPort",
    "zimbraMailProxyPort",
    "zimbraMailSSLPort",
    "zimbraMailSSLProxyClientCertPort",
    "zimbraMailSSLProxyPort",
    "zimbraMemcachedBindPort",
    "zimbraMtaAuthPort",
    "zimbraPop3BindPort",
    "zimbraPop3ProxyBindPort",
    "zimbraPop3SSLBindPort",
    "zimbraPop3SSLProxyBindPort",
    "zimbraRemoteImapBindPort",
    "zimbraRemoteImapSSLBindPort",
    "zimbraRemoteManagementPort",
    "zimbraSmtpPort",
]
# Attributes learnt after the schema's OIDs were first numbered: theirs follow the others' (render_schema),
# so no attribute's OID ever changes; a new one goes at the end of this list. These say whom Zimbra trusts
# past the firewall (Postfix's relay networks, mailboxd's proxies): multi-valued, on cn=config and the
# servers, a server inheriting cn=config's (Zimbra/zm-mailbox store/conf/attrs/zimbra-attrs.xml:
# cardinality="multi" optionalIn="globalConfig,server" flags="serverInherited").
LATER_ATTRIBUTES = ["zimbraMtaMyNetworks", "zimbraMailTrustedIP", "zimbraHttpThrottleSafeIPs"]
ATTRIBUTES = {
    **{name: (False, True) for name in PORT_ATTRIBUTES},
    "zimbraId": (False, False),
    "zimbraLogHostname": (True, False),
    "zimbraIPMode": (False, True),
    "zimbraMailMode": (False, True),
    "zimbraMemcachedBindAddress": (True, False),
    "zimbraMemcachedClientServerList": (True, True),
    "zimbraReverseProxyAdminEnabled": (False, True),
    "zimbraReverseProxyLookupTarget": (False, False),
    "zimbraReverseProxySSLToUpstreamEnabled": (False, True),
    "zimbraReverseProxyUpstreamImapServers": (True, True),
    "zimbraServiceEnabled": (True, False),
    "zimbraServiceHostname": (False, False),
    "zimbraServiceInstalled": (True, False),
    "zimbraSmtpHostname": (True, True),
    "zimbraSpellCheckURL": (True, True),
    **{name: (True, True) for name in LATER_ATTRIBUTES},
}
ENTRY_ATTRIBUTES = {"cn": False, "objectClass": True}
CANONICAL = {name.lower(): name for name in [*ATTRIBUTES, *ENTRY_ATTRIBUTES]}
INTEGER_ATTRIBUTES = set(PORT_ATTRIBUTES)
NGINX_MEMCACHE = f"{ZIMBRA_HOME}/conf/nginx/includes/nginx.conf.memcache"


class ZimbraError(Exception):
    """Printed as Zimbra prints a ServiceException: `ERROR: code (message)`, exit 2."""

    def __init__(self, code, message):
        super().__init__(f"ERROR: {code} ({message})")


# --- localconfig ------------------------------------------------------------------------------


def read_localconfig(path=LOCALCONFIG):
    root = ET.parse(path).getroot()
    return {key.get("name"): (key.findtext("value") or "") for key in root.iter("key")}


def render_localconfig(values):
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "", "<localconfig>"]
    for name in sorted(values):
        value = values[name].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines += [f'  <key name="{name}">', f"    <value>{value}</value>", "  </key>"]
    return "\n".join(lines + ["</localconfig>", ""])


# --- schema and directory ---------------------------------------------------------------------


def render_schema():
    """A minimal schema with the attributes above (UUID-based OIDs, not Zimbra's): numbered in name order,
    then LATER_ATTRIBUTES in theirs, so adding one leaves every other OID as it was."""
    arc = "2.25.171923745629013987712345"
    lines = []
    first = sorted(name for name in ATTRIBUTES if name not in LATER_ATTRIBUTES)
    for index, name in enumerate([*first, *LATER_ATTRIBUTES], start=1):
        single = "" if ATTRIBUTES[name][0] else " SINGLE-VALUE"
        lines.append(
            f"attributetype ( {arc}.1.{index} NAME '{name}' EQUALITY caseIgnoreMatch "
            f"SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{single} )"
        )
    may = " $ ".join(sorted(ATTRIBUTES))
    lines.append(f"objectclass ( {arc}.2.1 NAME 'zimbraGlobalConfig' SUP top STRUCTURAL MUST cn MAY ( {may} ) )")
    lines.append(f"objectclass ( {arc}.2.2 NAME 'zimbraServer' SUP top STRUCTURAL MUST cn MAY ( {may} ) )")
    return "\n".join(lines) + "\n"


def render_slapd_conf(password):
    return f"""include /etc/ldap/schema/core.schema
include {SCHEMA}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {ZIMBRA_HOME}/data/ldap/slapd.pid
TLSCACertificateFile {CA_CERT}
TLSCertificateFile {ZIMBRA_HOME}/conf/slapd.crt
TLSCertificateKeyFile {ZIMBRA_HOME}/conf/slapd.key
database mdb
maxsize 10485760
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {password}
directory {DATA_DIR}
"""


def ldif_entry(dn, object_class, cn, attrs):
    lines = [f"dn: {dn}", f"objectClass: {object_class}", f"cn: {cn}"]
    return "\n".join(lines + [f"{name}: {value}" for name, values in attrs.items() for value in values])


def render_initial_ldif(directory):
    """The directory a fresh install writes: cn=zimbra, cn=config and one entry per server."""
    entries = [
        f"dn: {BASE_DN}\nobjectClass: organizationalRole\ncn: zimbra",
        "dn: cn=admins,cn=zimbra\nobjectClass: organizationalRole\ncn: admins",
        f"dn: {SERVERS_DN}\nobjectClass: organizationalRole\ncn: servers",
        ldif_entry(CONFIG_DN, "zimbraGlobalConfig", "config", directory["config"]),
    ]
    entries += [server_ldif(server) for server in directory["servers"]]
    return "\n\n".join(entries) + "\n"


def server_ldif(server):
    return ldif_entry(f"cn={server['name']},{SERVERS_DN}", "zimbraServer", server["name"], server["attrs"])


class Directory:
    """Zimbra's LDAP, reached as Zimbra's tools reach it: ldap_url, StartTLS, the zimbra admin bind."""

    def __init__(self, config):
        self.url = config["ldap_url"]
        self.bind_dn = config["zimbra_ldap_userdn"]
        self.password = config["zimbra_ldap_password"]
        self.starttls = config.get("ldap_starttls_supported") == "1"

    def _run(self, tool, args, stdin=""):
        # the password reaches the client on a pipe, never on a command line
        read_fd, write_fd = os.pipe()
        os.write(write_fd, self.password.encode())
        os.close(write_fd)
        cmd = [f"/usr/bin/{tool}", "-x", "-H", self.url, "-D", self.bind_dn, "-y", f"/dev/fd/{read_fd}"]
        cmd += ["-ZZ"] if self.starttls else []

        env = dict(os.environ, LDAPTLS_CACERT=CA_CERT)
        try:
            # Zimbra's LDAP client gives up after ldap_connect_timeout (30 s, LC.java); ldapsearch's own
            # nettimeout does not cover StartTLS
            result = subprocess.run(
                cmd + args, input=stdin, capture_output=True, text=True, env=env, pass_fds=(read_fd,), timeout=30
            )
        except subprocess.TimeoutExpired:
            raise ZimbraError("service.FAILURE", "system failure: LDAP error: connect timed out") from None
        finally:
            os.close(read_fd)
        if result.returncode:
            detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
            raise ZimbraError("service.FAILURE", f"system failure: LDAP error: {detail}")
        return result.stdout

    def search(self, base, scope="base", ldap_filter="(objectClass=*)"):
        out = self._run("ldapsearch", ["-LLL", "-o", "ldif-wrap=no", "-b", base, "-s", scope, ldap_filter, "*"])
        return parse_ldif(out, CANONICAL)

    def modify(self, dn, changes):
        """changes: [(op, attr, [values])], op in replace/add/delete."""
        lines = [f"dn: {dn}", "changetype: modify"]
        for op, attr, values in changes:
            lines.append(f"{op}: {attr}")
            lines += [f"{attr}:: {base64.b64encode(v.encode()).decode()}" for v in values]
            lines.append("-")
        self._run("ldapmodify", [], stdin="\n".join(lines) + "\n")

    def add(self, ldif):
        self._run("ldapadd", [], stdin=ldif + "\n")

    def delete(self, dn):
        self._run("ldapdelete", [dn])

    def servers(self, service=None):
        """Every server entry (those with `service` in zimbraServiceEnabled), in the directory's order."""
        wanted = f"(zimbraServiceEnabled={ldap_escape(service)})" if service else ""
        return self.search(SERVERS_DN, "one", f"(&(objectClass=zimbraServer){wanted})")


def ldap_escape(value):
    return "".join(f"\\{ord(c):02x}" if c in "*()\\\0" else c for c in value)


# --- zmprov -----------------------------------------------------------------------------------


def get_config(directory):
    entries = directory.search(CONFIG_DN)
    return entries[0][1] if entries else {}


def find_server(directory, name):
    entries = directory.search(SERVERS_DN, "one", f"(&(objectClass=zimbraServer)(cn={ldap_escape(name)}))")
    if not entries:
        raise ZimbraError("account.NO_SUCH_SERVER", f"no such server: {name}")
    return entries[0]


def select_attributes(attrs, wanted):
    """Keep the requested attributes (case-insensitive names; unknown names are ignored)."""
    if not wanted:
        return attrs
    keep = {CANONICAL[w.lower()] for w in wanted if w.lower() in CANONICAL}
    return {name: values for name, values in attrs.items() if name in keep}


def format_attributes(attrs):
    return "".join(f"{name}: {value}\n" for name in sorted(attrs) for value in attrs[name])


def effective_server_attributes(server_attrs, config_attrs):
    merged = {name: values for name, values in config_attrs.items() if ATTRIBUTES.get(name, (False, False))[1]}
    merged.update(server_attrs)
    return merged


def parse_modifications(pairs):
    """`attr value …` as zmprov takes it → [(op, attr, [values])] for ldapmodify."""
    if len(pairs) % 2:
        raise ZimbraError("service.INVALID_REQUEST", "invalid request: not an even number of attr/value pairs")
    plain, added, removed = {}, {}, {}
    for raw_name, value in zip(pairs[::2], pairs[1::2], strict=True):
        target = {"+": added, "-": removed}.get(raw_name[:1], plain)
        name = raw_name[1:] if target is not plain else raw_name
        canonical = CANONICAL.get(name.lower())
        if canonical is None or canonical in ENTRY_ATTRIBUTES:
            raise ZimbraError("account.INVALID_ATTR_NAME", f"invalid attr name: {name}")
        if canonical in INTEGER_ATTRIBUTES and value and not re.fullmatch(r"-?\d+", value):
            raise ZimbraError("account.INVALID_ATTR_VALUE", f"{canonical} must be a valid integer: {value}")
        target.setdefault(canonical, []).append(value)
    if set(plain) & (set(added) | set(removed)):
        raise ZimbraError("service.INVALID_REQUEST", "invalid request: can't mix +attrName/-attrName with attrName")
    changes = []
    for name, values in plain.items():
        values = [v for v in values if v != ""]
        if len(values) > 1 and not ATTRIBUTES[name][0]:
            raise ZimbraError("account.INVALID_ATTR_VALUE", f"{name}: attribute is single-valued")
        changes.append(("replace", name, values))
    changes += [("add", name, values) for name, values in added.items()]
    changes += [("delete", name, values) for name, values in removed.items()]
    return changes


def apply_modifications(directory, dn, current, changes):
    """Apply as Zimbra does: adding a present value or removing an absent one is not an error."""
    effective = []
    for op, name, values in changes:
        have = current.get(name, [])
        if op == "add":
            values = [v for v in dict.fromkeys(values) if v not in have]
        elif op == "delete":
            values = [v for v in dict.fromkeys(values) if v in have]
        elif not values and not have:
            continue
        if values or op == "replace":
            effective.append((op, name, values))
    if effective:
        directory.modify(dn, effective)


def log_call(argv):
    os.makedirs(os.path.dirname(CALL_LOG), exist_ok=True)
    record = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "user": pwd.getpwuid(os.getuid()).pw_name,
        "caller": os.environ.get("LAB_ZMPROV_CALLER", ""),
        "argv": argv,
    }
    with open(CALL_LOG, "a") as f:
        f.write(json.dumps(record) + "\n")


def imitate_jvm_startup():
    try:
        with open(DELAY_FILE) as f:
            delay = float(f.read().strip() or 0)
    except (OSError, ValueError):
        delay = 0
    if delay > 0:
        time.sleep(delay)


ZMPROV_USAGE = """usage:  zmprov [args] [cmd] [cmd-args ...]

  -l/--ldap                            provision via LDAP instead of SOAP
  getServer(gs) [-e] {name|id} [attr1 [attr2...]]
  modifyServer(ms) {name|id} [attr1 value1 [attr2 value2...]]
  getAllConfig(gacf) [attr1 [attr2...]]
  getConfig(gcf) {name}
  modifyConfig(mcf) attr1 value1 [attr2 value2...]
  getAllServers(gas) [service]
  getAllMemcachedServers(gamcs)
  createServer(cs) {name} [attr1 value1 [attr2 value2...]]
  deleteServer(ds) {name|id}
  reloadMemcachedClientConfig(rmcc) {all|mailbox-server}
"""


def zmprov(argv, out=sys.stdout):
    args = list(argv)
    while args and args[0] in ("-l", "--ldap", "-m", "--master"):
        args.pop(0)
    if not args:
        raise UsageError()
    command, args = args[0].lower(), args[1:]
    directory = Directory(read_localconfig())
    if command in ("gs", "getserver"):
        own_only = bool(args) and args[0] == "-e"
        args = args[1:] if own_only else args
        if not args:
            raise UsageError()
        _dn, attrs = find_server(directory, args[0])
        if not own_only:
            attrs = effective_server_attributes(attrs, get_config(directory))
        out.write(f"# name {attrs['cn'][0]}\n{format_attributes(select_attributes(attrs, args[1:]))}\n")
    elif command in ("ms", "modifyserver"):
        if len(args) < 1:
            raise UsageError()
        changes = parse_modifications(args[1:])
        dn, attrs = find_server(directory, args[0])
        apply_modifications(directory, dn, attrs, changes)
    elif command in ("gacf", "getallconfig"):
        out.write(format_attributes(select_attributes(get_config(directory), args)))
    elif command in ("gcf", "getconfig"):
        if len(args) != 1:
            raise UsageError()
        out.write(format_attributes(select_attributes(get_config(directory), args)))
    elif command in ("mcf", "modifyconfig"):
        apply_modifications(directory, CONFIG_DN, get_config(directory), parse_modifications(args))
    elif command in ("gas", "getallservers"):
        if len(args) > 1:
            raise UsageError()
        out.write("".join(f"{attrs['cn'][0]}\n" for _dn, attrs in directory.servers(*args)))
    elif command in ("gamcs", "getallmemcachedservers"):
        out.write(f"{''.join(f'{host}:{port} ' for host, port in memcached_servers(directory))}\n")
    elif command in ("rmcc", "reloadmemcachedclientconfig"):
        if len(args) != 1:
            raise UsageError()
        # real mailboxd re-reads zimbraMemcachedClientServerList over SOAP; the stand-in has no mailboxd
        out.write("")
    elif command in ("cs", "createserver"):
        if not args or len(args) % 2 != 1:
            raise UsageError()
        attrs = {}
        for name, value in zip(args[1::2], args[2::2], strict=True):
            attrs.setdefault(name, []).append(value)
        attrs.setdefault("zimbraServiceHostname", [args[0]])
        directory.add(server_ldif({"name": args[0], "attrs": attrs}))
    elif command in ("ds", "deleteserver"):
        if len(args) != 1:
            raise UsageError()
        directory.delete(find_server(directory, args[0])[0])
    else:
        raise UsageError()


def memcached_servers(directory):
    """(zimbraServiceHostname, zimbraMemcachedBindPort) of every memcached server, as `zmprov gamcs`
    and nginx's configuration list them (Zimbra/zm-mailbox ProvUtil.java, ProxyConfGen.java)."""
    config = get_config(directory)
    servers = []
    for _dn, attrs in directory.servers("memcached"):
        effective = effective_server_attributes(attrs, config)
        port = effective.get("zimbraMemcachedBindPort", ["11211"])[0]
        servers.append((effective.get("zimbraServiceHostname", [""])[0], int(port)))
    return servers


class UsageError(Exception):
    pass


def main_zmprov(argv):
    log_call(argv)
    imitate_jvm_startup()
    try:
        zmprov(argv)
    except UsageError:
        sys.stderr.write(ZMPROV_USAGE)
        return 1
    except ZimbraError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    return 0


# --- zmlocalconfig, zmhostname ----------------------------------------------------------------

SECRET_KEYS = re.compile(r"password|secret|key$", re.IGNORECASE)


def main_zmlocalconfig(argv):
    show_secrets, fmt, keys = False, "plain", []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-s", "--show"):
            show_secrets = True
        elif arg in ("-m", "--format") and args:
            fmt = args.pop(0)
        else:
            keys.append(arg)
    config = read_localconfig()
    for key in [k for k in keys if k in config] if keys else sorted(config):
        value = config[key]
        if SECRET_KEYS.search(key) and not show_secrets:
            value = "*" * len(value) if fmt == "nokey" else "*"
        if fmt == "nokey":
            print(value)
        elif fmt == "shell":
            print(f"{key}={shlex.quote(value)};")
        else:
            print(f"{key} = {value}")
    return 0


def main_zmhostname(_argv):
    print(read_localconfig()["zimbra_server_hostname"])
    return 0


# --- zmmemcachedctl ---------------------------------------------------------------------------


def memcached_pid():
    try:
        with open(MEMCACHED_PIDFILE) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def memcached_binding():
    """Read as the real zmmemcachedctl does: through zmprov."""
    hostname = read_localconfig()["zimbra_server_hostname"]
    env = dict(os.environ, LAB_ZMPROV_CALLER="zmmemcachedctl")
    result = subprocess.run(
        [f"{ZIMBRA_HOME}/bin/zmprov", "-l", "gs", hostname, "zimbraMemcachedBindAddress", "zimbraMemcachedBindPort"],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode:
        sys.stderr.write(result.stderr)
        return None
    addresses, port = [], "11211"
    for line in result.stdout.splitlines():
        name, _, value = line.partition(": ")
        if name == "zimbraMemcachedBindAddress":
            addresses.append(value)
        elif name == "zimbraMemcachedBindPort":
            port = value
    return addresses, port


def start_memcached():
    if memcached_pid():
        print("memcached process is already running.")
        return 0
    binding = memcached_binding()
    if binding is None:
        print("Starting memcached...failed.")
        return 1
    addresses, port = binding
    cmd = ["/usr/bin/memcached", "-d", "-P", MEMCACHED_PIDFILE, "-U", "0", "-p", port]
    cmd += ["-l", ",".join(addresses)] if addresses else []
    sys.stdout.write("Starting memcached...")
    sys.stdout.flush()
    result = subprocess.run(cmd, capture_output=True, text=True)
    for _ in range(50):
        if memcached_pid():
            break
        time.sleep(0.02)
    if result.returncode or not memcached_pid():
        print("failed.")
        sys.stderr.write(result.stderr)
        return 1
    print("done.")
    return 0


def stop_memcached():
    pid = memcached_pid()
    sys.stdout.write("Stopping memcached...")
    if pid:
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.02)
    try:
        os.unlink(MEMCACHED_PIDFILE)
    except FileNotFoundError:
        pass
    print("done.")
    return 0


def main_zmmemcachedctl(argv):
    if pwd.getpwuid(os.getuid()).pw_name != "zimbra":
        print("Error: must be run as zimbra user")
        return 1
    action = argv[0] if argv else ""
    if action == "start":
        return start_memcached()
    if action == "stop":
        return stop_memcached()
    if action in ("restart", "reload"):
        stop_memcached()
        return start_memcached()
    if action == "status":
        running = memcached_pid() is not None
        print("memcached is running." if running else "memcached is not running.")
        return 0 if running else 1
    print(f"{os.path.basename(sys.argv[0])} start|stop|restart|reload|status")
    return 1


# --- the proxy's view of memcached ------------------------------------------------------------


def render_nginx_memcache(servers, resolve):
    """nginx.conf.memcache as ProxyConfGen writes it (Zimbra/zm-mailbox ProxyConfGen.java,
    MemcacheServersVar): one `servers` line per memcached server, at the FIRST IPv4 address its
    zimbraServiceHostname resolves to (IPv4 mode) and its zimbraMemcachedBindPort; a name that does not
    resolve is left out. zimbraMemcachedBindAddress plays no part. resolve(name) → IPv4 address or None."""
    resolved = [(resolve(name), port) for name, port in servers]
    lines = "".join(f"  servers   {address}:{port};\n" for address, port in resolved if address)
    return f"# generated like zmproxyconfgen does\nmemcache\n{{\n{lines}}}\n"


def first_ipv4(name):
    try:
        return socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except (socket.gaierror, IndexError):
        return None


def main_zmproxyconfgen(_argv):
    """Regenerate nginx.conf.memcache, as zmconfigd does when the set of memcached servers changes."""
    try:
        servers = memcached_servers(Directory(read_localconfig()))
    except ZimbraError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    text = render_nginx_memcache(servers, first_ipv4)
    if "  servers " not in text:
        sys.stderr.write("No available memcached servers could be contacted\n")
    os.makedirs(os.path.dirname(NGINX_MEMCACHE), exist_ok=True)
    tmp = NGINX_MEMCACHE + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, NGINX_MEMCACHE)
    return 0


# --- provisioning at host start (run by the lab's init as root) -------------------------------


def wait_for_directory(directory, timeout=60):
    """Zimbra's services start once LDAP answers (zmcontrol starts ldap first, on every node)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            directory.search(BASE_DN)
            return
        except ZimbraError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def install_directory(zimbra, password):
    with open(SCHEMA, "w") as f:
        f.write(render_schema())
    with open(SLAPD_CONF, "w") as f:
        f.write(render_slapd_conf(password))
    subprocess.run(
        ["/usr/sbin/slapadd", "-q", "-f", SLAPD_CONF],
        check=True,
        input=render_initial_ldif(zimbra["directory"]),
        text=True,
    )


def provision(host):
    """Make this host a fresh Zimbra node: a single server (its own LDAP master) or a cluster node whose
    localconfig points at the cluster's LDAP master (its server entry is already there: `lab add` creates
    it from the master)."""
    zimbra = host["zimbra"]
    services = zimbra["services"]
    master = "directory" in zimbra
    if subprocess.run(["id", "zimbra"], capture_output=True).returncode:
        subprocess.run(
            ["useradd", "--system", "--home-dir", ZIMBRA_HOME, "--shell", "/bin/bash", "--user-group", "zimbra"],
            check=True,
        )
    for folder in ("conf", "log", "data/ldap/mdb/db"):
        os.makedirs(f"{ZIMBRA_HOME}/{folder}", exist_ok=True)
    if not os.path.exists(LOCALCONFIG):
        password = zimbra["ldap_password"]
        ldap_url = f"ldap://{zimbra['ldap_master']}:389"
        with open(LOCALCONFIG, "w") as f:
            f.write(
                render_localconfig(
                    {
                        "ldap_is_master": "true" if master else "false",
                        "ldap_master_url": ldap_url,
                        "ldap_starttls_supported": "1",
                        "ldap_url": ldap_url,
                        "zimbra_home": ZIMBRA_HOME,
                        "zimbra_ldap_password": password,
                        "zimbra_ldap_userdn": ADMIN_DN,
                        "zimbra_server_hostname": zimbra["fqdn"],
                        "zimbra_user": "zimbra",
                    }
                )
            )
        with open(DELAY_FILE, "w") as f:
            f.write(f"{zimbra['zmprov_delay']}\n")
        if master:
            install_directory(zimbra, password)
        subprocess.run(["chown", "-R", "zimbra:zimbra", ZIMBRA_HOME], check=True)
        for secret in (LOCALCONFIG, SLAPD_CONF, f"{ZIMBRA_HOME}/conf/slapd.key"):
            if os.path.exists(secret):
                os.chmod(secret, 0o640)
    if master:
        subprocess.run(
            ["/usr/sbin/slapd", "-f", SLAPD_CONF, "-h", "ldap:///", "-u", "zimbra", "-g", "zimbra"], check=True
        )
    if master or {"memcached", "proxy"} & set(services):
        # memcached reads its binding and nginx its memcached servers from LDAP, as zmcontrol does
        wait_for_directory(Directory(read_localconfig()))
    as_zimbra = ["su", "-s", "/bin/sh", "zimbra", "-c"]
    if "memcached" in services:
        subprocess.run([*as_zimbra, f"{ZIMBRA_HOME}/bin/zmmemcachedctl start"], check=True, stdout=subprocess.DEVNULL)
    if "proxy" in services:
        subprocess.run([*as_zimbra, f"{ZIMBRA_HOME}/libexec/zmproxyconfgen"], check=True)


TOOLS = {
    "zmprov": main_zmprov,
    "zmlocalconfig": main_zmlocalconfig,
    "zmhostname": main_zmhostname,
    "zmmemcachedctl": main_zmmemcachedctl,
    "zmproxyconfgen": main_zmproxyconfgen,
}


def main():
    tool = os.path.basename(sys.argv[0])
    sys.exit(TOOLS[tool](sys.argv[1:]))
