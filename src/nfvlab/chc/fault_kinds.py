"""The fault kinds of `nfvlab chc fault` (docs/chc.md "Correctness"), importable without the runner."""

FAULT_KINDS = ("none", "kill-nf", "kill-root", "kill-store", "delay-nf", "delay-store", "kill-nf-slow-store")
# What the randomized suite draws from: what recovers today (no store failover yet, so no kill-store).
SUITE_KINDS = ("kill-nf", "kill-root", "delay-nf", "delay-store", "kill-nf-slow-store")
# Kinds that need a packet index (the root pauses there, so the kill lands at a known input position).
AT_PACKET_ONLY = ("kill-root",)
