"""Iron on a stock kernel (dissertation ch. 2): eBPF accounting of softirq network processing,
CFS charging/crediting per Alg. 2.7/2.8 from a user-space controller, and early drop (XDP / tc).

Entry point for experiments: :class:`nfvlab.iron.runtime.IronRuntime` (re-exported here).
"""

from __future__ import annotations

from .runtime import IronError, IronRuntime

__all__ = ["IronRuntime", "IronError"]
