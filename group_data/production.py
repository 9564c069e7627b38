# Production overrides of group_data/all.py. Replace the documentation prefixes with your admins' subnets.
management_subnets = ["192.0.2.0/24", "2001:db8:10::/64"]
# Pin production host keys instead of accepting new ones:
# ssh_known_hosts_file = "~/.ssh/known_hosts"
# ssh_strict_host_key_checking = "yes"
