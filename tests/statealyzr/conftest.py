import shutil
from pathlib import Path

import pytest

from nfvlab.statealyzr import build

HAVE_CLANG = build.have_toolchain()
HAVE_PCAP = Path("/usr/include/pcap.h").exists() or Path("/usr/include/pcap/pcap.h").exists()

needs_clang = pytest.mark.skipif(not HAVE_CLANG, reason="clang-14/llvm-link-14 not installed")
needs_pcap = pytest.mark.skipif(not (HAVE_CLANG and HAVE_PCAP),
                                reason="clang-14 or libpcap-dev (deps/apt.txt) not installed")
needs_gdb = pytest.mark.skipif(not (HAVE_CLANG and HAVE_PCAP and shutil.which("gdb")),
                               reason="gdb/libpcap-dev not installed")


@pytest.fixture(scope="session")
def gt_results():
    """Analysis results of every ground-truth middlebox, computed once per session."""
    from nfvlab.statealyzr import corpus
    out = {}
    for name in corpus.ground_truths():
        gt = corpus.load_ground_truth(name)
        if corpus.available(gt):          # daqmon needs libdaq-dev (deps/apt.txt)
            out[name] = (gt, corpus.analyze_ground_truth(gt))
    return out
