"""firewalld's read, rendering and planning, on output captured from firewalld 1.3.3 in a lab host (RHEL's
default zone: ssh, dhcpv6-client, cockpit) and on hostile configuration files."""

import ipaddress
import os
import xml.etree.ElementTree as ElementTree

import pytest
from test_policy import policy

from zimbra_firewall.access import Port, Restriction
from zimbra_firewall.firewalld import (
    Grant,
    Service,
    Wanted,
    object_name,
    parse_state,
    plan,
    plan_zone,
    render_policy,
    render_service,
)
from zimbra_firewall.firewalld_policy import arguments
from zimbra_firewall.safety import chosen_firewall, parse_preflight, preflight_problem

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "firewalld")
LAB = {"management_subnets": ["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"]}


def state(name):
    with open(os.path.join(FIXTURES, f"{name}.txt")) as f:
        return parse_state(f.read())


def lab_plan(name, **settings):
    return plan(state(name), **arguments(policy(**LAB, **settings)))


def test_the_read_of_a_fresh_rhel_like_host():
    fresh = state("state-fresh")
    assert fresh.running and fresh.backend == "nftables" and not fresh.applied and not fresh.problem
    assert fresh.default_zone == "public" and fresh.dispatched == ("public",) and fresh.judged_zones == ("public",)
    assert fresh.zones["public"][0] == "/usr/lib/firewalld/zones/public.xml"
    assert fresh.service_ports("ssh") == (Port(22, 22, "tcp"),)
    assert fresh.service_ports("cockpit") == (Port(9090, 9090, "tcp"),)
    assert fresh.service_ports("no-such-service") is None  # unknown: taken as every port
    assert list(fresh.policies) == ["allow-host-ipv6"]  # shipped: ICMPv6 neighbour discovery only
    assert not lab_plan("state-fresh").problems


def test_a_fresh_host_gets_services_the_owned_policy_and_its_zone_pruned():
    found = lab_plan("state-fresh")
    assert sorted(found.writes) == [
        "/etc/firewalld/policies/zimbra-firewall.xml",
        "/etc/firewalld/services/zimbra-local.xml",
        "/etc/firewalld/services/zimbra-public.xml",
        "/etc/firewalld/zones/public.xml",
    ]
    (zone,) = [zone for zone in found.zones if zone.kind == "zone"]
    # SSH open to everyone widens the policy (22 from the management subnets only); cockpit is named for removal
    assert [(entry.element, ports) for entry, ports in zone.removed] == [
        ('<service name="ssh" />', (Port(22, 22, "tcp"),)),
        ('<service name="cockpit" />', ()),
    ]
    assert [entry.element for entry in zone.kept] == ['<service name="dhcpv6-client" />']
    assert zone.target == ("default", "DROP")
    public = ElementTree.fromstring(found.writes["/etc/firewalld/zones/public.xml"])
    assert [e.get("name") for e in public.iter("service")] == ["dhcpv6-client"] and public.find("forward") is not None
    owned = ElementTree.fromstring(found.writes["/etc/firewalld/policies/zimbra-firewall.xml"])
    assert (owned.get("target"), owned.get("priority")) == ("CONTINUE", "-1")
    assert [e.get("name") for e in owned.findall("service")] == ["zimbra-public"]
    rules = [
        (r.get("family"), r.find("source").get("address"), ElementTree.tostring(r[1], encoding="unicode"))
        for r in owned.findall("rule")
    ]
    assert rules == [
        ("ipv4", "10.77.1.0/24", '<port port="22" protocol="tcp" />'),
        ("ipv6", "fd5a:7e3c:91b2:1::/64", '<port port="22" protocol="tcp" />'),
        ("ipv4", "10.77.1.0/24", '<service name="zimbra-local" />'),
        ("ipv6", "fd5a:7e3c:91b2:1::/64", '<service name="zimbra-local" />'),
    ]
    local = ElementTree.fromstring(found.writes["/etc/firewalld/services/zimbra-local.xml"])
    assert [p.get("port") for p in local.iter("port")] == ["80", "110", "143", "389", "7025", "7071", "7073"]


