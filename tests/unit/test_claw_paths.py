"""Root making a claw's paths never follows the tenant's links (plugins/module_utils/_claw_paths.py).

Runs as root (chown must work): every attack plants what a claw user could plant in its home or in /tmp, and
checks that nothing outside the home changed.
"""
from __future__ import annotations

import os
import re
import stat

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw_paths as cp

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")

UID, GID = 4242, 20
DIRS = [".openclaw", ".openclaw/workspace", ".openclaw/logs", ".openclaw/tmp", ".openclaw/cache"]
CONFIG = {"path": ".openclaw/openclaw.json", "content": '{"gateway": {}}\n', "mode": 0o600}


@pytest.fixture
def farm(tmp_path):
    """``/Users`` (root 0755) with a claw home (uid 4242), and a root-owned tree the attacks aim at."""
    users = tmp_path / "Users"
    users.mkdir(mode=0o755)
    home = users / "claw-1a2b3c4d"
    home.mkdir(mode=0o750)
    os.chown(home, UID, GID)
    target = tmp_path / "opt-mirascope-bin"
    target.mkdir(mode=0o755)
    (target / "boot.sh").write_text("#!/bin/sh\necho root\n")
    os.chmod(target / "boot.sh", 0o755)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)
    return home, target, tmp


def manifest(root):
    """Owner, mode and content of everything under ``root`` (links not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            body = open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[path] = (st.st_uid, st.st_gid, st.st_mode, body)
    return out


def as_tenant(path):
    os.lchown(path, UID, GID)


def test_fresh_tree_then_nothing_to_do(farm):
    home, _, _ = farm
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    assert result["changed"]
    for rel in DIRS:
        st = os.lstat(home / rel)
        assert stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o700)
    st = os.lstat(home / CONFIG["path"])
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o600)
    assert (home / CONFIG["path"]).read_text() == CONFIG["content"]
    again = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    assert again == {"changed": False, "actions": [], "lstat": {},
                     "files": {CONFIG["path"]: {"before": CONFIG["content"], "after": CONFIG["content"]}}}
    assert not [n for n in os.listdir(home / ".openclaw") if "clawfarm-" in n]  # no temporary file left


def test_check_mode_changes_nothing(farm):
    home, _, _ = farm
    before = manifest(home)
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG], check_mode=True)
    assert result["changed"] and f"create {home}/.openclaw/cache (4242:20 0700)" in result["actions"]
    assert manifest(home) == before


def test_repairs_owner_and_mode_of_real_directories(farm):
    home, _, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    os.chmod(home / ".openclaw/logs", 0o777)
    os.chown(home / ".openclaw/cache", 0, 0)
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    assert result["actions"] == [f"repair {home}/.openclaw/logs: mode 0777 -> 0700",
                                 f"repair {home}/.openclaw/cache: owner 0:0 -> 4242:20"]
    assert stat.S_IMODE(os.lstat(home / ".openclaw/logs").st_mode) == 0o700
    assert os.lstat(home / ".openclaw/cache").st_uid == UID


@pytest.mark.parametrize("rel", DIRS)
def test_symlinked_directory_is_refused_and_its_target_untouched(farm, rel):
    home, target, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    os.chmod(home / ".openclaw", 0o755)  # would be repaired, but nothing may change before the refusal
    path = home / rel
    os.rename(path, str(path) + ".old")
    os.symlink(target, path)
    as_tenant(path)
    before, home_before = manifest(target), manifest(home)
    with pytest.raises(cp.PathRefused, match=f"{path} is a symlink to {target}; remove it"):
        cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    assert manifest(target) == before
    if rel != ".openclaw":
        assert manifest(home) == home_before


def test_symlinked_parent_of_new_directory_is_refused(farm):
    home, target, _ = farm
    os.symlink(target, home / ".openclaw")
    before = manifest(target)
    with pytest.raises(cp.PathRefused, match="is a symlink to"):
        cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    with pytest.raises(cp.PathRefused, match="is a symlink to"):
        cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG], check_mode=True)
    assert manifest(target) == before
    assert not (target / "workspace").exists()


def test_file_where_a_directory_must_be_is_refused(farm):
    home, _, _ = farm
    (home / ".openclaw").mkdir()
    (home / ".openclaw/logs").write_text("x")
    with pytest.raises(cp.PathRefused, match="logs is a regular file, not a directory"):
        cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])


def test_directory_of_another_user_is_refused(farm):
    home, _, _ = farm
    (home / ".openclaw").mkdir()
    os.chown(home / ".openclaw", 4343, GID)
    with pytest.raises(cp.PathRefused, match="belongs to uid 4343, not to the claw"):
        cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    assert os.lstat(home / ".openclaw").st_uid == 4343


def test_home_must_exist_and_belong_to_the_claw(farm):
    home, _, _ = farm
    with pytest.raises(cp.PathRefused, match="does not exist"):
        cp.ensure_claw_tree(str(home) + "x", UID, GID, DIRS)
    os.chown(home, 0, 0)
    with pytest.raises(cp.PathRefused, match="belongs to uid 0, not to the claw"):
        cp.ensure_claw_tree(str(home), UID, GID, DIRS)


def test_home_in_a_directory_others_can_write_is_refused(farm):
    home, _, _ = farm
    os.chmod(home.parent, 0o777)
    with pytest.raises(cp.PathRefused, match="must be a root-owned directory"):
        cp.ensure_claw_tree(str(home), UID, GID, DIRS)


@pytest.mark.parametrize("bad", ["../x", "/etc", ".openclaw/../..", "", "a//b", "a/./b", "a\nb"])
def test_bad_relative_paths_are_refused(farm, bad):
    home, _, _ = farm
    with pytest.raises(cp.PathRefused, match="must be a relative path"):
        cp.ensure_claw_tree(str(home), UID, GID, [bad])


def test_file_parent_must_be_a_managed_directory(farm):
    home, _, _ = farm
    with pytest.raises(cp.PathRefused, match="must be listed in directories"):
        cp.ensure_claw_tree(str(home), UID, GID, [".openclaw"], [{"path": "x/y", "content": ""}])


def test_symlinked_config_is_replaced_never_written_through(farm):
    home, target, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS)
    link = home / CONFIG["path"]
    os.symlink(target / "boot.sh", link)
    as_tenant(link)
    before = manifest(target)
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    assert any("a symlink to" in a and "never followed" in a for a in result["actions"])
    assert manifest(target) == before
    st = os.lstat(link)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == UID and link.read_text() == CONFIG["content"]


def test_hard_linked_config_is_replaced_and_not_read(farm):
    home, target, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS)
    secret = target / "root-only"
    secret.write_text("root secret\n")
    os.chmod(secret, 0o600)
    os.link(secret, home / CONFIG["path"])
    before = manifest(target)
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG], check_mode=True)
    assert result["files"][CONFIG["path"]]["before"] is None  # the root-only content is never shown in a diff
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    assert any("replace" in a for a in result["actions"])
    assert manifest(target) == before
    assert os.lstat(secret).st_nlink == 1 and (home / CONFIG["path"]).read_text() == CONFIG["content"]


def test_fifo_config_is_replaced_without_blocking(farm):
    home, _, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS)
    os.mkfifo(home / CONFIG["path"])
    as_tenant(home / CONFIG["path"])
    cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    assert stat.S_ISREG(os.lstat(home / CONFIG["path"]).st_mode)


def test_directory_at_config_path_is_refused(farm):
    home, _, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS)
    (home / CONFIG["path"]).mkdir()
    with pytest.raises(cp.PathRefused, match="is a directory, not a file"):
        cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])


def test_config_mode_drift_is_repaired(farm):
    home, _, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    os.chmod(home / CONFIG["path"], 0o644)
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    assert result["actions"] == [f"write {home}/{CONFIG['path']} (mode 0644 -> 0600)"]
    assert stat.S_IMODE(os.lstat(home / CONFIG["path"]).st_mode) == 0o600


def test_directory_swapped_for_a_link_between_check_and_open_is_refused(farm, monkeypatch):
    """The tenant wins the race: after root's lstat saw a directory, the name becomes a link."""
    home, target, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS)
    real_lstat = cp._lstat

    def racing_lstat(name, dir_fd):
        st = real_lstat(name, dir_fd)
        if name == "workspace" and st is not None and stat.S_ISDIR(st.st_mode):
            os.rename(name, "workspace.old", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.symlink(str(target), name, dir_fd=dir_fd)
        return st

    monkeypatch.setattr(cp, "_lstat", racing_lstat)
    os.chmod(target, 0o755)
    before = manifest(target)
    with pytest.raises(cp.PathRefused, match="workspace is a symlink to"):
        cp.ensure_claw_tree(str(home), UID, GID, DIRS)
    assert manifest(target) == before


def test_directory_swapped_for_another_directory_is_refused(farm, monkeypatch):
    home, target, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS)
    real_lstat = cp._lstat

    def racing_lstat(name, dir_fd):
        st = real_lstat(name, dir_fd)
        if name == "logs" and st is not None and stat.S_ISDIR(st.st_mode):
            os.rename(name, "logs.old", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.mkdir(name, dir_fd=dir_fd)
        return st

    monkeypatch.setattr(cp, "_lstat", racing_lstat)
    with pytest.raises(cp.PathRefused, match="was replaced while being checked"):
        cp.ensure_claw_tree(str(home), UID, GID, DIRS)


# ---- what is at a path (lstat), for the caller to decide whether to trust it ----

def test_lstat_reports_what_is_there_without_following_it(farm):
    home, target, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS)
    env = home / ".openclaw/.env"
    assert cp.ensure_claw_tree(str(home), UID, GID, DIRS, lstat=[".openclaw/.env"])["lstat"] == {
        ".openclaw/.env": {"type": "missing", "uid": None, "links": None}}
    env.write_text("CLAW_GATEWAY_TOKEN=x\n")
    as_tenant(env)
    assert cp.ensure_claw_tree(str(home), UID, GID, DIRS, lstat=[".openclaw/.env"])["lstat"][".openclaw/.env"] == {
        "type": "file", "uid": UID, "links": 1}
    os.link(env, home / ".openclaw/hard")
    assert cp.ensure_claw_tree(str(home), UID, GID, DIRS, lstat=[".openclaw/.env"])["lstat"][".openclaw/.env"]["links"] == 2
    os.unlink(home / ".openclaw/hard")
    os.unlink(env)
    os.symlink(target / "boot.sh", env)
    assert cp.ensure_claw_tree(str(home), UID, GID, DIRS, lstat=[".openclaw/.env"])["lstat"][".openclaw/.env"]["type"] == "symlink"


