# zimbra-firewall: `make rehearse` runs the deploy against the local lab, `make test` runs every test.
# Both need root (the lab makes network namespaces) and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# command:Debian package, for what the lab and the tests run on this machine
SYSTEM_TOOLS := debootstrap:debootstrap nc:netcat-openbsd ip:iproute2 openssl:openssl ssh:openssh-client \
	ssh-keygen:openssh-client unshare:util-linux nsenter:util-linux

.PHONY: setup system-tools rehearse test vm-test bench lab-up lab-down

setup: system-tools $(VENV)/.installed

system-tools:
	@missing=""; for pair in $(SYSTEM_TOOLS); do command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check .
	touch $@

lab-up: setup
	$(PY) -m lab up

lab-down:
	$(PY) -m lab down

rehearse: setup
	$(PY) -m lab down
	$(PY) -m lab up
	$(PY) scripts/reachability.py --title "before the deploy"
	$(VENV)/bin/pyinfra -y inventories/lab.py deploy.py
	$(PY) scripts/reachability.py --title "after the deploy"
	@echo "The lab stays up: python -m lab exec zimbra -- ufw status verbose; make lab-down when done."

test: setup
	$(PY) -m lab build
	$(PY) -m pytest -q

$(VENV)/.bench-installed: $(VENV)/.installed
	$(VENV)/bin/pip install -q --disable-pip-version-check ".[bench]"
	touch $@

bench: setup $(VENV)/.bench-installed
	$(PY) -m lab build
	$(PY) bench/run.py

vm-test:
	@echo "make $@: not built yet (see the open issues)"; exit 1
