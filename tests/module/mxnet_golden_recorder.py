"""Records tests/module/golden_mxnet.json with real MXNet 1.9.1 (not a test; kiln's tests never import mxnet).

Run: MXNET_SUBGRAPH_BACKEND=NONE /tmp/mxenv/bin/python tests/module/mxnet_golden_recorder.py
(MXNET_SUBGRAPH_BACKEND=NONE: MXNet's MKLDNN subgraph caches fused FullyConnected weights
in inference, so values set by set_params after a first forward are ignored there.)
The same scenarios, with the same inputs, are in test_module_golden.py.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxnet as mx  # noqa: E402
from module_scenarios import run_all  # noqa: E402

if __name__ == "__main__":
    out = run_all(mx)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden_mxnet.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)
    print("wrote", path, len(out), "entries", np.__version__)
