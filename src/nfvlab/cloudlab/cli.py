"""`nfvlab cloudlab ...` — render the profile, run an experiment's lifecycle on the portal.

    nfvlab cloudlab render --nodes N --hardware TYPE [--image URN] [--profile PATH]
    nfvlab cloudlab start NAME --project P [--profile-name PROJ,PROFILE] --nodes N --hardware TYPE
                          [--image URN] [--duration HOURS] [--wait SECONDS]
    nfvlab cloudlab status EXPERIMENT
    nfvlab cloudlab manifest EXPERIMENT [--out testbed/NAME.yaml] [--key ~/.ssh/id_ed25519] [--xml FILE]
    nfvlab cloudlab inventory MANIFEST.xml [--name NAME] [--out PATH] [--key KEY]
    nfvlab cloudlab extend EXPERIMENT HOURS [--reason TEXT]
    nfvlab cloudlab terminate EXPERIMENT

EXPERIMENT is ``project,name`` or the experiment's UUID. Credentials (docs/cloudlab.md):
``--api xmlrpc`` (default) takes the user certificate (``--cert``, default ~/.ssl/emulab.pem)
and its passphrase (``--cert-password-file``); ``--api rest`` takes ``--token-file``. Each option
also reads an environment variable: NFVLAB_CLOUDLAB_API, _URL, _CERT, _CERT_PASSWORD_FILE,
_TOKEN_FILE, _CA.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .render import PROFILE, RenderError, bindings, render

REPO = PROFILE.parent


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"NFVLAB_CLOUDLAB_{name}", default)


def _read_secret(path: str | None, what: str) -> str | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise SystemExit(f"error: cannot read the {what} file {path}: {exc.strerror}") from None


def portal_from_args(args: argparse.Namespace):
    from .portal import REST_DEFAULT, XMLRPC_DEFAULT, RestPortal, XmlRpcPortal

    ca = Path(args.ca).expanduser() if args.ca else None
    if args.api == "rest":
        return RestPortal(args.url or REST_DEFAULT, token=_read_secret(args.token_file, "token"), ca=ca,
                          insecure=args.insecure)
    cert = Path(args.cert).expanduser() if args.cert else None
    return XmlRpcPortal(args.url or XMLRPC_DEFAULT, certificate=cert, ca=ca, insecure=args.insecure,
                        password=_read_secret(args.cert_password_file, "certificate passphrase"))


def _print_status(st) -> None:
    print(f"{st.experiment}: {st.status}" + (f"  uuid {st.uuid}" if st.uuid else "")
          + (f"  expires {st.expires}" if st.expires else ""))


def _lifecycle(fn):
    def run(args: argparse.Namespace) -> int:
        from .manifest import ManifestError
        from .portal import PortalError

        try:
            return fn(args, portal_from_args(args))
        except (PortalError, ManifestError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return run


def cmd_render(args: argparse.Namespace) -> int:
    try:
        xml = render(bindings(args.nodes, args.hardware, args.image), profile=args.profile)
    except RenderError as e:
        print(e, file=sys.stderr)
        return 2
    sys.stdout.write(xml)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    args.bindings = bindings(args.nodes, args.hardware, args.image)
    try:
        render(args.bindings)  # the portal would refuse the same bindings: fail here, before any request
    except RenderError as e:
        print(e, file=sys.stderr)
        return 2
    return _start(args)


@_lifecycle
def _start(args: argparse.Namespace, portal) -> int:
    profile = args.profile_name or f"{args.project},nfvlab"
    st = portal.start(args.project, args.name, profile, args.bindings, args.duration)
    _print_status(st)
    if args.wait:
        st = wait_ready(portal, st.experiment, args.wait)
        _print_status(st)
        if st.status != "ready":
            print(f"error: {st.experiment} is {st.status} after {args.wait:.0f} s", file=sys.stderr)
            return 1
    return 0


def wait_ready(portal, experiment: str, timeout_s: float, interval_s: float | None = None):
    """Poll the status until ready or failed (or the timeout); returns the last status."""
    import time

    interval = interval_s if interval_s is not None else min(10.0, max(0.1, timeout_s / 20))
    deadline = time.monotonic() + timeout_s
    while True:
        st = portal.status(experiment)
        if st.status in ("ready", "failed") or time.monotonic() >= deadline:
            return st
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


@_lifecycle
def cmd_status(args: argparse.Namespace, portal) -> int:
    _print_status(portal.status(args.experiment))
    return 0


@_lifecycle
def cmd_manifest(args: argparse.Namespace, portal) -> int:
    from .manifest import ManifestError, parse_manifest, write_inventory

    manifests = portal.manifests(args.experiment)
    if not manifests:
        raise ManifestError(f"{args.experiment}: the portal returned no manifest (is it ready?)")
    nodes = [n for xml in manifests.values() for n in parse_manifest(xml)]
    name = args.experiment.split(",")[-1]
    if args.xml:
        Path(args.xml).write_text("\n".join(manifests.values()))
    out = Path(args.out) if args.out else REPO / "testbed" / f"{name}.yaml"
    write_inventory(out, name, nodes, key=args.key, source=f" from {args.experiment} ({args.api})")
    print(f"{args.experiment}: {len(nodes)} nodes -> {out}")
    for n in nodes:
        print(f"  {n.name:8s} {n.user}@{n.hostname}:{n.port}  {n.hardware}  "
              + ", ".join(f"{i.nic} {i.address}" for i in n.interfaces))
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    from .manifest import ManifestError, parse_manifest, write_inventory

    try:
        nodes = parse_manifest(Path(args.manifest).read_text())
        name = args.name or Path(args.manifest).stem
        out = Path(args.out) if args.out else REPO / "testbed" / f"{name}.yaml"
        write_inventory(out, name, nodes, key=args.key, source=f" from {args.manifest}")
    except OSError as exc:
        print(f"error: {args.manifest}: {exc.strerror}", file=sys.stderr)
        return 1
    except ManifestError as exc:
        print(f"error: {args.manifest}: {exc}", file=sys.stderr)
        return 2
    print(f"{args.manifest}: {len(nodes)} nodes -> {out}")
    return 0


@_lifecycle
def cmd_extend(args: argparse.Namespace, portal) -> int:
    _print_status(portal.extend(args.experiment, args.hours, args.reason))
    return 0


@_lifecycle
def cmd_terminate(args: argparse.Namespace, portal) -> int:
    portal.terminate(args.experiment)
    print(f"{args.experiment}: terminating")
    return 0


def _credentials(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("portal and credentials (docs/cloudlab.md)")
    g.add_argument("--api", choices=["xmlrpc", "rest"], default=_env("API", "xmlrpc"),
                   help="Emulab XML-RPC with a user certificate (default), or REST with a token")
    g.add_argument("--url", default=_env("URL"), help="portal endpoint (default: CloudLab's for the API)")
    g.add_argument("--cert", default=_env("CERT"), help="XML-RPC: user certificate+key PEM (~/.ssl/emulab.pem)")
    g.add_argument("--cert-password-file", default=_env("CERT_PASSWORD_FILE"),
                   help="XML-RPC: file holding the certificate key's passphrase")
    g.add_argument("--token-file", default=_env("TOKEN_FILE"), help="REST: file holding the API token")
    g.add_argument("--ca", default=_env("CA"), help="CA bundle that signs the portal's certificate")
    g.add_argument("--insecure", action="store_true", help="do not verify the portal's certificate "
                   "(portal-tools' default for boss.emulab.net)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cloudlab", help="CloudLab: render the profile, start/status/manifest/extend/terminate")
    csub = p.add_subparsers(dest="cloudlab_command", required=True)

    s = csub.add_parser("render", help="print the request RSpec profile.py makes for these parameters")
    s.add_argument("--nodes", type=int, required=True, help="number of nodes (profile parameter nodeCount)")
    s.add_argument("--hardware", required=True, help="hardware type: xl170, c6525-25g, d6515, m510")
    s.add_argument("--image", default=None, help="disk image URN (default: the profile's UBUNTU22-64-STD)")
    s.add_argument("--profile", default=PROFILE, help="the geni-lib profile to run (default: profile.py)")
    s.set_defaults(func=cmd_render)

    s = csub.add_parser("start", help="instantiate the profile (validated locally first)")
    s.add_argument("name", help="experiment name")
    s.add_argument("--project", required=True, help="your CloudLab project")
    s.add_argument("--profile-name", default=None, help="PROJECT,PROFILE on the portal (default: <project>,nfvlab)")
    s.add_argument("--nodes", type=int, required=True)
    s.add_argument("--hardware", required=True)
    s.add_argument("--image", default=None)
    s.add_argument("--duration", type=float, default=16, help="hours until it expires (default 16)")
    s.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="then poll the status until ready (exit 1 if failed or still not ready)")
    _credentials(s)
    s.set_defaults(func=cmd_start)

    s = csub.add_parser("inventory", help="write the ssh inventory from a saved manifest RSpec (no portal call)")
    s.add_argument("manifest", help="manifest XML, e.g. saved from the portal's Manifest tab")
    s.add_argument("--name", default=None, help="inventory name (default: the file's stem)")
    s.add_argument("--out", default=None, help="inventory path (default testbed/<name>.yaml)")
    s.add_argument("--key", default=None, help="ssh private key for the inventory's defaults")
    s.set_defaults(func=cmd_inventory)

    for name, fn, text in (("status", cmd_status, "show an experiment's state and expiry"),
                           ("manifest", cmd_manifest, "fetch the manifest, write the ssh inventory"),
                           ("extend", cmd_extend, "ask for more hours"),
                           ("terminate", cmd_terminate, "end the experiment and free its nodes")):
        s = csub.add_parser(name, help=text)
        s.add_argument("experiment", help="project,name or UUID")
        if name == "manifest":
            s.add_argument("--out", default=None, help="inventory path (default testbed/<name>.yaml)")
            s.add_argument("--key", default=None, help="ssh private key for the inventory's defaults")
            s.add_argument("--xml", default=None, help="also save the manifest RSpec here")
        if name == "extend":
            s.add_argument("hours", type=float)
            s.add_argument("--reason", default="nfvlab experiment runs", help="shown to the portal's admins")
        _credentials(s)
        s.set_defaults(func=fn)
