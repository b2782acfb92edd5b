"""python -m nfvlab.workloads.trexfake --rpc-port P --async-port Q [--ports 2] [--speed-gbps 10]
[--dut-capacity-pps N]: run the fake TRex server on 127.0.0.1 until SIGTERM/SIGINT.

Port 0 picks a free port. Prints one line ``ready rpc=P async=Q`` on stdout once both sockets
are bound."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from .server import FakeTrexServer, ServerConfig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nfvlab.workloads.trexfake", description=__doc__)
    ap.add_argument("--rpc-port", type=int, default=4501)
    ap.add_argument("--async-port", type=int, default=4500)
    ap.add_argument("--ports", type=int, default=2)
    ap.add_argument("--speed-gbps", type=float, default=10.0)
    ap.add_argument("--dut-capacity-pps", type=float, default=None)
    ap.add_argument("--log-level", default="WARNING")
    a = ap.parse_args(argv)
    logging.basicConfig(level=a.log_level, stream=sys.stderr, format="trexfake %(levelname)s %(message)s")
    server = FakeTrexServer(ServerConfig(rpc_port=a.rpc_port, async_port=a.async_port, ports=a.ports,
                                         speed_gbps=a.speed_gbps, dut_capacity_pps=a.dut_capacity_pps))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: server.stop())
    cfg = server.config
    server.serve_forever(ready=lambda: print(f"ready rpc={cfg.rpc_port} async={cfg.async_port}", flush=True))
    print("calls " + json.dumps(server.calls, sort_keys=True), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
