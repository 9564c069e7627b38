# Staging overrides of group_data/all.py.
management_subnets = ["198.51.100.0/24"]
