"""Bring lab hosts up and down: namespaces, overlays, processes and the lab's SSH files.

Every host is one `unshare` process tree (own net, mount, pid, uts and ipc namespaces) whose mounts
exist only in its own mount namespace, so killing that one process removes the host, its mounts and
its network namespace together. The lab's only named namespace is the one holding the bridge.
"""

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time

from . import rootfs, topology
from .errors import LabError

GUEST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest")
# the one LDIF parser, the deploy's, which the stand-in uses too
LDIF_PARSER = os.path.join(os.path.dirname(GUEST_DIR), os.pardir, "zimbra_firewall", "ldif.py")
REQUIRED_TOOLS = ["ip", "unshare", "nsenter", "ssh-keygen", "openssl", "nc", "chroot", "mount"]
BOOT_SCRIPT = r"""
set -e
m="$1"
mount -t overlay overlay -o "lowerdir=$2,upperdir=$3,workdir=$4" "$m"
mount -t proc proc "$m/proc"
mount -t sysfs sysfs "$m/sys"
mount -t tmpfs -o mode=755,size=4m tmpfs "$m/dev"
mknod -m 666 "$m/dev/null" c 1 3; mknod -m 666 "$m/dev/zero" c 1 5; mknod -m 666 "$m/dev/full" c 1 7
mknod -m 666 "$m/dev/random" c 1 8; mknod -m 666 "$m/dev/urandom" c 1 9; mknod -m 666 "$m/dev/tty" c 5 0
mkdir "$m/dev/pts" "$m/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$m/dev/pts"
ln -s pts/ptmx "$m/dev/ptmx"
ln -s /proc/self/fd "$m/dev/fd"; ln -s fd/0 "$m/dev/stdin"; ln -s fd/1 "$m/dev/stdout"; ln -s fd/2 "$m/dev/stderr"
mount -t tmpfs -o mode=755 tmpfs "$m/run"
mount -t tmpfs -o mode=1777 tmpfs "$m/tmp"
mkdir -p "$m/run/sshd" "$m/run/lock"
hostname "$5"
exec chroot "$m" /usr/bin/python3 /opt/lab/init.py
"""


def netns_name():
    return os.environ.get("LAB_NETNS", "zfwlab")


def state_dir():
    return os.environ.get("LAB_STATE", "/run/zimbra-firewall-lab")


def state_file():
    return os.path.join(state_dir(), "state.json")


def ssh_dir():
    return os.path.join(state_dir(), "ssh")


def load_state():
    try:
        with open(state_file()) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def save_state(state):
    os.makedirs(state_dir(), exist_ok=True)
    tmp = state_file() + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:  # it holds the LDAP password
        json.dump(state, f, indent=1)
    os.replace(tmp, state_file())


def run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise LabError(f"{' '.join(cmd)}: {detail[-1] if detail else f'exit {result.returncode}'}")
    return result.stdout


def in_lab(*cmd):
    return ["ip", "netns", "exec", netns_name(), *cmd]


def require_root_and_tools():
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts, veth pairs): run it with sudo")
    missing = [tool for tool in REQUIRED_TOOLS if not shutil.which(tool)]
    if missing:
        raise LabError(
            f"missing tools: {', '.join(missing)} (apt-get install iproute2 util-linux openssh-client "
            "openssl netcat-openbsd)"
        )


def netns_exists(name):
    return os.path.exists(f"/run/netns/{name}")


