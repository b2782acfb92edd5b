"""A fake TRex stateless server: TRex's own wire protocol, counters computed, no packets sent.

TRex needs DPDK-bound NICs, which this machine does not have; the official client
(``lbr-trex-client``, unmodified) talks to this server exactly as to a real one:

- **RPC channel**: ZeroMQ REP on the sync port (4501 by default), JSON-RPC 2.0; requests (and
  the replies to compressed requests) zlib-compressed behind an 8-byte big-endian header
  ``(0xABE85CEA, uncompressed length)`` (``trex/utils/zipmsg.py``); batches are JSON lists.
- **async channel**: ZeroMQ PUB on the async port (4500) carrying only ``{}`` triggers; the client
  then fetches queued events with ``get_async_events`` (``trex/common/trex_subscriber.py``).

What is fake: the counters. Each port's TX rate is the rate its streams and the start multiplier
ask for, capped at the port's line rate (L1, 20 bytes preamble+IFG per frame); traffic goes from a
port to its pair (0<->1, 2<->3, ...) through a modelled device under test that forwards at most
``dut_capacity_pps`` packets per second (unlimited by default) and drops the rest. The counters
are those rates integrated over the time the traffic ran (the requested duration, or until
``stop_traffic``). See docs/trex.md.
"""

from .protocol import MAGIC, compress, decompress, is_compressed
from .server import FakeTrexServer, ServerConfig

__all__ = ["MAGIC", "FakeTrexServer", "ServerConfig", "compress", "decompress", "is_compressed"]
