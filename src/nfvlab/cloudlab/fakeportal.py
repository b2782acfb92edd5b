"""A fake CloudLab portal for tests: both APIs, on 127.0.0.1, speaking the real protocols.

- XML-RPC: HTTPS (TLS 1.2+) at ``/usr/testbed``; the client must present a certificate signed by
  the portal's CA (CERT_REQUIRED), whose CN is the user; ``portal.<method>(0.1, {params})``
  returns ``{code, value, output}`` with Emulab's response codes.
- REST: HTTPS JSON at ``/experiments[/<id>[/manifests]]``; ``X-Api-Token`` must be a user's token.

Behind both is one :class:`FakeCloudLab`: ``startExperiment`` renders the named profile with the
given bindings through :func:`nfvlab.cloudlab.render.render` (real geni-lib, as the portal runs
it), so bad bindings fail as on the portal; an experiment answers "provisioning" to its first
``ready_after_polls`` status queries and "ready" after that (counted, not timed, so a slow machine
sees the same sequence); its manifest is the request with node/interface component ids, MACs and an ssh
login per node filled in, under the reserved ``.test`` domain.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import time
import urllib.parse
import uuid
import xmlrpc.server
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lxml import etree

from .render import PROFILE, RenderError, render

AGGREGATE = "urn:publicid:IDN+fake.cloudlab.test+authority+cm"
DOMAIN = "fake.cloudlab.test"  # RFC 2606: never resolves
SUCCESS, BADARGS, ERROR, FORBIDDEN, SEARCHFAILED, ALREADYEXISTS = 0, 1, 2, 3, 12, 17


@dataclass
class Experiment:
    project: str
    name: str
    uuid: str
    profile: str
    bindings: dict
    owner: str
    created: float
    ready_after_polls: int
    expires: dt.datetime
    manifest: str
    polls: int = 0

    def status(self) -> str:
        return "ready" if self.polls > self.ready_after_polls else "provisioning"

    def poll(self) -> dict:
        self.polls += 1
        return self.as_json()

    def as_json(self) -> dict:
        return {"uuid": self.uuid, "name": self.name, "project": self.project, "status": self.status(),
                "creator": self.owner, "profile": self.profile, "expires": self.expires.isoformat(timespec="seconds"),
                "aggregate_status": {AGGREGATE: {"status": self.status()}}}


@dataclass
class FakeCloudLab:
    """Users (certificate CN / token), their projects, the profiles, the experiments."""

    users: dict[str, set[str]] = field(default_factory=lambda: {"alice": {"nfvlab-proj"}})
    tokens: dict[str, str] = field(default_factory=dict)  # token -> user
    profiles: dict[str, Path] = field(default_factory=lambda: {"nfvlab-proj,nfvlab": PROFILE})
    ready_after_polls: int = 2
    max_extension_h: float = 168
    experiments: dict[str, Experiment] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _find(self, user: str, ident: str) -> Experiment | None:
        for e in self.experiments.values():
            if ident in (e.uuid, f"{e.project},{e.name}") and e.owner == user:
                return e
        return None

    # each returns (code, value, output) as the Emulab XML-RPC server does
    def start(self, user: str, p: dict) -> tuple[int, object, str]:
        project, name, profile = p.get("proj", ""), p.get("name", ""), p.get("profile", "")
        if not project or not name or not profile:
            return BADARGS, None, "startExperiment needs proj, name and profile"
        if project.split(",")[0] not in self.users.get(user, set()):
            return FORBIDDEN, None, f"user {user} is not a member of project {project}"
        if profile not in self.profiles:
            return SEARCHFAILED, None, f"no such profile: {profile}"
        try:
            bindings = json.loads(p.get("bindings") or "{}") if isinstance(p.get("bindings"), str) else \
                dict(p.get("bindings") or {})
            hours = float(p.get("duration", 16))
        except (ValueError, TypeError) as exc:
            return BADARGS, None, f"bad bindings or duration: {exc}"
        with self.lock:
            if any(e.project == project and e.name == name for e in self.experiments.values()):
                return ALREADYEXISTS, None, f"experiment {project},{name} already exists"
        try:
            request = render(bindings, profile=self.profiles[profile])
        except RenderError as exc:
            return BADARGS, None, f"profile parameters: {'; '.join(map(str, exc.problems)) or exc.detail}"
        now = time.time()
        exp = Experiment(project, name, str(uuid.uuid4()), profile, bindings, user, now, self.ready_after_polls,
                         dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours), manifest_from_request(request, user))
        with self.lock:
            self.experiments[exp.uuid] = exp
        return SUCCESS, exp.uuid, f"experiment {project},{name} is being created"

    def status(self, user: str, p: dict) -> tuple[int, object, str]:
        e = self._find(user, p.get("experiment", ""))
        if e is None:
            return SEARCHFAILED, None, f"No such experiment: {p.get('experiment')}"
        return SUCCESS, json.dumps(e.poll()), ""

    def manifests(self, user: str, p: dict) -> tuple[int, object, str]:
        e = self._find(user, p.get("experiment", ""))
        if e is None:
            return SEARCHFAILED, None, f"No such experiment: {p.get('experiment')}"
        if e.status() != "ready":
            return ERROR, None, "experiment is not ready yet: no manifest"
        return SUCCESS, json.dumps({AGGREGATE: e.manifest}), ""

    def extend(self, user: str, p: dict) -> tuple[int, object, str]:
        e = self._find(user, p.get("experiment", ""))
        if e is None:
            return SEARCHFAILED, None, f"No such experiment: {p.get('experiment')}"
        try:
            hours = float(p.get("wanted"))
        except (TypeError, ValueError):
            return BADARGS, None, f"wanted must be a number of hours, got {p.get('wanted')!r}"
        if not 0 < hours <= self.max_extension_h:
            return BADARGS, None, f"extension must be between 0 and {self.max_extension_h} hours"
        e.expires += dt.timedelta(hours=hours)
        return SUCCESS, e.expires.isoformat(timespec="seconds"), f"extended by {hours:g} hours"

    def terminate(self, user: str, p: dict) -> tuple[int, object, str]:
        e = self._find(user, p.get("experiment", ""))
        if e is None:
            return SEARCHFAILED, None, f"No such experiment: {p.get('experiment')}"
        with self.lock:
            del self.experiments[e.uuid]
        return SUCCESS, None, f"experiment {e.project},{e.name} is terminating"


def manifest_from_request(request_xml: str, user: str) -> str:
    """What an aggregate makes of a request: physical ids, MACs, an ssh login per node."""
    root = etree.fromstring(request_xml.encode())
    root.set("type", "manifest")
    ns = root.nsmap[None]
    for i, node in enumerate(root.findall(f"{{{ns}}}node")):
        pc = f"pc{101 + i}"
        node.set("component_id", f"urn:publicid:IDN+{DOMAIN}+node+{pc}")
        node.set("component_manager_id", AGGREGATE)
        node.set("sliver_id", f"urn:publicid:IDN+{DOMAIN}+sliver+{1000 + i}")
        for j, iface in enumerate(node.findall(f"{{{ns}}}interface")):
            iface.set("component_id", f"urn:publicid:IDN+{DOMAIN}+interface+{pc}:eth{j + 1}")
            iface.set("mac_address", f"02000000{i:02x}{j + 1:02x}")
        services = node.find(f"{{{ns}}}services")
        if services is None:
            services = etree.SubElement(node, f"{{{ns}}}services")
        login = etree.SubElement(services, f"{{{ns}}}login")
        login.attrib.update({"authentication": "ssh-keys", "hostname": f"{pc}.{DOMAIN}", "port": "22",
                             "username": user})
    return etree.tostring(root, pretty_print=True, encoding="unicode")


# --------------------------------------------------------------------------------------------- XML-RPC


class _XmlRpcHandler(xmlrpc.server.SimpleXMLRPCRequestHandler):
    rpc_paths = ("/usr/testbed",)

    def do_POST(self) -> None:  # noqa: N802  (http.server's name)
        cert = self.request.getpeercert() or {}
        subject = dict(x[0] for x in cert.get("subject", ()))
        self.server.current_user = subject.get("commonName", "")
        super().do_POST()


class XmlRpcFakePortal:
    """HTTPS XML-RPC with client-certificate authentication, in a thread."""

    def __init__(self, cloud: FakeCloudLab, server_cert: Path, server_key: Path, client_ca: Path) -> None:
        self.cloud = cloud
        self.httpd = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), requestHandler=_XmlRpcHandler,
                                                      allow_none=True, logRequests=False, bind_and_activate=False)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(server_cert), str(server_key))
        ctx.load_verify_locations(str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED  # the user certificate is the credential
        self.httpd.server_bind()
        self.httpd.server_activate()
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        for method, fn in (("startExperiment", cloud.start), ("experimentStatus", cloud.status),
                           ("experimentManifests", cloud.manifests), ("extendExperiment", cloud.extend),
                           ("terminateExperiment", cloud.terminate)):
            self.httpd.register_function(self._wrap(fn), f"portal.{method}")
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def _wrap(self, fn):
        def call(version, params):
            if version != 0.1:
                return {"code": 4, "value": None, "output": f"bad version {version}"}
            code, value, output = fn(self.httpd.current_user, params)
            return {"code": code, "value": value, "output": output}
        return call

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}/usr/testbed"

    def __enter__(self) -> XmlRpcFakePortal:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# --------------------------------------------------------------------------------------------- REST


class _RestHandler(BaseHTTPRequestHandler):
    cloud: FakeCloudLab

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        user = self.server.cloud.tokens.get(self.headers.get("X-Api-Token", ""))
        if user is None:
            return self._reply(401, {"error": "invalid or missing X-Api-Token"})
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(self.path).path.strip("/").split("/")]
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length)) if length else {}
        except ValueError:
            return self._reply(400, {"error": "body is not JSON"})
        cloud = self.server.cloud
        if parts[0] != "experiments" or len(parts) > 3:
            return self._reply(404, {"error": f"no such resource: {self.path}"})
        if method == "POST" and len(parts) == 1:
            code, value, output = cloud.start(user, {
                "proj": body.get("project", ""), "name": body.get("name", ""),
                "profile": f"{body.get('profile_project', '')},{body.get('profile_name', '')}",
                "bindings": body.get("bindings") or {}, "duration": body.get("duration", 16)})
            if code == SUCCESS:
                return self._reply(201, cloud.experiments[value].poll())
            return self._fail(code, output)
        if len(parts) < 2:
            return self._reply(405, {"error": f"{method} /experiments is not allowed"})
        params = {"experiment": parts[1]}
        if method == "GET" and len(parts) == 3 and parts[2] == "manifests":
            code, value, output = cloud.manifests(user, params)
            return self._reply(200, json.loads(value)) if code == SUCCESS else self._fail(code, output)
        if len(parts) == 3:
            return self._reply(404, {"error": f"no such resource: {self.path}"})
        if method == "GET":
            code, value, output = cloud.status(user, params)
            return self._reply(200, json.loads(value)) if code == SUCCESS else self._fail(code, output)
        if method == "PUT":
            code, value, output = cloud.extend(user, {**params, "wanted": body.get("extend_by")})
            if code != SUCCESS:
                return self._fail(code, output)
            return self._reply(200, json.loads(cloud.status(user, params)[1]))
        if method == "DELETE":
            code, value, output = cloud.terminate(user, params)
            return self._reply(202, {"status": "terminating"}) if code == SUCCESS else self._fail(code, output)
        return self._reply(405, {"error": f"{method} is not allowed here"})

    def _fail(self, code: int, output: str) -> None:
        status = {BADARGS: 400, FORBIDDEN: 403, SEARCHFAILED: 404, ALREADYEXISTS: 409}.get(code, 500)
        self._reply(status, {"error": output, "code": code})

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


class RestFakePortal:
    """HTTPS JSON with X-Api-Token authentication, in a thread."""

    def __init__(self, cloud: FakeCloudLab, server_cert: Path, server_key: Path) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RestHandler)
        self.httpd.cloud = cloud
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(server_cert), str(server_key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> RestFakePortal:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
