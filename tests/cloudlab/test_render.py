"""profile.py rendered through the installed geni-lib 0.9.9.4 (with nfvlab's in-memory fixes)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from lxml import etree

from nfvlab.cli import main
from nfvlab.cloudlab import geni_compat
from nfvlab.cloudlab.render import PROFILE, RenderError, bindings, render

NS = {"r": "http://www.geni.net/resources/rspec/3", "emulab": "http://www.protogeni.net/resources/rspec/ext/emulab/1"}
DEFAULT_IMAGE = "urn:publicid:IDN+emulab.net+image+emulab-ops//UBUNTU22-64-STD"


def parse(xml: str):
    return etree.fromstring(xml.encode())


@pytest.mark.parametrize(("nodes", "hardware"), [(1, "m510"), (3, "xl170"), (6, "c6525-25g"), (2, "d6515")])
def test_render_nodes_hardware_image_lan(nodes: int, hardware: str) -> None:
    root = parse(render(bindings(nodes, hardware)))
    assert root.get("type") == "request"
    found = root.findall("r:node", NS)
    assert [n.get("client_id") for n in found] == [f"node{i}" for i in range(nodes)]
    for n in found:
        assert n.get("exclusive") == "true"
        assert n.find("r:hardware_type", NS).get("name") == hardware
        assert n.find("r:sliver_type", NS).get("name") == "raw"
        assert n.find("r:sliver_type/r:disk_image", NS).get("name") == DEFAULT_IMAGE
        execute = n.findall("r:services/r:execute", NS)
        assert len(execute) == 1
        assert execute[0].get("command") == "sudo bash /local/repository/scripts/cloudlab-startup.sh"
    (lan,) = root.findall("r:link", NS)
    assert lan.find("r:link_type", NS).get("name") == "lan"
    assert [i.get("client_id") for i in lan.findall("r:interface_ref", NS)] == [f"node{i}:if1" for i in range(nodes)]
    assert lan.find("emulab:best_effort", NS).get("enabled") == "true"
    assert lan.find("emulab:force_nobwshaping", NS).get("enabled") == "true"
    addresses = [n.find("r:interface/r:ip", NS).get("address") for n in found]
    assert addresses == [f"198.18.64.{i + 1}" for i in range(nodes)]


def test_render_image_override_and_parameters_recorded() -> None:
    image = "urn:publicid:IDN+emulab.net+image+emulab-ops//UBUNTU20-64-STD"
    root = parse(render(bindings(2, "xl170", image)))
    assert {d.get("name") for d in root.iter("{*}disk_image")} == {image}
    data = {d.get("name"): d.text for d in root.iter("{*}data_item")}
    assert data["emulab.net.parameter.nodeCount"] == "2"
    assert data["emulab.net.parameter.image"] == image


def test_startup_script_exists_and_runs_bootstrap() -> None:
    script = PROFILE.parent / "scripts" / "cloudlab-startup.sh"
    text = script.read_text()
    assert "scripts/bootstrap.sh" in text and "/local/repository" in text
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"nodeCount": 0, "hardware": "xl170"}, "nodeCount", "between 1 and 16"),
    ({"nodeCount": 40, "hardware": "xl170"}, "nodeCount", "got 40"),
    ({"nodeCount": "two", "hardware": "xl170"}, "nodeCount", "Could not coerce"),
    ({"nodeCount": 2, "hardware": "pc3000"}, "hardware", "Illegal value 'pc3000'"),
    ({"nodeCount": 2, "hardware": "xl170", "image": "UBUNTU22"}, "image", "image URN"),
])
def test_invalid_parameters_name_the_field(params, field, words) -> None:
    with pytest.raises(RenderError) as info:
        render(params)
    (problem,) = info.value.problems
    assert problem.params == (field,)
    assert words in problem.message
    assert "invalid parameters" in str(info.value)


def test_cli_render_and_error(capsys) -> None:
    assert main(["cloudlab", "render", "--nodes", "2", "--hardware", "m510"]) == 0
    assert len(parse(capsys.readouterr().out).findall("r:node", NS)) == 2
    assert main(["cloudlab", "render", "--nodes", "2", "--hardware", "nope"]) == 2
    assert "hardware: Illegal value 'nope'" in capsys.readouterr().err


def test_unmodified_geni_portal_fails_and_the_fix_is_in_memory() -> None:
    # The release itself does not import on Python 3 (this is why geni_compat exists) ...
    plain = subprocess.run([sys.executable, "-c", "import geni.portal"], capture_output=True, text=True)
    assert plain.returncode != 0 and "SyntaxError" in plain.stderr
    # ... and the fix leaves the installed file untouched.
    fixed = geni_compat.patch_portal_source('    print "x %s" % y\n    val = raw_input("? ")\n')
    assert fixed == '    print("x %s" % y)\n    val = input("? ")\n'


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("True", True), (False, False), ("0", False)])
def test_boolean_parameters(value, expected) -> None:
    assert geni_compat.parse_bool(value) is expected
    with pytest.raises(ValueError):
        geni_compat.parse_bool("maybe")


def test_profile_py_does_not_shadow_stdlib_profile() -> None:
    # From the repository root `python -c` puts the checkout on sys.path; cProfile imports `profile`.
    proc = subprocess.run([sys.executable, "-c", "import cProfile, profile; print(profile.Profile.__module__)"],
                          cwd=PROFILE.parent, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "profile"
