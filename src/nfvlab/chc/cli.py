"""``nfvlab chc fault``: fault injection on a CHC chain + the chain-output-equivalence checker.

    nfvlab chc fault --seeds 1-20                      the randomized suite (fault kind, instance, packet
                                                       index and delay from each seed)
    nfvlab chc fault --seed 7                          one seed again (every failing line prints this)
    nfvlab chc fault --kind kill-nf --at-packet 300    one explicit fault
    nfvlab chc fault --kind kill-root --at-packet 300 --persist-clock 0 --expect fail
                                                       root failover without the persisted clock
    nfvlab chc fault --seeds 1-5 --no-store-dedup --expect fail   a negative control

Every case runs the trace through an ideal single-instance chain (once per invocation) and through
the faulted chain, and prints PASS/FAIL with the checker's numbers. Exit status: 0 when every case
ended as --expect says (default pass), 1 otherwise, 2 for invalid arguments. Needs root (namespaces,
cgroups) and redis-server. docs/chc.md "Correctness (issue 12)".
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

from nfvlab.chc.fault_kinds import AT_PACKET_ONLY, FAULT_KINDS, SUITE_KINDS


def _repro(args: argparse.Namespace, seed: int | None) -> str:
    argv = ["nfvlab", "chc", "fault"]
    if seed is not None:
        argv += ["--seed", str(seed)]
    else:
        argv += ["--kind", args.kind, "--instance", str(args.instance), "--delay-ms", str(args.delay_ms)]
        argv += ["--at-packet", str(args.at_packet)] if args.at_packet is not None else ["--at-s", str(args.at_s)]
    for flag, default in (("kinds", ",".join(SUITE_KINDS)), ("nf", "nat"), ("model", "EO+C+NA"), ("instances", 1),
                          ("connections", 40), ("trace_seed", 7), ("rate_pps", 2000), ("log", "local"),
                          ("persist_clock", 10)):
        if getattr(args, flag) != default:
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    for flag in ("no_store_dedup", "no_sink_dedup", "no_xor_check"):
        if getattr(args, flag):
            argv.append(f"--{flag.replace('_', '-')}")
    return shlex.join(argv)


def cmd_fault(args: argparse.Namespace) -> int:
    from nfvlab.chc import build, coe_run, faults
    from nfvlab.chc.deploy import LocalDeployment

    seeds: list[int | None]
    if args.seeds or args.seed is not None:
        try:
            seeds = [*(coe_run.parse_seeds(args.seeds) if args.seeds else []),
                     *([args.seed] if args.seed is not None else [])]
        except ValueError:
            print(f"--seeds must be numbers and ranges like 1-20,31, got {args.seeds!r}", file=sys.stderr)
            return 2
    elif args.kind:
        if args.at_packet is None and args.at_s is None:
            print("--kind needs --at-packet or --at-s", file=sys.stderr)
            return 2
        if args.kind in AT_PACKET_ONLY and args.at_packet is None:
            print(f"--kind {args.kind} needs --at-packet (the input position of the kill)", file=sys.stderr)
            return 2
        seeds = [None]
    else:
        print("give --seeds, --seed or --kind", file=sys.stderr)
        return 2
    kinds = tuple(args.kinds.split(","))
    if not set(kinds) <= set(FAULT_KINDS) - {"none"}:
        print(f"--kinds must name fault kinds of {FAULT_KINDS[1:]}", file=sys.stderr)
        return 2
    if args.persist_clock < 0:
        print("--persist-clock must be >= 0 (0: off)", file=sys.stderr)
        return 2
    if args.instances != 1:
        print("--instances: the checker is exact for one NAT instance only (docs/chc.md)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("nfvlab chc fault needs root (namespaces, cgroups)", file=sys.stderr)
        return 2
    case = coe_run.Case(nf=args.nf, model=args.model, instances=args.instances, connections=args.connections,
                        trace_seed=args.trace_seed, rate_pps=args.rate_pps)
    options = faults.Options(store_dedup=not args.no_store_dedup, sink_dedup=not args.no_sink_dedup,
                             log_mode=args.log, xor_check=not args.no_xor_check, persist_clock=args.persist_clock)
    build.build()
    bin_dir = build.binary("chc-nf").parent
    work = Path(args.work or tempfile.mkdtemp(prefix="nfvlab-chc-fault-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    outcomes = []
    with LocalDeployment(work / "deployment") as dep:
        session = coe_run.Session(dep, bin_dir, case, work)
        ideal = session.ideal()
        print(f"trace: {session.packets} packets (trace seed {case.trace_seed}); ideal run: "
              f"{len(ideal.outputs)} outputs, {len(ideal.state)} state objects", flush=True)
        for seed in seeds:
            if seed is None:
                fault = faults.Fault(kind=args.kind, instance=args.instance, at_packet=args.at_packet, at_s=args.at_s,
                                     delay_ms=args.delay_ms)
                o = session.case_for(fault, options)
            else:
                o = session.seed(seed, options, kinds)
            outcomes.append(o)
            print(o.line(), flush=True)
            if not o.verdict.ok:
                print(f"  reproduce: {_repro(args, seed)}", flush=True)
    if args.out:
        coe_run.write_outcomes(Path(args.out), outcomes)
    passed = sum(o.verdict.ok for o in outcomes)
    want_pass = args.expect == "pass"
    print(f"{passed}/{len(outcomes)} passed (expected: {args.expect}); work dir {work}")
    good = all(o.verdict.ok == want_pass for o in outcomes)
    return 0 if good else 1


def register(sub: argparse._SubParsersAction) -> None:
    chc = sub.add_parser("chc", help="CHC tools (fault injection + COE checker)")
    chc_sub = chc.add_subparsers(dest="chc_command", required=True)
    s = chc_sub.add_parser("fault", help="inject faults into a CHC chain and check chain output equivalence")
    s.add_argument("--seeds", default=None, help="seed list/ranges, e.g. 1-20,31")
    s.add_argument("--seed", type=int, default=None, help="one seed (reproduces a suite case)")
    s.add_argument("--kinds", default=",".join(SUITE_KINDS), help="the fault kinds seeds choose from")
    s.add_argument("--kind", choices=[k for k in FAULT_KINDS if k != "none"], default=None)
    s.add_argument("--instance", type=int, default=1, help="NF instance (1-based) for NF faults")
    s.add_argument("--at-packet", type=int, default=None, help="inject once the root has sent this many packets")
    s.add_argument("--at-s", type=float, default=None, help="... or this many seconds after the root started")
    s.add_argument("--delay-ms", type=float, default=100.0, help="delay-* and kill-nf-slow-store: stop time")
    s.add_argument("--nf", default="nat", choices=["nat"], help="the NF (the suite's checker is exact for NAT)")
    s.add_argument("--model", default="EO+C+NA", choices=["EO", "EO+C", "EO+C+NA"])
    s.add_argument("--instances", type=int, default=1)
    s.add_argument("--connections", type=int, default=40, help="TCP connections in the generated trace")
    s.add_argument("--trace-seed", type=int, default=7)
    s.add_argument("--rate-pps", type=int, default=2000)
    s.add_argument("--log", choices=["local", "store"], default="local", help="the root's packet log")
    s.add_argument("--no-store-dedup", action="store_true", help="switch the clock log's duplicate suppression off")
    s.add_argument("--no-sink-dedup", action="store_true", help="switch the sink's duplicate-output suppression off")
    s.add_argument("--no-xor-check", action="store_true", help="delete logged packets on the delete request alone")
    s.add_argument("--persist-clock", type=int, default=10,
                   help="the root persists its clock every N packets (root failover); 0: off")
    s.add_argument("--expect", choices=["pass", "fail"], default="pass", help="exit 0 iff every case ends so")
    s.add_argument("--out", default=None, help="write the outcomes as JSON lines here")
    s.add_argument("--work", default=None, help="work directory (default: a new temporary one)")
    s.set_defaults(func=cmd_fault)
