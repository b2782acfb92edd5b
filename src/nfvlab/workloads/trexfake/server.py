"""The fake TRex server: a ZeroMQ REP (JSON-RPC 2.0) + PUB pair answering the stateless API.

Method names, parameters and reply shapes follow TRex's server
(``src/stx/common/trex_rpc_cmds_common.cpp``, ``src/stx/stl/trex_stl_rpc_cmds.cpp``) as far as
the official client's connect / acquire / add_streams / start / wait_on_traffic / get_stats /
release / disconnect session reads them. Unknown methods get JSON-RPC's -32601, as from a real
server. One thread, one loop: serve a request, publish a trigger, finish jobs whose duration ran
out (queueing their events), repeat.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from . import protocol
from .model import ModelError, PortModel, Stream, current_rates, now, rx_counters

log = logging.getLogger("nfvlab.trexfake")

API_H = "nfvfake0"
MAX_QUEUED = 1000  # async messages kept per session
DEFAULT_PROFILE = "_"

# JSON-RPC / TRex error codes (trex_req_resp_client.py ErrNo; trex_rpc_cmd_api.h)
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
EXECUTE_ERROR = -32000

# async event ids (trex_subscriber.py ServerEventsIDs)
EV_PORT_JOB_DONE = 4
EV_PORT_ACQUIRED = 5
EV_PORT_RELEASED = 6
EV_PROFILE_STARTED = 10
EV_PROFILE_STOPPED = 11
EV_PROFILE_FINISHED_TX = 14


class RpcError(Exception):
    def __init__(self, message: str, code: int = EXECUTE_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ServerConfig:
    rpc_port: int = 4501
    async_port: int = 4500
    host: str = "127.0.0.1"
    ports: int = 2
    speed_gbps: float = 10.0
    dut_capacity_pps: float | None = None
    version: str = "v3.04"


def _need(params: dict, key: str, kind: type | tuple[type, ...] = object):
    if key not in params:
        raise RpcError(f"missing field '{key}'", INVALID_PARAMS)
    value = params[key]
    if not isinstance(value, kind):
        raise RpcError(f"field '{key}' has the wrong type", INVALID_PARAMS)
    return value


class FakeTrexServer:
    """Serve until :meth:`stop` (or for ``serve_forever``'s lifetime) on 127.0.0.1."""

    def __init__(self, config: ServerConfig) -> None:
        if config.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fake TRex server listens on loopback only")
        if config.ports < 2 or config.ports % 2:
            raise ValueError("TRex ports come in pairs: ports must be an even number >= 2")
        self.config = config
        self.ports = [PortModel(i, config.speed_gbps) for i in range(config.ports)]
        self.queues: dict[int, list[dict]] = {}  # session_id -> pending async messages
        self.seq: dict[int, int] = {}
        self.calls: dict[str, int] = {}  # method -> count, for tests and the log
        self.started = time.time()
        self._running = False
        self._methods: dict[str, Callable[[dict], object]] = {
            name[4:]: getattr(self, name) for name in dir(self) if name.startswith("rpc_")
        }

    # ------------------------------------------------------------------ async channel

    def _event(self, name: str, type_: int | str, data: dict) -> None:
        for queue in self.queues.values():
            queue.append({"name": name, "type": type_, "data": data})
            del queue[:-MAX_QUEUED]  # a session that went away must not grow without bound

    def _finish_jobs(self, t: float) -> None:
        for p in self.ports:
            j = p.job
            if j is not None and j.finished(t) and not j.announced:
                j.announced = True
                self._event("trex-event", EV_PROFILE_FINISHED_TX, {"port_id": p.port_id, "profile_id": DEFAULT_PROFILE})
                self._event("trex-event", EV_PORT_JOB_DONE, {"port_id": p.port_id})

    # ------------------------------------------------------------------ general

    def rpc_get_version(self, params: dict) -> dict:
        return {"version": self.config.version, "build_date": "nfvlab", "build_time": "fake",
                "built_by": "nfvlab fake TRex server", "mode": "STL"}

    def rpc_api_sync_v2(self, params: dict) -> dict:
        name = _need(params, "name", str)
        major = _need(params, "major", int)
        if name != "STL":
            raise RpcError(f"this fake serves the stateless API only, not {name!r}")
        if major != 5:
            raise RpcError(f"API version mismatch: server STL major 5, client {major}")
        return {"api_h": API_H}

    def rpc_ping(self, params: dict) -> dict:
        return {"ts": time.time()}

    def rpc_get_system_info(self, params: dict) -> dict:
        n = len(self.ports)
        return {
            "hostname": socket.gethostname(), "uptime": time.strftime("%d-%m-%Y : %H:%M:%S"),
            "dp_core_count": n // 2, "dp_core_count_per_port": 1, "core_type": "nfvlab fake (no DPDK)",
            "is_multiqueue_mode": False, "port_count": n,
            "ports": [{
                "index": p.port_id, "driver": "net_nfvfake", "pci_addr": f"0000:00:{p.port_id:02x}.0", "numa": 0,
                "hw_mac": f"02:00:00:00:00:{p.port_id:02x}", "description": "fake port (counters are computed)",
                "rx": {"caps": ["rx_bytes"], "counters": 127}, "is_fc_supported": False, "is_led_supported": False,
                "is_link_supported": False, "is_prom_supported": True, "is_vxlan_supported": False,
                "is_virtual": True, "supp_speeds": [int(p.speed_gbps * 1000)], "cores": [p.port_id // 2],
            } for p in self.ports],
        }

    def rpc_get_supported_cmds(self, params: dict) -> list[str]:
        return sorted(self._methods)

    def rpc_publish_now(self, params: dict) -> dict:
        key = _need(params, "key", int)
        self._event("trex-barrier", key, {})
        self._trigger()
        return {}

    def rpc_get_async_events(self, params: dict) -> dict:
        session = int(_need(params, "session_id", int))
        queue = self.queues.setdefault(session, [])
        if not queue:
            queue.append({"name": "trex-global", "type": 0, "data": self._global_stats()})
        out = []
        for msg in queue:
            self.seq[session] = self.seq.get(session, 0) + 1
            out.append(dict(msg, seq=self.seq[session]))
        queue.clear()
        return {"data": out}

    def rpc_get_global_stats(self, params: dict) -> dict:
        return self._global_stats()

    def rpc_get_utilization(self, params: dict) -> dict:
        return {"cpu": [{"history": [0] * 20, "ports": [p.port_id, -1], "mbuf_stats": {}} for p in self.ports[::2]]}

    # ------------------------------------------------------------------ ports

    def _port(self, params: dict) -> PortModel:
        pid = _need(params, "port_id", int)
        if not 0 <= pid < len(self.ports):
            raise RpcError(f"invalid port id {pid}", INVALID_PARAMS)
        return self.ports[pid]

    def _owned(self, params: dict) -> PortModel:
        p = self._port(params)
        if p.handler == "" or params.get("handler") != p.handler:
            raise RpcError(f"port {p.port_id} is not owned by you or your current executing session")
        return p

    def rpc_get_port_status(self, params: dict) -> dict:
        p = self._port(params)
        t = now()
        state = p.state(t)
        return {
            "owner": p.owner, "state": state, "state_profile": {DEFAULT_PROFILE: state} if p.streams or p.jobs else {},
            "service": False, "service_filtered": False, "max_stream_id": max(p.streams, default=0),
            "attr": {
                "speed": p.speed_gbps, "link": {"up": True}, "promiscuous": {"enabled": False},
                "multicast": {"enabled": False}, "fc": {"mode": 0}, "vxlan_fs": [], "rx_filter_mode": "hw",
                "layer_cfg": {"ether": {"src": f"02:00:00:00:00:{p.port_id:02x}",
                                        "dst": f"02:00:00:00:00:{p.port_id ^ 1:02x}", "state": "configured"},
                              "ipv4": {"state": "none"}, "ipv6": {"enabled": False}},
                "vlan": {"tags": []},
            },
            "rx_info": {"queue": {"is_active": False}, "grat_arp": {"is_active": False},
                        "latency": {"is_active": False}, "capture_port": {"is_active": False}},
        }

    def rpc_get_owner(self, params: dict) -> dict:
        return {"owner": self._port(params).owner}

    def rpc_acquire(self, params: dict) -> str:
        p = self._port(params)
        user = _need(params, "user", str)
        if p.owner and p.owner != user and not params.get("force"):
            raise RpcError(f"port is already owned by '{p.owner}'")
        p.owner, p.session_id = user, int(params.get("session_id", 0))
        p.handler = f"{user[:8]}{p.port_id:02d}{int(time.time() * 1000) % 100000:05d}"
        self._event("trex-event", EV_PORT_ACQUIRED, {"port_id": p.port_id, "who": user,
                                                      "session_id": p.session_id, "force": bool(params.get("force"))})
        return p.handler

    def rpc_release(self, params: dict) -> dict:
        p = self._owned(params)
        user = p.owner
        p.owner, p.handler = "", ""
        self._event("trex-event", EV_PORT_RELEASED, {"port_id": p.port_id, "who": user, "session_id": p.session_id})
        return {}

    def rpc_service(self, params: dict) -> dict:
        self._owned(params)
        if params.get("enabled"):
            raise RpcError("service mode is not modelled by the fake server")
        return {}

    def rpc_capture(self, params: dict) -> list:
        if params.get("command") == "status":
            return []  # no capture ever exists: packet capture is not modelled
        raise RpcError(f"capture command {params.get('command')!r} is not modelled by the fake server")

    def rpc_set_rx_feature(self, params: dict) -> dict:
        self._owned(params)
        if params.get("enabled"):
            raise RpcError(f"rx feature {params.get('type')!r} is not modelled by the fake server")
        return {}  # turning a feature off is what reset() does

    def rpc_set_port_attr(self, params: dict) -> dict:
        self._owned(params)
        return {}

    def rpc_get_port_stats(self, params: dict) -> dict:
        p = self._port(params)
        t = now()
        tx = p.tx_counters(t)
        rx = rx_counters(self.ports[p.port_id ^ 1], t, self.config.dut_capacity_pps)
        tx_pps, tx_bps, _, _ = current_rates(p, t, self.config.dut_capacity_pps)
        _, _, rx_pps, rx_bps = current_rates(self.ports[p.port_id ^ 1], t, self.config.dut_capacity_pps)
        return {"opackets": int(tx.opackets), "obytes": int(tx.obytes), "ipackets": int(rx.ipackets),
                "ibytes": int(rx.ibytes), "oerrors": 0, "ierrors": 0,
                "m_total_tx_pps": tx_pps, "m_total_tx_bps": tx_bps, "m_total_rx_pps": rx_pps,
                "m_total_rx_bps": rx_bps, "m_cpu_util": 0.0, "m_rx_cpu_util": 0.0}

    def rpc_get_port_xstats_names(self, params: dict) -> dict:
        self._port(params)
        return {"xstats_names": ["rx_good_packets", "tx_good_packets", "rx_good_bytes", "tx_good_bytes"]}

    def rpc_get_port_xstats_values(self, params: dict) -> dict:
        s = self.rpc_get_port_stats(params)
        return {"xstats_values": [s["ipackets"], s["opackets"], s["ibytes"], s["obytes"]]}

    def _global_stats(self) -> dict:
        t = now()
        tx_pps = tx_bps = rx_pps = rx_bps = 0.0
        for p in self.ports:
            a, b, c, d = current_rates(p, t, self.config.dut_capacity_pps)
            tx_pps, tx_bps, rx_pps, rx_bps = tx_pps + a, tx_bps + b, rx_pps + c, rx_bps + d
        return {"m_cpu_util": 0.0, "m_cpu_util_raw": 0.0, "m_bw_per_core": 0.0, "m_rx_cpu_util": 0.0,
                "m_rx_core_pps": 0.0, "m_platform_factor": 1.0, "m_tx_bps": tx_bps, "m_rx_bps": rx_bps,
                "m_tx_pps": tx_pps, "m_rx_pps": rx_pps, "m_tx_cps": 0.0, "m_tx_expected_cps": 0.0,
                "m_tx_expected_pps": 0.0, "m_tx_expected_bps": 0.0, "m_rx_drop_bps": max(0.0, tx_bps - rx_bps),
                "m_active_flows": 0.0, "m_open_flows": 0.0, "m_total_tx_pkts": 0, "m_total_rx_pkts": 0,
                "m_total_tx_bytes": 0, "m_total_rx_bytes": 0, "m_total_clients": 0, "m_total_servers": 0,
                "m_active_sockets": 0, "m_socket_util": 0.0, "m_total_nat_time_out": 0,
                "m_total_nat_no_fid": 0, "m_total_nat_active": 0, "m_total_nat_open": 0,
                "m_total_nat_learn_error": 0, "m_total_queue_full": 0, "m_total_queue_drop": 0,
                "m_rx_drop_pps": 0.0}

    # ------------------------------------------------------------------ streams and traffic

    def rpc_get_all_streams(self, params: dict) -> dict:
        p = self._port(params)
        return {"profiles": {DEFAULT_PROFILE: {"streams": {str(k): s.raw for k, s in p.streams.items()}}}
                if p.streams else {}}

    def rpc_get_profile_list(self, params: dict) -> list[str]:
        p = self._port(params)
        return [DEFAULT_PROFILE] if p.streams else []

    def rpc_add_stream(self, params: dict) -> dict:
        p = self._owned(params)
        sid = _need(params, "stream_id", int)
        if p.state(now()) == "TX":
            raise RpcError(f"port {p.port_id} is transmitting: cannot add streams")
        if sid in p.streams:
            raise RpcError(f"stream {sid} already exists")
        try:
            p.streams[sid] = Stream.from_json(sid, _need(params, "stream", dict))
        except ModelError as exc:
            raise RpcError(str(exc), INVALID_PARAMS) from exc
        return {}

    def rpc_remove_all_streams(self, params: dict) -> dict:
        p = self._owned(params)
        if p.state(now()) == "TX":
            raise RpcError(f"port {p.port_id} is transmitting: stop traffic first")
        p.streams.clear()
        return {}

    def rpc_remove_rx_filters(self, params: dict) -> dict:
        self._owned(params)
        return {}

    def rpc_validate(self, params: dict) -> dict:
        p = self._owned(params)
        return {"rate": {"max_bps_l2": p.speed_bps, "max_bps_l1": p.speed_bps, "max_pps": 0, "max_line_util": 100}}

    def rpc_start_traffic(self, params: dict) -> dict:
        p = self._owned(params)
        t = now()
        if p.state(t) == "TX" and not params.get("force"):
            raise RpcError(f"port {p.port_id} is already transmitting")
        try:
            job = p.start(_need(params, "mul", dict), float(params.get("duration", -1)), t)
        except ModelError as exc:
            raise RpcError(str(exc), INVALID_PARAMS) from exc
        self._event("trex-event", EV_PROFILE_STARTED, {"port_id": p.port_id, "profile_id": DEFAULT_PROFILE})
        log.info("port %d: start %.0f pps for %s s", p.port_id, job.tx_pps, job.duration)
        return {"multiplier": job.tx_pps, "ts": time.time()}

    def rpc_stop_traffic(self, params: dict) -> dict:
        p = self._owned(params)
        t = now()
        j = p.job
        if j is not None and not j.finished(t):
            j.stopped_at = t
            j.announced = True
            self._event("trex-event", EV_PROFILE_STOPPED, {"port_id": p.port_id, "profile_id": DEFAULT_PROFILE})
        return {}

    def rpc_get_active_pgids(self, params: dict) -> dict:
        return {"ids": {"flow_stats": [], "latency": []}}

    def rpc_get_tpg_status(self, params: dict) -> dict:
        return {"enabled": False}  # tagged packet grouping is not modelled

    def rpc_get_pgid_stats(self, params: dict) -> dict:
        # per-stream flow stats / latency (STLFlowStats) are not modelled: no pgid is ever active
        return {"ver_id": {}, "flow_stats": {}, "latency": {}}

    # ------------------------------------------------------------------ wire

    def handle(self, raw: bytes) -> bytes:
        """One REQ message in, one REP message out (both framed as TRex frames them)."""
        zipped = protocol.is_compressed(raw)
        try:
            text = protocol.decompress(raw) if zipped else raw
            request = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            reply: object = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": f"Parse error: {exc}"}}
        else:
            reply = [self._call(r) for r in request] if isinstance(request, list) else self._call(request)
        out = json.dumps(reply).encode()
        return protocol.compress(out) if zipped else out

    def _call(self, req: object) -> dict:
        if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or "method" not in req:
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Invalid Request"}}
        method, rid, params = req["method"], req.get("id"), req.get("params") or {}
        self.calls[method] = self.calls.get(method, 0) + 1
        fn = self._methods.get(method)
        if fn is None:
            log.warning("unsupported method %s", method)
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": METHOD_NOT_FOUND, "message": "Method not found",
                                                           "specific_err": f"method '{method}' is not implemented "
                                                                           "by the fake TRex server"}}
        if method not in ("get_version", "api_sync_v2", "ping") and params.get("api_h") != API_H:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": EXECUTE_ERROR, "message": "Bad API handler",
                                                           "specific_err": "API handler provided mismatch"}}
        try:
            return {"jsonrpc": "2.0", "id": rid, "result": fn(params)}
        except RpcError as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": exc.code, "message": str(exc),
                                                           "specific_err": str(exc)}}

    def _trigger(self) -> None:
        self._pub.send(b"{}")

    def serve_forever(self, ready: Callable[[], None] | None = None) -> None:
        ctx = zmq.Context()
        rep, self._pub = ctx.socket(zmq.REP), ctx.socket(zmq.PUB)
        try:
            self.config.rpc_port = self._bind(rep, self.config.rpc_port)
            self.config.async_port = self._bind(self._pub, self.config.async_port)
            self._running = True
            if ready:
                ready()
            last_pub = 0.0
            while self._running:
                if rep.poll(100):
                    rep.send(self.handle(rep.recv()))
                self._finish_jobs(now())
                t = time.monotonic()
                if t - last_pub >= 0.1 or any(self.queues.values()):
                    self._trigger()  # TRex publishes ~2/s; faster here keeps tests short
                    last_pub = t
        finally:
            rep.close(linger=0)
            self._pub.close(linger=0)
            ctx.term()

    def _bind(self, sock: zmq.Socket, port: int) -> int:
        addr = f"tcp://{self.config.host}"
        if port == 0:  # a free port chosen by the kernel (tests run many servers side by side)
            return sock.bind_to_random_port(addr)
        sock.bind(f"{addr}:{port}")
        return port

    def stop(self) -> None:
        self._running = False