def test_a_deployed_host_has_nothing_to_change_and_runs_what_was_applied():
    deployed = state("state-deployed")
    assert deployed.applied and not lab_plan("state-deployed").changes


def test_a_runtime_only_change_is_seen_though_every_file_is_as_wanted():
    # `firewall-cmd --add-port=7025/tcp` without --permanent: the files say nothing of it, the kernel does
    drifted = state("state-drift-runtime")
    assert not lab_plan("state-drift-runtime").changes and not drifted.applied


def test_permanent_drift_goes_where_it_widens_and_the_rest_is_listed():
    found = lab_plan("state-drift-permanent")
    (zone,) = [zone for zone in found.zones if zone.kind == "zone"]
    assert list(found.writes) == ["/etc/firewalld/zones/public.xml"]
    removed = {entry.element: ports for entry, ports in zone.removed}
    assert removed['<service name="http" />'] == (Port(80, 80, "tcp"),)  # local-only, to everyone
    seven = '<rule family="ipv4"><port port="7071" protocol="tcp" /><accept /></rule>'
    assert removed[seven] == (Port(7071, 7071, "tcp"),)
    # everything to a subnet that is no management subnet: every restricted port
    blanket = removed['<rule family="ipv4"><source address="10.77.2.0/24" /><accept /></rule>']
    assert {Port(389, 389, "tcp"), Port(11211, 11211, "tcp"), Port(22, 22, "tcp")} <= set(blanket)
    assert [entry.element for entry in zone.kept] == [
        '<service name="dhcpv6-client" />',
        '<port port="9100" protocol="tcp" />',
        '<rule family="ipv4"><source address="10.77.1.0/24" /><port port="5666" protocol="tcp" /><accept /></rule>',
    ]
    purged = next(z for z in lab_plan("state-drift-permanent", purge_unmanaged_rules=True).zones if z.kind == "zone")
    assert len(purged.purged) == 3 and not purged.kept


def test_a_service_of_this_deploy_no_longer_wanted_is_removed_and_an_admins_is_not():
    deployed = state("state-deployed")
    admins = ("/etc/firewalld/services/backup.xml", render_service(Service("backup", ())).replace("zimbra", "x"))
    services = {
        **deployed.services,
        "zimbra-old": (
            "/etc/firewalld/services/zimbra-old.xml",
            "<!-- managed by zimbra-firewall: edits are replaced on the next run --><service/>",
        ),
        "backup": admins,
    }
    found = plan(type(deployed)(**{**deployed.__dict__, "services": services}), **arguments(policy(**LAB)))
    assert found.removes == ("/etc/firewalld/services/zimbra-old.xml",)


MGMT = (ipaddress.ip_network("10.77.1.0/24"),)
RESTRICTED = (Restriction((Port(22, 22, "tcp"), Port(7071, 7071, "tcp")), MGMT),)


def zone_with(*elements):
    body = "".join(elements)
    fresh = state("state-fresh")
    zones = {**fresh.zones, "public": ("/etc/firewalld/zones/public.xml", f"<zone>{body}</zone>")}
    from_53 = '<service><source-port port="53" protocol="tcp"/></service>'
    services = {**fresh.services, "from-53": ("/etc/firewalld/services/from-53.xml", from_53)}
    return type(fresh)(**{**fresh.__dict__, "zones": zones, "services": services})


@pytest.mark.parametrize(
    "element",
    [
        '<service name="unknown-service"/>',  # no definition: may open anything
        '<protocol value="tcp"/>',
        '<source-port port="53" protocol="tcp"/>',  # every port to whoever sends from 53
        '<rule family="ipv4"><source address="10.77.1.0/24" invert="true"/><accept/></rule>',
        '<rule family="ipv4"><source ipset="friends"/><port port="7071" protocol="tcp"/><accept/></rule>',
        '<rule family="ipv4"><source address="10.0.0.0/8"/><port port="22" protocol="tcp"/><accept/></rule>',
        '<rule><service name="ssh"/><accept/></rule>',
        '<port port="7000-7100" protocol="tcp"/>',
        '<port port="7100-7000" protocol="tcp"/>',  # firewalld reads it as 7000-7100
        '<forward-port port="2222" protocol="tcp" to-port="22"/>',  # redirected in: ct status dnat accept
        '<rule family="ipv4"><forward-port port="8000" protocol="tcp" to-port="7071"/></rule>',
        # to an address the planner cannot tell from this host's own: judged by the port, so it goes
        '<forward-port port="7071" protocol="tcp" to-addr="192.0.2.7"/>',
        '<service name="from-53"/>',  # a service that opens every port to whoever sends from 53
        '<rule><service name="cockpit"/><accept/></rule>',  # named for removal, in a rich rule too
    ],
)
def test_hostile_or_wide_zone_entries_go(element):
    found = plan_zone(zone_with(element), "public", Wanted("DROP", RESTRICTED, ("cockpit",)))
    assert len(found.removed) == 1 and not found.kept, found
    assert "<zone" in found.text and element.split()[0] not in found.text


