"""python -m lab build|up|down|status|exec — the rehearsal lab's command line."""

import argparse
import json
import os
import sys

from . import box, rootfs, runtime, vms
from .errors import LabError


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m lab", description="zimbra-firewall rehearsal lab")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or reuse) the cached host root filesystem")
    build.add_argument("--force", action="store_true", help="rebuild even when a cached one matches")
    up = sub.add_parser("up", help="start the lab's hosts")
    up.add_argument("--topology", default="single", help="host layout (default: single)")
    up.add_argument("--zimbra-hosts", type=int, default=1, metavar="N", help="Zimbra hosts in all (default 1)")
    up.add_argument("--zmprov-delay", type=float, default=0.0, metavar="SECONDS",
                    help="sleep in every zmprov call, as Zimbra's JVM start-up does (default 0)")
    up.add_argument("--timeout", type=float, default=120, help="seconds to wait for the hosts")
    sub.add_parser("down", help="stop every host and remove every trace of the lab")
    status = sub.add_parser("status", help="show the hosts")
    status.add_argument("--json", action="store_true")
    exec_ = sub.add_parser("exec", help="run a command inside a host: exec HOST -- CMD…")
    exec_.add_argument("host")
    exec_.add_argument("cmd", nargs=argparse.REMAINDER)
    vm = sub.add_parser("vms", help="Vagrant VMs: libvirt in a namespace of its own (see lab/vms.py)")
    vm_sub = vm.add_subparsers(dest="vms_command", required=True)
    vm_sub.add_parser("box", help="build (or reuse) the cached Vagrant box")
    vm_sub.add_parser("up", help="start libvirt in the VM namespace and add the box to Vagrant")
    vm_sub.add_parser("down", help="destroy the VMs and stop everything in the VM namespace")
    vm_status = vm_sub.add_parser("status", help="show the namespace and the Vagrant machines")
    vm_status.add_argument("--json", action="store_true")
    vm_run = vm_sub.add_parser("run", help="run a command in the VM namespace: run -- CMD…")
    vm_run.add_argument("cmd", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def print_status(info):
    if info["status"] == "down":
        print("lab: down")
        return
    print(f"lab: {info['status']} ({info['topology']}, namespace {info['netns']})")
    for host in info["hosts"]:
        state = "running" if host["running"] else "STOPPED"
        print(f"  {host['name']:<12} {host['role']:<8} {host['ipv4']:<12} {host['ipv6']:<24} {state}")


def vms_command(args):
    if args.vms_command == "box":
        vms.require_root_and_tools()
        print(box.build())
    elif args.vms_command == "up":
        vms.up()
    elif args.vms_command == "down":
        vms.down()
    elif args.vms_command == "status":
        info = vms.status()
        print(json.dumps(info, indent=1) if args.json else f"VM lab: {info['status']} {info.get('machines', '')}")
    elif args.vms_command == "run":
        command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not command:
            raise LabError("nothing to run: python -m lab vms run -- CMD")
        return vms.run_argv(command).returncode
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "build":
            runtime.require_root_and_tools()
            print(rootfs.build(force=args.force))
        elif args.command == "up":
            runtime.up(args.topology, args.zimbra_hosts, args.zmprov_delay, args.timeout)
            print_status(runtime.status())
        elif args.command == "down":
            runtime.down()
        elif args.command == "status":
            info = runtime.status()
            print(json.dumps(info, indent=1)) if args.json else print_status(info)
        elif args.command == "vms":
            return vms_command(args)
        elif args.command == "exec":
            command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            argv = runtime.exec_argv(args.host, command)
            sys.stdout.flush()
            os.execvp(argv[0], argv)
    except LabError as error:
        print(f"lab: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