def test_lstat_in_check_mode_before_the_state_dir_exists(farm):
    home, _, _ = farm
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, lstat=[".openclaw/.env"], check_mode=True)
    assert result["lstat"] == {".openclaw/.env": {"type": "missing", "uid": None, "links": None}}
    with pytest.raises(cp.PathRefused, match="must be listed in directories"):
        cp.ensure_claw_tree(str(home), UID, GID, DIRS, lstat=["elsewhere/.env"])


# ---- a root-owned directory outside the home (launchd's log directory) ----

@pytest.fixture
def logs(tmp_path):
    """A root-owned ``Library/Logs`` (0775 root:admin, as macOS ships group-writable system directories)."""
    library = tmp_path / "Library"
    (library / "Logs").mkdir(parents=True)
    os.chmod(library / "Logs", 0o775)
    os.chown(library / "Logs", 0, 80)
    return library / "Logs"


def test_root_dir_and_its_parents_are_made_root_0755_then_kept(logs):
    path = logs / "mirascope/claws/claw-1a2b3c4d"
    check = cp.ensure_root_dir(str(path), check_mode=True)
    assert check["actions"] == [f"create {logs}/mirascope (0:0 0755)", f"create {logs}/mirascope/claws (0:0 0755)",
                                f"create {path} (0:0 0755)"] and not (logs / "mirascope").exists()
    assert cp.ensure_root_dir(str(path)) == {"changed": True, "actions": check["actions"]}
    for made in (logs / "mirascope", logs / "mirascope/claws", path):
        st = os.lstat(made)
        assert stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o755)
    assert cp.ensure_root_dir(str(path)) == {"changed": False, "actions": []}
    os.chmod(path, 0o700)
    assert cp.ensure_root_dir(str(path))["actions"] == [f"repair {path}: mode 0700 -> 0755"]
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o755


