"""The compile cache seed's copy (roles/openclaw_runtime/files/seed_compile_cache.py, Mini-side, CPython 3.9): only
regular files of the warm-up's cache directory are copied, never through a link, root-readable 0644 in a new 0755
directory; the warm-up's cache directory is found under OpenClaw's <version>/<install>/ layout by its uid."""
import importlib.util
import os
import stat
from pathlib import Path

FILES = Path(__file__).resolve().parents[2] / "roles" / "openclaw_runtime" / "files"
spec = importlib.util.spec_from_file_location("seed_compile_cache", str(FILES / "seed_compile_cache.py"))
seed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed)


def test_only_regular_files_are_copied_and_links_are_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("not the cache's")
    source = tmp_path / "v24.19.0-arm64-cf738c9d-4294967294"
    source.mkdir()
    (source / "4cf2f03e").write_bytes(b"\x00entry")
    os.chmod(source / "4cf2f03e", 0o600)
    (source / "link").symlink_to(outside)
    (source / "sub").mkdir()
    (source / "sub" / "nested").write_text("x")
    os.mkfifo(source / "fifo")
    target = tmp_path / "seed" / source.name
    target.parent.mkdir()

    assert seed.copy_cache(str(source), str(target)) == 1
    assert sorted(p.name for p in target.iterdir()) == ["4cf2f03e"]
    assert (target / "4cf2f03e").read_bytes() == b"\x00entry"
    assert stat.S_IMODE((target / "4cf2f03e").stat().st_mode) == 0o644
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


def test_a_linked_source_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "entry").write_text("x")
    (tmp_path / "linked").symlink_to(real)
    try:
        seed.copy_cache(str(tmp_path / "linked"), str(tmp_path / "target"))
    except OSError:
        pass
    else:
        raise AssertionError("a linked source directory was copied")


def test_the_warm_up_cache_directory_is_found_by_its_uid_under_openclaws_layout(tmp_path):
    root = tmp_path / "node-compile-cache" / "openclaw"
    mine = root / "2026.9.6" / "1796583640000-142802" / "v24.19.0-x64-cf738c9d-65534"
    mine.mkdir(parents=True)
    (root / "2026.9.6" / "1796583640000-142802" / "v24.19.0-x64-cf738c9d-0").mkdir()
    (root / "2026.9.6" / "1796583640000-142802" / "v24.19.0-x64-cf738c9d-165534").mkdir()
    (root / "2026.9.5").symlink_to(root / "2026.9.6")  # a link is not walked
    assert seed.cache_directories(str(root), 65534) == [str(mine)]
    assert seed.cache_directories(str(tmp_path / "missing"), 65534) == []
