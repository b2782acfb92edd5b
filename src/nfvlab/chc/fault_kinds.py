"""The fault kinds of `nfvlab chc fault` (docs/chc.md "Correctness"), importable without the runner."""

FAULT_KINDS = ("none", "kill-nf", "kill-store", "delay-nf", "delay-store", "kill-nf-slow-store")
# What the randomized suite draws from: what recovers today (no store failover yet, so no kill-store).
SUITE_KINDS = ("kill-nf", "delay-nf", "delay-store", "kill-nf-slow-store")