def process_alive(pid, comm=None):
    """True for a live (not zombie) process, with the expected command name when given."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    state = stat[stat.rindex(")") + 2]
    return state not in "ZX" and (comm is None or name == comm)


def machine_networks():
    out = json.loads(run(["ip", "-j", "addr"]))
    return [
        ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
        for link in out
        for a in link.get("addr_info", [])
    ]


# --- the lab network --------------------------------------------------------------------------


def create_network():
    name = netns_name()
    run(["ip", "netns", "add", name])
    ipv4, ipv6 = topology.CONTROLLER
    run(in_lab("ip", "link", "set", "lo", "up"))
    run(in_lab("ip", "link", "add", "br0", "type", "bridge"))
    run(in_lab("ip", "addr", "add", f"{ipv4}/{topology.LAB_IPV4.prefixlen}", "dev", "br0"))
    run(in_lab("ip", "addr", "add", f"{ipv6}/{topology.LAB_IPV6.prefixlen}", "dev", "br0", "nodad"))
    run(in_lab("ip", "link", "set", "br0", "up"))


def attach_host(host, pid):
    veth = f"vz-{host['name']}"[:15]
    # the host's MAC follows from its address: a node removed and added again keeps it, so its neighbours'
    # caches stay true (with a new MAC each time, they sent to the old one until their entry went stale: a
    # minute without SSH)
    mac = "02:7a:" + ":".join(f"{int(octet):02x}" for octet in host["ipv4"].split("."))
    peer = ["peer", "name", "eth0", "address", mac, "netns", str(pid)]
    run(["ip", "-n", netns_name(), "link", "add", veth, "type", "veth", *peer])
    run(["ip", "-n", netns_name(), "link", "set", veth, "master", "br0", "up"])


# --- layers and per-host files ----------------------------------------------------------------


def layer_paths():
    layers = os.path.join(state_dir(), "layers")
    return {"base": os.path.join(layers, "base"), "zimbra": os.path.join(layers, "zimbra")}


def build_layers():
    """Files the lab lays over the rootfs: `base` on every host, `zimbra` on Zimbra hosts too."""
    paths = layer_paths()
    shutil.rmtree(os.path.dirname(paths["base"]), ignore_errors=True)
    base = paths["base"]
    os.makedirs(os.path.join(base, "opt/lab"))
    os.makedirs(os.path.join(base, "etc/ssh"))
    for script in (
        "init.py",
        "listeners.py",
        "probe.py",
        "prober.py",
        "scan.py",
        "flowcheck.py",
        "tcpconnect.py",
        "login-shell",
    ):
        shutil.copy(os.path.join(GUEST_DIR, script), os.path.join(base, "opt/lab", script))
    os.chmod(os.path.join(base, "opt/lab/login-shell"), 0o755)
    shutil.copy(os.path.join(GUEST_DIR, "sshd_config"), os.path.join(base, "etc/ssh/sshd_config"))
    zimbra = paths["zimbra"]
    shutil.copytree(
        os.path.join(GUEST_DIR, "zimbra"),
        os.path.join(zimbra, "opt/zimbra"),
        ignore=shutil.ignore_patterns("__pycache__", "zmtool"),
    )
    os.makedirs(os.path.join(zimbra, "opt/zimbra/libexec"))
    for tool in ("bin/zmprov", "bin/zmlocalconfig", "bin/zmhostname", "bin/zmmemcachedctl", "libexec/zmproxyconfgen"):
        target = os.path.join(zimbra, "opt/zimbra", tool)
        shutil.copy(os.path.join(GUEST_DIR, "zimbra/bin/zmtool"), target)
        os.chmod(target, 0o755)
    shutil.copy(LDIF_PARSER, os.path.join(zimbra, "opt/zimbra/common/lib/lab/ldif.py"))
    common_bin = os.path.join(zimbra, "opt/zimbra/common/bin")
    os.makedirs(common_bin)
    os.symlink("/usr/bin/ldapsearch", os.path.join(common_bin, "ldapsearch"))
    make_ca(os.path.join(zimbra, "opt/zimbra/conf/ca"))
    return paths


# an EC P-256 key, unencrypted, made along with the request
NEW_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def make_ca(folder):
    os.makedirs(folder)
    key, cert = os.path.join(folder, "ca.key"), os.path.join(folder, "ca.pem")
    subject = "/O=zimbra-firewall lab/CN=lab CA"
    run(["openssl", "req", "-x509", *NEW_EC_KEY, "-keyout", key, "-out", cert, "-days", "30", "-subj", subject])


def host_certificate(host, ca_folder, conf_dir):
    """slapd's certificate, signed by the lab CA like Zimbra's own self-signed CA does."""
    key, csr, crt = (os.path.join(conf_dir, f"slapd.{ext}") for ext in ("key", "csr", "crt"))
    name = host["fqdn"]
    run(
        [
            "openssl",
            "req",
            *NEW_EC_KEY,
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
        ]
    )
    ca = [os.path.join(ca_folder, "ca.pem"), os.path.join(ca_folder, "ca.key")]
    run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca[0],
            "-CAkey",
            ca[1],
            "-CAcreateserial",
            "-days",
            "30",
            "-out",
            crt,
            "-copy_extensions",
            "copy",
        ]
    )
    os.unlink(csr)


def client_key():
    key = os.path.join(ssh_dir(), "id_ed25519")
    if not os.path.exists(key):
        os.makedirs(ssh_dir(), exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "zimbra-firewall-lab", "-f", key])
    return key


def prepare_host(host, state, key, layers):
    folder = os.path.join(state_dir(), "hosts", host["name"])
    upper = os.path.join(folder, "upper")
    for sub in ("upper/etc/ssh", "upper/root/.ssh", "work", "merged"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    host_key = os.path.join(upper, "etc/ssh/ssh_host_ed25519_key")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host['name']}", "-f", host_key])
    with open(key + ".pub") as src, open(os.path.join(upper, "root/.ssh/authorized_keys"), "w") as dst:
        dst.write(src.read())
    os.chmod(os.path.join(upper, "root/.ssh"), 0o700)
    spec = topology.host_from_dict(host)
    config = topology.host_config(
        spec,
        [topology.host_from_dict(h) for h in state["hosts"]],
        state["zmprov_delay"],
        state["ldap_password"],
        state["listen"],
    )
    with open(os.path.join(upper, "etc/lab-host.json"), "w") as f:
        json.dump(config, f)
    os.chmod(os.path.join(upper, "etc/lab-host.json"), 0o600)
    lower = [layers["base"], rootfs.rootfs_path()]
    if host["role"] == "zimbra":
        conf = os.path.join(upper, "opt/zimbra/conf")
        os.makedirs(conf)
        if "ldap" in host["services"]:
            host_certificate(host, os.path.join(layers["zimbra"], "opt/zimbra/conf/ca"), conf)
        lower.insert(0, layers["zimbra"])
    return folder, ":".join(lower)


def start_host(host, folder, lower):
    log = open(os.path.join(folder, "console.log"), "w")
    proc = subprocess.Popen(
        [
            "unshare",
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--uts",
            "--ipc",
            "sh",
            "-c",
            BOOT_SCRIPT,
            "boot",
            os.path.join(folder, "merged"),
            lower,
            os.path.join(folder, "upper"),
            os.path.join(folder, "work"),
            host["name"],
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    wait_for_own_netns(proc.pid)
    return proc.pid


def wait_for_own_netns(pid, timeout=10):
    """Until `unshare` has made the host's network namespace, its pid still points at ours: a veth
    attached then would land in the machine's own namespace."""
    own = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != own:
                return
        except FileNotFoundError:
            raise LabError(f"host process {pid} exited while starting") from None
        if time.monotonic() > deadline:
            raise LabError(f"host process {pid} made no network namespace in {timeout} s")
        time.sleep(0.005)


