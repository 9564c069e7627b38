# zimbra-firewall: `make rehearse` runs the deploy against the local lab, `make test` runs every test
# (lint, unit, lab). Both need root (the lab makes network namespaces) and install what they need.
# `make unit` runs the unit tests alone: no root, no lab, seconds.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# command:Debian package, for what the lab and the tests run on this machine
SYSTEM_TOOLS := debootstrap:debootstrap nc:netcat-openbsd ip:iproute2 openssl:openssl ssh:openssh-client \
	ssh-keygen:openssh-client unshare:util-linux nsenter:util-linux shellcheck:shellcheck chromium:chromium
SHELL_SCRIPTS := .ci/run scripts/apt-install-missing scripts/audit-screenshot lab/guest/login-shell zimbra_firewall/rollback/*.sh

# and for the VM suite (Vagrant with libvirt, software emulation)
VM_TOOLS := vagrant:vagrant vagrant-libvirt:vagrant-libvirt libvirtd:libvirt-daemon-system virsh:libvirt-clients \
	qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils extlinux:extlinux dnsmasq:dnsmasq-base \
	mke2fs:e2fsprogs sfdisk:fdisk
# which Vagrant machines the VM suite brings up (one Zimbra VM; the clients are played by the namespace side)
VM_TEST_VMS ?= zimbra

.PHONY: setup system-tools vm-tools rehearse rehearse-cluster lint unit test vm-test bench lab-up lab-down

setup: system-tools $(VENV)/.installed

system-tools:
	@scripts/apt-install-missing $(SYSTEM_TOOLS)

vm-tools:
	@scripts/apt-install-missing $(VM_TOOLS)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check .
	touch $@

lab-up: setup
	$(PY) -m lab up

lab-down:
	$(PY) -m lab down

# TOPOLOGY=cluster (or `make rehearse-cluster`): ldap, mta, proxy, two mailboxes, each with its own rules;
# FIREWALLD=all (or Zimbra host names, comma-separated): those hosts run firewalld, as RHEL-family servers do
TOPOLOGY ?= single
FIREWALLD ?=
rehearse: setup
	$(PY) -m lab down
	$(PY) -m lab up --topology $(TOPOLOGY) --firewalld "$(FIREWALLD)"
	$(PY) scripts/reachability.py --title "before the deploy"
	$(PY) -m lab flows | tail -n 1
	@# the audit of the fresh hosts fails (their admin and internal ports are open to all): its first line
	$(VENV)/bin/pyinfra inventories/lab.py audit.py 2>/dev/null | head -n 1
	$(VENV)/bin/pyinfra -y inventories/lab.py deploy.py
	$(PY) scripts/reachability.py --title "after the deploy"
	$(PY) -m lab flows --strict
	mkdir -p reports
	$(VENV)/bin/pyinfra inventories/lab.py audit.py --data audit_probe=true \
	  --data audit_json=reports/lab-audit.json --data audit_html=reports/lab-audit.html
	$(PY) scripts/reachability.py --audit reports/lab-audit.json
	@echo "The lab stays up: python -m lab exec HOST -- ufw status verbose (firewalld hosts: firewall-cmd"
	@echo "--list-all-policies); make lab-down when done."
	@echo "The audit's page: reports/lab-audit.html"

rehearse-cluster:
	$(MAKE) rehearse TOPOLOGY=cluster

$(VENV)/.dev-installed: $(VENV)/.installed
	$(VENV)/bin/pip install -q --disable-pip-version-check ".[dev]"
	touch $@

lint: system-tools $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	shellcheck $(SHELL_SCRIPTS)

unit: $(VENV)/.dev-installed
	$(PY) -m pytest -q -m "not lab and not vm"

test: setup lint
	$(PY) -m lab build
	$(PY) -m pytest -q

$(VENV)/.bench-installed: $(VENV)/.installed
	$(VENV)/bin/pip install -q --disable-pip-version-check ".[bench]"
	touch $@

bench: setup $(VENV)/.bench-installed
	$(PY) -m lab build
	$(PY) bench/run.py
	$(PY) bench/audit.py
	$(PY) bench/firewalld.py

# up (box built or reused, libvirt in its namespace) → the VM suite inside that namespace → down, always
vm-test: setup vm-tools $(VENV)/.dev-installed
	$(PY) -m lab vms down
	$(PY) -m lab vms up
	ZFW_VMS=$(VM_TEST_VMS) ZFW_VM_TESTS=1 $(PY) -m lab vms run -- $(PY) -m pytest -q tests/vm; \
	  status=$$?; $(PY) -m lab vms down; exit $$status