@pytest.mark.parametrize("plant", ["leaf_symlink", "parent_symlink_to_claws_dir", "claws_dir"])
def test_root_dir_never_goes_through_a_link_or_a_users_directory(logs, tmp_path, plant):
    """A parent may be a root-owned link (macOS's /var); what it leads to must be root's. The leaf is never a link."""
    (logs / "mirascope/claws").mkdir(mode=0o755, parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chown(elsewhere, UID, GID)
    path = logs / "mirascope/claws/claw-1a2b3c4d"
    if plant == "leaf_symlink":
        path.symlink_to(elsewhere)
    elif plant == "parent_symlink_to_claws_dir":
        (logs / "mirascope/claws").rmdir()
        (logs / "mirascope/claws").symlink_to(elsewhere)
    else:
        path.mkdir()
        os.chown(path, UID, GID)
    with pytest.raises(cp.PathRefused, match="must be a root-owned directory|not to root|is a symlink to"):
        cp.ensure_root_dir(str(path))
    assert os.listdir(elsewhere) == [] and os.lstat(elsewhere).st_uid == UID


def test_root_dir_parent_writable_by_others_is_refused(logs):
    os.chmod(logs, 0o777)
    with pytest.raises(cp.PathRefused, match="other users cannot write to"):
        cp.ensure_root_dir(str(logs / "mirascope"))
    os.chmod(logs, 0o775)
    os.chown(logs, 0, GID)  # group-writable by staff, the claws' group
    with pytest.raises(cp.PathRefused, match="other users cannot write to"):
        cp.ensure_root_dir(str(logs / "mirascope"))


# ---- the lock directory in /tmp ----

def test_lock_dir_is_created_for_the_claw_then_kept(farm):
    _, _, tmp = farm
    path = tmp / "openclaw-state-locks-4242"
    assert cp.ensure_lock_dir(str(path), UID, GID, check_mode=True)["changed"] and not path.exists()
    result = cp.ensure_lock_dir(str(path), UID, GID)
    assert result == {"changed": True, "actions": [f"create {path} (4242:20 0700)"], "moved_aside": []}
    st = os.lstat(path)
    assert stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o700)
    assert cp.ensure_lock_dir(str(path), UID, GID) == {"changed": False, "actions": [], "moved_aside": []}


