"""CloudLab's portal APIs, for one experiment's lifecycle: start, status, manifest, extend, terminate.

Two clients with one interface (:class:`Portal`):

- :class:`XmlRpcPortal`, the Emulab XML-RPC server that CloudLab's ``portal-tools``
  (``startExperiment``, ``experimentStatus``, ...) call: HTTPS on port 3069 at ``/usr/testbed``,
  authenticated by the user's certificate (the ``cloudlab.pem`` downloaded from the portal, used as
  the TLS client certificate). Every method is ``portal.<name>(0.1, {params})`` and returns
  ``{code, value, output}``; code 0 is success (``emulabclient.py``'s RESPONSE_* codes).
- :class:`RestPortal`, the newer REST API: JSON over HTTPS, the token in an ``X-Api-Token`` header.

An experiment is named ``project,name`` (or by its UUID) in both.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

PACKAGE_VERSION = 0.1  # the version every portal-tools call sends first
XMLRPC_DEFAULT = "https://boss.emulab.net:3069/usr/testbed"
REST_DEFAULT = "https://www.emulab.net:43794"

# emulabclient.py.in's response codes
RESPONSE = {0: "SUCCESS", 1: "BADARGS", 2: "ERROR", 3: "FORBIDDEN", 4: "BADVERSION", 5: "SERVERERROR",
            6: "TOOBIG", 7: "REFUSED", 8: "TIMEDOUT", 12: "SEARCHFAILED", 17: "ALREADYEXISTS"}


class PortalError(RuntimeError):
    """The portal refused a call, or could not be reached; the message says which and why."""


@dataclass(frozen=True)
class Status:
    experiment: str
    status: str  # e.g. provisioning, ready, failed
    uuid: str = ""
    expires: str = ""
    raw: dict | None = None


class Portal(Protocol):
    def start(self, project: str, name: str, profile: str, bindings: dict, duration_h: float) -> Status: ...
    def status(self, experiment: str) -> Status: ...
    def manifests(self, experiment: str) -> dict[str, str]: ...
    def extend(self, experiment: str, hours: float, reason: str) -> Status: ...
    def terminate(self, experiment: str) -> None: ...


def _ssl_context(ca: Path | None, insecure: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if insecure:  # what portal-tools does by default (Emulab's own CA signs boss)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _status_from(experiment: str, data: dict) -> Status:
    return Status(experiment=experiment, status=str(data.get("status", "unknown")), uuid=str(data.get("uuid", "")),
                  expires=str(data.get("expires", "")), raw=data)


def _json_value(value: object) -> dict:
    if isinstance(value, dict):
        return value
    try:
        out = json.loads(value)  # the portal returns JSON as a string in 'value'
    except (TypeError, ValueError) as exc:
        raise PortalError(f"portal returned a value that is not JSON: {str(value)[:200]!r}") from exc
    if not isinstance(out, dict):
        raise PortalError(f"portal returned JSON that is not an object: {str(value)[:200]!r}")
    return out


class _TimeoutTransport(xmlrpc.client.SafeTransport):
    """HTTPS with our TLS context and a timeout on every connection (xmlrpc.client has none)."""

    def __init__(self, context: ssl.SSLContext, timeout_s: float) -> None:
        super().__init__(context=context)
        self._timeout_s = timeout_s

    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = self._timeout_s
        return conn


class XmlRpcPortal:
    def __init__(self, url: str = XMLRPC_DEFAULT, certificate: Path | None = None, password: str | None = None,
                 ca: Path | None = None, insecure: bool = False, timeout_s: float = 60) -> None:
        certificate = Path(certificate or Path.home() / ".ssl" / "emulab.pem")
        if not certificate.is_file():
            raise PortalError(f"certificate {certificate} not found: download it from the portal "
                              "(your name > Download Credentials), see docs/cloudlab.md")
        ctx = _ssl_context(ca, insecure)
        try:
            # never let OpenSSL prompt on the terminal: no passphrase given means an empty one
            ctx.load_cert_chain(str(certificate), password=password if password is not None else "")
        except (ssl.SSLError, OSError) as exc:
            why = getattr(exc, "reason", None) or exc
            raise PortalError(f"certificate {certificate}: cannot load the certificate and its key ({why}; "
                              "an encrypted key needs its passphrase: --cert-password-file)") from exc
        self.url = url
        self._proxy = xmlrpc.client.ServerProxy(url, transport=_TimeoutTransport(ctx, timeout_s), allow_none=True)

    def _call(self, method: str, params: dict) -> object:
        fn = getattr(self._proxy, f"portal.{method}")
        try:
            reply = fn(PACKAGE_VERSION, params)
        except ssl.SSLError as exc:
            raise PortalError(f"{self.url}: TLS handshake failed ({exc.reason or exc}): the portal did not accept "
                              "the user certificate, or its own certificate did not verify (--ca)") from exc
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise PortalError(f"{self.url}: the portal closed the connection during the TLS handshake "
                              "(it did not accept the user certificate)") from exc
        except xmlrpc.client.Fault as exc:
            raise PortalError(f"{self.url}: portal.{method}: fault {exc.faultCode}: {exc.faultString}") from exc
        except xmlrpc.client.ProtocolError as exc:
            raise PortalError(f"{self.url}: portal.{method}: HTTP {exc.errcode} {exc.errmsg}") from exc
        except OSError as exc:
            raise PortalError(f"{self.url}: cannot reach the portal: {exc}") from exc
        if not isinstance(reply, dict) or "code" not in reply:
            raise PortalError(f"{self.url}: portal.{method}: unexpected reply {reply!r:.200}")
        code = reply["code"]
        if code != 0:
            output = str(reply.get("output") or "").strip()
            raise PortalError(f"portal.{method} failed: {RESPONSE.get(code, code)} (code {code}): "
                              f"{output or reply.get('value')}")
        return reply.get("value")

    def start(self, project: str, name: str, profile: str, bindings: dict, duration_h: float) -> Status:
        self._call("startExperiment", {"proj": project, "name": name, "profile": profile,
                                       "duration": duration_h, "bindings": json.dumps(bindings)})
        return self.status(f"{project},{name}")

    def status(self, experiment: str) -> Status:
        return _status_from(experiment, _json_value(self._call("experimentStatus",
                                                               {"experiment": experiment, "asjson": 1})))

    def manifests(self, experiment: str) -> dict[str, str]:
        return {k: str(v) for k, v in _json_value(self._call("experimentManifests",
                                                             {"experiment": experiment})).items()}

    def extend(self, experiment: str, hours: float, reason: str) -> Status:
        self._call("extendExperiment", {"experiment": experiment, "wanted": hours, "reason": reason})
        return self.status(experiment)

    def terminate(self, experiment: str) -> None:
        self._call("terminateExperiment", {"experiment": experiment})


class RestPortal:
    def __init__(self, url: str = REST_DEFAULT, token: str | None = None, ca: Path | None = None,
                 insecure: bool = False, timeout_s: float = 60) -> None:
        if not token:
            raise PortalError("no API token: give --token-file (the token from the portal's API page), "
                              "see docs/cloudlab.md")
        self.url = url.rstrip("/")
        self._token = token.strip()
        self._ctx = _ssl_context(ca, insecure)
        self._timeout = timeout_s

    def _request(self, method: str, path: str, body: dict | None = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"X-Api-Token": self._token, "Accept": "application/json",
                                              **({"Content-Type": "application/json"} if data else {})})
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=self._timeout) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(detail).get("error", detail)
            what = {401: "the API token was rejected", 403: "forbidden", 404: "not found"}.get(exc.code, exc.reason)
            raise PortalError(f"{method} {self.url}{path}: HTTP {exc.code}, {what}: {detail}") from exc
        except urllib.error.URLError as exc:
            raise PortalError(f"{self.url}: cannot reach the portal: {exc.reason}") from exc
        return json.loads(text) if text.strip() else {}

    @staticmethod
    def _id(experiment: str) -> str:
        return urllib.parse.quote(experiment, safe="")

    def start(self, project: str, name: str, profile: str, bindings: dict, duration_h: float) -> Status:
        profile_project, _, profile_name = profile.partition(",")
        if not profile_name:
            raise PortalError(f"profile must be 'project,profile', got {profile!r}")
        data = self._request("POST", "/experiments", {"project": project, "name": name, "profile_project":
                                                      profile_project, "profile_name": profile_name,
                                                      "bindings": bindings, "duration": duration_h})
        return _status_from(f"{project},{name}", data if isinstance(data, dict) else {})

    def status(self, experiment: str) -> Status:
        data = self._request("GET", f"/experiments/{self._id(experiment)}")
        return _status_from(experiment, data if isinstance(data, dict) else {})

    def manifests(self, experiment: str) -> dict[str, str]:
        data = self._request("GET", f"/experiments/{self._id(experiment)}/manifests")
        if isinstance(data, dict) and isinstance(data.get("manifests"), dict | list):
            data = data["manifests"]
        if isinstance(data, list):  # tolerate [{aggregate_urn, manifest}] as well as {urn: xml}
            data = {m.get("aggregate_urn", str(i)): m.get("manifest", "") for i, m in enumerate(data)}
        if not isinstance(data, dict):
            raise PortalError(f"manifests of {experiment}: unexpected reply {data!r:.200}")
        return {k: str(v) for k, v in data.items()}

    def extend(self, experiment: str, hours: float, reason: str) -> Status:
        data = self._request("PUT", f"/experiments/{self._id(experiment)}", {"extend_by": hours, "reason": reason})
        return _status_from(experiment, data if isinstance(data, dict) else {})

    def terminate(self, experiment: str) -> None:
        self._request("DELETE", f"/experiments/{self._id(experiment)}")