def init_pid(unshare_pid):
    try:
        with open(f"/proc/{unshare_pid}/task/{unshare_pid}/children") as f:
            children = f.read().split()
    except FileNotFoundError:
        return None
    return int(children[0]) if children else None


def wait_until_ready(hosts, timeout):
    deadline = time.monotonic() + timeout
    waiting = {h["name"] for h in hosts}
    while waiting:
        for host in hosts:
            name = host["name"]
            if name not in waiting:
                continue
            folder = os.path.join(state_dir(), "hosts", name)
            if os.path.exists(os.path.join(folder, "upper/var/lib/lab/ready")):
                host["init_pid"] = init_pid(host["pid"])
                waiting.discard(name)
            elif not process_alive(host["pid"]):
                raise LabError(f"host {name} stopped while starting: {last_line(folder)}")
        if waiting and time.monotonic() > deadline:
            raise LabError(f"hosts not ready after {timeout} s: {', '.join(sorted(waiting))}")
        time.sleep(0.05)


def last_line(folder):
    try:
        with open(os.path.join(folder, "console.log")) as f:
            lines = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return "no console log"
    return lines[-1] if lines else "console log empty"


def write_ssh_files(state, key):
    known_hosts = os.path.join(ssh_dir(), "known_hosts")
    config = os.path.join(ssh_dir(), "ssh_config")
    lines = []
    for host in state["hosts"]:
        with open(os.path.join(state_dir(), "hosts", host["name"], "upper/etc/ssh/ssh_host_ed25519_key.pub")) as f:
            keytype, blob = f.read().split()[:2]
        lines.append(f"{host['name']},{host['fqdn']},{host['ipv4']},{host['ipv6']} {keytype} {blob}")
    with open(known_hosts, "w") as f:
        f.write("\n".join(lines) + "\n")
    blocks = [f"Host {h['name']} {h['fqdn']}\n    HostName {h['ipv4']}\n" for h in state["hosts"]]
    # ssh matches Host patterns against the name it was given, so every name and address is listed
    patterns = " ".join(n for h in state["hosts"] for n in (h["name"], h["fqdn"], h["ipv4"], h["ipv6"]))
    blocks.append(
        f"Host {patterns}\n"
        "    User root\n"
        f"    IdentityFile {key}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        "    StrictHostKeyChecking yes\n"
        "    GlobalKnownHostsFile /dev/null\n"
        f"    ProxyCommand ip netns exec {netns_name()} nc %h %p\n"
    )
    with open(config, "w") as f:
        f.write("\n".join(blocks))
    state["ssh"] = {"user": "root", "key": key, "known_hosts": known_hosts, "config": config}


