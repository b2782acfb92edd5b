"""Fault injection on a running CHC chain (issue 12, part 6) and R6 NF failover with replay.

A run is root -> N instances of one NF -> sink on a LocalDeployment, with the correctness metadata on:
the root logs every packet until the last NF's delete request arrives and the store's commit signals
match the packet's XOR vector; NFs send delete requests before their output; the store's clock log
suppresses duplicate updates; the sink suppresses duplicate outputs by clock.

Faults (all by pid, never a polite stop):
  kill-nf      SIGKILL NF instance `instance` once the root has sent `at_packet` packets (or after
               `at_s` s); the root holds that instance's traffic (the failure detector's verdict), a
               replacement starts in the same container with --recover (same vertex, instance id and
               address), and the root replays every logged packet of that instance (R6 NF failover).
  kill-root    SIGKILL the root while it is paused at `at_packet` (in-flight packets downstream, their
               delete requests and commit signals still to come), then R6 root failover: a new root in
               the same container reads the clock the old one persisted every `persist_clock` packets
               (L) and continues at L + persist_clock, so no clock is used twice; its input starts
               where the old root's stopped (the framework buffers input while no root runs). The
               downstream allocation is the framework manager's hash rule (--next/--scope), handed to
               the new root as to the old.
  kill-store   SIGKILL the redis-server (store failover is not built: the chain cannot recover).
  delay-nf     SIGSTOP the instance for `delay_ms`, then SIGCONT.
  delay-store  SIGSTOP the redis-server for `delay_ms`, then SIGCONT (no-ACK ops time out and are
               retransmitted: the clock log must apply them once).
  kill-nf-slow-store  SIGSTOP the redis-server, SIGKILL the instance 20 ms later (its no-ACK ops are
               still outstanding, so packets it already output are neither committed nor deleted),
               fail over as kill-nf, replay, SIGCONT the server `delay_ms` after the kill (at least
               30 ms after the replay began). The
               replay then repeats updates the store already applied (the clock log must suppress
               them) and outputs the sink already delivered (the sink must suppress them).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nfvlab.chc import control
from nfvlab.chc import store as chc_store
from nfvlab.chc.chain import MODELS, TUNNEL_PORT, ChainError, _json_line, _space_kv
from nfvlab.chc.deploy import LocalDeployment
from nfvlab.chc.fault_kinds import AT_PACKET_ONLY, FAULT_KINDS

# Keys that hold CHC's own metadata, not NF state: clock logs, commit streams, in-store packet logs.
_META_SUFFIXES = (":clog",)
_META_PREFIXES = ("chc:commit:", "chc:{log:", "chc:{root:")


@dataclass
class Fault:
    kind: str = "none"
    instance: int = 1  # 1-based NF instance for kill-nf / delay-nf
    at_packet: int | None = None  # inject once the root has sent this many packets
    at_s: float | None = None  # ... or this long after the root started
    delay_ms: float = 100.0  # delay-*: how long the process stays stopped

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        if self.kind != "none" and self.at_packet is None and self.at_s is None:
            raise ValueError("a fault needs at_packet or at_s")
        if self.kind in AT_PACKET_ONLY and self.at_packet is None:
            raise ValueError(f"a {self.kind} fault needs at_packet (the input position of the kill)")


@dataclass
class Options:
    """What of the correctness machinery is on (the checker's negative controls switch parts off)."""

    store_dedup: bool = True  # the store's clock log suppresses duplicate updates
    sink_dedup: bool = True  # the sink drops outputs whose clock it already delivered
    log_mode: str = "local"  # the root's packet log: "local" or "store"
    log_max: int = 4096  # the root stops admitting input while this many packets are logged
    xor_check: bool = True  # delete a logged packet only once its commit signals match its XOR vector
    retransmit_ms: int = 50
    persist_clock: int = 10  # the root persists its clock every this many packets; 0: off (negative control)


@dataclass
class RunResult:
    fault: Fault
    outputs: list[tuple[int, bytes]]  # (clock, frame) in the order the sink delivered them
    root: dict
    sink: dict
    instances: list[dict]  # exit summaries of the instances alive at the end
    reports: list[dict[str, str]]
    state: dict[str, object]  # the store's NF state after the run (normalised keys)
    events: list[dict] = field(default_factory=list)  # what the injector did, with times
    killed_routes: int | None = None  # kill-nf: index of the killed instance at the root
    # kill-root: (last counter of the old root, first counter - 1 of the new one): clocks in between
    # were never used, so the run relabels onto the ideal's clocks by that gap
    clock_gap: tuple[int, int] | None = None
    # with samples=True: per instance process ("nat1", "nat1-r" for a replacement) its packets'
    # (start ns, in-NF ns), CLOCK_MONOTONIC; a SIGKILLed instance writes none
    samples: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def summary(self) -> dict:
        return {"fault": asdict(self.fault), "root": self.root, "sink": self.sink, "events": self.events,
                "instances": [{k: v for k, v in i.items() if k != "report"} for i in self.instances]}


def dump_state(store: chc_store.Store) -> dict[str, object]:
    """Every NF state object in the store, keyed with the instance id masked ("i*"), so a chain of N
    instances compares with one of a single instance. CHC's metadata keys are left out."""
    import re

    out: dict[str, object] = {}
    for srv in store.servers:
        c = srv.client(decode_responses=True)
        for key in c.scan_iter(match="chc:*", count=1000):
            if key.endswith(_META_SUFFIXES) or key.startswith(_META_PREFIXES):
                continue
            kind = c.type(key)
            value: object
            if kind == "string":
                value = c.get(key)
            elif kind == "list":
                value = c.lrange(key, 0, -1)
            elif kind == "hash":
                value = c.hgetall(key)
            elif kind == "set":
                value = sorted(c.smembers(key))
            else:
                value = f"<{kind}>"
            out[re.sub(r":i\d+:", ":i*:", key)] = value
    return out


def duplicate_count(store: chc_store.Store) -> int:
    """Updates the clock logs saw again (retransmissions, replays): suppressed when dedup is on."""
    n = 0
    for srv in store.servers:
        c = srv.client(decode_responses=True)
        for key in c.scan_iter(match="chc:*:clog", count=1000):
            n += int(c.hget(key, "#dups") or 0)
    return n


def _stats(sock: Path) -> dict[str, str]:
    return control.parse_kv(control.ask(sock, "stats", timeout_s=5.0))


def run(dep: LocalDeployment, bin_dir: Path, store: chc_store.Store, pcap: Path, nf: str, model: str, *,
        instances: int = 1, config: dict[str, str] | None = None, fault: Fault | None = None,
        options: Options | None = None, rate_pps: int = 2000, scope: str = "5tuple", tag: str = "coe",
        timeout_s: float = 30.0, samples: bool = False) -> RunResult:
    """One run of `pcap` through `instances` instances of `nf` with `fault` injected; `samples`: the
    instances time-stamp their per-packet times (RunResult.samples; events carry mono_ns)."""
    fault = fault or Fault()
    opt = options or Options()
    if model not in MODELS or model == "T":
        raise ChainError(f"fault runs need the store: model must be one of {MODELS[1:]}, got {model!r}")
    if fault.kind.endswith(("-nf", "-slow-store")) and not 1 <= fault.instance <= instances:
        raise ChainError(f"fault instance {fault.instance} is not one of 1..{instances}")
    for srv in store.servers:  # a clean store, the library with the dedup switch the run asks for
        c = srv.client()
        c.flushall()
        chc_store.load_functions(c, dedup=opt.store_dedup)

    def box(role: str):
        return dep.containers.get(f"{tag}-{role}") or dep.add(f"{tag}-{role}")

    root_c, sink_c = box("root"), box("sink")
    nf_cs = [box(f"{nf}{i}") for i in range(1, instances + 1)]
    run_dir = dep.log_dir / f"{tag}-{fault.kind}-{time.monotonic_ns()}"
    run_dir.mkdir(parents=True)
    # Control sockets in a short directory: a Unix socket path has at most 107 bytes.
    sock_dir = Path(tempfile.mkdtemp(prefix="nfvlab-chc-"))
    out_pcap, clocks_file = run_dir / "out.pcap", run_dir / "clocks.txt"
    root_addr = f"{root_c.ip}:{TUNNEL_PORT}"
    sink_argv = [str(bin_dir / "chc-sink"), "--listen", f"{sink_c.ip}:{TUNNEL_PORT}", "--pcap-out", str(out_pcap),
                 "--clocks-out", str(clocks_file), "--idle-ms", "30000"]
    if opt.sink_dedup:
        sink_argv.append("--dedup")
    sink = dep.start(sink_c, f"{run_dir.name}-sink", sink_argv)
    cfg = ",".join(f"{k}={v}" for k, v in (config or {}).items())

    def nf_argv(i: int, sock: Path, recover: bool) -> list[str]:
        c = nf_cs[i - 1]
        argv = [str(bin_dir / "chc-nf"), "--nf", nf, "--model", model, "--listen", f"{c.ip}:{TUNNEL_PORT}",
                "--next", f"{sink_c.ip}:{TUNNEL_PORT}", "--vertex", "1", "--instance", str(i),
                "--control", str(sock), "--vertex-instances", str(instances), "--store", ",".join(store.addresses),
                "--root", root_addr, "--last", "--retransmit-ms", str(opt.retransmit_ms)]
        if cfg:
            argv += ["--config", cfg]
        if samples:
            argv += ["--samples", str(run_dir / f"{nf}{i}{'-r' if recover else ''}.samples"), "--sample-times"]
        return argv + (["--recover"] if recover else [])

    procs, sockets = [], []
    for i in range(1, instances + 1):
        sock = sock_dir / f"{nf}{i}.sock"
        procs.append(dep.start(nf_cs[i - 1], f"{run_dir.name}-{nf}{i}", nf_argv(i, sock, False)))
        sockets.append(sock)
        try:
            control.wait_ready(sock)  # instance 1 seeds the shared objects before the others start
        except control.ControlError as e:
            raise ChainError(f"{procs[-1].name} did not start: {procs[-1].stderr()[-800:]}") from e
    root_sock = sock_dir / "root.sock"
    root_argv = [str(bin_dir / "chc-root"), "--pcap", str(pcap), "--next",
                 ",".join(f"{c.ip}:{TUNNEL_PORT}" for c in nf_cs), "--scope", scope, "--rate-pps", str(rate_pps),
                 "--bind", root_addr, "--control", str(root_sock), "--deletes", "--log", opt.log_mode,
                 "--log-max", str(opt.log_max), "--store", ",".join(store.addresses), "--paused"]
    if opt.xor_check:
        root_argv.append("--xor-check")
    if opt.persist_clock:
        root_argv += ["--persist-clock", str(opt.persist_clock)]
    events: list[dict] = []
    t0 = time.monotonic()

    def note(what: str, **kw: object) -> None:
        now = time.monotonic_ns()  # CLOCK_MONOTONIC, the data plane's clock
        events.append({"t_s": round(now / 1e9 - t0, 4), "mono_ns": now, "event": what, **kw})

    root = dep.start(root_c, f"{run_dir.name}-root", root_argv)
    old_counter: int | None = None  # kill-root: the killed root's last counter
    try:
        control.wait_ready(root_sock)  # the root admits nothing before "go": the trigger cannot miss
        if fault.kind != "none" and fault.at_packet is not None:
            control.ask(root_sock, f"pause-at {fault.at_packet}")  # the root waits there for us
        control.ask(root_sock, "go")
        t0 = time.monotonic()
        if fault.kind != "none":
            _wait_trigger(root, root_sock, fault, t0)
            if not root.running():
                raise ChainError(f"the root finished before the fault's trigger ({fault})")
            note("trigger", root_sent=int(_stats(root_sock)["sent"]))

            def resume() -> None:  # the fault is in place: traffic goes on (pause-at held it)
                if fault.at_packet is not None:
                    control.ask(root_sock, "go")
                    note("root resumed")

            # The injector resumes the root only once the fault's first signal is sent, so a slow
            # (nice 19, loaded) harness cannot let the rest of the trace pass before the fault.
            if fault.kind == "kill-root":
                root, root_sock, old_counter = _fail_over_root(dep, root, root_c, root_argv, root_sock, sock_dir,
                                                               run_dir, note)
            else:
                _inject(dep, fault, store, procs, sockets, nf_cs, nf_argv, root_sock, sock_dir, run_dir, nf, note,
                        resume)
        if _wait_root(root, root_sock, timeout_s) not in (0, 3):
            raise ChainError(f"chc-root failed: {root.stderr()[-800:]}")
        note("root done")
        # Every packet's delete request is in, and the last NF sends its outputs right after those:
        # give the last outputs a moment, then end the sink (a long idle timeout keeps it alive
        # through pauses of a loaded harness, so it must be ended explicitly).
        time.sleep(1.0)
        if sink.stop(grace_s=10) != 0:
            raise ChainError(f"chc-sink failed: {sink.stderr()[-800:]}")
        alive = [(s, p) for s, p in zip(sockets, procs, strict=True) if p.running()]
        reports = [_space_kv(control.ask(s, "report")) for s, _ in alive]
        for s, _ in alive:
            control.ask(s, "stop")
        summaries = []
        for _, p in alive:
            if p.wait(timeout_s) != 0:
                raise ChainError(f"{p.name} failed: {p.stderr()[-800:]}")
            summaries.append(_json_line(p.stdout()))
    finally:
        for p in [*procs, sink, root]:
            p.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)
    state = dump_state(store) if fault.kind != "kill-store" else {}
    outputs = _read_outputs(out_pcap, clocks_file)
    res = RunResult(fault, outputs, _json_line(root.stdout()), _json_line(sink.stdout()), summaries, reports, state,
                    events, fault.instance - 1 if fault.kind.startswith("kill-nf") else None)
    if old_counter is not None:
        res.clock_gap = (old_counter, int(res.root["start_counter"]))
    if fault.kind != "kill-store":
        res.sink["store_duplicates"] = duplicate_count(store)
    for f in sorted(run_dir.glob("*.samples")):
        res.samples[f.stem] = [(int(a), int(b)) for a, b in (ln.split() for ln in f.read_text().splitlines())]
    return res


