# Defaults for every Zimbra server. Override them per environment in group_data/<inventory name>.py
# (production.py, staging.py, lab.py …). Every key is checked before any host is touched.

# Subnets (IPv4 and IPv6 CIDR) of the admins and local networks: SSH and the local-only ports
# (80, 110, 143, 389, 7025, 7071, 7073 …) are allowed from these only. Required.
management_subnets = []

# Subnets of the other Zimbra nodes of a multi-server install: the intra ports (LDAP replication,
# LMTP, proxy backends, memcached …) are allowed from these only. Empty on a single server.
zimbra_nodes = []

# Optional catalogue groups to open: "client_certificates" (3443), "chat" (5222, 5223),
# "admin_proxy" (9071, local-only).
optional_groups = []

# Move ports between exposure classes, or add ports the catalogue lacks, e.g. for ACME HTTP-01:
# exposure_overrides = {"public": ["80/tcp"]}. Classes: public, local-only, intra, loopback-only.
exposure_overrides = {}

# "split": one public and one local-only profile (least privilege). "seed": the seed article's single
# "Zimbra" profile (25,80,110,143,443,465,587,993,995,3443,5222,5223,7071,9071/tcp) open to everyone,
# with a warning, since that opens local-only ports to the internet.
profile_mode = "split"

# ufw application profile names (letters, digits, space, _ . + -; at most 64 characters).
profile_names = {"public": "Zimbra Public", "local-only": "Zimbra Local", "intra": "Zimbra Intra"}

# The seed's `ufw allow from <subnet>`: every port open to the management subnets. Off: least privilege.
allow_management_all_ports = False

# Rules this deploy did not write are listed; unmanaged rules that open a local-only, intra or
# loopback-only port wider than this policy are always removed. True removes every unmanaged rule.
purge_unmanaged_rules = False

# The SSH port allowed from the management subnets (allowed before ufw is enabled).
firewall_ssh_port = 22

# ufw default policies (deny, reject or allow), set only when different.
default_incoming = "deny"
default_outgoing = "allow"

# Tag written as the comment of every rule this deploy owns.
rule_comment = "zimbra-firewall"

# zimbraMemcachedBindAddress and zimbraMemcachedClientServerList. 127.0.0.1 is right for a single
# server; on a multi-server install bind to the internal address too and allow 11211 via zimbra_nodes.
memcached_bind_addresses = ["127.0.0.1"]
memcached_client_servers = ["127.0.0.1"]

# How current memcached values are read: "ldap" (one ldapsearch against Zimbra's LDAP, no JVM;
# falls back to zmprov when LDAP cannot be read) or "zmprov" (one `zmprov -l gs`).
memcached_read = "ldap"

# Before the firewall changes, ufw is snapshotted and a timer armed that restores the snapshot after
# this many seconds unless the controller then gets through on a NEW SSH connection.
rollback_seconds = 120

# The preflight refuses a host (untouched) when the controller's own address, as the host sees it, is
# outside management_subnets or SSH runs on another port than firewall_ssh_port. True skips that check.
allow_lockout_risk = False

# Seconds to wait for another program's xtables lock (iptables-legacy hosts) before a ufw step fails.
xtables_lock_wait = 60
