# Settings for every Zimbra server of every inventory. Each setting has its default, allowed values and
# meaning in zimbra_firewall/settings.py (the README's "Configuration reference" table is made from it):
# set here only what differs on all your sites; per environment, use group_data/<inventory name>.py
# (production.py, staging.py, lab.py …). Every key is checked before any host is touched.
