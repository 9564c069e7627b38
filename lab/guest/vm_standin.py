"""Provision the lab's Zimbra stand-in into a Vagrant VM (Debian or Ubuntu with systemd), so a firewall
rehearsal needs no Zimbra licence: the fake zmprov, zmlocalconfig, zmhostname and zmmemcachedctl over a
real slapd and memcached, and listeners on every Zimbra port, started at boot by two systemd units.
Idempotent. Runs as root inside the VM, from the lab folder the Vagrantfile uploads:

    python3 /tmp/zfw-lab/lab/guest/vm_standin.py --fqdn zimbra.zfw.test [--zmprov-delay 0]
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from lab import runtime, topology  # noqa: E402

PACKAGES = ["slapd", "ldap-utils", "memcached", "ufw", "openssl", "python3", "python3-yaml", "netcat-openbsd"]
ZIMBRA_HOME = "/opt/zimbra"
CONFIG = "/etc/zimbra-standin.json"
TOOLS = ("bin/zmprov", "bin/zmlocalconfig", "bin/zmhostname", "bin/zmmemcachedctl", "libexec/zmproxyconfgen")

STANDIN_UNIT = f"""[Unit]
Description=Zimbra stand-in of zimbra-firewall's lab (slapd, memcached)
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/python3 -c "import json, sys; sys.path.insert(0, '{ZIMBRA_HOME}/common/lib/lab'); \
import standin; standin.provision(json.load(open('{CONFIG}')))"

[Install]
WantedBy=multi-user.target
"""

LISTENERS_UNIT = f"""[Unit]
Description=Listeners on Zimbra's ports for zimbra-firewall's lab
After=zimbra-standin.service

[Service]
ExecStart=/usr/bin/python3 -c "import json, sys; sys.path.insert(0, '/opt/lab'); import listeners; \
listeners.serve(listeners.open_listeners(json.load(open('{CONFIG}'))['listen'], skip_busy=True))"
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


def run(*cmd, **kwargs):
    subprocess.run(cmd, check=True, **kwargs)


def install_packages():
    missing = [p for p in PACKAGES if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode]
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run("debconf-set-selections", input=b"slapd slapd/no_configuration boolean true\n")
    run("apt-get", "update", "-q", env=env)
    run("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env)


def install_standin(fqdn):
    guest = HERE
    lib = f"{ZIMBRA_HOME}/common/lib/lab"
    os.makedirs(lib, exist_ok=True)
    shutil.copy(os.path.join(guest, "zimbra/common/lib/lab/standin.py"), lib)
    shutil.copy(runtime.LDIF_PARSER, os.path.join(lib, "ldif.py"))
    for tool in TOOLS:
        os.makedirs(os.path.dirname(f"{ZIMBRA_HOME}/{tool}"), exist_ok=True)
        shutil.copy(os.path.join(guest, "zimbra/bin/zmtool"), f"{ZIMBRA_HOME}/{tool}")
        os.chmod(f"{ZIMBRA_HOME}/{tool}", 0o755)
    os.makedirs(f"{ZIMBRA_HOME}/common/bin", exist_ok=True)
    if not os.path.lexists(f"{ZIMBRA_HOME}/common/bin/ldapsearch"):
        os.symlink("/usr/bin/ldapsearch", f"{ZIMBRA_HOME}/common/bin/ldapsearch")
    os.makedirs("/opt/lab", exist_ok=True)
    for script in ("listeners.py", "probe.py"):
        shutil.copy(os.path.join(guest, script), "/opt/lab")
    conf = f"{ZIMBRA_HOME}/conf"
    if not os.path.exists(f"{conf}/ca/ca.pem"):
        os.makedirs(conf, exist_ok=True)
        runtime.make_ca(f"{conf}/ca")
        runtime.host_certificate({"fqdn": fqdn}, f"{conf}/ca", conf)


def allow_slapd_outside_its_apparmor_profile():
    """Ubuntu confines slapd to Debian's paths; the stand-in's slapd reads /opt/zimbra as Zimbra's does."""
    profile = "/etc/apparmor.d/usr.sbin.slapd"
    if os.path.exists(profile):
        os.makedirs("/etc/apparmor.d/disable", exist_ok=True)
        if not os.path.lexists("/etc/apparmor.d/disable/usr.sbin.slapd"):
            os.symlink(profile, "/etc/apparmor.d/disable/usr.sbin.slapd")
        subprocess.run(["apparmor_parser", "-R", profile], capture_output=True)


def resolve_fqdn_locally(fqdn):
    """localconfig's LDAP URL names the server: it must resolve on the VM itself."""
    with open("/etc/hosts") as f:
        hosts = f.read()
    if fqdn not in hosts.split():
        with open("/etc/hosts", "a") as f:
            f.write(f"127.0.1.1 {fqdn} {fqdn.split('.')[0]}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fqdn", required=True)
    parser.add_argument("--zmprov-delay", type=float, default=0.0)
    args = parser.parse_args()
    install_packages()
    # the distribution's own slapd and memcached would hold the stand-in's ports
    subprocess.run(["systemctl", "disable", "--now", "slapd", "memcached"], capture_output=True)
    allow_slapd_outside_its_apparmor_profile()
    install_standin(args.fqdn)
    resolve_fqdn_locally(args.fqdn)
    name, _, domain = args.fqdn.partition(".")
    if domain != topology.DOMAIN:
        sys.exit(f"--fqdn must be NAME.{topology.DOMAIN}, not {args.fqdn}")
    # a single server with every role; the password counts only at the first provisioning. Its addresses
    # and the site's management subnets (group_data/vagrant.py) are not the lab's: its LDAP lets loopback
    # alone relay (zimbraMtaMyNetworks, narrower than any fix the audit gives) and names no proxy address,
    # and the audit sees none to trust (the name resolves to 127.0.1.1 alone: resolve_fqdn_locally)
    server = topology.Host(name, "zimbra", "", "", topology.services_for(topology.SINGLE_SERVER_ROLES))
    config = topology.host_config(server, [server], args.zmprov_delay, secrets.token_urlsafe(18), management=())
    with open(CONFIG, "w") as f:
        json.dump(config, f)
    os.chmod(CONFIG, 0o600)
    for name, text in (("zimbra-standin", STANDIN_UNIT), ("zimbra-listeners", LISTENERS_UNIT)):
        with open(f"/etc/systemd/system/{name}.service", "w") as f:
            f.write(text)
    run("systemctl", "daemon-reload")
    run("systemctl", "enable", "--now", "zimbra-standin.service", "zimbra-listeners.service")
    print(f"Zimbra stand-in ready as {args.fqdn}")


if __name__ == "__main__":
    main()
