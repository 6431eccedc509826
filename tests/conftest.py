"""Fixtures shared by unit, integration and end-to-end tests: the local servers and a module runner.

The helpers themselves live in tests/clawfarm_testlib.py (importable from any test directory).
"""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from clawfarm_testlib import CF_TOKEN, REPO, CloudflareStandIn, S3StandIn, free_port, run_module_process, wait_http, xdist_scope

# Plugins that print at the end of the run are registered here too: under pytest-xdist (scripts/test.sh) the terminal
# summary is written by the controller process, which imports no test module, so a test module's own
# ``pytest_plugins`` registers them only in the workers, where nothing is printed. Same names as the test modules
# use (tests/e2e is on sys.path there too), so a plain run registers each once.
sys.path.insert(0, str(Path(__file__).resolve().parent / "e2e"))
pytest_plugins = ["full_mini_report"]

try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pytest-xdist is a dev dependency; without it the suite runs in one process
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:
    class E2EModuleScheduling(LoadScopeScheduling):
        """xdist's load-scope scheduling with clawfarm_testlib.xdist_scope as the unit: each e2e module whole on one
        worker, every fleet module on the same one, every other test on its own (they fill the gaps).

        (``--dist loadgroup`` with ``xdist_group`` marks would say the same, but pytest-xdist 3.8 puts the group in
        the node id by assigning ``item._nodeid``, which pytest 9 ignores: the groups were silently split.)
        """

        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    def pytest_xdist_make_scheduler(config, log):
        """Under ``-n``, always the scheduling above (a module split between workers would boot its Minis twice)."""
        return E2EModuleScheduling(config, log)


ANSIBALLZ_CACHE_VAR = "CLAWFARM_TEST_ANSIBALLZ_CACHE"
ANSIBALLZ_CACHE_KEY = pytest.StashKey[str]()


def pytest_configure(config):
    """Every ``ansible-playbook`` this run starts (helpers, the API's jobs, ansible-runner) shares one payload cache.

    tests/callback_plugins/ansiballz_run_cache.py: ansible-core would otherwise build each module's payload again in
    every playbook. The directory is made once per run, by the xdist controller (or a plain run), before the workers
    start, so they inherit it through the environment; the callbacks the collection's ansible.cfg enables (or the
    ones ``ANSIBLE_CALLBACKS_ENABLED`` names, with ``ANSIBLE_CALLBACK_PLUGINS``) stay on.
    """
    if os.environ.get(ANSIBALLZ_CACHE_VAR):
        return  # an xdist worker: its controller made the directory
    directory = tempfile.mkdtemp(prefix="clawfarm-ansiballz-")
    config.stash[ANSIBALLZ_CACHE_KEY] = directory
    enabled = os.environ.get("ANSIBLE_CALLBACKS_ENABLED")  # the operator's own list (docs/maintaining.md's profiling)
    if enabled is None:
        settings = configparser.ConfigParser(interpolation=None)
        settings.read(REPO / "ansible.cfg")
        enabled = settings.get("defaults", "callbacks_enabled", fallback="")
    plugins = os.environ.get("ANSIBLE_CALLBACK_PLUGINS", "")
    os.environ.update({
        ANSIBALLZ_CACHE_VAR: directory,
        "ANSIBLE_CALLBACK_PLUGINS": ":".join(filter(None, (plugins, str(REPO / "tests" / "callback_plugins")))),
        "ANSIBLE_CALLBACKS_ENABLED": ",".join([*filter(None, (n.strip() for n in enabled.split(","))), "ansiballz_run_cache"]),
    })


def pytest_unconfigure(config):
    """Remove the run's payload cache (only in the process that made it)."""
    directory = config.stash.get(ANSIBALLZ_CACHE_KEY, None)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def cf_api_server():
    """The Cloudflare API stand-in as a separate uvicorn process on a free loopback port."""
    port = free_port()
    env = dict(os.environ, CFAPI_TOKEN=CF_TOKEN)
    proc = subprocess.Popen([sys.executable, str(REPO / "tests/cfapi/server.py"), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/__control/state")
        yield CloudflareStandIn("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def cf_api(cf_api_server):
    """The stand-in, emptied before the test."""
    cf_api_server.reset()
    return cf_api_server


@pytest.fixture
def run_module():
    """``run_module(name, args, check=False, diff=False)`` -> the module's JSON result."""
    return run_module_process


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto S3 over HTTP on loopback."""
    server = S3StandIn("127.0.0.1", tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_tls_server(tmp_path_factory):
    """moto S3 over HTTPS (self-signed certificate) on loopback: botocore takes its TLS code paths."""
    server = S3StandIn("127.0.0.1", tmp_path_factory.mktemp("moto-tls"), tls=True)
    server.start()
    yield server
    server.stop()