def _wait_root(root, sock: Path, timeout_s: float, stuck_s: float = 5.0) -> int:
    """The root's exit status. A root whose input is done but whose log has not shrunk for stuck_s
    (delete requests or commit signals no longer match its packets) is reported as stuck, with its
    counters, instead of waiting out the whole timeout."""
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while root.running():
        try:
            st = _stats(sock)
        except (OSError, control.ControlError):
            st = {}
        now = time.monotonic()
        progress = (st.get("deleted"), st.get("sent"))
        if progress != last:
            last, since = progress, now
        elif st.get("input_done") == "1" and now - since >= stuck_s:
            raise ChainError(f"the root's log stopped emptying: {st.get('logged')} packets still logged "
                             f"{stuck_s:.0f} s after the last delete (sent {st.get('sent')}, deleted "
                             f"{st.get('deleted')}, delete requests {st.get('delete_requests')}, commit signals "
                             f"{st.get('commits')})")
        if now >= deadline:
            raise ChainError(f"chc-root did not finish in {timeout_s:.0f} s: {st}")
        time.sleep(0.1)
    return root.wait(5)


def _wait_trigger(root, root_sock: Path, fault: Fault, t0: float) -> None:
    """Until the root paused at at_packet (it was told "pause-at"), or at_s passed."""
    while root.running():
        if fault.at_s is not None and time.monotonic() - t0 >= fault.at_s:
            return
        if fault.at_packet is not None:
            try:
                if _stats(root_sock).get("paused") == "1":
                    return
            except (OSError, control.ControlError):
                pass
        time.sleep(0.001)


