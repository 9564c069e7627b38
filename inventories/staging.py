# Staging Zimbra servers: rehearse a change here before production.
# Settings for every host here go in group_data/staging.py (overriding group_data/all.py).

zimbra_servers = [
    "mail.staging.example.com",
]
