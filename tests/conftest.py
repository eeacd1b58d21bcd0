"""Test session setup: kiln's disk cache lives in a temporary directory, never in the user's home."""
import os
import shutil
import tempfile


def pytest_configure(config):
    config.kiln_cache_dir = tempfile.mkdtemp(prefix="kiln-test-cache-")
    os.environ["KILN_CACHE_DIR"] = config.kiln_cache_dir


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "kiln_cache_dir", ""), ignore_errors=True)
