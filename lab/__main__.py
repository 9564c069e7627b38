"""python -m lab build|up|down|status|exec|flows|add|remove — the rehearsal lab's command line."""

import argparse
import json
import os
import sys

from . import box, flows, rootfs, runtime, topology, vms
from .errors import LabError


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m lab", description="zimbra-firewall rehearsal lab")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or reuse) the cached host root filesystem")
    build.add_argument("--force", action="store_true", help="rebuild even when a cached one matches")
    up = sub.add_parser("up", help="start the lab's hosts")
    up.add_argument(
        "--topology",
        default="single",
        choices=topology.TOPOLOGIES,
        help="single: each Zimbra host a complete single server; cluster: ldap, mta, proxies and "
        "mailboxes of one install (default: single)",
    )
    up.add_argument(
        "--zimbra-hosts", type=int, default=1, metavar="N", help="single topology: single servers in all (default 1)"
    )
    up.add_argument("--proxies", type=int, default=1, metavar="N", help="cluster: proxy + memcached nodes (default 1)")
    up.add_argument("--mailboxes", type=int, default=2, metavar="N", help="cluster: mailbox nodes (default 2)")
    up.add_argument(
        "--listen",
        default="roles",
        choices=topology.LISTEN_MODES,
        help="roles: each node listens on its roles' ports, bound as Zimbra binds them; all: every "
        "catalogue port on every address of every node (default: roles)",
    )
    up.add_argument(
        "--zmprov-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="sleep in every zmprov call, as Zimbra's JVM start-up does (default 0)",
    )
    up.add_argument(
        "--firewalld",
        default="",
        metavar="HOSTS",
        help="Zimbra hosts (comma-separated, or `all`) that run firewalld, as RHEL-family servers do, instead of ufw",
    )
    up.add_argument("--timeout", type=float, default=120, help="seconds to wait for the hosts")
    sub.add_parser("down", help="stop every host and remove every trace of the lab")
    status = sub.add_parser("status", help="show the hosts")
    status.add_argument("--json", action="store_true")
    flows_ = sub.add_parser(
        "flows", help="run every flow between the hosts: the legitimate ones and those that must fail"
    )
    flows_.add_argument("--json", action="store_true")
    flows_.add_argument("--all", action="store_true", help="list every flow, not only the failures")
    flows_.add_argument(
        "--strict", action="store_true", help="exit non-zero when a flow that must fail gets through, too"
    )
    flows_.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="SOURCE:DESTINATION:PORT/PROTO",
        help="a flow the site itself allows (the deploy's extra_allows), judged as legitimate; lab host names",
    )
    flows_.add_argument(
        "--timeout",
        type=float,
        default=flows.TIMEOUT,
        metavar="SECONDS",
        help=f"silence that counts as filtered (default {flows.TIMEOUT})",
    )
    add = sub.add_parser("add", help="start one more Zimbra node in the cluster and register it in LDAP")
    add.add_argument("name")
    add.add_argument("--roles", required=True, help=f"comma-separated, of: {', '.join(topology.ROLE_SERVICES)}")
    remove = sub.add_parser("remove", help="unregister a node from the cluster's LDAP and stop it")
    remove.add_argument("name")
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


PRINCIPAL_ROLES = ("ldap", "mta", "proxy", "memcached", "mailbox", "logger", "dnscache")


def flows_command(args):
    runtime.require_root_and_tools()
    if not 0 < args.timeout <= 60:
        raise LabError("--timeout must be more than 0 and at most 60 seconds")
    status = runtime.status()
    site = [flows.site_flow(spec, status["hosts"]) for spec in args.allow]
    report = flows.run(status, runtime.exec_argv, args.timeout, site)
    print(json.dumps(report, indent=1) if args.json else flows.render(report, args.all))
    failed = report["summary"]["broken"] or (args.strict and report["summary"]["exposed"])
    return 1 if failed else 0


def print_status(info):
    if info["status"] == "down":
        print("lab: down")
        return
    print(f"lab: {info['status']} ({info['topology']}, namespace {info['netns']})")
    for host in info["hosts"]:
        state = "running" if host["running"] else "STOPPED"
        roles = ",".join(r for r in host.get("roles", []) if r in PRINCIPAL_ROLES) or host["role"]
        firewall = host.get("firewall", "")
        print(f"  {host['name']:<12} {roles:<30} {host['ipv4']:<12} {host['ipv6']:<24} {firewall:<10} {state}")


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "build":
            runtime.require_root_and_tools()
            print(rootfs.build(force=args.force))
        elif args.command == "up":
            runtime.up(
                args.topology,
                args.zimbra_hosts,
                args.zmprov_delay,
                args.timeout,
                args.proxies,
                args.mailboxes,
                args.listen,
                firewalld=args.firewalld,
            )
            print_status(runtime.status())
        elif args.command == "flows":
            return flows_command(args)
        elif args.command == "add":
            runtime.add(args.name, [r.strip() for r in args.roles.split(",") if r.strip()])
            print_status(runtime.status())
        elif args.command == "remove":
            runtime.remove(args.name)
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
