"""The kernel's netfilter tables beside ufw's files (zimbra_firewall/kernel.py), read from iptables-save output
captured in the lab (tests/fixtures/kernel/: a deployed single server, then the same with another program's
rules: an ACCEPT ahead of ufw's chains and one behind, a match the audit does not read, a DNAT published
through FORWARD), and from lines written for one question each."""

import ipaddress
import json
import os

import pytest

from zimbra_firewall.access import ANYWHERE
from zimbra_firewall.audit import Listener, Source, decide, observed_ruleset, removal, rule_text
from zimbra_firewall.kernel import family_view, file_rules, kernel_view, nft_tables, parse_rule
from zimbra_firewall.ufw import parse_status

HERE = os.path.dirname(os.path.abspath(__file__))
WORLD = Source(ipaddress.ip_network("0.0.0.0/0"), "world", "world")
ADMIN = Listener("tcp", "*", 7071, "java", 1)


def fixture(name: str) -> str:
    with open(os.path.join(HERE, "fixtures", "kernel", name)) as f:
        return f.read()


def ports(pairs):
    return [(view.action, [(p.first, p.proto) for p in view.ports or ()], words[2]) for view, words in pairs]


def test_a_deployed_ufw_host_has_nothing_besides_and_its_user_chain_is_its_file():
    view = family_view(4, fixture("deployed-iptables-save.txt"))
    assert view.ufw_loaded and view.input_policy == "DROP"
    assert (view.before, view.after, view.not_judged, view.published) == ((), (), (), ())
    assert view.user_rules == file_rules(4, fixture("deployed-user.rules"))
    six = family_view(6, fixture("deployed-ip6tables-save.txt"))
    assert six.ufw_loaded and six.user_rules == file_rules(6, fixture("deployed-user6.rules"))


def test_another_programs_rules_are_placed_ahead_of_or_behind_ufws_and_a_dnat_is_published():
    view = family_view(4, fixture("drift-iptables-save.txt"))
    assert ports(view.before) == [("allow", [(7071, "tcp")], "-A INPUT -p tcp -m tcp --dport 7071 -j ACCEPT")]
    assert ports(view.after) == [
        ("allow", [(7072, "tcp")], "-A INPUT -p tcp -m tcp --dport 7072 -j ACCEPT"),
        # a match the audit does not read: taken as letting everyone in on its port, and named
        ("allow", [(8443, "tcp")], "-A INPUT -p tcp -m tcp --dport 8443 -m ttl --ttl-gt 0 -j ACCEPT"),
    ]
    assert view.after[1][0].sources == ANYWHERE
    assert [line for line in view.not_judged if "ttl" in line] == [
        "iptables: -A INPUT -p tcp -m tcp --dport 8443 -m ttl --ttl-gt 0 -j ACCEPT"
    ]
    [published] = view.published
    assert (published.port.first, published.to, published.forwarded) == (8080, "10.77.1.10:22", True)
    # the deployed rules are still what the file says
    assert view.user_rules == file_rules(4, fixture("deployed-user.rules"))


def test_an_accept_added_to_before_rules_is_judged_ahead_of_the_user_rules_and_the_shipped_ones_are_not():
    shipped = fixture("shipped-before.rules")
    assert family_view(4, fixture("deployed-iptables-save.txt"), shipped).before == ()
    six = family_view(6, fixture("deployed-ip6tables-save.txt"), fixture("shipped-before6.rules"))
    assert (six.before, six.not_judged) == ((), ())
    view = family_view(4, fixture("before-edited-iptables-save.txt"), shipped)
    assert ports(view.before) == [
        ("allow", [(7071, "tcp")], "-A ufw-before-input -p tcp -m tcp --dport 7071 -j ACCEPT")
    ]
    assert view.before[0][1][1] == "/etc/ufw/before.rules" and view.not_judged == ()
    fix = removal(view.before[0][1])
    assert fix.startswith(
        "delete `-A ufw-before-input -p tcp -m tcp --dport 7071 -j ACCEPT` from /etc/ufw/before.rules"
    )


@pytest.mark.parametrize(
    "version, save, rules", [(4, "iptables-save", "user.rules"), (6, "ip6tables-save", "user6.rules")]
)
def test_every_shape_of_ufw_rule_loaded_is_its_file_again(version, save, rules):
    """limit (iptables-save adds recent's defaults), an interface, a destination, a range, deny, reject, log,
    a comment with spaces: loaded by ufw, each reads back as its file has it, so none is `rules not loaded`."""
    view = family_view(version, fixture(f"varied-{save}.txt"))
    assert len(view.user_rules) > 8 and view.user_rules == file_rules(version, fixture(f"varied-{rules}"))


def test_a_rule_added_to_the_file_without_a_reload_is_not_what_the_kernel_has():
    edited = fixture("deployed-user.rules").replace(
        "### END RULES ###", "-A ufw-user-input -p tcp --dport 9999 -j ACCEPT\n### END RULES ###"
    )
    assert family_view(4, fixture("deployed-iptables-save.txt")).user_rules != file_rules(4, edited)


