"""The sandbox Minis' /usr/bin/python3 (tests/sandbox/mini.py): its sitecustomize holds ssl to TLS 1.2, as a Mac's
LibreSSL-linked Python is, and does so only when ssl is imported (a process that never uses ssl does not pay for it);
on a Mini booted with the module code cache, root's zip imports are compiled once (tests/sandbox/README.md)."""
from __future__ import annotations

import json
import os
import subprocess
import zipfile
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


def _mini_python():
    """(tests/sandbox/mini.py as a module, the Mini's Python 3.9 binary), or a skip without a 3.9 here."""
    mini = sandbox_mini()
    try:
        return mini, Path(mini.find_mini_python()) / "bin" / "python3.9"
    except SystemExit as missing:
        pytest.skip(str(missing))


def _run(python, site, script, *args):
    """The JSON line ``script`` prints, run by ``python`` with the sitecustomize.py in ``site``."""
    done = subprocess.run([str(python), "-c", script, *map(str, args)], capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    return json.loads(done.stdout)


def test_ssl_is_held_to_tls_1_2_when_imported_and_not_imported_at_start(tmp_path):
    mini, python = _mini_python()
    (tmp_path / "sitecustomize.py").write_text(mini.LIBRESSL_LIKE_SSL)
    assert _run(python, tmp_path, CHECK) == {"ssl_at_start": False, "has_tls_1_3": False, "default_max": "TLSv1_2",
                                       "client_max": "TLSv1_2"}


ZIP_IMPORT = """
import json, sys, traceback
sys.path.insert(0, sys.argv[1])
import sitecustomize
sitecustomize._cache_zip_compiles(cache=sys.argv[2], marker=sys.argv[3])
import payload
try:
    payload.fail()
except RuntimeError:
    where = traceback.extract_tb(sys.exc_info()[2])[-1].filename
print(json.dumps({"answer": payload.ANSWER, "traceback_file": where}))
"""


def _zip_import(python, site, work, name, marker_text, answer=1):
    """Import ``payload`` (ANSWER = answer) from a new zip as the Mini's Python with the code cache at work/cache."""
    archive = work / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("payload.py", f"ANSWER = {answer}\n\ndef fail():\n    raise RuntimeError('here')\n")
    (work / "marker").write_text(marker_text)
    return _run(python, site, ZIP_IMPORT, archive, work / "cache", work / "marker"), archive


def test_roots_zip_imports_are_compiled_once_and_run_under_their_own_file_name(tmp_path):
    mini, python = _mini_python()
    if os.geteuid() != 0:
        pytest.skip("the cache is root's")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(mini.MINI_SITECUSTOMIZE)
    # Off ("0", the benchmarks' Minis): nothing is kept.
    off, _ = _zip_import(python, site, tmp_path, "off", "0")
    assert off["answer"] == 1 and not (tmp_path / "cache").exists()
    first, archive = _zip_import(python, site, tmp_path, "first", "1")
    entries = list((tmp_path / "cache").iterdir())
    assert first == {"answer": 1, "traceback_file": f"{archive}/payload.py"} and len(entries) == 1
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700 and entries[0].stat().st_mode & 0o777 == 0o600
    # The same source from another zip (AnsiballZ's next temporary directory) runs the kept code, under its own name.
    second, archive = _zip_import(python, site, tmp_path, "second", "1")
    assert second == {"answer": 1, "traceback_file": f"{archive}/payload.py"}
    assert list((tmp_path / "cache").iterdir()) == entries
    # Kept code is what runs (shown by planting another answer under the hash), but only from a file no one else may
    # write: a group-writable one is compiled past.
    (tmp_path / "plant").mkdir()
    assert _zip_import(python, site, tmp_path / "plant", "p", "1", answer=2)[0]["answer"] == 2
    entries[0].write_bytes(next((tmp_path / "plant" / "cache").iterdir()).read_bytes())
    assert _zip_import(python, site, tmp_path, "third", "1")[0]["answer"] == 2
    entries[0].chmod(0o620)
    assert _zip_import(python, site, tmp_path, "fourth", "1")[0]["answer"] == 1