def test_lock_dir_mode_is_repaired_and_root_owned_one_given_to_the_claw(farm):
    _, _, tmp = farm
    path = tmp / "openclaw-state-locks-4242"
    path.mkdir(mode=0o755)
    result = cp.ensure_lock_dir(str(path), UID, GID)
    assert result["actions"] == [f"repair {path}: owner 0:0 -> 4242:20, mode 0755 -> 0700"]
    assert os.lstat(path).st_uid == UID


@pytest.mark.parametrize("plant", ["symlink", "foreign_dir", "file"])
def test_lock_dir_planted_by_someone_else_is_moved_aside(farm, plant):
    """Another tenant may create /tmp/openclaw-state-locks-<uid> first (uids are predictable)."""
    _, target, tmp = farm
    path = tmp / "openclaw-state-locks-4242"
    if plant == "symlink":
        os.symlink(target, path)
        os.lchown(path, 4343, GID)
    elif plant == "foreign_dir":
        path.mkdir()
        os.chown(path, 4343, GID)
    else:
        path.write_text("x")
    kind = os.lstat(path).st_mode
    before = manifest(target)
    assert cp.ensure_lock_dir(str(path), UID, GID, check_mode=True)["changed"]
    result = cp.ensure_lock_dir(str(path), UID, GID)
    (moved,) = result["moved_aside"]
    aside = moved.rpartition(" moved aside to ")[2]
    # Moved INTO a fresh root-only directory with a random name: <path>.moved-<16 hex>/<name>
    assert re.fullmatch(re.escape(str(path)) + r"\.moved-[0-9a-f]{16}/openclaw-state-locks-4242", aside)
    assert stat.S_IFMT(os.lstat(aside).st_mode) == stat.S_IFMT(kind)
    holder = os.lstat(os.path.dirname(aside))
    assert stat.S_ISDIR(holder.st_mode) and holder.st_uid == 0 and holder.st_mode & 0o777 == 0o700
    st = os.lstat(path)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == UID
    assert manifest(target) == before


