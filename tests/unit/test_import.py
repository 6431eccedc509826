"""Issue 17: import of a Cloudflare Containers export (plugins/module_utils/_import.py): format detection, source
parsing, restore's member checks on the export, the gateway config rewrite and the placement as the claw."""
from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _import as imp

TENANT = 4321
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
TOKEN = "inline-container-token-0123456789abcdef"
CONTAINER_CONFIG = {
    "gateway": {"mode": "local", "port": 18789, "bind": "lan", "auth": {"mode": "token", "token": TOKEN},
                "controlUi": {"enabled": True}},
    "logging": {"file": "/home/node/.openclaw/logs/gateway.log", "level": "debug"},
    "agents": {"defaults": {"workspace": "/home/node/.openclaw/workspace", "model": {"primary": "anthropic/claude"},
                            "heartbeat": {"every": "30m"}},
               "list": [{"id": "main", "agentDir": "/home/node/.openclaw/agents/main/agent"}]},
    "session": {"store": "/home/node/.openclaw/agents/main/sessions/sessions.json"},
    "models": {"providers": {"anthropic": {"baseUrl": "https://api.anthropic.com"}}},
    "tools": {"exec": {"cwd": "/srv/elsewhere"}},
}


def export(members: dict, fmt: str = "gzip", prefix: str = ".openclaw/") -> bytes:
    """A tar of ``members`` (name -> bytes, or None for a directory) under ``prefix``, compressed as ``fmt``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if prefix:
            info = tarfile.TarInfo(prefix.rstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(prefix + name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(data, tuple):  # (type, linkname)
                info.type, info.linkname = data
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    data = raw.getvalue()
    if fmt == "gzip":
        return gzip.compress(data)
    if fmt == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


SAMPLE = {"openclaw.json": json.dumps(CONTAINER_CONFIG).encode(), "workspace": None, "workspace/notes.md": b"hello\n",
          "agents": None, "agents/main": None, "agents/main/sessions": None,
          "agents/main/sessions/abc.jsonl": b'{"role":"user"}\n', ".env": b"CLAW_GATEWAY_TOKEN=old\n",
          "openclaw.json.last-good": json.dumps(CONTAINER_CONFIG).encode()}


# ---- source and format ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("src, kind", [("/srv/exports/claw.tar.gz", "path"), ("s3://claw-exports/2026/claw.tar.zst", "s3"),
                                       ("https://exports.example.com/claw.tar?sig=abc", "https")])
def test_sources(src, kind):
    assert imp.parse_source(src)["kind"] == kind


@pytest.mark.parametrize("src", ["relative/claw.tar", "http://example.com/x.tar", "file:///etc/passwd", "s3://B/x",
                                 "s3://bucket/../x", "https://user:pw@example.com/x", "", "/tmp/a\nb", 7,
                                 "ftp://example.com/x"])
def test_bad_sources(src):
    with pytest.raises(imp.ImportInputError):
        imp.parse_source(src)


@pytest.mark.parametrize("fmt", ["tar", "gzip", "zstd"])
def test_formats_detected_and_read(fmt):
    data = export(SAMPLE, fmt)
    found, stream = imp.tar_reader(io.BytesIO(data))
    assert found == fmt
    info = imp.inspect_stream(stream, imp.limits_for(100, 10**6))
    assert info["root"] == ".openclaw" and info["files"] == 5 and info["config"] == CONTAINER_CONFIG


@pytest.mark.parametrize("head, name", [(b"BZh91AY", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"),
                                        (b"hello world" * 60, "unknown")])
def test_other_formats_refused(head, name):
    with pytest.raises(imp.ArchiveError, match=name):
        imp.detect_format(head)


def test_export_of_the_directory_contents_has_no_root():
    info = imp.inspect_stream(io.BytesIO(export(SAMPLE, "tar", prefix="./")), imp.limits_for(100, 10**6))
    assert info["root"] == "" and info["config"]["gateway"]["port"] == 18789


@pytest.mark.parametrize("member, reason", [
    (("../escape", b"x"), r"\.\."),
    (("/etc/passwd", b"x"), "absolute"),
    (("link", (tarfile.LNKTYPE, "../../etc/shadow")), "hard link"),
    (("dev", (tarfile.CHRTYPE, "")), "special"),
])
def test_restore_rules_apply_to_the_export(member, reason):
    name, data = member
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        if isinstance(data, tuple):
            info.type, info.linkname = data
            tar.addfile(info)
        else:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(imp.ArchiveError, match=reason):
        imp.inspect_stream(io.BytesIO(raw.getvalue()), imp.limits_for(100, 10**6))


def test_limits():
    with pytest.raises(imp.ArchiveError, match="entries"):
        imp.inspect_stream(io.BytesIO(export(SAMPLE, "tar")), imp.limits_for(3, 10**6))
    with pytest.raises(imp.ArchiveError, match="bytes"):
        imp.inspect_stream(io.BytesIO(export(SAMPLE, "tar")), imp.limits_for(100, 10))
    assert imp.limits_for(10, 10**9, free_bytes=5000)["bytes"] == 5000


def test_config_that_is_not_json_is_refused_without_its_content():
    with pytest.raises(imp.ArchiveError) as exc:
        imp.parse_config(b'{"gateway": {"auth": {"token": "' + TOKEN.encode() + b'"}}, // comment\n}')
    assert TOKEN not in str(exc.value) and "JSON" in str(exc.value)


# ---- config rewrite ----------------------------------------------------------------------------------------------

def test_rewrite_takes_the_farms_settings_and_keeps_the_agents():
    state = "/Users/claw-1a2b3c4d/.openclaw"
    farm = _claw.gateway_config(8120, state)
    new, plan = imp.rewrite_config(CONTAINER_CONFIG, farm, state)
    assert new["gateway"] == farm["gateway"] and new["logging"] == farm["logging"]
    assert new["agents"]["defaults"]["workspace"] == f"{state}/workspace"
    assert new["agents"]["defaults"]["heartbeat"] == {"every": "0m"}
    assert new["agents"]["defaults"]["model"] == {"primary": "anthropic/claude"}
    assert new["agents"]["list"] == [{"id": "main", "agentDir": f"{state}/agents/main/agent"}]
    assert new["session"]["store"] == f"{state}/agents/main/sessions/sessions.json"
    assert new["models"] == CONTAINER_CONFIG["models"] and new["tools"] == CONTAINER_CONFIG["tools"]
    assert TOKEN not in json.dumps(new) and TOKEN not in json.dumps(plan)
    assert {"gateway.port", "gateway.bind", "gateway.auth", "gateway.controlUi", "logging.file", "logging.level",
            "agents.defaults.workspace", "agents.defaults.heartbeat.every", "agents.list.0.agentDir", "session.store"} <= set(plan["rewritten"])
    assert "agents.defaults.model" in plan["kept"] and "models.providers.anthropic" in plan["kept"]
    assert "tools.exec.cwd" in plan["kept"] and not set(plan["kept"]) & set(plan["rewritten"])
    assert plan["source_state_dir"] == "/home/node/.openclaw"
    assert CONTAINER_CONFIG["gateway"]["port"] == 18789  # the input is not changed


def test_rewrite_is_idempotent_and_handles_no_config():
    state = "/Users/claw-1a2b3c4d/.openclaw"
    farm = _claw.gateway_config(8120, state)
    new, _ = imp.rewrite_config(CONTAINER_CONFIG, farm, state)
    again, plan = imp.rewrite_config(new, farm, state)
    assert again == new and plan["rewritten"] == []
    bare, plan = imp.rewrite_config(None, farm, state)
    assert bare["gateway"] == farm["gateway"] and "gateway" in plan["rewritten"]


def test_explicit_source_state_dir():
    config = {"agents": {"list": [{"id": "main", "workspace": "/app/state/ws"}]}}
    new, plan = imp.rewrite_config(config, _claw.gateway_config(8100, "/Users/x/.openclaw"), "/Users/x/.openclaw",
                                   old_state_dir="/app/state")
    assert new["agents"]["list"][0]["workspace"] == "/Users/x/.openclaw/ws" and plan["source_state_dir"] == "/app/state"


# ---- placement on the Mini -------------------------------------------------------------------------------------

@needs_root
@pytest.mark.parametrize("prefix", [".openclaw/", "./"])
def test_import_places_the_export_as_the_claw(tmp_path, prefix):
    users = tmp_path / "Users"
    home = users / "claw-1a2b3c4d"
    (home / ".openclaw" / "workspace").mkdir(parents=True)
    (home / ".openclaw" / ".env").write_text("CLAW_GATEWAY_TOKEN=present\n")
    os.chown(home, TENANT, 20)
    archive = tmp_path / "export.tar.zst"
    archive.write_bytes(export(SAMPLE, "zstd", prefix))
    farm = _claw.gateway_config(8120, str(home / ".openclaw"))
    result = imp.import_export(str(archive), str(home), ".openclaw", TENANT, 20, farm)
    state = home / ".openclaw"
    assert (state / "workspace/notes.md").read_text() == "hello\n"
    assert (state / "agents/main/sessions/abc.jsonl").read_bytes() == b'{"role":"user"}\n'
    assert not (state / ".env").exists() and not (state / "openclaw.json.last-good").exists()
    assert result["dropped"] == [".env", "openclaw.json.last-good"]
    config = json.loads((state / "openclaw.json").read_text())
    assert config["gateway"]["port"] == 8120 and config["agents"]["defaults"]["workspace"] == f"{state}/workspace"
    assert stat.S_IMODE(os.stat(state / "openclaw.json").st_mode) == 0o600
    owners = {os.lstat(os.path.join(d, n)).st_uid for d, ds, fs in os.walk(state) for n in ds + fs} | {os.lstat(state).st_uid}
    assert owners == {TENANT} and stat.S_IMODE(os.lstat(state).st_mode) == 0o700
    assert result["previous"] and (tmp_path / "Users" / "claw-1a2b3c4d" / os.path.basename(result["previous"]) / ".env").exists()
    assert sorted(os.listdir(users)) == ["claw-1a2b3c4d"]  # no staging left


@needs_root
def test_a_bad_export_changes_nothing(tmp_path):
    users = tmp_path / "Users"
    home = users / "claw-1a2b3c4d"
    (home / ".openclaw").mkdir(parents=True)
    (home / ".openclaw" / "keep").write_text("present")
    os.chown(home, TENANT, 20)
    archive = tmp_path / "export.tar"
    bad = dict(SAMPLE)
    bad["workspace/evil"] = (tarfile.LNKTYPE, "/etc/shadow")
    archive.write_bytes(export(bad, "tar"))
    with pytest.raises(imp.ArchiveError):
        imp.import_export(str(archive), str(home), ".openclaw", TENANT, 20, _claw.gateway_config(8120, str(home / ".openclaw")))
    assert os.listdir(home) == [".openclaw"] and (home / ".openclaw" / "keep").read_text() == "present"
    assert sorted(os.listdir(users)) == ["claw-1a2b3c4d"]


@needs_root
def test_an_export_that_is_a_link_or_someone_elses_is_refused(tmp_path):
    real = tmp_path / "real.tar"
    real.write_bytes(export(SAMPLE, "tar"))
    (tmp_path / "link.tar").symlink_to(real)
    with pytest.raises(imp.ArchiveError, match="cannot open"):
        imp.inspect_file(str(tmp_path / "link.tar"), imp.limits_for(100, 10**6))
    os.chown(real, TENANT, 20)
    with pytest.raises(imp.ArchiveError, match="not a regular file of this user"):
        imp.inspect_file(str(real), imp.limits_for(100, 10**6))


def test_the_farm_owns_every_section_it_writes_but_the_agents():
    farm = {"gateway": {"port": 1}, "browser": {"enabled": False}, "agents": {"defaults": {"workspace": "/s/workspace"}}}
    assert imp.farm_sections(farm) == (("browser",), ("gateway",), ("agents", "defaults", "workspace"))
    new, plan = imp.rewrite_config({"browser": {"enabled": True, "cdpUrl": "x"}, "agents": {"list": []}}, farm, "/s")
    assert new["browser"] == {"enabled": False} and "browser.cdpUrl" in plan["rewritten"]


def test_farm_config_is_checked():
    state = "/Users/claw-1a2b3c4d/.openclaw"
    assert imp.check_farm_config(_claw.gateway_config(8120, state), state)
    for bad in (None, {}, {"gateway": {"port": "8120"}}, _claw.gateway_config(8120, "/elsewhere")):
        with pytest.raises(imp.ArchiveError):
            imp.check_farm_config(bad, state)
