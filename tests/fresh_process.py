"""Run a script in a fresh interpreter with a given kiln cache directory (cache tests)."""
import json
import os
import subprocess
import sys


def run_fresh(script, cache_dir):
    """The JSON object the script prints last, run with KILN_CACHE_DIR=cache_dir and the disk cache on."""
    env = dict(os.environ, KILN_CACHE_DIR=str(cache_dir))
    env.pop("KILN_DISABLE_DISK_CACHE", None)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