def _fail_over_root(dep, root, root_c, root_argv: list[str], root_sock: Path, sock_dir: Path, run_dir: Path,
                    note) -> tuple[object, Path, int]:
    """R6 root failover: SIGKILL the paused root, start a new one that continues its clock from the
    store and its input where the old one stopped. Returns the new root and the old one's last counter."""
    st = _stats(root_sock)  # paused: nothing changes between this and the kill
    last_counter, input_at = int(st["counter"]), int(st["input"])
    os.kill(root.pid, signal.SIGKILL)
    note("killed", name=root.name, pid=root.pid, counter=last_counter, persisted=int(st["persisted"]))
    root.wait(10)
    sock = sock_dir / "root-r.sock"
    argv = [a for a in root_argv if a != "--paused"]
    argv[argv.index("--control") + 1] = str(sock)
    argv += ["--input-from", str(input_at)]
    if "--persist-clock" in argv:
        argv.append("--recover")
    new = dep.start(root_c, f"{run_dir.name}-root-failover", argv)
    try:
        control.wait_ready(sock, alive=new.running)
        note("failover root up", pid=new.pid, counter=int(_stats(sock)["counter"]))
    except (OSError, control.ControlError) as e:
        # Late in the trace the new root may send the rest and exit before the harness sees it up
        # (it may still be tearing down after its summary: wait for the exit before judging it).
        try:
            rc = new.wait(5)
        except subprocess.TimeoutExpired:
            rc = None
        if rc not in (0, 3):
            new.stop()
            raise ChainError(f"failover root did not start (exit {rc}): {new.stderr()[-800:]}") from e
        note("failover root done before the harness saw it up", pid=new.pid)
    return new, sock, last_counter


