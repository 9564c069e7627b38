"""Facts about Zimbra: its servers, roles and attributes, read without starting a JVM where possible."""

import shlex

from pyinfra.api import FactBase, FactProcessError

from zimbra_firewall.policy import attribute_kinds
from zimbra_firewall.safety import ADDRESSES_FILE
from zimbra_firewall.topology import GLOBAL_ONLY, Topology, TopologyRead, topology_from_read
from zimbra_firewall.ufw import SECTION, sections

ZIMBRA_HOME = "/opt/zimbra"
LOCALCONFIG = f"{ZIMBRA_HOME}/conf/localconfig.xml"
LDAP_TIMEOUT = 15  # seconds
# stdin: host names, one per line → "name<TAB>address address…" per name, in getaddrinfo's order (as Zimbra's
# processes resolve them, and as `getent ahosts` lists them), in one process for every name: perl-base is on
# every Debian and Ubuntu host, and Zimbra ships its own perl besides. The names come from LDAP: they reach
# perl on stdin only, never as arguments (perl would parse `-e…` there as code).
RESOLVE = (
    "sort -u | perl -MSocket=getaddrinfo,getnameinfo,NI_NUMERICHOST,NIx_NOSERV,SOCK_STREAM -ne '"
    'chomp; my $n = $_; my ($e, @r) = getaddrinfo($n, "", {socktype => SOCK_STREAM}); my %s; '
    'print $n, "\\t", join(" ", grep { !$s{$_}++ } map { (getnameinfo($_->{addr}, NI_NUMERICHOST, NIx_NOSERV))[1] } '
    '@r), "\\n"\''
)
# the addresses the last deploy used for each server, for a run in which a name does not resolve
LAST_KNOWN = f"echo {SECTION}; cat {ADDRESSES_FILE} 2>/dev/null; true"

# Prints one localconfig.xml value (XML entities decoded) without starting Zimbra's JVM.
LOCALCONFIG_VALUE = (
    'lc() { sed -n "/<key name=\\"$1\\">/{n;s:.*<value>\\(.*\\)</value>.*:\\1:p;q}" '
    + LOCALCONFIG
    + " | sed -e 's/&lt;/</g; s/&gt;/>/g; s/&quot;/\"/g; s/&apos;/'\"'\"'/g; s/&amp;/\\&/g'; }"
)


def _ldap_read(attributes):
    return (
        'url=$(lc ldap_url); binddn=$(lc zimbra_ldap_userdn); tls=""; '
        '[ "$(lc ldap_starttls_supported)" = 1 ] && tls=-ZZ; '
        # the password travels on a pipe: never on a command line, never in the process list
        f"lc zimbra_ldap_password | tr -d '\\n' | LDAPTLS_CACERT={ZIMBRA_HOME}/conf/ca/ca.pem "
        # an LDAP that a firewall filters fails in seconds, not after TCP's minutes of retries (ldapsearch's
        # own nettimeout does not cover StartTLS, OpenLDAP 2.5)
        f"timeout {LDAP_TIMEOUT} {ZIMBRA_HOME}/common/bin/ldapsearch -x -LLL -o ldif-wrap=no -o nettimeout=5 "
        '-H "$url" $tls -D "$binddn" -y /dev/stdin '
        '-b cn=zimbra -s sub "(|(objectClass=zimbraServer)(&(objectClass=zimbraGlobalConfig)(cn=config)))" '
        + " ".join(attributes)
    )


def _zmprov_read(attributes):
    """`zmprov -l gas`, then one `gs` per server (its effective values) and one `gcf` per global-only
    attribute: a JVM each, the price of not reading LDAP directly. Server names come from LDAP: read line by
    line (no word splitting, no globbing), and one that zmprov would take for an option (`gs -e`) is only
    named, for the check in Python to refuse."""
    server_attrs = " ".join(a for a in attributes if a not in GLOBAL_ONLY)
    config = "; ".join(f"zp gcf {a} || exit 1" for a in sorted(GLOBAL_ONLY & set(attributes)))
    return (
        f'zp() {{ {ZIMBRA_HOME}/bin/zmprov -l "$@"; }}; servers=$(zp gas) || exit 1; '
        'printf "%s\\n" "$servers" | while IFS= read -r s; do case $s in -*) printf "# name %s\\n" "$s";; '
        f'?*) zp gs "$s" {server_attrs} || exit 1;; esac; done || exit 1; echo "# config"; {config}'
    )


