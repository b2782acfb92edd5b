# nfvlab front door. Every target installs what it needs first (scripts/bootstrap.sh).
VENV    ?= .venv
NFVLAB  := $(VENV)/bin/nfvlab
PYTEST  := $(VENV)/bin/pytest
SCALE   ?= quick
RUNARGS ?=

.PHONY: help install test lint exp-iron-udp exp-iron-tcp report clean-testbed

help:
	@echo "make exp-iron-udp   run the Iron UDP interference study (Fig 2.1, 2.2, 2.4) on the local testbed"
	@echo "make exp-iron-tcp   run the Iron TCP interference study (Fig 2.3, 2.5)"
	@echo "make report         rebuild results/report/index.html from whatever results exist"
	@echo "make test           install and run the test suite"
	@echo "make clean-testbed  remove every namespace, cgroup, qdisc, BPF program and process nfvlab made"
	@echo "variables: SCALE=quick|paper  RUNARGS='--repetitions 5'"

install:
	@scripts/bootstrap.sh

test: install
	$(PYTEST) -q

lint: install
	$(VENV)/bin/ruff check src tests

exp-iron-udp: install
	$(NFVLAB) run experiments/iron-udp-receiver-pair.yaml --scale $(SCALE) $(RUNARGS)
	$(NFVLAB) run experiments/iron-udp-senders.yaml --scale $(SCALE) $(RUNARGS)
	$(NFVLAB) run experiments/iron-udp-receivers.yaml --scale $(SCALE) $(RUNARGS)
	$(NFVLAB) report

exp-iron-tcp: install
	$(NFVLAB) run experiments/iron-tcp-senders.yaml --scale $(SCALE) $(RUNARGS)
	$(NFVLAB) run experiments/iron-tcp-receivers.yaml --scale $(SCALE) $(RUNARGS)
	$(NFVLAB) report

report: install
	$(NFVLAB) report

clean-testbed: install
	$(NFVLAB) clean
