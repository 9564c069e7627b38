# The Vagrantfile's rehearsal VMs (inventories/vagrant.py). The management subnets are the Vagrant
# networks the controller and the `mgmt` VM come from, so the rehearsal never locks itself out:
#   192.168.56.0/24   the private network of the `mgmt` VM (the `outside` VM is on 192.168.57.0/24)
#   192.168.121.0/24  vagrant-libvirt's management network: where pyinfra's SSH arrives from with libvirt
#   10.0.2.0/24       VirtualBox's NAT: where pyinfra's SSH arrives from with VirtualBox
management_subnets = ["192.168.56.0/24", "192.168.121.0/24", "10.0.2.0/24"]
# Vagrant logs in as `vagrant`, which has passwordless sudo
_sudo = True
# Vagrant's VMs are fresh installs of the stand-in: a short rollback keeps a failed rehearsal quick
rollback_seconds = 60