@pytest.mark.parametrize(
    "element",
    [
        '<rule family="ipv4"><source address="10.77.1.0/25"/><port port="7071" protocol="tcp"/><accept/></rule>',
        '<rule family="ipv4"><port port="7071" protocol="tcp"/><reject/></rule>',  # lets nothing in
        '<port port="9100" protocol="udp"/>',
        '<forward-port port="8080" protocol="tcp" to-port="9100"/>',
        '<interface name="eth0"/>',
    ],
)
def test_narrower_entries_stay(element):
    found = plan_zone(zone_with(element), "public", Wanted("DROP", RESTRICTED))
    assert not found.removed and "<zone" in found.text  # only the target changes


def test_a_zone_file_that_does_not_parse_leaves_the_host_untouched():
    found = plan_zone(zone_with("<service name='x'>"), "public", Wanted("DROP", RESTRICTED))
    assert found.problem and found.text is None


def test_values_are_escaped_in_what_is_written():
    text = render_service(Service("x", (Port(1, 2, "tcp"),), short='a"<b>', description="c & d"))
    root = ElementTree.fromstring(text)
    assert (root.findtext("short"), root.findtext("description")) == ('a"<b>', "c & d")
    assert root.find("port").attrib == {"protocol": "tcp", "port": "1-2"}
    owned = ElementTree.fromstring(render_policy("p", [Grant(None, ports=(Port(25, 25, "tcp"),))], "<&>"))
    assert owned.findtext("description") == "<&>" and owned.find("port").get("port") == "25"


def test_object_names_are_plain_words():
    assert object_name("Zimbra Local") == "zimbra-local" and object_name("zimbra-firewall") == "zimbra-firewall"
    for hostile in ("../../etc/passwd", "$(id)", "a;b", "x" * 70, "   "):
        try:
            name = object_name(hostile)
        except ValueError:
            continue
        assert name.replace("-", "").isalnum() and len(name) <= 64


def test_the_firewall_is_chosen_from_what_the_host_runs():
    found = parse_preflight(open(os.path.join(FIXTURES, "preflight-zimbra.txt")).read())
    assert found["firewalld"] and found["firewalld_running"] and not found["ufw"]
    assert chosen_firewall("auto", found) == "firewalld"
    assert chosen_firewall("auto", {**found, "firewalld_running": False, "ufw": True}) == "ufw"
    assert chosen_firewall("ufw", found) == "ufw"
    lab = policy(**LAB)
    assert preflight_problem(lab, found, "firewalld") is None
    assert "ufw is not installed" in preflight_problem(lab, found, "ufw")
    assert "not running" in preflight_problem(lab, {**found, "firewalld_running": False}, "firewalld")
    assert "older than 0.9" in preflight_problem(lab, {**found, "firewalld_policies": False}, "firewalld")
    assert "outgoing" in preflight_problem(policy(**LAB, default_outgoing="deny"), found, "firewalld")


def with_files(base, **kinds):
    """`base` with more files: kinds zones/services/policies → {name: text}, as if under /etc/firewalld."""
    changes = {
        kind: {**getattr(base, kind), **{n: (f"/etc/firewalld/{kind}/{n}.xml", t) for n, t in files.items()}}
        for kind, files in kinds.items()
    }
    return type(base)(**{**base.__dict__, **changes})


