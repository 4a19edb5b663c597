# zimbra_fw: make demo (apply pillar.example to a sandboxed minion, ufw and firewalld), make test.
# Both set up everything first: Debian packages (ufw, iptables, iproute2,
# firewalld, dbus, nftables: the tests read the nft ruleset; chromium: a test
# renders the fleet report headless) and a virtual environment in .venv with requirements.txt.
# Needs root: the sandbox makes network and mount namespaces. While apt
# installs, policy-rc.d says no daemon may start: firewalld runs only in the
# sandbox, never in the host's network namespace.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := ufw iptables iproute2 util-linux mount firewalld dbus nftables chromium
# yamllint only picks *.yaml/*.yml from a directory: every SLS is named.
SLS := $(wildcard zimbra_fw/*.sls zimbra_fw/reactor/*.sls)

.PHONY: setup system-packages demo test lint unit mutation bench ports clean

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=""; for package in $(DEBIAN_PACKAGES); do \
		dpkg -s $$package >/dev/null 2>&1 || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		saved=""; [ -e /usr/sbin/policy-rc.d ] && saved=$$(mktemp) && cp -p /usr/sbin/policy-rc.d $$saved; \
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; status=$$?; \
		if [ -n "$$saved" ]; then mv $$saved /usr/sbin/policy-rc.d; else rm -f /usr/sbin/policy-rc.d; fi; \
		exit $$status; fi

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

# make demo BACKEND=ufw, BACKEND=firewalld or BACKEND=nftables for one of them.
BACKEND ?= all
demo: setup
	$(PY) -m harness.demo --backend $(BACKEND)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/yamllint .yamllint .salt-lint pillar.example FORMULA $(SLS)
	$(VENV)/bin/salt-lint $(SLS)

unit: setup
	$(PY) -m pytest -m "not sandbox"

# Two workers, a test file each at a time: sandbox tests wait mostly on
# processes and the network, and every sandbox has namespaces of its own.
# The tests with a salt-master (the cluster: five salt-minion daemons; the
# drift beacon and reactor: two) run afterwards, side by side with each other
# only: beside the other sandboxes a cluster minion did not answer its master
# within 300 s, three times (not understood yet; beside the drift test it has).
MASTER_TESTS := tests/sandbox/test_cluster.py tests/sandbox/test_drift_master.py
test: lint
	$(PY) -m pytest -n 2 --dist loadfile $(addprefix --ignore=,$(MASTER_TESTS))
	$(PY) -m pytest -n 2 --dist loadfile $(MASTER_TESTS)

# docs/zimbra-ports.yaml from the catalogue (a unit test fails when it is stale).
ports: setup
	$(PY) tools/ports_yaml.py

# Mutation testing of the core with the unit tests (not part of make test).
mutation: setup
	tools/mutation.sh

$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	$(VENV)/bin/pip install -q -r requirements-bench.txt
	touch $@

bench: setup $(VENV)/.bench-installed
	$(PY) -m bench.bench
	$(PY) -m bench.bench --firewalld --plot docs/bench.png

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mutation
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