@pytest.mark.parametrize("planted", ["symlink", "directory", "file"])
def test_a_pre_planted_aside_name_neither_blocks_nor_is_followed(farm, monkeypatch, planted):
    """A neighbour plants the aside name it expects (and the lock dir) first: the move goes elsewhere, never through it."""
    _, target, tmp = farm
    path = tmp / "openclaw-state-locks-4242"
    os.symlink(target, path)
    tokens = iter(["0" * 16, "1" * 16])
    monkeypatch.setattr(cp.secrets, "token_hex", lambda n: next(tokens))
    squat = tmp / f"openclaw-state-locks-4242.moved-{'0' * 16}"
    if planted == "symlink":
        os.symlink(target, squat)
    elif planted == "directory":
        squat.mkdir()
        os.chown(squat, 4343, GID)
    else:
        squat.write_text("neighbour")
    before = manifest(target)
    result = cp.ensure_lock_dir(str(path), UID, GID)
    assert result["moved_aside"] == [f"{path} was a symlink to {target}: moved aside to "
                                     f"{path}.moved-{'1' * 16}/openclaw-state-locks-4242"]
    assert os.readlink(tmp / f"openclaw-state-locks-4242.moved-{'1' * 16}" / "openclaw-state-locks-4242") == str(target)
    assert manifest(target) == before and os.lstat(path).st_uid == UID
    assert (os.readlink(squat) == str(target) if planted == "symlink" else
            sorted(os.listdir(squat)) == [] if planted == "directory" else squat.read_text() == "neighbour")


def test_lock_dir_parent_must_be_trusted(farm, tmp_path):
    bad = tmp_path / "open"
    bad.mkdir()
    os.chmod(bad, 0o777)
    with pytest.raises(cp.PathRefused, match="must be a root-owned directory"):
        cp.ensure_lock_dir(str(bad / "x"), UID, GID)


ESC = "\x1b]0;owned\x07\x1b[2J\x1b[1;1H\x9b31m"  # retitle, clear screen, move cursor, 8-bit CSI


def test_escape_control_keeps_newlines_and_tabs_and_escapes_the_rest():
    assert cp.escape_control(f"a\tb\n{ESC}\x00\x7f") == (
        "a\tb\n\\x1b]0;owned\\x07\\x1b[2J\\x1b[1;1H\\x9b31m\\x00\\x7f")
    assert cp.escape_control("héllo ✓") == "héllo ✓"


def test_the_tenants_old_config_is_shown_escaped_in_the_diff(farm):
    """The diff of openclaw.json shows what the tenant wrote: its ESC sequences must not reach the terminal."""
    home, _, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG])
    (home / CONFIG["path"]).write_text('{"x": "' + ESC + '"}\n')
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [CONFIG], check_mode=True)
    before = result["files"][CONFIG["path"]]["before"]
    assert before == '{"x": "\\x1b]0;owned\\x07\\x1b[2J\\x1b[1;1H\\x9b31m"}\n'
    assert not any(ord(c) < 32 and c not in "\n\t" or 0x7f <= ord(c) < 0xa0 for c in before)


