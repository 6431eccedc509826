"""Mini-side Python runs as on a Mac: the sandbox Mini's /usr/bin/python3 and the farm venv are CPython 3.9.

Every module of the collection runs under one of them (ansible_python_interpreter /usr/bin/python3, or
mini_python_interpreter for r2_archive, mini_health, ...), so the whole e2e suite runs Mini-side code on 3.9.
"""
from __future__ import annotations


def test_mini_python_is_the_command_line_tools_cpython_39(mini):
    assert mini.sh("/usr/bin/python3 --version").stdout.startswith("Python 3.9.")
    where = mini.sh("/usr/bin/python3 -c 'import os, sys; print(os.path.realpath(sys.prefix))'").stdout.strip()
    assert where == "/Library/Developer/CommandLineTools/Library/Frameworks/Python3.framework/Versions/3.9"
    # A claw user runs it too (nothing of it lies under the host's /root, which is 0700).
    assert mini.sh("su -s /bin/sh nobody -c '/usr/bin/python3 -c \"import ssl, sqlite3, ctypes\"'").returncode == 0


def test_farm_venv_is_python_39_with_its_wheels(mini):
    assert mini.sh("/opt/mirascope/python/bin/python3 --version").stdout.startswith("Python 3.9.")
    mini.sh("/opt/mirascope/python/bin/python3 -c 'import boto3, psutil, yaml, zstandard'")
    wheels = mini.sh("ls /opt/mirascope/python/lib/python3.9/site-packages").stdout
    assert "zstandard" in wheels and "boto3" in wheels
