"""Facts about Zimbra: its servers, roles and attributes, read without starting a JVM where possible."""

import shlex

from pyinfra.api import FactBase, FactProcessError

from zimbra_firewall.topology import GLOBAL_ONLY, Topology, topology_from_read
from zimbra_firewall.ufw import SECTION

ZIMBRA_HOME = "/opt/zimbra"
LOCALCONFIG = f"{ZIMBRA_HOME}/conf/localconfig.xml"
LDAP_TIMEOUT = 15  # seconds
# stdin: host names, one per line → "name address address…" per name, in getaddrinfo's order (as Zimbra's
# processes resolve them, and as `getent ahosts` lists them), in one process for every name: perl-base is
# on every Debian and Ubuntu host, and Zimbra ships its own perl besides
RESOLVE = (
    "sort -u | xargs perl -MSocket=getaddrinfo,getnameinfo,NI_NUMERICHOST,NIx_NOSERV,SOCK_STREAM -e '"
    'for $n (@ARGV) { my ($e, @r) = getaddrinfo($n, "", {socktype => SOCK_STREAM}); my %s; '
    'print join(" ", $n, grep { !$s{$_}++ } map { (getnameinfo($_->{addr}, NI_NUMERICHOST, NIx_NOSERV))[1] } @r), '
    '"\\n" }\''
)

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
    attribute: a JVM each, the price of not reading LDAP directly."""
    server_attrs = " ".join(a for a in attributes if a not in GLOBAL_ONLY)
    config = "; ".join(f"zp gcf {a} || exit 1" for a in sorted(GLOBAL_ONLY & set(attributes)))
    return (
        f'zp() {{ {ZIMBRA_HOME}/bin/zmprov -l "$@"; }}; servers=$(zp gas) || exit 1; '
        f'for s in $servers; do zp gs "$s" {server_attrs} || exit 1; done; echo "# config"; {config}'
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
            f'echo "$host"; echo {SECTION}; echo "$(hostname -I 2>/dev/null)"; echo {SECTION}',
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
                f'msg=$(cat "$lerr"); echo "LDAP at $(lc ldap_url) does not answer: '
                f'${{msg:-no reply within {LDAP_TIMEOUT} s}}"'
            )
        script.append(f'else {zmprov}; fi; rm -f "$lerr"')
        script.append(f'echo {SECTION}; printf "%s\\n" "$out" | sed -n "s/^zimbraServiceHostname: //p" | {RESOLVE}')
        return "; ".join(script)

    def process(self, output: list[str]) -> Topology:
        parts = ("\n".join(output) + "\n").split(f"\n{SECTION}\n")
        if len(parts) != 4:
            raise FactProcessError(f"unexpected output of the topology read ({len(parts)} parts)")
        hostname, own_addresses, body, resolved = parts
        source, _, text = body.partition("\n")
        return topology_from_read(hostname.strip(), own_addresses, source.strip(), text, resolved)


class ResolvedNames(FactBase):
    """
    Host names resolved on this host, as ZimbraTopology resolves its peers, and the host's own
    addresses: ``{"own_addresses": "10.0.0.5 fd00::5", "resolved": "name addr addr…\\n…"}`` (the text
    zimbra_firewall.topology.parse_resolved reads).
    """

    def command(self, names: tuple[str, ...]) -> str:
        listed = " ".join(shlex.quote(name) for name in names)
        return f'echo "$(hostname -I 2>/dev/null)"; echo {SECTION}; printf "%s\\n" {listed} | {RESOLVE}'

    def process(self, output: list[str]) -> dict:
        own, _, resolved = ("\n".join(output) + "\n").partition(f"\n{SECTION}\n")
        return {"own_addresses": own, "resolved": resolved}


def _as_zimbra(script):
    """Run as the zimbra user: as it is already, or through runuser when root reads."""
    quoted = script.replace("'", "'\"'\"'")
    return f'as=""; [ "$(id -u)" = 0 ] && as="runuser -u zimbra --"; $as sh -c \'{quoted}\''
