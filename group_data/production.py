# Production overrides of group_data/all.py. Replace the documentation prefixes with your admins' subnets.
management_subnets = ["192.0.2.0/24", "2001:db8:10::/64"]
# Refuse a host whose key is not already in ~/.ssh/known_hosts (or differs from it): a firewall deploy must
# not be talked into a machine that claims a production name. Add each key once (ssh-keyscan, checked).
ssh_strict_host_key_checking = "yes"
# A site's own flows outside Zimbra's, each port to exactly its sources (never `zimbra_nodes` for that: it
# trusts whole subnets on every internal port). For example, a monitoring host on every mailbox's admin port:
# extra_allows = [{"port": "7071/tcp", "from": ["192.0.2.50/32"], "on": ["mailbox"]}]