# --- the commands -----------------------------------------------------------------------------


def up(
    topology_name: str = "single",
    zimbra_hosts: int = 1,
    zmprov_delay: float = 0.0,
    timeout: float = 120,
    proxies: int = 1,
    mailboxes: int = 2,
    listen: str = "roles",
    log=sys.stderr,
    firewalld: str = "",
) -> dict:
    require_root_and_tools()
    specs = topology.hosts_for(topology_name, zimbra_hosts, proxies, mailboxes)
    hosts = [h.to_dict() for h in topology.with_firewalld(specs, firewalld)]
    topology.check_listen_mode(listen)
    if zmprov_delay < 0:
        raise LabError("--zmprov-delay must be 0 or more seconds")
    state = load_state()
    if state:
        same_shape = [(h["name"], h.get("firewall")) for h in state["hosts"]] == [
            (h["name"], h["firewall"]) for h in hosts
        ]
        if state.get("status") == "up" and same_shape and all(h["running"] for h in status()["hosts"]):
            print("lab: already up", file=log)
            return state
        raise LabError("a lab of another shape, or a partly started one, exists: run `python -m lab down` first")
    if netns_exists(netns_name()):
        raise LabError(
            f"network namespace {netns_name()} exists but no lab owns it: run `python -m lab down` or set LAB_NETNS"
        )
    clash = topology.overlapping_networks(machine_networks())
    if clash:
        raise LabError(f"the machine's own network {clash[0]} overlaps the lab's addresses")
    rootfs.build(log=log)
    started = time.monotonic()
    state = {
        "status": "starting",
        "netns": netns_name(),
        "topology": topology_name,
        "hosts": hosts,
        "zmprov_delay": zmprov_delay,
        "listen": listen,
        "ldap_password": secrets.token_urlsafe(18),
    }
    save_state(state)
    try:
        create_network()
        key = client_key()
        layers = build_layers()
        prepared = [prepare_host(h, state, key, layers) for h in hosts]
        for host, (folder, lower) in zip(hosts, prepared, strict=True):
            host["pid"] = start_host(host, folder, lower)
            save_state(state)
            attach_host(host, host["pid"])
        wait_until_ready(hosts, timeout)
        write_ssh_files(state, key)
        state["status"] = "up"
        save_state(state)
    except BaseException:
        down(log=open(os.devnull, "w"))
        raise
    print(
        f"lab: {len(hosts)} hosts up in {time.monotonic() - started:.1f} s, "
        f"{memory_in_use(state) / 1024:.0f} MiB in use (PSS)",
        file=log,
    )
    return state


def running_cluster():
    state = load_state()
    if not state or state.get("status") != "up":
        raise LabError("the lab is not up: run `python -m lab up --topology cluster`")
    if state["topology"] != "cluster":
        raise LabError(
            "nodes are added to and removed from a cluster: this lab is a "
            f"{state['topology']} topology (python -m lab up --topology cluster)"
        )
    return state


