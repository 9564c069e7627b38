# The Vagrantfile's rehearsal VMs (inventories/vagrant.py). The management subnets are the Vagrant
# networks the controller and the `mgmt` VM come from, so the rehearsal never locks itself out:
#   192.168.56.0/24   the private network of the `mgmt` VM (the `outside` VM is on 192.168.57.0/24)
#   192.168.121.0/24  vagrant-libvirt's management network: where pyinfra's SSH arrives from with libvirt
#   10.0.2.0/24       VirtualBox's NAT: where pyinfra's SSH arrives from with VirtualBox
management_subnets = ["192.168.56.0/24", "192.168.121.0/24", "10.0.2.0/24"]
# Vagrant logs in as `vagrant`, which has passwordless sudo
_sudo = True
# Long enough for a VM in software emulation (QEMU's TCG, where KVM is missing): there each ufw command
# takes seconds and `ufw --force enable` about 40 s, and a first deploy's arm-to-confirm took over 60 s (the
# rollback fired before the confirmation). With KVM or VirtualBox the window is a few seconds of it.
rollback_seconds = 300
