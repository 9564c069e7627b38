"""group_data → Policy: defaults, the seed's options, and bad input refused with the key named."""

import os

import pytest

from facts.zimbra import ZimbraTopology
from zimbra_firewall.policy import PolicyError, Port, build_policy
from zimbra_firewall.settings import read_settings
from zimbra_firewall.ufw_policy import rule_arguments, ufw_restrictions, ufw_rules

MGMT = ["10.10.0.0/24", "fd00:10::/64"]
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "zimbra")


def topology(node="single-ldap"):
    """The topology read's output captured in the lab (tests/fixtures/zimbra/topology-<node>.txt), parsed
    as the fact parses it."""
    with open(os.path.join(FIXTURES, f"topology-{node}.txt")) as f:
        return ZimbraTopology().process(f.read().splitlines())


def policy(node="single-ldap", **overrides):
    return build_policy(read_settings({"management_subnets": MGMT, **overrides}), topology(node))


def ports(*numbers):
    return tuple(Port(n, n, "tcp") for n in numbers)


def test_default_policy_is_the_seed_table():
    p = policy()
    assert p.exposure["public"] == ports(25, 443, 465, 587, 993, 995)
    assert p.exposure["local-only"] == ports(80, 110, 143, 389, 7025, 7071, 7073)
    assert Port(11211, 11211, "tcp") in p.exposure["intra"]
    assert Port(10024, 10032, "tcp") in p.exposure["loopback-only"]
    assert [(x.name, x.ports) for x in p.profiles] == [
        ("Zimbra Public", "25,443,465,587,993,995/tcp"),
        ("Zimbra Local", "80,110,143,389,7025,7071,7073/tcp"),
    ]
    assert ufw_rules(p) == (
        ("allow", "from", "10.10.0.0/24", "to", "any", "port", "22", "proto", "tcp"),
        ("allow", "from", "fd00:10::/64", "to", "any", "port", "22", "proto", "tcp"),
        ("allow", "Zimbra Public"),
        ("allow", "from", "10.10.0.0/24", "to", "any", "app", "Zimbra Local"),
        ("allow", "from", "fd00:10::/64", "to", "any", "app", "Zimbra Local"),
    )
    assert rule_arguments(p)["owner"] == "zimbra-firewall"
    # local-only ports from the management subnets alone; intra (no zimbra_nodes) and loopback-only from nobody
    restrictions = ufw_restrictions(p)
    # SSH too: `allow OpenSSH` (to everyone) widens the policy
    assert restrictions.pop("22,80,110,143,389,7025,7071,7073/tcp") == MGMT
    assert list(restrictions.values()) == [[]]
    # memcached where nginx looks: the address zimbra.zfw.test resolves to on this host, and loopback
    assert p.memcached == {
        "zimbraMemcachedBindAddress": ["127.0.0.1", "fd5a:7e3c:91b2::a", "10.77.0.10"],
        "zimbraMemcachedClientServerList": ["127.0.0.1"],
    }
    assert p.warnings == ()


def test_a_proxy_less_server_serves_the_mail_ports_itself_with_the_same_exposure():
    """A single server installed without the proxy (hand-written read: mailboxd on zimbra-attrs.xml's
    defaults 80/443/110/995/143/993, no proxy, no memcached): the same doors as the proxy's, opened the same
    way; the overrides that move a proxy port move its stand-in too."""
    p = policy("single-no-proxy")
    assert p.exposure["public"] == ports(25, 443, 465, 587, 993, 995)
    assert p.exposure["local-only"] == ports(80, 110, 143, 389, 7025, 7071, 7073)
    assert [(x.name, x.ports) for x in p.profiles] == [
        ("Zimbra Public", "25,443,465,587,993,995/tcp"),
        ("Zimbra Local", "80,110,143,389,7025,7071,7073/tcp"),
    ]
    assert ufw_restrictions(p)["22,80,110,143,389,7025,7071,7073/tcp"] == MGMT
    assert "zimbraMemcachedBindAddress" not in p.memcached
    moved = policy("single-no-proxy", exposure_overrides={"local-only": ["993/tcp"], "public": ["80/tcp"]})
    assert moved.exposure["public"] == ports(25, 80, 443, 465, 587, 995)
    assert Port(993, 993, "tcp") in moved.exposure["local-only"]
    ranged = policy("single-no-proxy", exposure_overrides={"local-only": ["990:999/tcp"]})
    assert (
        Port(993, 993, "tcp") in ranged.exposure["local-only"]
        and Port(993, 993, "tcp") not in ranged.exposure["public"]
    )