def add(name: str, roles: list[str], timeout: float = 120, log=sys.stderr) -> None:
    """Start one more Zimbra node in the running cluster. Its server entry is created first, from the LDAP
    master (`zmprov -l cs`), as an admin does before installing a node behind host firewalls: the peers'
    firewalls can then be opened for it before it needs them. Every node learns its name (/etc/hosts) and
    the proxies regenerate their view of memcached, as zmconfigd does."""
    require_root_and_tools()
    state = running_cluster()
    existing = [topology.host_from_dict(h) for h in state["hosts"]]
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,11}", name):
        raise LabError(f"node name {name!r}: lower-case letters, digits and '-', at most 12 characters")
    if any(h.name == name for h in existing):
        raise LabError(f"the lab has a host {name} already")
    zimbra_nodes = [h for h in existing if h.role == "zimbra"]
    if len(zimbra_nodes) >= topology.MAX_CLUSTER_NODES:
        raise LabError(f"the cluster has {topology.MAX_CLUSTER_NODES} Zimbra nodes already")
    if "ldap" in roles:
        raise LabError("the lab's cluster has one LDAP master; add nodes of other roles")
    node = topology.Host(
        name, "zimbra", *topology.server_address(topology.free_server_index(existing)), topology.services_for(roles)
    )
    host = node.to_dict()
    started = time.monotonic()
    master = next(h for h in state["hosts"] if "ldap" in h.get("services", ()))
    entry = topology.server_entry(node)
    pairs = [word for name, values in entry["attrs"].items() for value in values for word in (name, value)]
    zmprov_as_zimbra(master["name"], "-l", "cs", node.fqdn, *pairs)
    state["hosts"].insert(len(zimbra_nodes), host)
    save_state(state)
    try:
        folder, lower = prepare_host(host, state, client_key(), layer_paths())
        host["pid"] = start_host(host, folder, lower)
        save_state(state)
        attach_host(host, host["pid"])
        wait_until_ready([host], timeout)
        save_state(state)
    except BaseException:
        stop_hosts([host])
        state["hosts"].remove(host)
        save_state(state)
        zmprov_as_zimbra(master["name"], "-l", "ds", node.fqdn)
        raise
    peers_changed(state, key=client_key())
    print(f"lab: {name} ({' '.join(roles)}) up and registered in {time.monotonic() - started:.1f} s", file=log)


def remove(name: str, log=sys.stderr) -> None:
    """Unregister a node from the cluster's LDAP (`zmprov ds`), stop it, and forget it everywhere."""
    require_root_and_tools()
    state = running_cluster()
    host = next((h for h in state["hosts"] if h["name"] == name), None)
    if host is None or host["role"] != "zimbra":
        raise LabError(f"no Zimbra node {name!r} in the cluster")
    if "ldap" in host["services"]:
        raise LabError("the LDAP master cannot be removed")
    master = next(h for h in state["hosts"] if "ldap" in h.get("services", ()))
    zmprov_as_zimbra(master["name"], "-l", "ds", host["fqdn"])
    stop_hosts([host])
    state["hosts"].remove(host)
    save_state(state)
    shutil.rmtree(os.path.join(state_dir(), "hosts", name), ignore_errors=True)
    peers_changed(state, key=client_key())
    print(f"lab: {name} removed", file=log)


def zmprov_as_zimbra(host_name, *args):
    argv = exec_argv(host_name, ["runuser", "-u", "zimbra", "--", "/opt/zimbra/bin/zmprov", *args])
    result = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, LAB_ZMPROV_CALLER="lab"))
    if result.returncode:
        raise LabError(f"zmprov {' '.join(args)} on {host_name}: {result.stderr.strip()}")


def peers_changed(state, key):
    """After a node came or went: every host's /etc/hosts, the proxies' nginx.conf.memcache, SSH files."""
    hosts_file = topology.render_hosts_file([topology.host_from_dict(h) for h in state["hosts"]])
    for host in state["hosts"]:
        argv = exec_argv(host["name"], ["sh", "-c", "cat > /etc/hosts"])
        run(argv, input=hosts_file)
    for host in state["hosts"]:
        if "proxy" in host.get("services", ()):
            run(exec_argv(host["name"], ["runuser", "-u", "zimbra", "--", "/opt/zimbra/libexec/zmproxyconfgen"]))
    write_ssh_files(state, key)
    save_state(state)


