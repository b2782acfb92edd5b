# nfvlab front door. Every target installs what it needs first (scripts/bootstrap.sh).
VENV    ?= .venv
NFVLAB  := $(VENV)/bin/nfvlab
PYTEST  := $(VENV)/bin/pytest
SCALE   ?= quick
RUNARGS ?=

# Which specs each study runs (experiments/<name>.yaml), in order.
IRON_UDP   := iron-udp-receiver-pair iron-udp-senders iron-udp-receivers iron-udp-receivers-iron iron-drop-mechanism
IRON_TCP   := iron-tcp-senders iron-tcp-receivers iron-tcp-receivers-iron
STATEALYZR := statealyzr-table statealyzr-flowspace statealyzr-cost
IRON_MICRO := iron-naive-attribution $(patsubst experiments/%.yaml,%,$(wildcard experiments/iron-cpu-cap.yaml \
              experiments/iron-throughput.yaml experiments/iron-packet-cost.yaml experiments/iron-overhead.yaml))

# Iron's per-interrupt cost that no tracepoint sees (python -m nfvlab.iron.calibrate), measured on the local
# testbed; re-measured whenever it is missing or stale (other kernel, CPU, core count or testbed/local.yaml).
# The runner checks the same before the first Iron point; this rule only does it up front.
IRON_CAL := iron-calibration-current

.PHONY: help install test lint exp-iron-udp exp-iron-tcp exp-iron-micro exp-iron-mapreduce exp-statealyzr iron-calibrate report clean-testbed \
        iron-calibration-current exp-statealyzr-transfer

help:
	@echo "make exp-iron-udp    Iron UDP study: interference (Fig 2.1, 2.2, 2.4) and Iron (Fig 2.9, 2.11, 2.16)"
	@echo "make exp-iron-tcp    Iron TCP study: interference (Fig 2.3, 2.5) and Iron (Fig 2.10, 2.12)"
	@echo "make exp-iron-mapreduce  Iron with real applications: Spark MapReduce jobs beside trace-driven traffic (Fig 2.13)"
	@echo "make exp-iron-micro  Iron microbenchmarks (attribution, Fig 2.14, throughput, Table 2.15, overhead)"
	@echo "make exp-statealyzr  StateAlyzr on real middleboxes (Table 4.13, Fig 4.14, Table 4.17; SCALE=paper adds HAProxy)"
	@echo "make exp-statealyzr-transfer  primary/hot-standby state transfer, 3 models (Fig 4.15/4.16)"
	@echo "make exp-NAME        one spec: experiments/NAME.yaml"
	@echo "make iron-calibrate  re-measure Iron's hidden per-interrupt cost (also done by itself when missing or stale)"
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

# Run each spec of a study, then the report. A spec with failed repetitions does not stop the study
# (the report marks its claims incomplete; rerunning resumes it) but fails the target at the end;
# an interrupt (exit 130) stops at once.
define run-specs
	@status=0; for spec in $(1); do \
	  $(NFVLAB) run experiments/$$spec.yaml --scale $(SCALE) $(RUNARGS); rc=$$?; \
	  if [ $$rc -eq 130 ]; then exit 130; fi; \
	  if [ $$rc -ne 0 ] && [ $$status -eq 0 ]; then status=$$rc; fi; \
	done; \
	$(NFVLAB) report || exit $$?; \
	if [ $$status -ne 0 ]; then echo "some specs failed (exit $$status): run the same target again to retry them" >&2; fi; \
	exit $$status
endef

iron-calibration-current: install
	$(VENV)/bin/python -m nfvlab.iron.calibrate --save --if-stale

iron-calibrate: install
	$(VENV)/bin/python -m nfvlab.iron.calibrate --save

exp-iron-udp: install
	$(call run-specs,$(IRON_UDP))

exp-iron-tcp: install
	$(call run-specs,$(IRON_TCP))

exp-iron-micro: install $(IRON_CAL)
	$(call run-specs,$(IRON_MICRO))

# StateAlyzr on the middlebox corpus (Table 4.13, Fig 4.14, Table 4.17): builds real middleboxes.
# statealyzr-deps.sh adds deb-src twins of the apt sources and the recipes' build dependencies.
exp-statealyzr: install
	@scripts/statealyzr-deps.sh
	$(call run-specs,$(STATEALYZR))

