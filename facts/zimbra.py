"""Facts about Zimbra: its memcached attributes, read without starting a JVM where possible."""

from pyinfra.api import FactBase, FactProcessError

from zimbra_firewall.ldif import parse_ldif
from zimbra_firewall.ufw import SECTION
from zimbra_firewall.zimbra import ATTRIBUTE_NAMES, MEMCACHED_ATTRIBUTES, memcached_from_ldap, parse_zmprov_gs

ZIMBRA_HOME = "/opt/zimbra"
LOCALCONFIG = f"{ZIMBRA_HOME}/conf/localconfig.xml"
LDAP_TIMEOUT = 15  # seconds

# Prints one localconfig.xml value (XML entities decoded) without starting Zimbra's JVM.
LOCALCONFIG_VALUE = (
    'lc() { sed -n "/<key name=\\"$1\\">/{n;s:.*<value>\\(.*\\)</value>.*:\\1:p;q}" '
    + LOCALCONFIG
    + " | sed -e 's/&lt;/</g; s/&gt;/>/g; s/&quot;/\"/g; s/&apos;/'\"'\"'/g; s/&amp;/\\&/g'; }"
)


def _ldap_read():
    attrs = " ".join(MEMCACHED_ATTRIBUTES)
    return (
        'url=$(lc ldap_url); binddn=$(lc zimbra_ldap_userdn); tls=""; '
        '[ "$(lc ldap_starttls_supported)" = 1 ] && tls=-ZZ; '
        # the password travels on a pipe: never on a command line, never in the process list
        f"lc zimbra_ldap_password | tr -d '\\n' | LDAPTLS_CACERT={ZIMBRA_HOME}/conf/ca/ca.pem "
        # an LDAP that a firewall filters fails in seconds, not after TCP's minutes of retries (ldapsearch's
        # own nettimeout does not cover StartTLS, OpenLDAP 2.5)
        f"timeout {LDAP_TIMEOUT} {ZIMBRA_HOME}/common/bin/ldapsearch -x -LLL -o ldif-wrap=no "
        '-H "$url" $tls -D "$binddn" -y /dev/stdin '
        '-b cn=zimbra -s sub "(|(&(objectClass=zimbraServer)(cn=$host))'
        f'(&(objectClass=zimbraGlobalConfig)(cn=config)))" {attrs}'
    )


class ZimbraMemcached(FactBase):
    """
    The memcached attributes as `zmprov gs` shows them (global-config inheritance included) and the
    server's name: ``{"hostname": "mail.example.com", "source": "ldap", "values": {attr: [values]}}``, or
    ``{..., "error": "<zmprov's message>"}`` when neither LDAP nor zmprov could be read.

    ``read="ldap"`` reads Zimbra's LDAP with one ldapsearch (no JVM) and falls back to zmprov when that
    is not possible; ``read="zmprov"`` runs one ``zmprov -l gs``. Run it as the zimbra user.
    """

    def command(self, read: str = "ldap") -> str:
        attrs = " ".join(MEMCACHED_ATTRIBUTES)
        # a failing zmprov is reported in the output, so the operation can fail the host with Zimbra's message
        zmprov = (
            f'err=$(mktemp); if out=$({ZIMBRA_HOME}/bin/zmprov -l gs "$host" {attrs} 2>"$err"); '
            'then echo zmprov; printf "%s\\n" "$out"; else echo zmprov-failed; cat "$err"; fi; rm -f "$err"'
        )
        script = [LOCALCONFIG_VALUE, "host=$(lc zimbra_server_hostname)", f'echo "$host"; echo {SECTION}']
        if read == "ldap":
            script.append(
                f"if [ -x {ZIMBRA_HOME}/common/bin/ldapsearch ] && out=$({_ldap_read()}); "
                f'then echo ldap; printf "%s\\n" "$out"; else {zmprov}; fi'
            )
        else:
            script.append(zmprov)
        return "; ".join(script)

    def process(self, output: list[str]) -> dict:
        hostname, _, body = "\n".join(output).partition(f"\n{SECTION}\n")
        source, _, text = body.partition("\n")
        if not hostname.strip():
            raise FactProcessError(f"no zimbra_server_hostname in {LOCALCONFIG}")
        if source == "zmprov-failed":
            return {"hostname": hostname, "source": "zmprov", "error": text.strip() or "zmprov failed"}
        if source == "ldap":
            try:
                values = memcached_from_ldap(parse_ldif(text, ATTRIBUTE_NAMES), f"cn={hostname},cn=servers,cn=zimbra")
            except ValueError as error:
                raise FactProcessError(str(error)) from None
        else:
            values = parse_zmprov_gs(text)
        return {"hostname": hostname, "source": source, "values": values}
