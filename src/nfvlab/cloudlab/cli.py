"""`nfvlab cloudlab ...` — render the profile, run an experiment's lifecycle on the portal.

    nfvlab cloudlab render --nodes N --hardware TYPE [--image URN] [--profile PATH]
"""

from __future__ import annotations

import argparse
import sys

from .render import PROFILE, RenderError, bindings, render


def cmd_render(args: argparse.Namespace) -> int:
    try:
        xml = render(bindings(args.nodes, args.hardware, args.image), profile=args.profile)
    except RenderError as e:
        print(e, file=sys.stderr)
        return 2
    sys.stdout.write(xml)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cloudlab", help="CloudLab: render the profile, start/status/manifest/extend/terminate")
    csub = p.add_subparsers(dest="cloudlab_command", required=True)

    s = csub.add_parser("render", help="print the request RSpec profile.py makes for these parameters")
    s.add_argument("--nodes", type=int, required=True, help="number of nodes (profile parameter nodeCount)")
    s.add_argument("--hardware", required=True, help="hardware type: xl170, c6525-25g, d6515, m510")
    s.add_argument("--image", default=None, help="disk image URN (default: the profile's UBUNTU22-64-STD)")
    s.add_argument("--profile", default=PROFILE, help="the geni-lib profile to run (default: profile.py)")
    s.set_defaults(func=cmd_render)