# the state-transfer study (Fig 4.15/4.16) on the ground truth, p0f and tcpdump (their Debian
# sources: deb-src and build deps from statealyzr-deps.sh); `nfvlab run` takes the same spec
exp-statealyzr-transfer: install
	@scripts/statealyzr-deps.sh
	$(NFVLAB) statealyzr transfer --out results/statealyzr-transfer

# Fig 2.13: Spark in local mode beside trace-driven traffic (pyspark is an optional extra: ~300 MB)
exp-iron-mapreduce: install
	@$(VENV)/bin/python -c "import pyspark" 2>/dev/null || $(VENV)/bin/pip install -q -e ".[mapreduce]"
	$(call run-specs,iron-mapreduce)

exp-%: install $(IRON_CAL) experiments/%.yaml
	$(call run-specs,$*)

report: install
	$(NFVLAB) report

clean-testbed: install
	$(NFVLAB) clean

# --- CHC (chc/: C++17 data plane; src/nfvlab/chc: control plane; docs/chc.md) ---------------------
.PHONY: chc chc-asan exp-chc-perf exp-chc-chain exp-chc-correctness exp-chc-ordering exp-chc-availability \
	exp-chc-shared-state exp-chc-nf-recovery exp-chc-straggler exp-chc-move
chc: install
	@nice -n 10 $(MAKE) -s -C chc -j2 BUILD=$(CURDIR)/build/chc

chc-asan: install
	@nice -n 10 $(MAKE) -s -C chc -j2 BUILD=$(CURDIR)/build/chc-asan SANITIZE=1

# CHC state-management experiments (Fig 3.13, Fig 3.15, store throughput, the §3.6.1 chain, the §3.6.2
# metadata costs), then the report.
CHC_PERF := chc-nf-perf chc-store-throughput chc-chain chc-metadata
exp-chc-perf: install chc
	$(call run-specs,$(CHC_PERF))

# The chain NAT -> portscan -> LB with the Trojan detector off-path (experiments/chains/), then the report.
exp-chc-chain: install chc
	$(call run-specs,chc-chain)

# CHC correctness (issue 12): randomized fault injections checked for chain output equivalence, with
# negative controls (docs/chc.md "Correctness"), R4 chain-wide ordering (Trojan detector behind
# scrubbers of different speed), R1 state availability against FTMB-style checkpointing (Fig 3.17) and R3
# strongly consistent shared state against an OpenNF-style controller (Fig 3.16), the R6 NF recovery
# timeline (Fig 3.19), R5 duplicate suppression with a straggler clone (Table 3.18) and the R2 move of a
# running NAT's flows to a new instance. `make exp-chc-ordering`, `exp-chc-availability`,
# `exp-chc-shared-state`, `exp-chc-nf-recovery`, `exp-chc-straggler` and `exp-chc-move` run one of them.
CHC_CORRECTNESS := chc-correctness chc-ordering chc-availability chc-shared-state chc-nf-recovery chc-straggler \
	chc-move
exp-chc-correctness: install chc
	$(call run-specs,$(CHC_CORRECTNESS))

exp-chc-ordering: install chc
	$(call run-specs,chc-ordering)

exp-chc-availability: install chc
	$(call run-specs,chc-availability)

exp-chc-shared-state: install chc
	$(call run-specs,chc-shared-state)

exp-chc-nf-recovery: install chc
	$(call run-specs,chc-nf-recovery)

exp-chc-straggler: install chc
	$(call run-specs,chc-straggler)

exp-chc-move: install chc
	$(call run-specs,chc-move)

# Kernel recipes (kernels/<name>/recipe.yaml): build .debs + bzImage, cached by recipe hash (docs/kernel.md).
# `make kernel-iron` builds the patched Iron kernel; `make kernel-boot-iron` boots it in qemu and checks uname -r.
.PHONY: kernel-boot-%
kernel-boot-%: install
	$(NFVLAB) kernel boot $*

kernel-%: install
	$(NFVLAB) kernel build $*
# Remote testbeds (issue 13, docs/remote.md): the multi-node CI alone (three sshd-in-netns nodes;
# also part of `make test`), and provisioning an ssh inventory: make provision INVENTORY=testbed/x.yaml
.PHONY: test-remote provision
INVENTORY ?= testbed/ssh-example.yaml
test-remote: install
	$(PYTEST) -q tests/remote

provision: install
	$(NFVLAB) provision $(INVENTORY)
