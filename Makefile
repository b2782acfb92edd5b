# nfvlab front door. Every target installs what it needs first (scripts/bootstrap.sh).
VENV    ?= .venv
NFVLAB  := $(VENV)/bin/nfvlab
PYTEST  := $(VENV)/bin/pytest
SCALE   ?= quick
RUNARGS ?=

# Which specs each study runs (experiments/<name>.yaml), in order.
IRON_UDP   := iron-udp-receiver-pair iron-udp-senders iron-udp-receivers iron-udp-receivers-iron iron-drop-mechanism
IRON_TCP   := iron-tcp-senders iron-tcp-receivers iron-tcp-receivers-iron
IRON_MICRO := iron-naive-attribution $(patsubst experiments/%.yaml,%,$(wildcard experiments/iron-cpu-cap.yaml \
              experiments/iron-throughput.yaml experiments/iron-packet-cost.yaml experiments/iron-overhead.yaml))

.PHONY: help install test lint exp-iron-udp exp-iron-tcp exp-iron-micro report clean-testbed

help:
	@echo "make exp-iron-udp    Iron UDP study: interference (Fig 2.1, 2.2, 2.4) and Iron (Fig 2.9, 2.11, 2.16)"
	@echo "make exp-iron-tcp    Iron TCP study: interference (Fig 2.3, 2.5) and Iron (Fig 2.10, 2.12)"
	@echo "make exp-iron-micro  Iron microbenchmarks (attribution, Fig 2.14, throughput, Table 2.15, overhead)"
	@echo "make exp-NAME        one spec: experiments/NAME.yaml"
	@echo "make report          rebuild results/report/index.html from whatever results exist"
	@echo "make test            install and run the test suite"
	@echo "make clean-testbed   remove every namespace, cgroup, qdisc, BPF program and process nfvlab made"
	@echo "variables: SCALE=quick|paper  RUNARGS='--repetitions 5'"

install:
	@scripts/bootstrap.sh

test: install
	$(PYTEST) -q

lint: install
	$(VENV)/bin/ruff check src tests

# Run each spec of a study, then the report (a failing spec stops the study; rerun resumes it).
define run-specs
	@for spec in $(1); do \
	  $(NFVLAB) run experiments/$$spec.yaml --scale $(SCALE) $(RUNARGS) || exit $$?; \
	done
	$(NFVLAB) report
endef

exp-iron-udp: install
	$(call run-specs,$(IRON_UDP))

exp-iron-tcp: install
	$(call run-specs,$(IRON_TCP))

exp-iron-micro: install
	$(call run-specs,$(IRON_MICRO))

exp-%: install experiments/%.yaml
	$(call run-specs,$*)

report: install
	$(NFVLAB) report

clean-testbed: install
	$(NFVLAB) clean