class ZimbraTopology(FactBase):
    """
    Zimbra's servers as this node reads them from Zimbra's LDAP, with each server's host name resolved
    on this node (as Zimbra's own processes resolve it) and this node's own addresses: a
    ``zimbra_firewall.topology.Topology`` (its ``error`` set when neither LDAP nor zmprov could be read,
    or when this is not a Zimbra server).

    ``read="ldap"`` reads with one ldapsearch (no JVM) and falls back to zmprov when that is not
    possible; ``read="zmprov"`` runs ``zmprov -l gas`` and ``gs`` per server. ``attributes``: the LDAP
    attributes to read (zimbra_firewall.policy.topology_attributes()); no other is ever requested, so
    zimbraSSLPrivateKey never leaves LDAP. Run it as root or as the zimbra user.
    """

    def command(self, attributes: tuple[str, ...], read: str = "ldap") -> str:
        # zmprov runs as the zimbra user whoever reads; a failing one is reported in the output, so the
        # deploy can fail the host with Zimbra's message
        zmprov = (
            f'err=$(mktemp); if out=$(cd /tmp && {_as_zimbra(_zmprov_read(attributes))} 2>"$err"); '
            'then echo zmprov; printf "%s\\n" "$out"; else echo failed; cat "$err"; fi; rm -f "$err"'
        )
        script = [
            LOCALCONFIG_VALUE,
            "host=$(lc zimbra_server_hostname 2>/dev/null); lerr=$(mktemp)",
            # printf, never echo, for what a file on the host says: dash's echo acts on -n and \c in it
            f'printf "%s\\n" "$host"; echo {SECTION}; echo "$(hostname -I 2>/dev/null)"; echo {SECTION}',
            'if [ -z "$host" ]; then echo failed; '
            f'echo "not a Zimbra server: no zimbra_server_hostname in {LOCALCONFIG}"',
        ]
        if read == "ldap":
            script.append(
                f'elif [ -x {ZIMBRA_HOME}/common/bin/ldapsearch ] && {{ out=$({_ldap_read(attributes)} 2>"$lerr"); '
                'rc=$?; [ $rc = 0 ]; }; then echo ldap; printf "%s\\n" "$out"'
            )
            # no answer at all (timeout's 124, libldap's "Can't contact LDAP server", exit 255, or 1 when
            # StartTLS asked): zmprov would not get one either, only wait longer
            script.append(
                'elif [ "$rc" = 124 ] || grep -q "Can.t contact LDAP server" "$lerr"; then echo failed; '
                f'msg=$(cat "$lerr"); printf "%s\\n" "LDAP at $(lc ldap_url) does not answer: '
                f'${{msg:-no reply within {LDAP_TIMEOUT} s}}"'
            )
        script.append(f'else {zmprov}; fi; rm -f "$lerr"')
        script.append(f'echo {SECTION}; printf "%s\\n" "$out" | sed -n "s/^zimbraServiceHostname: //p" | {RESOLVE}')
        script.append(LAST_KNOWN)
        return "; ".join(script)

    def process(self, output: list[str]) -> Topology:
        parts = sections(output)
        if len(parts) != 5:
            raise FactProcessError(f"unexpected output of the topology read ({len(parts)} parts)")
        hostname, own_addresses, body, resolved, last_known = parts
        source, _, text = body.partition("\n")
        read = TopologyRead(hostname.strip(), own_addresses, source.strip(), text, resolved, last_known)
        return topology_from_read(read, attribute_kinds())


class ResolvedNames(FactBase):
    """
    Host names resolved on this host, as ZimbraTopology resolves its peers, the host's own addresses and
    the addresses the last deploy used: ``{"own_addresses": "10.0.0.5 fd00::5", "resolved":
    "name<TAB>addr addr…\\n…", "last_known": "…"}`` (the texts zimbra_firewall.topology.parse_resolved reads).
    """

    def command(self, names: tuple[str, ...]) -> str:
        listed = " ".join(shlex.quote(name) for name in names)
        return f'echo "$(hostname -I 2>/dev/null)"; echo {SECTION}; printf "%s\\n" {listed} | {RESOLVE}; {LAST_KNOWN}'

    def process(self, output: list[str]) -> dict:
        parts = sections(output)
        if len(parts) != 3:
            raise FactProcessError(f"unexpected output of the name read ({len(parts)} parts)")
        return dict(zip(("own_addresses", "resolved", "last_known"), parts, strict=True))


def _as_zimbra(script):
    """Run as the zimbra user: as it is already, or through runuser when root reads."""
    quoted = script.replace("'", "'\"'\"'")
    return f'as=""; [ "$(id -u)" = 0 ] && as="runuser -u zimbra --"; $as sh -c \'{quoted}\''
