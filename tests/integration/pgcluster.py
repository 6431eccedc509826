"""A throwaway PostgreSQL cluster for tests: Debian's ``postgresql`` binaries (``initdb``, ``pg_ctl``), run as the
``postgres`` user when the tests run as root, listening only on a Unix socket in a private directory (no TCP, no
systemd). ``trust`` authentication is safe there: only root and ``postgres`` can enter the socket's directory.

Use the ``postgres_url`` fixture (module scope; import it into a test module) or :func:`cluster` directly.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def binaries() -> Path | None:
    """The directory of ``initdb``/``pg_ctl`` (newest ``/usr/lib/postgresql/<v>/bin``, else PATH), or None."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@contextlib.contextmanager
def cluster(database: str = "clawfarm"):
    """Start a cluster, create ``database``, yield its SQLAlchemy URL (``postgresql+psycopg``), then stop it
    (immediate) and delete its files."""
    bindir = binaries()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql; scripts/setup.sh installs it)")
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
    base = Path(tempfile.mkdtemp(prefix="clawfarm-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir(mode=0o700)
    if as_root:
        entry = pwd.getpwnam(user)
        for path in (base, sock):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    prefix = ["runuser", "-u", user, "--"] if as_root else []

    def run(*argv):
        subprocess.run([*prefix, *argv], check=True, capture_output=True, text=True, cwd=base)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60", "start",
            "-o", f"-k {sock} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        run(str(bindir / "createdb"), "-h", str(sock), "-U", "postgres", database)
        yield f"postgresql+psycopg://postgres@/{database}?host={sock}"
    finally:
        with contextlib.suppress(Exception):
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url():
    """SQLAlchemy URL of a fresh PostgreSQL database on a private Unix socket (one cluster per test module)."""
    with cluster() as url:
        yield url


def store_url(request, tmp_path: Path, sqlite_file: str = "state/db.sqlite", prefix: str = "t") -> str:
    """The API store one test runs on, by ``request.param``: ``"sqlite"`` gives a SQLite file ``tmp_path/sqlite_file``
    (its directory made), ``"postgresql"`` a fresh database in the module's cluster (the ``postgres_url`` fixture),
    named ``<prefix><digits of the test's name>``. Use it from a fixture parametrized over both stores:

        @pytest.fixture(params=["sqlite", "postgresql"])
        def store(request, tmp_path):
            return store_url(request, tmp_path)
    """
    if request.param == "sqlite":
        (tmp_path / sqlite_file).parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{tmp_path / sqlite_file}"
    from sqlalchemy import create_engine, text

    base = request.getfixturevalue("postgres_url")
    name = f"{prefix}{abs(hash(request.node.name)) % 10**9}"
    with create_engine(base, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return base.replace("/clawfarm?", f"/{name}?")