def test_a_link_target_with_escape_sequences_is_shown_escaped(farm):
    home, _, tmp = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS)
    os.rename(home / ".openclaw/logs", home / "logs.mine")
    os.symlink(f"/tmp/{ESC}", home / ".openclaw/logs")
    with pytest.raises(cp.PathRefused) as refused:
        cp.ensure_claw_tree(str(home), UID, GID, DIRS)
    assert "\x1b" not in str(refused.value) and "a symlink to /tmp/\\x1b]0;owned\\x07" in str(refused.value)
    lock = tmp / "openclaw-state-locks-4242"
    os.symlink(f"/x{ESC}", lock)
    result = cp.ensure_lock_dir(str(lock), UID, GID)
    assert "\x1b" not in "".join(result["actions"] + result["moved_aside"])
    assert "a symlink to /x\\x1b]0;owned" in result["moved_aside"][0]


# ---- merge_json: the gateway's openclaw.json keeps the agent's settings (issue 14: an operation changes only what it
# was asked to change; a re-provision, migration or upgrade never drops the models, channels or agents a customer set)

def farm_config(port=8100):
    import json

    from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw
    return json.dumps(_claw.gateway_config(port, "/Users/claw-1a2b3c4d/.openclaw"), indent=4, sort_keys=True) + "\n"


def merged_config(port=8100):
    return {"path": ".openclaw/openclaw.json", "content": farm_config(port), "mode": 0o600, "merge_json": True}


def write_as_tenant(home, text):
    path = home / ".openclaw/openclaw.json"
    path.write_text(text)
    as_tenant(path)
    os.chmod(path, 0o600)
    return path


def test_reprovision_keeps_the_agents_settings_and_resets_only_the_farms(farm):
    import json
    home, _, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])
    config = json.loads((home / ".openclaw/openclaw.json").read_text())
    # What a customer set through the gateway (and what the tenant tampered with in the farm's sections).
    config["channels"] = {"telegram": {"botToken": "123:TENANT-SECRET"}}
    config["models"] = {"providers": {"x": {"apiKey": "sk-TENANT-SECRET"}}}
    config["agents"]["list"] = [{"id": "main", "model": "anthropic/claude"}]
    config["agents"]["defaults"]["model"] = "anthropic/claude"
    config["gateway"]["bind"] = "lan"
    config["gateway"]["auth"]["token"] = "INLINE-TENANT-SECRET"
    path = write_as_tenant(home, json.dumps(config))
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])
    after = json.loads(path.read_text())
    assert after["channels"] == config["channels"] and after["models"] == config["models"]
    assert after["agents"]["list"] == config["agents"]["list"] and after["agents"]["defaults"]["model"] == "anthropic/claude"
    assert after["gateway"]["bind"] == "loopback" and after["gateway"]["auth"]["token"]["source"] == "env"
    assert [a for a in result["actions"] if a.startswith("write")] == [
        f"write {home}/.openclaw/openclaw.json (the farm's settings: gateway.auth, gateway.bind; the agent's kept)"]
    shown = result["files"][".openclaw/openclaw.json"]
    for text in (shown["before"], shown["after"], *result["actions"]):
        assert "TENANT-SECRET" not in text and "anthropic/claude" not in text
    assert '"bind": "(the claw\'s value, not shown)"' in shown["before"] and '"bind": "loopback"' in shown["after"]
    assert "channels" in shown["before"] and "agents.list" in shown["after"]
    assert os.stat(path).st_uid == UID and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # Nothing to do the second time, and a farm setting (the port) changes only its own section.
    assert not cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])["changed"]
    moved = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config(8228)])
    assert [a for a in moved["actions"] if a.startswith("write")] == [
        f"write {home}/.openclaw/openclaw.json (the farm's settings: gateway.port; the agent's kept)"]
    final = json.loads(path.read_text())
    assert final["gateway"]["port"] == 8228 and final["channels"] == config["channels"]


def test_a_config_the_gateway_reformatted_is_left_as_it_is(farm):
    import json
    home, _, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])
    compact = json.dumps(json.loads((home / ".openclaw/openclaw.json").read_text()), separators=(",", ":"))
    path = write_as_tenant(home, compact)
    assert not cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])["changed"]
    assert path.read_text() == compact


