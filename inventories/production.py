# Production Zimbra servers: edit the host names (and per-host data) to match yours, then
#   pyinfra inventories/production.py deploy.py --dry      # review the plan
#   pyinfra -y inventories/production.py deploy.py
# Settings for every host here go in group_data/production.py (overriding group_data/all.py).

zimbra_servers = [
    "mail.example.com",
    # ("mail2.example.com", {"ssh_port": 2222}),
]
