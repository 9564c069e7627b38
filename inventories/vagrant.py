"""The Vagrantfile's Zimbra VMs that are running (`vagrant up` first), read from `vagrant ssh-config`.

    vagrant up && pyinfra -y inventories/vagrant.py deploy.py

Run it where the VMs' addresses are reachable: on a laptop, anywhere; on a machine whose libvirt lives
in the lab's namespace, through `python -m lab vms run -- …` (see the README).
"""

import os
import subprocess
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _vagrant(*args):
    try:
        result = subprocess.run(["vagrant", *args], cwd=_REPO, capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("vagrant is not installed (https://developer.hashicorp.com/vagrant, or apt-get install vagrant)")
    if result.returncode:
        sys.exit(f"vagrant {' '.join(args)} failed: {result.stderr.strip()[-800:]}")
    return result.stdout


def _ssh_data(name):
    config = dict(line.strip().split(" ", 1) for line in _vagrant("ssh-config", name).splitlines() if line.strip())
    return {
        "ssh_hostname": config["HostName"],
        "ssh_port": int(config["Port"]),
        "ssh_user": config["User"],
        "ssh_key": config["IdentityFile"].strip('"'),
        # as `vagrant ssh` does: a rehearsal VM gets new host keys each time it is created
        "ssh_known_hosts_file": os.devnull,
        "ssh_strict_host_key_checking": "no",
    }


_status = [line.split(",", 3) for line in _vagrant("status", "--machine-readable").splitlines()]
_running = [fields[1] for fields in _status if len(fields) == 4 and fields[2:] == ["state", "running"]]
if not any(name.startswith("zimbra") for name in _running):
    sys.exit("no Zimbra VM is running: `vagrant up` first (see the Vagrantfile)")

zimbra_servers = [(name, _ssh_data(name)) for name in _running if name.startswith("zimbra")]