def test_optional_groups_and_overrides_move_ports():
    p = policy(optional_groups=["chat", "admin_proxy"], exposure_overrides={"public": ["80/tcp"]})
    assert p.exposure["public"] == ports(25, 80, 443, 465, 587, 993, 995, 5222, 5223)
    assert Port(9071, 9071, "tcp") in p.exposure["local-only"]
    assert Port(80, 80, "tcp") not in p.exposure["local-only"]


def test_seed_profile_is_exact_and_warns():
    p = policy(profile_mode="seed")
    seed = next(x for x in p.profiles if x.name == "Zimbra")
    assert (seed.title, seed.ports) == (
        "Zimbra Collaboration Server",
        "25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071/tcp",
    )
    assert ("allow", "Zimbra") in ufw_rules(p)
    assert "opens local-only ports to everyone" in p.warnings[0] and "7071/tcp" in p.warnings[0]


def test_blanket_management_rule_is_an_option():
    p = policy(allow_management_all_ports=True)
    assert ("allow", "from", "10.10.0.0/24") in ufw_rules(p)
    assert not any("Zimbra Local" in r for r in ufw_rules(p))


def test_profiles_never_exceed_the_multiport_limit():
    many = [f"{n}/tcp" for n in range(20000, 20020)] + ["30000:30010/tcp"]
    p = policy(exposure_overrides={"intra": many}, zimbra_nodes=["10.20.0.0/24"])
    intra = next(x for x in p.profiles if x.name == "Zimbra Intra")
    for entry in intra.ports.split("|"):
        numbers = entry.split("/")[0].split(",")
        assert sum(2 if ":" in n else 1 for n in numbers) <= 15


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("management_subnets", ["10.10.0.1/24"], "host bits set"),
        ("management_subnets", ["10.10.0.0/33"], "not a subnet"),
        ("management_subnets", ["not-a-subnet"], "not a subnet"),
        ("management_subnets", "10.10.0.0/24", "must be a list"),
        ("management_subnets", [], "local-only ports"),
        ("management_subnets", ["0.0.0.0/0"], "everyone"),
        ("management_subnets", ["10.10.0.5"], "prefix length"),
        ("exposure_overrides", {"public": ["0/tcp"]}, "outside 1-65535"),
        ("exposure_overrides", {"public": ["65536"]}, "outside 1-65535"),
        ("exposure_overrides", {"public": ["abc"]}, "not a port"),
        ("exposure_overrides", {"public": ["8080/tcp"], "intra": ["8080/tcp"]}, "also listed"),
        ("exposure_overrides", {"secret": ["8080/tcp"]}, "unknown exposure class"),
        ("profile_names", {"public": "Zimbra/Public", "local-only": "L", "intra": "I"}, "profile name"),
        ("profile_names", {"public": "Z" * 65, "local-only": "L", "intra": "I"}, "64"),
        ("profile_names", {"public": "Same", "local-only": "Same", "intra": "I"}, "share"),
        ("profile_names", {"public": "Zimbra Local", "local-only": "zimbra-local", "intra": "I"}, "firewalld"),
        ("rule_comment", "x'; rm -rf /", "plain tag"),
        ("optional_groups", ["chatt"], "unknown group"),
        ("firewall_ssh_port", "22", "port number"),
        ("default_incoming", "drop", "deny, reject or allow"),
        ("memcached_bind_addresses", ["127.0.0.1; reboot"], "not an IP address"),
        ("memcached_client_servers", ["$(reboot)"], "host[:port]"),
        ("memcached_bind_addresses", "automatic", "'auto' or a list"),
        ("zimbra_read", "soap", "ldap"),
        ("purge_unmanaged_rules", "yes", "True or False"),
    ],
)
def test_bad_values_are_refused_naming_the_key(key, value, words):
    with pytest.raises(PolicyError) as error:
        policy(**{key: value})
    assert error.value.key.startswith(key) and words in str(error.value)


def test_misspelled_key_is_refused_with_a_suggestion():
    with pytest.raises(PolicyError, match="did you mean 'management_subnets'"):
        build_policy(read_settings({"management_subnets": MGMT, "managment_subnets": MGMT}), topology())


def test_foreign_keys_of_pyinfra_are_not_typos():
    assert policy(ssh_port=2222, _sudo=True, ssh_known_hosts_file="/x").ssh_port == 22


def test_memcached_can_be_left_as_zimbra_has_it():
    p = policy(manage_memcached=False)
    assert p.memcached == {} and p.warnings == ()
    assert ufw_rules(p) == ufw_rules(policy())  # its port's rules still follow the policy