def test_a_zone_that_accepts_everything_refuses_the_host_unless_it_is_listed():
    """Docker's or libvirt's zone (an interface of its own, target ACCEPT): only the default zone takes the
    policy's target; one that accepts everything is refused, or kept as it is when the admin lists it."""
    docker = '<zone target="ACCEPT"><interface name="docker0"/><service name="ssh"/></zone>'
    both = with_files(state("state-fresh"), zones={"docker": docker})
    both = type(both)(**{**both.__dict__, "dispatched": ("docker", "public")})
    refused = plan(both, **arguments(policy(**LAB)))
    assert refused.problems == (
        "the zone docker accepts every packet it gets (target ACCEPT), whatever this deploy allows: change its "
        "target, or list it in firewalld_accept_zones (a Docker or libvirt bridge's zone)",
    )
    found = plan(both, **arguments(policy(**LAB, firewalld_accept_zones=["docker"])))
    by_zone = {zone.zone: zone for zone in found.zones}
    assert not found.problems and by_zone["public"].target == ("default", "DROP")
    assert by_zone["docker"].target == ("", "")
    assert [entry.element for entry, _ in by_zone["docker"].removed] == ['<service name="ssh" />']
    assert 'target="ACCEPT"' in found.writes["/etc/firewalld/zones/docker.xml"]


def test_an_admins_policy_to_the_host_is_pruned_and_a_renamed_owned_one_removed():
    wide = (
        '<policy target="CONTINUE"><ingress-zone name="ANY"/><egress-zone name="HOST"/>'
        '<port port="7071" protocol="tcp"/><port port="9100" protocol="tcp"/></policy>'
    )
    between_zones = (
        '<policy><ingress-zone name="internal"/><egress-zone name="public"/><port port="7071" protocol="tcp"/></policy>'
    )
    old = render_policy("zfw-old", [Grant(None, ports=(Port(7071, 7071, "tcp"),))])
    host = with_files(state("state-deployed"), policies={"admin": wide, "forwarding": between_zones, "zfw-old": old})
    found = plan(host, **arguments(policy(**LAB)))
    (admin,) = [zone for zone in found.zones if zone.kind == "policy" and zone.removed]
    assert (
        admin.path == "/etc/firewalld/policies/admin.xml"
        and admin.zone == "admin"
        and [e.element for e, _ in admin.removed] == ['<port port="7071" protocol="tcp" />']
    )
    assert [e.element for e in admin.kept] == ['<port port="9100" protocol="tcp" />']
    assert found.removes == ("/etc/firewalld/policies/zfw-old.xml",)


def test_what_cannot_be_judged_refuses_the_host():
    fresh = state("state-fresh")
    iptables = type(fresh)(**{**fresh.__dict__, "backend": "iptables"})
    assert "iptables backend" in plan(iptables, **arguments(policy(**LAB))).problems[0]
    broken = with_files(fresh, zones={"public": "<zone><service name='x'>"})
    assert "does not parse" in plan(broken, **arguments(policy(**LAB))).problems[0]


def test_a_file_without_a_final_newline_stays_apart_from_the_next():
    from zimbra_firewall.firewalld import FILE_MARK, split_files

    text = f"{FILE_MARK} /a.xml\n<zone/>\n{FILE_MARK} /b.xml\n<zone>\n</zone>\n\n"
    assert split_files(text) == {"/a.xml": "<zone/>", "/b.xml": "<zone>\n</zone>\n"}


def test_the_plan_shown_refuses_what_the_preflight_refuses():
    from zimbra_firewall.plan import node_plan

    fresh = state("state-fresh")
    lab = policy(**LAB)
    lines = node_plan(fresh, lab, {}, firewall="firewalld")
    assert "firewall-cmd --reload   # after firewall-cmd --check-config" in lines
    iptables = type(fresh)(**{**fresh.__dict__, "backend": "iptables"})
    (line,) = node_plan(iptables, lab, {}, firewall="firewalld")
    assert line.startswith("nothing: the preflight refuses this host (firewalld runs its iptables backend")
    long_name = policy(**LAB, rule_comment="zimbra-firewall-production")
    assert "longer than firewalld's 17 characters" in node_plan(fresh, long_name, {}, firewall="firewalld")[0]
