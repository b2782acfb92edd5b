"""The StateAlyzr analyses (dissertation §4.3-4.4) over a linked IR module.

    persistent      Fig 4.6   globals, statics, locals and formals of the loop procedure(s)
    pkt procedures  Fig 4.7   forward slice on the SDG from every packet-receive call
    top-level       Fig 4.7   persistent variables used in packet-processing procedures
    updateable      Fig 4.9   top-level variables written (directly or through an alias, per
                              the Andersen points-to sets) in packet-processing procedures
    flowspace       Fig 4.10  chop from the packet to table indices / list-iteration conditions,
                              then string-match the header fields in the chop's source lines
    output          Fig 4.11  backward slices from packet- and log-output calls
"""

from __future__ import annotations

import re
import resource
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .flowchop import FlowChop
from .ir import DebugVar, Instr, Module, load_lines
from .pointsto import CALLBACKS
from .sdg import build, natural_loops

PKT_RECV = ["pcap_next", "pcap_next_ex", "pcap_loop", "pcap_dispatch", "recv", "recvfrom", "recvmsg",
            "daq_acquire", "daq_acquire_with_meta", "DAQ_Acquire", "daq_instance_msg_receive"]
PKT_OUTPUT = ["pcap_inject", "pcap_sendpacket", "send", "sendto", "sendmsg", "writev", "pcap_dump"]
LOG_OUTPUT = ["fprintf", "printf", "vfprintf", "vprintf", "fputs", "puts", "fputc", "putc", "putchar",
              "fwrite", "syslog", "vsyslog", "write", "dprintf", "vdprintf", "__fprintf_chk",
              "__printf_chk", "__vfprintf_chk", "__syslog_chk"]
# registrations whose callback runs asynchronously (a thread, a signal handler, at exit)
ASYNC_ENTRIES = {"@pthread_create", "@signal", "@atexit", "@on_exit"}
_NONE: frozenset = frozenset()
CALLBACK_RECV = {"pcap_loop", "pcap_dispatch", "daq_acquire", "daq_acquire_with_meta", "DAQ_Acquire"}

# header-field names as they appear in netinet/*.h, net/ethernet.h, pcap and common middlebox code
HEADER_FIELDS = {
    "src_ip": ["saddr", "ip_src", "src", "sin_addr", "sin6_addr", "src_ip", "srcip", "sip", "ip6_src",
               "src_addr"],
    "dst_ip": ["daddr", "ip_dst", "dst", "dst_ip", "dstip", "dip", "ip6_dst", "dst_addr"],
    "src_port": ["source", "th_sport", "sin_port", "sin6_port", "uh_sport", "sport", "src_port", "srcport"],
    "dst_port": ["dest", "th_dport", "uh_dport", "dport", "dst_port", "dstport"],
    "proto": ["protocol", "ip_p", "proto", "ip6_nxt", "ip_proto"],
    "src_mac": ["ether_shost", "h_source", "smac"],
    "dst_mac": ["ether_dhost", "h_dest", "dmac"],
    "eth_type": ["ether_type", "h_proto"],
    "tos": ["tos", "ip_tos"],
    "ttl": ["ttl", "ip_ttl"],
    "ip_id": ["ip_id"],
    "tcp_flags": ["th_flags", "syn", "ack", "fin", "rst", "psh", "urg"],
    "tcp_seq": ["seq", "th_seq", "ack_seq", "th_ack"],
    "vlan": ["vlan", "vlan_id"],
}
_FIELD_RE = {canon: re.compile(r"(?:->|\.)\s*(?:" + "|".join(map(re.escape, names)) + r")\b")
             for canon, names in HEADER_FIELDS.items()}


@dataclass
class Variable:
    key: str
    name: str
    kind: str
    function: str | None
    file: str
    line: int
    classes: list[str] = field(default_factory=list)
    flowspace: list[str] = field(default_factory=list)
    evidence: dict[str, str] = field(default_factory=dict)
    type: str = ""

    def to_json(self) -> dict:
        return {"key": self.key, "name": self.name, "kind": self.kind, "function": self.function,
                "file": self.file, "line": self.line, "type": self.type, "classes": self.classes,
                "flowspace": self.flowspace, "evidence": self.evidence}


@dataclass
class Config:
    recv: list[str] = field(default_factory=lambda: list(PKT_RECV))
    pkt_output: list[str] = field(default_factory=lambda: list(PKT_OUTPUT))
    log_output: list[str] = field(default_factory=lambda: list(LOG_OUTPUT))
    extra_recv: list[str] = field(default_factory=list)
    # "program": output calls anywhere (sound: a summary printed at exit depends on the state too);
    # "pkt_procs": only in packet-processing procedures, as in Fig 4.11
    output_scope: str = "program"
    flowspace_budget_s: float = 1200.0  # chops can be costly; stop (and say so) after this
    # two-phase (context-sensitive) backward slices for Fig 4.11; False: the old upper bound
    context_sensitive_output: bool = True
    # called with one line per finished phase (None: silent)
    progress: Callable[[str], None] | None = field(default=None, repr=False, compare=False)