def stop_hosts(hosts, timeout=10):
    """SIGKILL each host's unshare (it ignores SIGTERM; its --kill-child then takes the host's whole pid
    namespace down), then wait until every process is gone."""
    pids = [h["pid"] for h in hosts if h.get("pid")]
    for pid in pids:
        if process_alive(pid, "unshare"):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    for pid in [*pids, *[h.get("init_pid") for h in hosts if h.get("init_pid")]]:
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if process_alive(pid):
            raise LabError(f"process {pid} of the lab did not stop")


def process_tree(pid):
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    pids += process_tree(int(child))
    except FileNotFoundError:
        pass
    return pids


def memory_in_use(state):
    """KiB of proportional set size of every process of every host (shared pages counted once)."""
    total = 0
    for host in state["hosts"]:
        for pid in process_tree(host["pid"]):
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def down(log=sys.stderr) -> None:
    require_root_and_tools()
    state = load_state() or {"hosts": []}
    stop_hosts(state["hosts"] + [{"pid": pid} for pid in stray_host_pids()])
    if netns_exists(netns_name()):
        run(["ip", "netns", "del", netns_name()])
    release_netns_mount()
    shutil.rmtree(state_dir(), ignore_errors=True)
    print("lab: down", file=log)


def stray_host_pids():
    """Host processes of this lab's state folder that no state file lists (a crashed `up`)."""
    marker = os.path.join(state_dir(), "hosts") + "/"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[0] == b"unshare" and any(a.decode(errors="replace").startswith(marker) for a in argv):
            pids.append(int(entry))
    return pids


def release_netns_mount():
    """`ip netns add` bind-mounts /run/netns; drop it once no namespace is left in it."""
    if not os.path.isdir("/run/netns") or os.listdir("/run/netns"):
        return
    # a bind mount of the folder onto itself, which os.path.ismount cannot see: ask the mount table
    with open("/proc/self/mountinfo") as f:
        mounted = any(line.split()[4] == "/run/netns" for line in f)
    if mounted:
        subprocess.run(["umount", "/run/netns"], capture_output=True)


def status() -> dict:
    state = load_state()
    if not state:
        return {"status": "down", "hosts": []}
    hosts = []
    for host in state["hosts"]:
        running = bool(host.get("pid")) and process_alive(host["pid"], "unshare")
        entry = {k: host[k] for k in ("name", "role", "fqdn", "ipv4", "ipv6")}
        entry["roles"] = host.get("services", [])
        if host["role"] == "zimbra":
            entry["firewall"] = host.get("firewall", "ufw")
        entry["running"] = running
        entry["ssh_target"] = f"root@{host['ipv4']}"
        hosts.append(entry)
    return {
        "status": state.get("status"),
        "netns": state.get("netns"),
        "topology": state.get("topology"),
        "zmprov_delay": state.get("zmprov_delay"),
        "listen": state.get("listen"),
        "networks": {name: {"ipv4": v4, "ipv6": v6} for name, (v4, v6) in topology.SUBNETS.items()},
        "controller": {"ipv4": topology.CONTROLLER[0], "ipv6": topology.CONTROLLER[1]},
        "ssh": state.get("ssh"),
        "hosts": hosts,
    }


def exec_argv(name: str, command: list[str]) -> list[str]:
    """The argv that runs `command` inside host `name`'s namespaces and root."""
    state = load_state()
    if not state or state.get("status") != "up":
        raise LabError("the lab is not up: run `python -m lab up`")
    host = next((h for h in state["hosts"] if h["name"] == name), None)
    if host is None:
        raise LabError(f"no lab host {name!r}; hosts: {', '.join(h['name'] for h in state['hosts'])}")
    if not host.get("init_pid") or not process_alive(host["init_pid"]):
        raise LabError(f"lab host {name} is not running")
    if not command:
        raise LabError("no command given: python -m lab exec HOST -- CMD…")
    return [
        "nsenter",
        "-t",
        str(host["init_pid"]),
        "-m",
        "-u",
        "-i",
        "-n",
        "-p",
        "-r",
        "-w",
        "env",
        "-i",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/root",
        "LC_ALL=C",
        "TERM=" + os.environ.get("TERM", "dumb"),
        *command,
    ]
