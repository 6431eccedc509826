"""The sandbox Minis' /usr/bin/python3 (tests/sandbox/mini.py): its sitecustomize holds ssl to TLS 1.2, as a Mac's
LibreSSL-linked Python is, and does so only when ssl is imported (a process that never uses ssl does not pay for it)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from clawfarm_testlib import sandbox_mini

CHECK = """
import json, sys
before = "ssl" in sys.modules
import ssl
print(json.dumps({"ssl_at_start": before, "has_tls_1_3": ssl.HAS_TLSv1_3,
                  "default_max": ssl.create_default_context().maximum_version.name,
                  "client_max": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).maximum_version.name}))
"""


def test_ssl_is_held_to_tls_1_2_when_imported_and_not_imported_at_start(tmp_path):
    mini = sandbox_mini()
    try:
        python = Path(mini.find_mini_python()) / "bin" / "python3.9"
    except SystemExit as missing:
        pytest.skip(str(missing))
    (tmp_path / "sitecustomize.py").write_text(mini.LIBRESSL_LIKE_SSL)
    done = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert json.loads(done.stdout) == {"ssl_at_start": False, "has_tls_1_3": False, "default_max": "TLSv1_2",
                                       "client_max": "TLSv1_2"}
