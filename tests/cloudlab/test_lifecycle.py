"""`nfvlab cloudlab start|status|manifest|extend|terminate` against the fake portal, both APIs."""

from __future__ import annotations

import time

import pytest
import yaml

from nfvlab.cli import main
from nfvlab.cloudlab.fakeportal import FakeCloudLab, RestFakePortal, XmlRpcFakePortal
from nfvlab.cloudlab.manifest import inventory_document, parse_manifest
from nfvlab.cloudlab.pki import CertificateAuthority

TOKEN = "tok-alice-0123456789"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(d / "ca")
    rogue = CertificateAuthority(d / "rogue", name="rogue-ca")
    server_cert, server_key = ca.server()
    (d / "pass").write_text("s3cret\n")
    (d / "token").write_text(TOKEN + "\n")
    (d / "badtoken").write_text("not-a-token\n")
    return {"ca": ca.path, "server": (server_cert, server_key), "alice": ca.user("alice"),
            "alice_enc": ca.user("alice", password="s3cret"), "bob": ca.user("bob"),
            "rogue": rogue.user("alice"), "pass": d / "pass", "token": d / "token", "badtoken": d / "badtoken"}


@pytest.fixture(scope="module")
def portals(pki):
    cloud = FakeCloudLab(tokens={TOKEN: "alice"}, ready_after_polls=2)
    cert, key = pki["server"]
    with XmlRpcFakePortal(cloud, cert, key, pki["ca"]) as x, RestFakePortal(cloud, cert, key) as r:
        yield {"xmlrpc": x, "rest": r, "cloud": cloud}


def creds(api: str, portals, pki, **over) -> list[str]:
    args = ["--api", api, "--url", portals[api].url, "--ca", str(pki["ca"])]
    if api == "xmlrpc":
        args += ["--cert", str(over.get("cert", pki["alice"]))]
        if "password" in over:
            args += ["--cert-password-file", str(over["password"])]
    else:
        args += ["--token-file", str(over.get("token", pki["token"]))]
    return args


@pytest.mark.parametrize("api", ["xmlrpc", "rest"])
def test_full_lifecycle(api, portals, pki, tmp_path, capsys) -> None:
    name = f"life-{api}"
    exp = f"nfvlab-proj,{name}"
    c = creds(api, portals, pki)
    assert main(["cloudlab", "start", name, "--project", "nfvlab-proj", "--nodes", "3", "--hardware", "xl170",
                 "--duration", "4", *c]) == 0
    assert f"{exp}: provisioning" in capsys.readouterr().out

    # no manifest while provisioning: a clear error, then ready
    assert main(["cloudlab", "manifest", exp, "--out", str(tmp_path / "inv.yaml"), *c]) == 1
    assert "not ready" in capsys.readouterr().err
    deadline = time.monotonic() + 10
    while True:
        assert main(["cloudlab", "status", exp, *c]) == 0
        out = capsys.readouterr().out
        if ": ready" in out or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert f"{exp}: ready" in out
    expires_before = out.split("expires ")[1].strip()

    inv = tmp_path / f"{name}.yaml"
    assert main(["cloudlab", "manifest", exp, "--out", str(inv), "--key", "~/.ssh/id_ed25519",
                 "--xml", str(tmp_path / "m.xml"), *c]) == 0
    assert "3 nodes" in capsys.readouterr().out
    doc = yaml.safe_load(inv.read_text())
    assert doc["name"] == name
    assert doc["defaults"] == {"user": "alice", "key": "~/.ssh/id_ed25519"}
    assert [n["name"] for n in doc["nodes"]] == ["node0", "node1", "node2"]
    assert [n["roles"] for n in doc["nodes"]] == [["victim_host"], ["traffic_generator"], ["store", "nf_host"]]
    assert [n["experiment_nic"] for n in doc["nodes"]] == [
        {"name": "eth1", "address": f"198.18.64.{i + 1}/24"} for i in range(3)]
    assert all(n["address"].endswith(".fake.cloudlab.test") for n in doc["nodes"])
    assert doc["nodes"][0]["container_subnet"] == "198.18.64.128/28"
    assert doc["nodes"][0]["cores"] == list(range(1, 10))  # xl170: 10 cores, core 0 left to the OS
    assert "<rspec" in (tmp_path / "m.xml").read_text()

    assert main(["cloudlab", "extend", exp, "6", *c]) == 0
    expires_after = capsys.readouterr().out.split("expires ")[1].strip()
    assert expires_after > expires_before

    assert main(["cloudlab", "terminate", exp, *c]) == 0
    assert "terminating" in capsys.readouterr().out
    assert main(["cloudlab", "status", exp, *c]) == 1
    err = capsys.readouterr().err
    assert "No such experiment" in err and exp in err


@pytest.mark.parametrize("api", ["xmlrpc", "rest"])
def test_start_and_wait_until_ready(api, portals, pki, capsys) -> None:
    c = creds(api, portals, pki)
    assert main(["cloudlab", "start", f"wait-{api}", "--project", "nfvlab-proj", "--nodes", "1", "--hardware",
                 "m510", "--wait", "20", *c]) == 0
    out = capsys.readouterr().out.splitlines()
    assert ": provisioning" in out[0]
    assert f"nfvlab-proj,wait-{api}: ready" in out[-1]
    assert main(["cloudlab", "terminate", f"nfvlab-proj,wait-{api}", *c]) == 0