def test_the_world_reaches_the_admin_console_through_the_kernels_accept_ahead_of_ufw():
    status = parse_status("0\n0", 'IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n')
    files = (fixture("deployed-user.rules"), fixture("deployed-user6.rules"))
    clean = observed_ruleset(status, files, kernel_view(fixture("deployed-iptables-save.txt"), "", ""))
    assert decide(clean, WORLD, ADMIN, ["10.77.0.10"]) == decide(
        observed_ruleset(status, files), WORLD, ADMIN, ["10.77.0.10"]
    )
    assert not decide(clean, WORLD, ADMIN, ["10.77.0.10"]).reachable
    drifted = observed_ruleset(status, files, kernel_view(fixture("drift-iptables-save.txt"), "", ""))
    decision = decide(drifted, WORLD, ADMIN, ["10.77.0.10"])
    assert decision.reachable and rule_text(decision.rule) == "iptables: -A INPUT -p tcp -m tcp --dport 7071 -j ACCEPT"
    assert removal(decision.rule) == "iptables -D INPUT -p tcp -m tcp --dport 7071 -j ACCEPT"


def test_an_input_policy_of_accept_lets_in_what_no_rule_denies():
    status = parse_status("0\n0", 'IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\n')
    text = fixture("deployed-iptables-save.txt").replace(":INPUT DROP", ":INPUT ACCEPT")
    ruleset = observed_ruleset(status, ("", ""), kernel_view(text, "", ""))
    decision = decide(ruleset, WORLD, ADMIN, ["10.77.0.10"])
    assert decision.reachable and decision.via == "iptables -P INPUT ACCEPT in the kernel"


def test_a_hostile_comment_is_one_quoted_word_in_the_fix_and_never_an_option():
    line = '-A INPUT -p tcp -m tcp --dport 7071 -m comment --comment "$(reboot); -j DROP" -j ACCEPT'
    rule = parse_rule(line)
    assert (rule.target, rule.comment, rule.dports) == ("ACCEPT", "$(reboot); -j DROP", "7071")
    words = ("kernel", "iptables", line)
    assert (
        removal(words)
        == "iptables -D INPUT -p tcp -m tcp --dport 7071 -m comment --comment '$(reboot); -j DROP' -j ACCEPT"
    )


@pytest.mark.parametrize(
    "line, judged",
    [
        ("-A INPUT ! -s 10.0.0.0/8 -p tcp -m tcp --dport 7071 -j ACCEPT", False),  # a negation
        ("-A INPUT -p tcp -m tcp --dport 7071 -m recent --rcheck -j ACCEPT", False),  # a match not read
        ("-A INPUT -s not-an-address -p tcp --dport 7071 -j ACCEPT", False),
        ("-A INPUT -s 10.0.0.0/8 -p tcp -m multiport --dports 7071,8000:8010 -j ACCEPT", True),
    ],
)
def test_what_the_audit_cannot_read_it_says_so_and_takes_as_open_to_all(line, judged):
    save = f"*filter\n:INPUT DROP [0:0]\n-A INPUT -j ufw-before-input\n{line}\nCOMMIT\n"
    view = family_view(4, save)
    [(rule, _)] = view.after
    assert len(view.not_judged) == (0 if judged else 1)
    assert (rule.sources == ANYWHERE) == (not judged) and rule.ports[0].first == 7071


def test_established_loopback_icmp_and_logging_rules_decide_no_new_connection():
    lines = [
        "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -p icmp -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 22 -j LOG",
    ]
    view = family_view(4, "*filter\n:INPUT DROP [0:0]\n" + "\n".join(lines) + "\nCOMMIT\n")
    assert (view.before, view.after, view.not_judged) == ((), (), ())


def test_a_jump_to_another_programs_chain_is_judged_only_when_it_can_never_accept():
    fail2ban = "-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd\n-A f2b-sshd -s 192.0.2.7/32 -j REJECT\n"
    panel = "-A INPUT -j panel\n-A panel -p tcp -m tcp --dport 7071 -j ACCEPT\n"
    assert family_view(4, f"*filter\n{fail2ban}COMMIT\n").not_judged == ()
    jumping = family_view(4, f"*filter\n{panel}COMMIT\n")
    assert jumping.not_judged == ("iptables: -A INPUT -j panel",)
    assert [view.ports for view, _ in jumping.before] == [None]  # every port, to everyone


TABLES = [
    ("ip", "filter"),
    ("ip6", "filter"),
    ("inet", "firewalld"),
    ("inet", "lab"),
    ("ip", "nat"),
    ("inet", "$(reboot) x"),
]


def test_only_tables_of_other_programs_are_named():
    listed = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            *({"table": {"family": family, "name": name, "handle": 1}} for family, name in TABLES),
        ]
    }
    assert nft_tables(json.dumps(listed)) == (("inet", "lab"), ("inet", "$(reboot) x"))
    assert nft_tables("") == () and nft_tables("not json")[0][0] == "?"


def test_without_ufw_in_the_kernel_another_programs_rules_are_not_placed_around_it():
    status = parse_status("1\n1", "IPV6=yes\n")
    foreign = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 7071 -j ACCEPT\nCOMMIT\n"
    ruleset = observed_ruleset(status, ("", ""), kernel_view(foreign, "", ""))
    assert ruleset == observed_ruleset(status, ("", ""))
    assert decide(ruleset, WORLD, ADMIN, ["10.77.0.10"]).via == "ufw inactive"