@pytest.mark.parametrize("text", ["{ // json5\n gateway: {} }", "[1, 2]", '{"a": NaN}', '{"a": ' + "9" * 5000 + "}",
                                  "[" * 100000, "\xff", '{"a": 1e999}', '{"x": ' + "[" * 600 + "]" * 600 + "}",
                                  '{"x": ' + "[" * 40 + "]" * 40 + "}"])
def test_a_config_that_is_not_plain_json_is_replaced_and_not_shown(farm, text):
    home, _, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])
    path = home / ".openclaw/openclaw.json"
    path.write_bytes(text.encode("latin-1") if text == "\xff" else text.encode())
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])
    assert any("not a plain JSON object, replaced by the farm's settings" in a for a in result["actions"])
    assert path.read_text() == farm_config()
    assert result["files"][".openclaw/openclaw.json"]["before"] == "(not shown: not a plain JSON object)\n"
    # Nothing is lost: the customer's file (JSON5 with comments, say) is kept beside, the claw's, 0600.
    [aside] = [p for p in path.parent.iterdir() if p.name.startswith("openclaw.json.replaced-")]
    assert aside.read_bytes() == (text.encode("latin-1") if text == "\xff" else text.encode())
    assert os.stat(aside).st_uid == UID and stat.S_IMODE(os.stat(aside).st_mode) == 0o600
    assert any(f"kept as {aside.name}" in a for a in result["actions"])


def test_merge_json_needs_a_json_object_as_content(farm):
    home, _, _ = farm
    with pytest.raises(cp.PathRefused, match="merge_json needs content that is a JSON object"):
        cp.ensure_claw_tree(str(home), UID, GID, DIRS, [dict(merged_config(), content="[]")])


def test_merge_json_never_writes_through_a_link(farm):
    home, target, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])
    before = manifest(target)
    path = home / ".openclaw/openclaw.json"
    path.unlink()
    os.symlink(target / "boot.sh", path)
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])
    assert any("a symlink to" in a for a in result["actions"])
    assert manifest(target) == before and not os.path.islink(path) and path.read_text() == farm_config()


def test_a_wide_deep_config_cannot_make_root_write_or_hold_much(farm):
    """An attacker's review: 4-space re-indenting of ~30 levels of nesting turned 100 KB into 88 MB. The merged file
    stays at most 1 MiB (compact when indenting would pass it) and its agent's settings survive."""
    import json
    home, _, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])
    config = json.loads((home / ".openclaw/openclaw.json").read_text())
    wide = [0] * 60000
    for _ in range(30):
        wide = [wide]
    config["x"] = wide
    config["gateway"]["bind"] = "lan"
    path = write_as_tenant(home, json.dumps(config, separators=(",", ":")))
    cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])
    assert path.stat().st_size <= cp.MAX_FILE_BYTES
    after = json.loads(path.read_text())
    assert after["x"] == wide and after["gateway"]["bind"] == "loopback"


def test_the_diff_never_carries_terminal_controls_or_surrogates_and_types_are_strict(farm):
    import json
    home, _, _ = farm
    cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])
    config = json.loads((home / ".openclaw/openclaw.json").read_text())
    config["gateway"]["\u009b2J\u009b31mPWNED"] = 1
    config["gateway"]["del\x7fx"] = 1
    config["\ud800"] = {"x": 1}
    config["browser"]["enabled"] = 0  # == False in Python, not in JSON: reset to the farm's false
    path = write_as_tenant(home, json.dumps(config))
    result = cp.ensure_claw_tree(str(home), UID, GID, DIRS, [merged_config()])
    shown = result["files"][".openclaw/openclaw.json"]
    for text in (shown["before"], shown["after"], *result["actions"]):
        text.encode("utf-8")  # no lone surrogate (Ansible refuses those in a result)
        assert not any(ch in text for ch in "\x1b\x7f\x9b\u202e"), text
    assert "browser.enabled" in " ".join(result["actions"])
    assert json.loads(path.read_text())["browser"]["enabled"] is False
