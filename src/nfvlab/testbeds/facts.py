"""Per-node provenance: what the experiment NIC is and how the node is tuned, read over the node's
shell (so it works the same on this machine and over ssh). Missing pieces (a veth has no firmware,
a VM no cpufreq) are recorded as None, never guessed."""

from __future__ import annotations

import shlex
from typing import Any

from nfvlab.testbeds.node import Node, NodeError

SEP = "----nfvlab-fact----"


def _script(nic: str | None) -> str:
    q = shlex.quote(nic or "lo")
    parts = {
        "kernel": "uname -r",
        "kernel_cmdline": "cat /proc/cmdline",
        "cpu_model": "sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1",
        "cores": "nproc --all",
        "cpu_governor": "cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor 2>/dev/null | sort | uniq -c",
        "irqbalance": "pgrep -x irqbalance >/dev/null && echo running || echo 'not running'",
        "nic_driver": f"ethtool -i {q} 2>/dev/null",
        "nic_model": f"d=$(readlink -f /sys/class/net/{q}/device 2>/dev/null) && [ -n \"$d\" ] && "
                     f"(lspci -s $(basename $d) 2>/dev/null || cat $d/uevent)",
        "nic_kind": f"ip -d -o link show {q} 2>/dev/null | grep -oE '(veth|macvlan|bridge|vlan|bond) ' | head -n1",
        "nic_channels": f"ethtool -l {q} 2>/dev/null | sed -n '/Current/,$p'",
        "rps_cpus": f"for x in /sys/class/net/{q}/queues/rx-*; do echo $(basename $x)=$(cat $x/rps_cpus); done",
        "xps_cpus": f"for x in /sys/class/net/{q}/queues/tx-*; do echo $(basename $x)=$(cat $x/xps_cpus 2>/dev/null); "
                    f"done",
        "irq_affinity": f"for i in $(grep -E '{nic or 'lo'}(-|$| )' /proc/interrupts | cut -d: -f1); do "
                        f"echo $i=$(cat /proc/irq/$i/smp_affinity_list); done",
    }
    return "; ".join(f"echo {SEP}{k}; ({v}) 2>/dev/null" for k, v in parts.items())


def _parse_driver(text: str) -> dict[str, str | None]:
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return {"driver": fields.get("driver"), "version": fields.get("version"),
            "firmware": fields.get("firmware-version") or None, "bus": fields.get("bus-info") or None}


def _kv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.split() if "=" in line)


def collect(node: Node, timeout: float = 30.0) -> dict[str, Any]:
    try:
        text = node.run(_script(node.experiment_nic), timeout=timeout, check=False).stdout
    except NodeError as e:
        return {"error": str(e)}
    raw: dict[str, str] = {}
    for chunk in text.split(SEP)[1:]:
        key, _, value = chunk.partition("\n")
        raw[key.strip()] = value.strip()
    drv = _parse_driver(raw.get("nic_driver", ""))
    return {
        "kernel": raw.get("kernel") or None,
        "kernel_cmdline": raw.get("kernel_cmdline") or None,
        "cpu_model": raw.get("cpu_model") or None,
        "cores": int(raw["cores"]) if raw.get("cores", "").isdigit() else None,
        "cpu_governor": " ".join(raw.get("cpu_governor", "").split()) or None,
        "irqbalance": raw.get("irqbalance") or None,
        "nic": {
            "name": node.experiment_nic,
            "model": raw.get("nic_model") or None,
            "kind": raw.get("nic_kind") or None,
            "driver": drv["driver"],
            "driver_version": drv["version"],
            "firmware": drv["firmware"],
            "bus": drv["bus"],
            "channels": raw.get("nic_channels") or None,
            "rps_cpus": _kv(raw.get("rps_cpus", "")),
            "xps_cpus": _kv(raw.get("xps_cpus", "")),
            "irq_affinity": _kv(raw.get("irq_affinity", "")),
        },
    }
