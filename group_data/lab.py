# The rehearsal lab (python -m lab): its management subnet holds the controller and the `mgmt` host.
management_subnets = ["10.77.1.0/24", "fd5a:7e3c:91b2:1::/64"]