@pytest.mark.parametrize("api", ["xmlrpc", "rest"])
def test_unknown_experiment(api, portals, pki, capsys) -> None:
    assert main(["cloudlab", "status", "nfvlab-proj,nope", *creds(api, portals, pki)]) == 1
    err = capsys.readouterr().err
    assert "No such experiment: nfvlab-proj,nope" in err
    assert ("SEARCHFAILED" in err) if api == "xmlrpc" else ("HTTP 404" in err)


def test_certificate_of_another_ca_is_refused(portals, pki, capsys) -> None:
    assert main(["cloudlab", "status", "nfvlab-proj,x", *creds("xmlrpc", portals, pki, cert=pki["rogue"])]) == 1
    err = capsys.readouterr().err
    assert "did not accept the user certificate" in err or "TLS handshake failed" in err


def test_encrypted_certificate_key(portals, pki, capsys) -> None:
    c = creds("xmlrpc", portals, pki, cert=pki["alice_enc"], password=pki["pass"])
    assert main(["cloudlab", "status", "nfvlab-proj,x", *c]) == 1  # authenticated: the portal answers
    assert "No such experiment" in capsys.readouterr().err
    c = creds("xmlrpc", portals, pki, cert=pki["alice_enc"])  # no passphrase: a clear error, no prompt
    assert main(["cloudlab", "status", "nfvlab-proj,x", *c]) == 1
    assert "passphrase" in capsys.readouterr().err


def test_bad_token_is_refused(portals, pki, capsys) -> None:
    assert main(["cloudlab", "status", "nfvlab-proj,x", *creds("rest", portals, pki, token=pki["badtoken"])]) == 1
    assert "API token was rejected" in capsys.readouterr().err


@pytest.mark.parametrize("api", ["xmlrpc", "rest"])
def test_not_a_project_member(api, portals, pki, capsys) -> None:
    c = creds(api, portals, pki)
    assert main(["cloudlab", "start", "x", "--project", "other-proj", "--profile-name", "nfvlab-proj,nfvlab",
                 "--nodes", "1", "--hardware", "m510", *c]) == 1
    assert "not a member of project other-proj" in capsys.readouterr().err


def test_bad_bindings_fail_before_any_request(portals, pki, capsys) -> None:
    before = dict(portals["cloud"].experiments)
    assert main(["cloudlab", "start", "bad", "--project", "nfvlab-proj", "--nodes", "99", "--hardware", "xl170",
                 *creds("rest", portals, pki)]) == 2
    assert "nodeCount must be between 1 and 16" in capsys.readouterr().err
    assert portals["cloud"].experiments == before


def test_missing_credentials_are_clear(tmp_path, capsys) -> None:
    assert main(["cloudlab", "status", "p,x", "--cert", str(tmp_path / "none.pem")]) == 1
    assert "Download Credentials" in capsys.readouterr().err
    assert main(["cloudlab", "status", "p,x", "--api", "rest"]) == 1
    assert "no API token" in capsys.readouterr().err


def test_inventory_matches_the_ssh_testbed_format() -> None:
    from nfvlab.cloudlab.fakeportal import manifest_from_request
    from nfvlab.cloudlab.render import bindings, render

    nodes = parse_manifest(manifest_from_request(render(bindings(1, "m510")), "alice"))
    doc = inventory_document("one", nodes)
    assert doc["nodes"][0]["roles"] == ["victim_host", "traffic_generator", "store", "nf_host"]
    inventory = pytest.importorskip("nfvlab.testbeds.inventory")  # the ssh testbed's own validator
    inv = inventory.Inventory.model_validate(doc)
    assert inv.nodes[0].experiment_nic.address == "198.18.64.1/24"


def test_silent_portal_times_out(pki) -> None:
    import socket

    from nfvlab.cloudlab.portal import PortalError, XmlRpcPortal

    with socket.socket() as s:  # accepts the TCP connection, never answers the TLS handshake
        s.bind(("127.0.0.1", 0))
        s.listen()
        portal = XmlRpcPortal(f"https://127.0.0.1:{s.getsockname()[1]}/usr/testbed", certificate=pki["alice"],
                              ca=pki["ca"], timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(PortalError, match="cannot reach the portal"):
            portal.status("nfvlab-proj,x")
        assert time.monotonic() - t0 < 5


def test_inventory_from_a_saved_manifest(tmp_path, capsys) -> None:
    from nfvlab.cloudlab.fakeportal import manifest_from_request
    from nfvlab.cloudlab.render import bindings, render

    xml = tmp_path / "iron2.xml"
    xml.write_text(manifest_from_request(render(bindings(2, "d6515")), "bob"))
    out = tmp_path / "inv.yaml"
    assert main(["cloudlab", "inventory", str(xml), "--out", str(out)]) == 0
    doc = yaml.safe_load(out.read_text())
    assert doc["name"] == "iron2" and doc["defaults"] == {"user": "bob"}
    assert doc["nodes"][1]["cores"] == list(range(1, 32))
    request = tmp_path / "request.xml"  # a request is not a manifest: no logins
    request.write_text(render(bindings(1, "m510")))
    assert main(["cloudlab", "inventory", str(request)]) == 2
    assert "type 'manifest'" in capsys.readouterr().err