def _inject(dep, fault, store, procs, sockets, nf_cs, nf_argv, root_sock, sock_dir, run_dir, nf, note,
            resume) -> None:
    if fault.kind == "kill-store":
        pid = store.servers[0].popen.pid
        os.kill(pid, signal.SIGKILL)
        note("killed redis-server", pid=pid)
        resume()
        return
    if fault.kind == "delay-store":
        pid = store.servers[0].popen.pid
        _pause(pid, fault.delay_ms, note, "redis-server", resume)
        return
    i = fault.instance
    victim = procs[i - 1]
    if fault.kind == "delay-nf":
        _pause(victim.pid, fault.delay_ms, note, victim.name, resume)
        return
    # kill-nf: SIGKILL, then R6 failover: hold, replacement with --recover, replay.
    store_pid = store.servers[0].popen.pid
    if fault.kind != "kill-nf-slow-store":
        _fail_over(dep, fault, procs, sockets, nf_cs, nf_argv, root_sock, sock_dir, run_dir, nf, note, None, resume)
        return
    os.kill(store_pid, signal.SIGSTOP)
    note("stopped", name="redis-server", pid=store_pid)
    try:
        resume()  # the instance processes packets while the store is stopped (the log cannot empty)
        # kill only once some packets went out since the stop (a loaded harness host may not let the
        # root send any within a fixed 20 ms: then nothing is outstanding and nothing can repeat)
        sent0, deadline = int(_stats(root_sock)["sent"]), time.monotonic() + 2.0
        time.sleep(0.02)
        while time.monotonic() < deadline and int(_stats(root_sock)["sent"]) < sent0 + 10:
            time.sleep(0.002)
        _fail_over(dep, fault, procs, sockets, nf_cs, nf_argv, root_sock, sock_dir, run_dir, nf, note, store_pid,
                   lambda: None)
    finally:  # whatever went wrong, the server runs again (the next run needs it)
        os.kill(store_pid, signal.SIGCONT)