@dataclass
class Result:
    name: str
    variables: list[Variable]
    counts: dict[str, int]
    loop_procs: list[str]
    pkt_procs: list[str]
    recv_sites: list[str]
    timings: dict[str, float]
    instrumentation: dict | None = None
    stats: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "counts": self.counts, "loop_procedures": self.loop_procs,
                "packet_procedures": self.pkt_procs, "receive_sites": self.recv_sites,
                "timings_s": self.timings, "stats": self.stats,
                "instrumentation": self.instrumentation,
                "variables": [v.to_json() for v in self.variables]}

    def write_json(self, path: str | Path, plan_path: str | Path | None = None) -> None:
        """The result as JSON, streamed variable by variable (no second copy of the result in
        memory); the instrumentation plan, which dominates on big programs, goes to its own file
        (`plan_path`) and the result names it."""
        import json
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        head = {"name": self.name, "counts": self.counts, "loop_procedures": self.loop_procs,
                "packet_procedures": self.pkt_procs, "receive_sites": self.recv_sites,
                "timings_s": self.timings, "stats": self.stats}
        if plan_path is not None:
            head["instrumentation_file"] = str(plan_path)
            with open(plan_path, "w") as f:
                json.dump(self.instrumentation, f)
        else:
            head["instrumentation"] = self.instrumentation
        with open(path, "w") as f:
            f.write(json.dumps(head)[:-1] + ', "variables": [\n')
            for i, v in enumerate(self.variables):
                f.write(("" if i == 0 else ",\n") + json.dumps(v.to_json()))
            f.write("\n]}\n")

    def by_class(self, cls: str) -> set[str]:
        return {v.key for v in self.variables if cls in v.classes}


class NoReceiveCall(ValueError):
    """The program has no call of a packet-receive function the analysis knows."""


