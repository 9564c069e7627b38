"""What each Zimbra server exposes, and to whom, against the policy: every listening socket judged from
ufw's or firewalld's rules as they are, with what the kernel's tables hold besides (ok, too open, unknown
listener, rule without listener, memcached unreachable from proxy, too closed, probe got in, probe disagrees,
rules not loaded, not judged), and whom Zimbra itself trusts (relay trusted too broadly, relay trust not
judged, proxy not trusted). Read-only: one command per node, no operation. Exits non-zero when a node has a
port too open, an unknown listener, a probe that got in, ufw rules the kernel has not loaded or Postfix
relaying for more than the Zimbra nodes and the management subnets.

pyinfra inventories/<env>.py audit.py [--data audit_json=audit.json] [--data audit_html=audit.html]
                                      [--data audit_probe=true]
"""

from tasks import audit

audit.audit_inventory()
