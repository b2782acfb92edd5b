"""nfvlab: N bare-metal nodes on one LAN for the experiments of "Paving the Way for NFV".

Every node runs the same disk image and joins one experiment LAN (best effort, no bandwidth
shaping: the NICs run at line rate, as Iron's 25 Gbit/s and CHC's 10 Gbit/s testbeds did). At
boot each node runs /local/repository/scripts/cloudlab-startup.sh, which installs nfvlab from this
repository (scripts/bootstrap.sh) and logs to /local/logs/nfvlab-startup.log.

Instructions:
When every node is "ready" and its startup script has finished, fetch the manifest and the ssh
inventory with `nfvlab cloudlab manifest EXPERIMENT`, then run a spec with
`nfvlab run SPEC --testbed testbed/EXPERIMENT.yaml`. See docs/cloudlab.md.
"""

import sys

if __name__ == "profile" and __spec__ is not None:
    # Imported, not run: the checkout is on sys.path (python -m/-c from the repository root) and
    # something asked for the standard library's `profile` (cProfile does). CloudLab needs this file
    # at the root under this name, so hand the import over to the real module.
    import importlib.util
    import sysconfig

    _spec = importlib.util.spec_from_file_location("profile", sysconfig.get_path("stdlib") + "/profile.py")
    _stdlib_profile = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_stdlib_profile)
    sys.modules["profile"] = _stdlib_profile
    globals().update({k: v for k, v in vars(_stdlib_profile).items() if not k.startswith("__")})
else:
    import geni.portal as portal
    import geni.rspec.emulab  # noqa: F401  (setNoBandwidthShaping and the other Emulab extensions)
    import geni.rspec.pg as pg

    HARDWARE = [
        ("xl170", "xl170 (Utah): 10-core Xeon E5-2640v4, 25 Gb Mellanox ConnectX-4"),
        ("c6525-25g", "c6525-25g (Utah): 16-core EPYC 7302P, 25 Gb Mellanox ConnectX-5"),
        ("d6515", "d6515 (Utah): 32-core EPYC 7452, 100 Gb Mellanox ConnectX-5"),
        ("m510", "m510 (Utah): 8-core Xeon D-1548, 10 Gb Mellanox ConnectX-3"),
    ]
    DEFAULT_IMAGE = "urn:publicid:IDN+emulab.net+image+emulab-ops//UBUNTU22-64-STD"
    MAX_NODES = 16
    LAN_PREFIX = "198.18.64"  # the benchmarking range nfvlab keeps experiment traffic in (RFC 2544)
    STARTUP = "sudo bash /local/repository/scripts/cloudlab-startup.sh"

    pc = portal.Context()
    pc.defineParameter("nodeCount", "Number of nodes", portal.ParameterType.INTEGER, 3,
                       longDescription=f"Nodes on the experiment LAN, 1 to {MAX_NODES}. node0 is the victim "
                                       "host, node1 the traffic generator, the others NF/store hosts.")
    pc.defineParameter("hardware", "Hardware type", portal.ParameterType.NODETYPE, "xl170", HARDWARE)
    pc.defineParameter("image", "Disk image", portal.ParameterType.IMAGE, DEFAULT_IMAGE,
                       longDescription="URN of the disk image every node boots.")
    params = pc.bindParameters()

    if not 1 <= params.nodeCount <= MAX_NODES:
        pc.reportError(portal.ParameterError(f"nodeCount must be between 1 and {MAX_NODES}, got {params.nodeCount}",
                                             ["nodeCount"]))
    if not str(params.image).startswith("urn:publicid:IDN+"):
        pc.reportError(portal.ParameterError(f"image must be an image URN (urn:publicid:IDN+...), got {params.image!r}",
                                             ["image"]))
    pc.verifyParameters()

    request = pc.makeRequestRSpec()
    lan = request.LAN("lan0")
    lan.best_effort = True
    lan.setNoBandwidthShaping()

    for i in range(params.nodeCount):
        node = request.RawPC(f"node{i}")
        node.hardware_type = params.hardware
        node.disk_image = params.image
        iface = node.addInterface("if1")
        iface.addAddress(pg.IPv4Address(f"{LAN_PREFIX}.{i + 1}", "255.255.255.0"))
        lan.addInterface(iface)
        node.addService(pg.Execute(shell="bash", command=STARTUP))

    pc.printRequestRSpec(request)