class StateAlyzr:
    def __init__(self, mod: Module, name: str = "middlebox", config: Config | None = None):
        self.mod = mod
        self.name = name
        self.cfg = config or Config()
        self.t: dict[str, float] = {}
        self._src: dict[str, list[str]] = {}

    # ---------------------------------------------------------------- helpers
    def _fname(self, f: str) -> str:
        return f[1:] if f.startswith("@") else f

    def where(self, ins) -> str:
        file, line = self.mod.loc(ins.dbg)
        return f"{Path(file).name}:{line}" if file else f"{self._fname(ins.fn)}:?"

    def src_line(self, ins) -> str:
        file, line = self.mod.loc(ins.dbg)
        if not file or not line:
            return ""
        lines = self._src.get(file)
        if lines is None:
            try:
                lines = Path(file).read_text(errors="replace").split("\n")
            except OSError:
                lines = []
            self._src[file] = lines
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def type_str(self, tid: int) -> str:
        tag, t = self.mod.strip_type(tid)
        if tag == "DW_TAG_pointer_type":
            return "pointer"
        if tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
            return "struct"
        if tag == "DW_TAG_array_type":
            return "array"
        if tag == "DIBasicType":
            return "scalar"
        if tag == "DW_TAG_enumeration_type":
            return "scalar"
        if tag == "DISubroutineType":
            return "function"
        return tag

    # ---------------------------------------------------------------- main driver
    def _progress(self, what: str) -> None:
        """Progress of the long phases (points-to, SDG, slices, flowspace, output), with the
        peak RSS so far: `nfvlab statealyzr analyze` prints it on stderr (see docs)."""
        if self.cfg.progress is not None:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.cfg.progress(f"statealyzr: {self.name}: {what} (peak {rss:.0f} MB)")

    def run(self) -> Result:
        t0 = time.perf_counter()
        mod = self.mod
        load_lines(mod)
        self.prog, self.pta, self.sdg = prog, pta, sdg = self._build()
        self.t["points_to_and_sdg"] = time.perf_counter() - t0
        self._progress(f"points-to and SDG done in {self.t['points_to_and_sdg']:.1f}s")
        t1 = time.perf_counter()
        self._map_vars()
        recv_sites = self._recv_sites()
        self.recv_sites = recv_sites
        if not recv_sites:
            known = sorted(set(self.cfg.recv) | set(self.cfg.extra_recv))
            raise NoReceiveCall(
                f"{self.name}: no packet-receive call found (looked for calls of {', '.join(known)}); "
                "name the function that hands the program its packets with --receive FUNC "
                "(or `recv:` in a recipe)")
        self._progress(f"{len(recv_sites)} receive call(s)")
        loop_procs = self._loop_procs(recv_sites)
        persistent = self._persistent(loop_procs)
        self.t["persistent"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        fwd = sdg.forward(self._recv_seeds(recv_sites))
        self.fwd = fwd
        slice_procs = {f for f in (prog.fn_of(n) for n in fwd) if f}
        pkt_procs = self._close_callees(slice_procs, loop_procs, recv_sites, fwd)
        top = self._top_level(persistent, pkt_procs)
        from .scratch import scratch_globals
        self.scratch = scratch_globals(self, top, pkt_procs, self.pkt_roots)
        for k in self.scratch:
            del top[k]      # no value survives from one packet to the next: not per-/cross-flow
        self.t["top_level"] = time.perf_counter() - t1
        self._progress(f"{len(pkt_procs)} packet procedures, {len(top)} top-level")
        t1 = time.perf_counter()
        upd = self._updateable(top, pkt_procs)
        self.t["updateable"] = time.perf_counter() - t1
        self._progress(f"{len(upd)} updateable; flowspace chops")
        t1 = time.perf_counter()
        flows = self._flowspace(top, pkt_procs, fwd)
        self.t["flowspace"] = time.perf_counter() - t1
        self._progress(f"flowspace done in {self.t['flowspace']:.1f}s")
        self._progress("output-impacting slices")
        t1 = time.perf_counter()
        pkt_out, log_out = self._output(upd, pkt_procs)
        other = "pkt_procs" if self.cfg.output_scope == "program" else "program"
        pkt_out2, log_out2 = self._output(upd, pkt_procs, other)
        self.t["output"] = time.perf_counter() - t1
        self._progress(f"output slices done in {self.t['output']:.1f}s; instrumentation plan")
        t1 = time.perf_counter()
        from .instrument import plan_instrumentation
        self.top, self.upd, self.pkt_procs = top, upd, pkt_procs
        instr = plan_instrumentation(self)
        self.t["instrumentation"] = time.perf_counter() - t1
        self.t["total"] = time.perf_counter() - t0

        variables = []
        for key, dv in sorted(self.vars.items()):
            v = Variable(key, dv.name, dv.kind, dv.function, dv.file, dv.line,
                         type=self.type_str(dv.type_md))
            if key in persistent:
                v.classes.append("persistent")
                v.evidence["persistent"] = persistent[key]
            if key in self.scratch:
                v.evidence["scratch"] = self.scratch[key]
            if key in top:
                v.classes.append("top_level")
                v.evidence["used"] = top[key]
            if key in upd:
                v.classes.append("updateable")
                v.evidence["updated"] = upd[key]
            elif dv.kind in ("global", "static"):
                # not updateable itself, but its storage may be updated through an updateable
                # top-level variable that points to it (how aliased state is covered)
                objs = self.var_obj.get(key, set())
                src = next((k for k in sorted(upd) if objs & self.reach_of.get(k, set())
                            and objs & self.written.keys()), None)
                if src:
                    v.evidence["reached_from"] = src
                elif key not in top and key not in self.scratch:
                    w = next((self.concurrent_writes[o] for o in objs if o in self.concurrent_writes), None)
                    if w is not None:
                        # changes at run time, but only code that never touches packets uses it
                        # (a reload thread's parser): not per-/cross-flow state
                        v.evidence["concurrent_only"] = ("written only by concurrent code at "
                                                         f"{self.where(mod.instrs[w])}")
            if key in flows:
                v.classes.append("keyed")
                v.flowspace = sorted(flows[key][0])
                v.evidence["keyed"] = flows[key][1]
            if key in pkt_out:
                v.classes.append("pkt_output")
                v.evidence["pkt_output"] = pkt_out[key]
            if key in log_out:
                v.classes.append("log_output")
                v.evidence["log_output"] = log_out[key]
            variables.append(v)
        counts = {"all": len(self.vars), "persistent": len(persistent), "top_level": len(top),
                  "updateable": len(upd), "keyed": len(flows),
                  "keyed_updateable": len(set(flows) & set(upd)), "pkt_output": len(pkt_out),
                  "log_output": len(log_out),
                  f"pkt_output_{other}": len(pkt_out2), f"log_output_{other}": len(log_out2)}
        stats = {"functions": len(mod.functions), "instructions": len(mod.instrs),
                 "globals": len(mod.globals), "sdg_nodes": prog.n,
                 "sdg_edges": sum(len(v) for v in sdg.succ.values()),
                 "forward_slice_nodes": len(fwd),
                 "flowspace_not_computed": getattr(self, "flow_skipped", []),
                 "output_scope": self.cfg.output_scope,
                 "init_procedures_in_slice": len(getattr(self, "init_procs", [])),
                 "concurrent_procedures": sorted(self._fname(f) for f in self.concurrent),
                 "scratch_globals": sorted(self.scratch),
                 "packet_entries": sorted(self._fname(f) for f in self.pkt_roots),
                 "allocation_wrappers": sorted(self._fname(f) for f in self.pta.wrappers),
                 "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        return Result(self.name, variables, counts, sorted(self._fname(f) for f in loop_procs),
                      sorted(self._fname(f) for f in pkt_procs),
                      [self.where(mod.instrs[i]) for i in recv_sites],
                      {k: round(v, 3) for k, v in self.t.items()}, instr, stats)

    def _build(self):
        return build(self.mod, self._progress)

    # ---------------------------------------------------------------- variables
    def _map_vars(self) -> None:
        mod = self.mod
        dvars = mod.debug_vars()
        self.global_var: dict[str, str] = {}     # "@g" -> key
        self.alloca_var: dict[int, str] = {}     # alloca instr id -> key
        self.vars: dict[str, DebugVar] = {}
        defined_fns = {self._fname(f) for f in mod.functions}
        keyed_by_md: dict[int, str] = {}
        for g in mod.globals.values():
            if g.external:
                continue
            for vm in mod.global_var_md(g):
                dv = dvars.get(vm)
                if dv is None:
                    continue
                key = self._unique(dv)
                keyed_by_md[vm] = key
                self.global_var[g.name] = key
        for ins in mod.instrs:
            if ins.op == "call" and ins.direct == "@llvm.dbg.declare" and ins.parts and ins.parts[0]:
                m = re.search(r"metadata !(\d+), metadata", ins.text)
                if not m:
                    continue
                dv = dvars.get(int(m.group(1)))
                if dv is None or dv.function not in defined_fns:
                    continue
                key = keyed_by_md.get(dv.md) or self._unique(dv)
                keyed_by_md[dv.md] = key
                a = self.prog.local.get((ins.fn, ins.parts[0][0]))
                if a is not None and a < len(mod.instrs) and mod.instrs[a].op == "alloca":
                    self.alloca_var[a] = key
        self.var_obj: dict[str, set[int]] = {}
        for g, key in self.global_var.items():
            self.var_obj.setdefault(key, set()).add(self.prog.gobj[g])
        for a, key in self.alloca_var.items():
            self.var_obj.setdefault(key, set()).add(self.prog.alloca_obj(self.mod.instrs[a]))
        self.obj_var = {o: k for k, os in self.var_obj.items() for o in os}

    def _unique(self, dv: DebugVar) -> str:
        key = dv.key
        if key in self.vars and self.vars[key].md != dv.md:
            other = self.vars[key]
            if (other.file, other.line, other.name) == (dv.file, dv.line, dv.name):
                return key   # same declaration seen through two units (header static inline...)
            key = f"{key}@{Path(dv.file).name}:{dv.line}"
            if key in self.vars and self.vars[key].md != dv.md:
                key = f"{key}#{dv.md}"
        self.vars.setdefault(key, dv)
        return key

    def vars_of(self, ins) -> set[str]:
        """Source variables an instruction names (directly or through a constant expression)."""
        out = set()
        for part in ins.parts + ([ins.callee] if ins.callee else []):
            for r in part:
                if r[0] == "@":
                    k = self.global_var.get(r)
                    if k:
                        out.add(k)
                else:
                    a = self.prog.local.get((ins.fn, r))
                    if a is not None and a in self.alloca_var:
                        out.add(self.alloca_var[a])
        return out

    # ---------------------------------------------------------------- receive sites & loops
    def _callee_names(self, ins) -> set[str]:
        names = set(self.pta.callees.get(ins.id, ()))
        if ins.direct:
            names.add(ins.direct)
        return {self._fname(n) for n in names}

    def _recv_sites(self) -> list[int]:
        recv = set(self.cfg.recv) | set(self.cfg.extra_recv)
        # a receive function the program defines itself (Snort's DAQ_Acquire wrapper) is not the
        # receive call: the library call inside it is; names a recipe adds (extra_recv) count as given
        defined = {self._fname(f) for f in self.mod.functions} - set(self.cfg.extra_recv)
        recv -= defined
        out = []
        for ins in self.mod.instrs:
            if ins.op in ("call", "invoke") and self._callee_names(ins) & recv:
                out.append(ins.id)
        return out

    def _recv_seeds(self, sites: list[int]) -> list[int]:
        seeds = []
        for i in sites:
            seeds.append(i)
        return seeds

    def _in_cycle_blocks(self, fn_name: str) -> set[str]:
        fn = self.mod.functions[fn_name]
        out: set[str] = set()
        for _h, body in natural_loops(fn):
            out |= body
        return out

    def _loop_procs(self, sites: list[int]) -> set[str]:
        mod = self.mod
        callers: dict[str, list[int]] = {}
        for cid, fs in self.pta.callees.items():
            for f in fs:
                callers.setdefault(f, []).append(cid)
        self.callers = callers
        loops: set[str] = set()
        self.loop_blocks: dict[str, set[str]] = {}
        for i in sites:
            ins = mod.instrs[i]
            if self._callee_names(ins) & CALLBACK_RECV:
                loops.add(ins.fn)
                continue
            # walk up the call graph until a call site inside a loop
            todo, seen = [ins], set()
            while todo:
                c = todo.pop()
                if c.id in seen:
                    continue
                seen.add(c.id)
                cyc = self._in_cycle_blocks(c.fn)
                if c.block in cyc:
                    loops.add(c.fn)
                    continue
                ups = callers.get(c.fn, [])
                if not ups:
                    loops.add(c.fn)   # no loop found: the outermost procedure holds the loop
                for u in ups:
                    todo.append(mod.instrs[u])
        return loops

    # ---------------------------------------------------------------- Fig 4.6
    def _persistent(self, loop_procs: set[str]) -> dict[str, str]:
        out = {}
        lp = {self._fname(f) for f in loop_procs}
        for key, dv in self.vars.items():
            if dv.kind in ("global", "static"):
                what = "global" if dv.kind == "global" else f"static in {dv.function}()"
                out[key] = f"{what} declared at {Path(dv.file).name}:{dv.line}"
            elif dv.function in lp:
                out[key] = (f"{dv.kind} of loop procedure {dv.function}() "
                            f"declared at {Path(dv.file).name}:{dv.line}")
        return out

    # ---------------------------------------------------------------- Fig 4.7
    def pp_instrs(self, f: str):
        """The packet-processing statements of a packet procedure: all of them, except in a loop
        procedure, where only the receive loop's statements are (the rest is initialization)."""
        fn = self.mod.functions[f]
        if f not in self.loop_procs:
            yield from fn.instrs()
            return
        blocks = self.recv_loop_blocks.get(f, set())
        for b in fn.blocks.values():
            if b.name in blocks:
                yield from b.instrs

    def _close_callees(self, slice_procs, loop_procs, recv_sites, fwd) -> set[str]:
        """Procedures in the forward slice, plus every procedure they (transitively) call — in the
        loop procedure only from call sites inside the receive loop or in the slice."""
        mod, pta = self.mod, self.pta
        self.loop_procs = loop_procs
        recv_loop_blocks: dict[str, set[str]] = {}
        self.recv_loop_blocks = recv_loop_blocks
        for i in recv_sites:
            ins = mod.instrs[i]
            if ins.fn not in loop_procs:
                # the loop is in a caller: the blocks of the loops around the call chain
                continue
            for _h, body in natural_loops(mod.functions[ins.fn]):
                if ins.block in body:
                    recv_loop_blocks.setdefault(ins.fn, set()).update(body)
        for f in loop_procs:
            if f in recv_loop_blocks:
                continue
            # receive happens in a callee (or via a callback): loops around calls reaching it
            fn = mod.functions[f]
            for _h, body in natural_loops(fn):
                for b in body:
                    for ins in fn.blocks[b].instrs:
                        if ins.op == "call" and any(self._reaches_recv(g) for g in pta.callees.get(ins.id, ())):
                            recv_loop_blocks.setdefault(f, set()).update(body)
        # procedures that can run while packets are processed: reachable in the call graph from
        # the receive loops, from receive callbacks, and from asynchronous entries registered
        # anywhere (threads, signal handlers, atexit); the rest (main before its loop, config
        # parsing...) is initialization, which the flow-insensitive slice may still touch
        roots: set[str] = set(loop_procs)
        for f in loop_procs:
            for ins in self.pp_instrs(f):
                if ins.op in ("call", "invoke"):
                    roots.update(g for g in pta.callees.get(ins.id, ()) if g in mod.functions)
        async_roots: set[str] = set()
        for ins in mod.instrs:
            if ins.op == "call" and ins.direct in CALLBACKS:
                gs = {g for g in pta.callees.get(ins.id, ()) if g in mod.functions}
                (async_roots if ins.direct in ASYNC_ENTRIES else roots).update(gs)
        # a thread or handler is packet processing only if what it runs touches received packets
        # (paperfig45's processPacket dequeues them); a configuration-reload thread does not, and
        # its parser must not become "packet processing" because the flow-insensitive slice
        # reaches it through memory it shares with packet code (issue 15). Its writes still make
        # top-level variables updateable (they happen while packets are processed): `concurrent`.
        touching = self._packet_touching()
        concurrent: set[str] = set()
        for r in sorted(async_roots):
            clo = self._call_closure({r})
            if clo & touching:
                roots.add(r)
            else:
                concurrent |= clo
        self.pkt_roots = {r for r in roots - set(loop_procs) if r in mod.functions}
        running = self._call_closure(roots - set(loop_procs)) | roots
        self.running = running
        self.concurrent = concurrent - running
        self.init_procs = sorted(set(slice_procs) - running)
        start = set(slice_procs) & running
        out = set(start)
        todo = list(start)
        while todo:
            f = todo.pop()
            fn = mod.functions.get(f)
            if fn is None:
                continue
            for ins in self.pp_instrs(f):
                if ins.op not in ("call", "invoke"):
                    continue
                for g in pta.callees.get(ins.id, ()):
                    if g in mod.functions and g not in out:
                        out.add(g)
                        todo.append(g)
        return out

    def _call_closure(self, start: set[str]) -> set[str]:
        mod, pta = self.mod, self.pta
        out = set(start)
        todo = list(start)
        while todo:
            f = todo.pop()
            fn = mod.functions.get(f)
            if fn is None:
                continue
            for ins in fn.instrs():
                if ins.op in ("call", "invoke"):
                    for g in pta.callees.get(ins.id, ()):
                        if g in mod.functions and g not in out:
                            out.add(g)
                            todo.append(g)
        return out

    def _packet_objects(self) -> set[int]:
        """Objects holding received packets: the receive calls' packet/header objects and the
        buffers they fill."""
        objs: set[int] = set()
        for i in self.recv_sites:
            for tag in ("ext", "pkt", "hdr", "ret", "meta"):
                o = self.prog.site_obj.get((i, tag))
                if o is not None:
                    objs.add(o)
            for v in self.pta.ext_written.get(i, ()):
                objs |= set(self.pta.pts.get(v, ()))
        return objs

    def _packet_touching(self) -> set[str]:
        """Procedures that receive, or read memory holding received packets."""
        pkt = self._packet_objects()
        out = {self.mod.instrs[i].fn for i in self.recv_sites}
        for f, fn in self.mod.functions.items():
            if f in out:
                continue
            for ins in fn.instrs():
                if ins.op == "load" and ins.parts and any(
                        pkt & self.pta.pts.get(v, _NONE) for v in
                        (self.prog.value(f, r) for r in ins.parts[0]) if v is not None):
                    out.add(f)
                    break
        return out

    def _reaches_recv(self, f: str) -> bool:
        """Does procedure f (transitively) contain a receive call?"""
        if not hasattr(self, "_recv_fns"):
            fns = {self.mod.instrs[i].fn for i in self.recv_sites}
            callers = self.callers
            todo = list(fns)
            while todo:
                g = todo.pop()
                for c in callers.get(g, []):
                    h = self.mod.instrs[c].fn
                    if h not in fns:
                        fns.add(h)
                        todo.append(h)
            self._recv_fns = fns
        return f in self._recv_fns

    def _top_level(self, persistent: dict[str, str], pkt_procs: set[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in pkt_procs:
            for ins in self.pp_instrs(f):
                if not ins.dbg or (ins.direct or "").startswith("@llvm.dbg"):
                    continue
                for k in self.vars_of(ins):
                    if k in persistent and k not in out:
                        out[k] = f"used in packet procedure {self._fname(f)}() at {self.where(ins)}"
        return out

    # ---------------------------------------------------------------- Fig 4.9
    def _updateable(self, top: dict[str, str], pkt_procs: set[str]) -> dict[str, str]:
        sdg, mod = self.sdg, self.mod
        written: dict[int, int] = {}     # object -> first writing instruction
        self.write_instrs: list[int] = []
        direct: dict[str, str] = {}
        # writes inside allocation/deallocation wrappers initialise fresh memory or poison memory
        # being freed; the state update is the caller's assignment of the pointer
        self.mm_wrappers = set(self.pta.wrappers) | self._dealloc_wrappers()
        # constants (string literals, const tables) cannot be written at run time
        self.const_objs = {self.prog.gobj[g.name] for g in mod.globals.values() if g.is_const}
        fresh = self._wrapper_memory()
        self.concurrent_writes: dict[int, int] = {}      # object -> first write by concurrent code
        for f in sorted(pkt_procs) + sorted(self.concurrent - pkt_procs):
            mine = fresh.get(f)
            conc = f not in pkt_procs
            for ins in (self.mod.functions[f].instrs() if conc else self.pp_instrs(f)):
                objs = sdg.writes.get(ins.id)
                if not objs:
                    continue
                if mine is not None and objs <= mine:
                    continue   # a wrapper initialising / poisoning the memory it manages
                if ins.op == "store" and not ins.dbg:
                    continue   # formal-parameter spill into its own alloca
                self.write_instrs.append(ins.id)
                if ins.op == "store":
                    for r in ins.parts[1]:
                        k = self.global_var.get(r) if r[0] == "@" else self.alloca_var.get(
                            self.prog.local.get((ins.fn, r), -1))
                        if k in top and k not in direct:
                            direct[k] = (f"assigned at {self.where(ins)}" if not conc else
                                         f"assigned concurrently (thread/handler {self._fname(f)}()) "
                                         f"at {self.where(ins)}")
                for o in objs:
                    if o not in self.const_objs:
                        written.setdefault(o, ins.id)
                        if conc:
                            self.concurrent_writes.setdefault(o, ins.id)
        self.written = written
        out = dict(direct)
        # objects from which some written object is reachable: one reverse traversal of the
        # points-to graph instead of one forward traversal per top-level variable
        rev: dict[int, list[int]] = defaultdict(list)
        for o in self.prog.obj_label:
            for p in self.pta.pts.get(o, ()):
                rev[p].append(o)
        can_reach = set(written)
        stack = list(written)
        while stack:
            o = stack.pop()
            for q in rev.get(o, ()):
                if q not in can_reach:
                    can_reach.add(q)
                    stack.append(q)
        self.reach_of: dict[str, set[int]] = {}
        for k in top:
            objs = self.var_obj.get(k, set())
            if k not in out and not objs & can_reach:
                continue
            r = self.pta.reach(objs)
            self.reach_of[k] = r
            if k in out:
                continue
            for o in objs:
                if o in written:
                    out[k] = f"written through an alias at {self.where(mod.instrs[written[o]])}"
                    break
            else:
                for o in r:
                    if o in written:
                        out[k] = (f"value reachable from it ({self.prog.obj_label.get(o, o)}) "
                                  f"written at {self.where(mod.instrs[written[o]])}")
                        break
        return out

    def _wrapper_memory(self) -> dict[str, set[int]]:
        """Per allocation/deallocation wrapper, the memory it manages: what it allocates, its own
        stack slots and what its formals point to (the block being resized or freed). Only writes
        confined to that memory are skipped; a global counter bumped inside the wrapper is a
        state update like any other (issue 15)."""
        prog, mod = self.prog, self.mod
        out: dict[str, set[int]] = {f: set() for f in self.mm_wrappers}
        for (iid, tag), o in prog.site_obj.items():
            f = mod.instrs[iid].fn
            if f in out and tag in ("heap", "ext"):
                out[f].add(o)
        for iid, o in prog.obj_of_alloca.items():
            f = mod.instrs[iid].fn
            if f in out:
                out[f].add(o)
        gobjs = set(prog.gobj.values())
        for f in out:
            for pr in mod.functions[f].params:
                v = prog.local.get((f, pr))
                if v is not None:
                    out[f] |= set(self.pta.pts.get(v, ())) - gobjs
        return out

    def _dealloc_wrappers(self) -> set[str]:
        """Procedures that free (a pointer derived from) one of their formal parameters."""
        mod = self.mod
        frees = {"@free", "@cfree"}
        out: set[str] = set()
        changed = True
        while changed:
            changed = False
            for f, fn in mod.functions.items():
                if f in out or not fn.params or len(mod.functions[f].blocks) > 40:
                    continue
                formals = {a for a, k in self.alloca_var.items()
                           if mod.instrs[a].fn == f and self.vars[k].kind == "formal"}
                formal_refs = {mod.instrs[a].res for a in formals} | set(fn.params)
                for ins in fn.instrs():
                    frees_it = ins.op == "call" and ins.parts and (
                        self._callee_names(ins) & {x[1:] for x in frees} or ins.direct in out)
                    if frees_it and set(self._ssa_closure(f, ins.parts[0])) & formal_refs:
                            out.add(f)
                            changed = True
                            break
        return out

    # ---------------------------------------------------------------- Fig 4.10
    def _index_keyed(self, keyed: list[str]) -> None:
        """Indexes for _keyed_refs: which global candidate alone owns each object. near(k) is
        k's storage plus what it points to; it is never materialised (one shared points-to set
        per storage object), so big programs keep one entry per object, not per pair."""
        self._keyed = set(keyed)
        many = "*"
        owner: dict[int, str] = {}       # object -> the one global candidate near it, or "*"
        for k in keyed:
            if self.vars[k].kind not in ("global", "static"):
                continue
            for part in self._near_parts(k):
                for o in part:
                    cur = owner.get(o)
                    if cur is None:
                        owner[o] = k
                    elif cur != k:
                        owner[o] = many
        self._owner = owner
        self._local_keyed = [k for k in keyed if self.vars[k].kind not in ("global", "static")]
        self._ks_of_set: dict[int, tuple] = {}

    def _near_parts(self, k: str) -> list:
        objs = self.var_obj.get(k, set())
        return [objs] + [self.pta.pts.get(o, ()) for o in objs]

    def _candidates_for(self, pts) -> frozenset:
        """Keyed candidates whose near set contains every object of `pts`, when no object is
        near two globals (memoised by the identity of the interned set)."""
        hit = self._ks_of_set.get(id(pts))
        if hit is not None and hit[0] is pts:
            return hit[1]
        owners = {self._owner.get(o) for o in pts}
        ks: set[str] = set()
        if "*" not in owners:
            glob = owners - {None}
            if len(glob) == 1 and None not in owners:
                ks |= glob
            for k in self._local_keyed:
                parts = self._near_parts(k)
                if all(any(o in p for p in parts) for o in pts):
                    ks.add(k)
        res = frozenset(ks)
        self._ks_of_set[id(pts)] = (pts, res)
        return res

    def _keyed_refs(self, fn: str, refs: list[str]) -> set[str]:
        """Keyed candidates that the values `refs` (an SSA closure through spill slots) refer to:
        by name, or through a pointer whose points-to set lies in the candidate's storage and
        what it points to, and which no other global owns. A generic pointer whose field-
        insensitive set merely overlaps (allocator internals, byte buffers, one merged heap
        object) would otherwise make every table "keyed" by every loop over those objects."""
        out: set[str] = set()
        for ref in refs:
            if ref[0] == "@":
                k = self.global_var.get(ref)
                if k in self._keyed:
                    out.add(k)
                continue
            v = self.prog.local.get((fn, ref))
            if v is None:
                continue
            k = self.alloca_var.get(v)
            if k in self._keyed:
                out.add(k)
            pts = self.pta.pts.get(v)
            if pts:
                out |= self._candidates_for(pts)
        return out

    def _ssa_closure(self, fn: str, refs: list[str], depth: int = 12) -> list[str]:
        """The local SSA definitions a value is computed from (through loads' pointers)."""
        out, todo, seen = [], list(refs), set()
        mod, prog = self.mod, self.prog
        while todo and len(seen) < 200:
            r = todo.pop()
            if r in seen:
                continue
            seen.add(r)
            out.append(r)
            if r[0] == "@":
                continue
            d = prog.local.get((fn, r))
            if d is None or d >= len(mod.instrs):
                continue
            ins = mod.instrs[d]
            chop = getattr(self, "_chop", None)
            if ins.op == "load" and chop is not None and len(ins.parts[0]) == 1:
                chop.origins(fn)
                for st in chop._slot_stores[fn].get(ins.parts[0][0], ()):
                    todo.extend(mod.instrs[st].parts[0])   # through the spill slot to its values
            if ins.op in ("alloca", "call", "invoke", "phi"):
                continue
            for p in ins.parts:
                todo.extend(p)
        return out

    def _param_sources(self, f: str, refs: list[str]) -> tuple[set[int], bool]:
        """Which formals of f the values refs are computed from, and whether anything else too."""
        fn = self.mod.functions[f]
        pidx = {p: i for i, p in enumerate(fn.params)}
        clo = self._ssa_closure(f, refs)
        formals = {pidx[r] for r in clo if r in pidx}
        other = any(r[0] == "@" or (self.prog.local.get((f, r)) is not None and r not in pidx and
                    self.mod.instrs[self.prog.local[(f, r)]].op in ("load", "call") and
                    not self._is_slot_load(f, r)) for r in clo)
        return formals, other

    def _is_slot_load(self, f: str, r: str) -> bool:
        d = self.prog.local.get((f, r))
        if d is None or d >= len(self.mod.instrs):
            return False
        ins = self.mod.instrs[d]
        return (ins.op == "load" and len(ins.parts[0]) == 1 and
                ins.parts[0][0] in self._chop._slot_stores.get(f, {}))

    def _helper_index(self, f: str, ins, idx: list[str], pkt_procs) -> list[tuple[str, int, str]]:
        """Keyed accesses `tab[g(key)]` inside a helper whose table and key are formals: at every
        call site in packet processing, the table actual names the variable and the key actual
        is the chop's target (context-sensitive: each table gets its own callers' fields)."""
        self._chop.origins(f)
        bases, other_base = self._param_sources(f, ins.parts[0])
        if not bases or other_base:
            return []
        keys, other_key = self._param_sources(f, idx)
        own = [n for n in (self.prog.local.get((f, r)) for r in idx) if n is not None]
        out = []
        for cid in self.callers.get(f, ()):
            call = self.mod.instrs[cid]
            if call.fn not in pkt_procs or call.op not in ("call", "invoke"):
                continue
            ks: set[str] = set()
            for b in bases:
                if b < len(call.parts):
                    ks |= self._keyed_refs(call.fn, self._ssa_closure(call.fn, call.parts[b], 3))
            nodes: list[int] = []
            for j in keys:
                if j < len(call.parts):
                    nodes += [n for n in (self.prog.local.get((call.fn, r)) for r in call.parts[j]
                                          if r[0] == "%") if n is not None]
            if other_key:
                nodes += own
            why = f"index at {self.where(ins)} via call at {self.where(call)}"
            out += [(k, n, why) for k in ks for n in nodes]
        return out

    _MIX_OPS = {"and", "or", "xor", "add", "sub", "mul", "shl", "lshr", "ashr", "zext", "sext", "trunc"}

    def _other_side(self, f: str, part: list[str], k: str, depth: int = 4) -> list[int]:
        """The value nodes of a comparison operand that are not the keyed variable's own data.
        An operand mixing both (`(ip->saddr & r->mask) == r->net`) is split at its arithmetic."""
        if not part:
            return []
        if k not in self._keyed_refs(f, self._ssa_closure(f, part)):
            return [n for n in (self.prog.local.get((f, x)) for x in part) if n is not None]
        if depth == 0:
            return []
        out: list[int] = []
        for x in part:
            d = self.prog.local.get((f, x))
            if d is None or d >= len(self.mod.instrs) or self.mod.instrs[d].op not in self._MIX_OPS:
                continue      # the variable's own side of the comparison
            for sub in self.mod.instrs[d].parts:
                out += self._other_side(f, sub, k, depth - 1)
        return out

    def _flowspace(self, top, pkt_procs, fwd) -> dict[str, tuple[set[str], str]]:
        mod = self.mod
        keyed = [k for k in top if self.type_str(self.vars[k].type_md) in ("pointer", "struct", "array")]
        # a variable that only ever points into received packets is the packet, not a state table
        pkt_objs: set[int] = set()
        for i in self.recv_sites:
            for tag in ("ext", "pkt", "hdr", "ret"):
                o = self.prog.site_obj.get((i, tag))
                if o is not None:
                    pkt_objs.add(o)
        self.pkt_objs = pkt_objs

        def packet_only(k: str) -> bool:
            contents = set()
            for o in self.var_obj.get(k, set()):
                contents |= self.pta.pts.get(o, set())
            return bool(contents) and contents <= pkt_objs
        keyed = [k for k in keyed if not packet_only(k)]
        self._chop = FlowChop(self)
        self._index_keyed(keyed)
        out: dict[str, tuple[set[str], str]] = {}
        targets: dict[str, list[tuple[int, str]]] = {k: [] for k in keyed}
        for f in sorted(pkt_procs):
            fn = mod.functions[f]
            if f in self.mm_wrappers:
                continue      # allocator internals index whatever memory they manage
            # square brackets / pointer arithmetic: non-constant gep index on a keyed base
            for ins in self.pp_instrs(f):
                if ins.op != "getelementptr" or len(ins.parts) < 2:
                    continue
                idx = [r for p in ins.parts[1:] for r in p if r[0] == "%"]
                if not idx:
                    continue
                ks = self._keyed_refs(f, self._ssa_closure(f, ins.parts[0], 3))
                for k in ks:
                    for r in idx:
                        n = self.prog.local.get((f, r))
                        if n is not None:
                            targets[k].append((n, f"index at {self.where(ins)}"))
                if not ks:
                    # a shared lookup helper (find(tab, key)): the table is a formal, so which
                    # table it is, and which key indexes it, is known only at each call site
                    for k, n, why in self._helper_index(f, ins, idx, pkt_procs):
                        targets[k].append((n, why))
            # iteration: loops whose exit condition refers to a keyed variable
            for _header, body in natural_loops(fn):
                conds = []
                for b in body:
                    term = fn.blocks[b].instrs[-1] if fn.blocks[b].instrs else None
                    if term is not None and term.is_cond and term.parts:
                        conds.append(term)
                exiting = [t for t in conds if any(s not in body for s in (t.targets or []))]
                hits: dict[str, Instr] = {}
                for t in exiting:
                    for k in self._keyed_refs(f, self._ssa_closure(f, t.parts[0])):
                        hits.setdefault(k, t)
                if not hits:
                    continue
                for t in conds:
                    for r in t.parts[0]:
                        d = self.prog.local.get((f, r))
                        if d is None or d >= len(mod.instrs):
                            continue
                        cmp = mod.instrs[d]
                        ops = cmp.parts if cmp.op in ("icmp", "fcmp") else [[r]]
                        for part in ops:
                            for k, hit in hits.items():
                                for n in self._other_side(f, part, k):
                                    targets[k].append((n, f"list iteration at {self.where(hit)}"))
        self.flow_targets = targets
        self.flow_why: dict[str, dict[str, str]] = {}
        self.flow_skipped: list[str] = []
        # chop(pkt -> targets), string-matched for header fields: a backward data chop from the
        # variable's index/comparison operands, field- and call-site-aware (flowchop.py), inside
        # the packet's forward slice; all variables in one pass, header fields as bit masks
        t0 = time.perf_counter()
        names = list(_FIELD_RE)
        line_mask: dict[int, int] = {}

        def own(n: int) -> int:
            m = line_mask.get(n)
            if m is None:
                m = 0
                if n < len(mod.instrs) and mod.instrs[n].dbg:
                    line = self.src_line(mod.instrs[n])
                    if line and ("->" in line or "." in line):
                        for b, c in enumerate(names):
                            if _FIELD_RE[c].search(line):
                                m |= 1 << b
                line_mask[n] = m
            return m
        keys = [k for k, tl in targets.items() if any(n in fwd for n, _ in tl)]
        groups = [sorted({n for n, _ in targets[k] if n in fwd}) for k in keys]
        masks = self._chop.field_masks(groups, fwd, own, t0 + self.cfg.flowspace_budget_s)
        for k, m in zip(keys, masks, strict=True):
            if m is None:
                self.flow_skipped.append(k)   # over the budget: said in stats, not guessed
            elif m:
                out[k] = ({c for b, c in enumerate(names) if m >> b & 1}, targets[k][0][1])
        self.t["flowspace_chop"] = time.perf_counter() - t0
        return out

    # ---------------------------------------------------------------- Fig 4.11
    def _output(self, upd: dict[str, str], pkt_procs: set[str], scope_name: str | None = None):
        mod, sdg = self.mod, self.sdg
        scope_name = scope_name or self.cfg.output_scope
        pkt_o, log_o = set(self.cfg.pkt_output), set(self.cfg.log_output)
        seeds = {"pkt": [], "log": []}
        first = {}
        scope = pkt_procs if scope_name == "pkt_procs" else list(mod.functions)
        for f in scope:
            it = self.pp_instrs(f) if scope_name == "pkt_procs" else mod.functions[f].instrs()
            for ins in it:
                if ins.op not in ("call", "invoke"):
                    continue
                names = self._callee_names(ins)
                for kind, fs in (("pkt", pkt_o), ("log", log_o)):
                    if names & fs:
                        s = [sdg.blocknode[(ins.fn, ins.block)]]
                        s += [self.prog.local[(ins.fn, r)] for p in ins.parts for r in p
                              if r[0] == "%" and (ins.fn, r) in self.prog.local]
                        for p in ins.parts:
                            for r in p:
                                if r[0] == "@":
                                    s.append(self.prog.gobj.get(r))
                        s.append(sdg._rd.get(frozenset(sdg.reads.get(ins.id, ()))))
                        seeds[kind].extend(x for x in s if x is not None)
                        first.setdefault(kind, self.where(ins))
        res = []
        for kind in ("pkt", "log"):
            out: dict[str, str] = {}
            if seeds[kind]:
                sl = sdg.backward_ctx(seeds[kind]) if self.cfg.context_sensitive_output else \
                    sdg.backward(seeds[kind])
                for n in sl:
                    ks = set()
                    if n < len(mod.instrs):
                        ks = self.vars_of(mod.instrs[n])
                    elif n in self.obj_var:
                        ks = {self.obj_var[n]}
                    for k in ks:
                        if k in upd and k not in out:
                            where = self.where(mod.instrs[n]) if n < len(mod.instrs) else "memory"
                            out[k] = f"in backward slice of {kind} output (e.g. {first[kind]}) via {where}"
            res.append(out)
        return res[0], res[1]