def _fail_over(dep, fault, procs, sockets, nf_cs, nf_argv, root_sock, sock_dir, run_dir, nf, note,
               stopped_store: int | None, resume) -> None:
    """R6 NF failover; with stopped_store, the replay starts before that stopped server continues."""
    i = fault.instance
    victim = procs[i - 1]
    stopped_at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    note("killed", name=victim.name, pid=victim.pid)
    control.ask(root_sock, f"hold {i - 1}")
    note("root holds", instance=i)
    resume()
    victim.wait(10)
    sock = sock_dir / f"{nf}{i}-r.sock"
    repl = dep.start(nf_cs[i - 1], f"{run_dir.name}-{nf}{i}-replacement", nf_argv(i, sock, True))
    procs[i - 1], sockets[i - 1] = repl, sock
    try:
        control.wait_ready(sock)
    except control.ControlError as e:
        raise ChainError(f"replacement {repl.name} did not start: {repl.stderr()[-800:]}") from e
    note("replacement up", pid=repl.pid)
    if stopped_store is None:
        replayed = control.parse_kv(control.ask(root_sock, f"replay {i - 1}")).get("replayed")
        note("root replayed", packets=int(replayed or 0))
        return
    # Replay while the store is still stopped, so the replay certainly meets the failed instance's
    # updates (queued in the server's socket) and outputs (delivered, not yet deleted). The replay
    # may itself wait for the store (an in-store log): ask from a thread, continue the store here.
    replies: list[str] = []
    asker = threading.Thread(target=lambda: replies.append(control.ask(root_sock, f"replay {i - 1}")))
    asker.start()
    time.sleep(max(0.03, fault.delay_ms / 1000 - (time.monotonic() - stopped_at)))
    os.kill(stopped_store, signal.SIGCONT)
    note("continued", name="redis-server", pid=stopped_store)
    asker.join(15)
    replayed = control.parse_kv(replies[0]).get("replayed") if replies else None
    note("root replayed", packets=int(replayed or 0))


def _pause(pid: int, delay_ms: float, note, name: str, resume) -> None:
    os.kill(pid, signal.SIGSTOP)
    note("stopped", name=name, pid=pid)
    try:
        resume()
        time.sleep(delay_ms / 1000)
    finally:
        os.kill(pid, signal.SIGCONT)
    note("continued", name=name, pid=pid)


def _read_outputs(pcap: Path, clocks_file: Path) -> list[tuple[int, bytes]]:
    """The sink writes a frame to the pcap and its clock to the clocks file for every delivery."""
    import dpkt

    with open(pcap, "rb") as f:
        frames = [bytes(buf) for _, buf in dpkt.pcap.Reader(f)]
    clocks = [int(ln.split()[0]) for ln in clocks_file.read_text().splitlines()]
    if len(frames) != len(clocks):
        raise ChainError(f"sink wrote {len(frames)} frames but {len(clocks)} clocks")
    return list(zip(clocks, frames, strict=True))
