"""CHC's control plane (dissertation ch. 3): store harness, data-plane build, chains, experiments.

The data plane is C++ under chc/ (built into build/chc/); this package starts and drives it."""
