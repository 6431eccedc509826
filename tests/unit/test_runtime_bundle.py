"""The runtime bundle's native-file check (roles/openclaw_runtime/files/check_runtime_bundle.py) and the
cross-build's npm command line (build_runtime_bundle.py), with tiny synthetic headers: no npm, no network."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import struct
import sys
import tarfile
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[2] / "roles" / "openclaw_runtime" / "files"


def _load(name):
    sys.path.insert(0, str(FILES))
    try:
        spec = importlib.util.spec_from_file_location(name, FILES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(FILES))


check = _load("check_runtime_bundle")
build = _load("build_runtime_bundle")

CPU_TYPE_ARM64 = 0x0100000C
CPU_TYPE_X86_64 = 0x01000007


def macho(cputype, filetype=8, magic=0xFEEDFACF, order="<"):
    """A 64-bit Mach-O header (mach_header_64) in the given byte order; filetype 8 = MH_BUNDLE (a .node)."""
    return struct.pack(order + "IiiIIII", magic, cputype, 0, filetype, 0, 0, 0) + b"\0" * 4


def fat(*cputypes, magic=0xCAFEBABE):
    """A universal header (big-endian) with one fat_arch (or fat_arch_64) per CPU type."""
    out = struct.pack(">II", magic, len(cputypes))
    for i, cputype in enumerate(cputypes):
        if magic == 0xCAFEBABE:
            out += struct.pack(">iiIII", cputype, 0, 0x4000 * (i + 1), 0x1000, 14)
        else:
            out += struct.pack(">iiQQII", cputype, 0, 0x4000 * (i + 1), 0x1000, 14, 0)
    return out


def elf(machine, bits=2, data=1):
    """An ELF header up to e_machine: x86-64 is 62, aarch64 183."""
    order = "<" if data == 1 else ">"
    return b"\x7fELF" + bytes([bits, data, 1, 0]) + b"\0" * 8 + struct.pack(order + "HH", 3, machine) + b"\0" * 40


def pe(machine):
    """A DOS stub pointing (e_lfanew, 0x3c) at a PE signature and COFF machine."""
    stub = bytearray(b"MZ" + b"\0" * 0x7E)
    struct.pack_into("<I", stub, 0x3C, 0x80)
    return bytes(stub) + b"PE\0\0" + struct.pack("<H", machine) + b"\0" * 18


# --- describe_binary: formats and architectures -------------------------------------------------------------

def test_thin_macho_arm64_bundle():
    assert check.describe_binary(macho(CPU_TYPE_ARM64)) == ("Mach-O", ("arm64",), "Mach-O 64-bit bundle arm64")


def test_thin_macho_x86_64_dylib():
    assert check.describe_binary(macho(CPU_TYPE_X86_64, filetype=6)) == (
        "Mach-O", ("x86_64",), "Mach-O 64-bit dylib x86_64")


def test_big_endian_macho_is_read_in_its_byte_order():
    binary = check.describe_binary(macho(CPU_TYPE_ARM64, order=">"))
    assert binary.archs == ("arm64",)


def test_fat_binary_lists_every_slice():
    assert check.describe_binary(fat(CPU_TYPE_X86_64, CPU_TYPE_ARM64)) == (
        "Mach-O", ("x86_64", "arm64"), "universal Mach-O (x86_64, arm64)")


def test_fat64_binary_lists_every_slice():
    assert check.describe_binary(fat(CPU_TYPE_ARM64, magic=0xCAFEBABF)).archs == ("arm64",)


def test_fat_header_with_a_truncated_table_has_no_architecture():
    binary = check.describe_binary(fat(CPU_TYPE_X86_64, CPU_TYPE_ARM64)[:20])
    assert binary.format == "Mach-O" and binary.archs == ()


def test_java_class_file_is_not_a_fat_binary():
    # 0xcafebabe, minor 0, major 52 (Java 8): 52 "architectures" is a class file, as file(1) decides.
    assert check.describe_binary(struct.pack(">IHH", 0xCAFEBABE, 0, 52) + b"\0" * 16) is None


def test_elf_x86_64_and_aarch64():
    assert check.describe_binary(elf(62)) == ("ELF", ("x86-64",), "ELF 64-bit x86-64 (Linux/BSD)")
    assert check.describe_binary(elf(183)).archs == ("aarch64",)


def test_pe_arm64():
    assert check.describe_binary(pe(0xAA64)) == ("PE", ("arm64",), "PE arm64 (Windows)")


@pytest.mark.parametrize("header", [b"", b"#!/usr/bin/env node\n", b"\0asm\x01\0\0\0" + b"\0" * 16, b"MZ not a PE",
                                    b"\x7fEL"])
def test_not_native(header):
    assert check.describe_binary(header) is None


# --- check_header: what a darwin-arm64 bundle accepts -------------------------------------------------------

@pytest.mark.parametrize("relpath, header", [
    ("bin/node", macho(CPU_TYPE_ARM64, filetype=2)),
    ("lib/node_modules/openclaw/node_modules/x/koffi.node", macho(CPU_TYPE_ARM64)),
    ("lib/node_modules/openclaw/node_modules/x/vec0.dylib", fat(CPU_TYPE_X86_64, CPU_TYPE_ARM64)),
    ("lib/node_modules/openclaw/node_modules/x/spawn-helper", macho(CPU_TYPE_ARM64, filetype=2)),
])
def test_darwin_arm64_accepts_arm64_macho(relpath, header):
    assert check.check_header(relpath, header, "darwin", "arm64")[0] is True


@pytest.mark.parametrize("relpath, header, found", [
    ("x/koffi.node", elf(62), "ELF 64-bit x86-64 (Linux/BSD)"),  # what compiling koffi on Debian leaves
    ("x/addon.node", macho(CPU_TYPE_X86_64), "Mach-O 64-bit bundle x86_64"),
    ("x/lib.dylib", fat(CPU_TYPE_X86_64), "universal Mach-O (x86_64)"),
    ("bin/node", elf(183), "ELF 64-bit aarch64 (Linux/BSD)"),
    ("x/console.node", pe(0xAA64), "PE arm64 (Windows)"),
    ("x/helper", elf(62), "ELF 64-bit x86-64 (Linux/BSD)"),  # an executable with no telling name
    ("x/addon.node", b"\0asm\x01\0\0\0", "not a native object file (no Mach-O, ELF or PE header)"),
    ("x/lib.dylib", fat(CPU_TYPE_X86_64, CPU_TYPE_ARM64)[:20], "universal Mach-O with 2 slices (table truncated)"),
])
def test_darwin_arm64_rejects(relpath, header, found):
    assert check.check_header(relpath, header, "darwin", "arm64") == (False, found)


@pytest.mark.parametrize("relpath, header", [
    ("x/encoding.so", b"\0asm\x01\0\0\0"),  # a WebAssembly module named .so (openclaw ships one)
    ("x/index.js", b"module.exports = 1;\n"),
    ("x/Main.class", struct.pack(">IHH", 0xCAFEBABE, 0, 52)),
])
def test_not_checked(relpath, header):
    assert check.check_header(relpath, header, "darwin", "arm64") is None


def test_linux_x64_expects_elf_x86_64():
    assert check.check_header("x/a.node", elf(62), "linux", "x64") == (True, "ELF 64-bit x86-64 (Linux/BSD)")
    assert check.check_header("x/a.node", macho(CPU_TYPE_ARM64), "linux", "x64")[0] is False


# --- prebuild pruning and platform packages -----------------------------------------------------------------

@pytest.mark.parametrize("name, foreign", [
    ("darwin-arm64", False), ("darwin-x64+arm64", False), ("darwin-x64", True), ("win32-arm64", True),
    ("linux-arm64", True), ("linuxmusl-arm64", True), ("something-else", False), ("README", False),
])
def test_is_foreign_prebuild(name, foreign):
    assert check.is_foreign_prebuild(name, "darwin", "arm64") is foreign


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _bundle(root: Path) -> Path:
    nm = root / "lib" / "node_modules" / "openclaw" / "node_modules"
    _write(root / "bin" / "node", macho(CPU_TYPE_ARM64, filetype=2))
    _write(nm / "pi-tui" / "native" / "darwin" / "prebuilds" / "darwin-arm64" / "m.node", macho(CPU_TYPE_ARM64))
    _write(nm / "pi-tui" / "native" / "darwin" / "prebuilds" / "darwin-x64" / "m.node", macho(CPU_TYPE_X86_64))
    _write(nm / "pi-tui" / "native" / "win32" / "prebuilds" / "win32-x64" / "c.node", pe(0x8664))
    _write(nm / "koffi" / "package.json", json.dumps(
        {"name": "koffi", "optionalDependencies": {"@koromix/koffi-darwin-arm64": "1", "@koromix/koffi-linux-x64": "1"}}
    ).encode())
    _write(nm / "@koromix" / "koffi-darwin-arm64" / "package.json", b'{"name": "@koromix/koffi-darwin-arm64"}')
    _write(nm / "@koromix" / "koffi-darwin-arm64" / "darwin_arm64" / "koffi.node", macho(CPU_TYPE_ARM64, filetype=6))
    _write(nm / "openclaw-asset" / "encoding.so", b"\0asm\x01\0\0\0")
    return nm


def test_prune_then_check_tree_passes_and_lists_what_it_checked(tmp_path):
    _bundle(tmp_path)
    removed = check.prune_foreign_prebuilds(str(tmp_path), "darwin", "arm64")
    assert removed == [
        "lib/node_modules/openclaw/node_modules/pi-tui/native/darwin/prebuilds/darwin-x64",
        "lib/node_modules/openclaw/node_modules/pi-tui/native/win32/prebuilds/win32-x64",
    ]
    report = check.check_tree(str(tmp_path), "darwin", "arm64")
    assert report.problems == []
    assert [path for path, _ in report.checked] == [
        "bin/node",
        "lib/node_modules/openclaw/node_modules/@koromix/koffi-darwin-arm64/darwin_arm64/koffi.node",
        "lib/node_modules/openclaw/node_modules/pi-tui/native/darwin/prebuilds/darwin-arm64/m.node",
    ]
    out = io.StringIO()
    assert check.print_report(report, "darwin", "arm64", out=out) is True
    assert "ok   bin/node: Mach-O 64-bit executable arm64" in out.getvalue()
    assert "3 native files checked: all Mach-O arm64" in out.getvalue()


def test_a_linux_elf_that_crept_in_fails_the_check(tmp_path):
    nm = _bundle(tmp_path)
    _write(nm / "koffi" / "build" / "koffi" / "linux_x64" / "koffi.node", elf(62))
    check.prune_foreign_prebuilds(str(tmp_path), "darwin", "arm64")
    report = check.check_tree(str(tmp_path), "darwin", "arm64")
    assert report.problems == [("lib/node_modules/openclaw/node_modules/koffi/build/koffi/linux_x64/koffi.node",
                                "ELF 64-bit x86-64 (Linux/BSD)")]
    out = io.StringIO()
    assert check.print_report(report, "darwin", "arm64", out=out) is False
    assert "FAIL lib/node_modules/openclaw/node_modules/koffi/build/koffi/linux_x64/koffi.node" in out.getvalue()


def test_unpruned_foreign_prebuilds_fail_the_check(tmp_path):
    _bundle(tmp_path)
    report = check.check_tree(str(tmp_path), "darwin", "arm64")
    assert sorted(summary for _, summary in report.problems) == ["Mach-O 64-bit bundle x86_64", "PE x86-64 (Windows)"]


def test_symlinked_addon_pointing_outside_the_bundle_fails(tmp_path):
    nm = _bundle(tmp_path)
    os.symlink("/usr/lib/x86_64-linux-gnu/libc.so.6", nm / "evil.node")
    os.symlink("@koromix/koffi-darwin-arm64/darwin_arm64/koffi.node", nm / "inside.node")
    check.prune_foreign_prebuilds(str(tmp_path), "darwin", "arm64")
    report = check.check_tree(str(tmp_path), "darwin", "arm64")
    assert report.problems == [("lib/node_modules/openclaw/node_modules/evil.node",
                                "symlink to /usr/lib/x86_64-linux-gnu/libc.so.6, outside the bundle")]


def test_check_tarball_matches_check_tree(tmp_path):
    nm = _bundle(tmp_path / "stage")
    _write(nm / "koffi" / "build" / "koffi.node", elf(62))
    tarball = tmp_path / "bundle.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(tmp_path / "stage", arcname=".")
    assert check.check_bundle(str(tarball), "darwin", "arm64") == check.check_tree(str(tmp_path / "stage"), "darwin", "arm64")


def test_cli_exit_codes(tmp_path, capsys):
    _bundle(tmp_path / "good")
    check.prune_foreign_prebuilds(str(tmp_path / "good"), "darwin", "arm64")
    assert check.main(["--os", "darwin", "--cpu", "arm64", "--json", str(tmp_path / "good")]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["ok"] is True and len(result["checked"]) == 3
    _bundle(tmp_path / "bad")
    assert check.main(["--os", "darwin", "--cpu", "arm64", str(tmp_path / "bad")]) == 1
    (tmp_path / "empty").mkdir()
    assert check.main(["--os", "darwin", "--cpu", "arm64", str(tmp_path / "empty")]) == 2


def test_missing_platform_package_is_reported(tmp_path):
    nm = _bundle(tmp_path)
    assert check.missing_platform_packages(str(tmp_path), "darwin", "arm64") == []
    assert check.missing_platform_packages(str(tmp_path), "darwin", "x64") == []  # koffi lists no darwin-x64 here
    (nm / "@koromix" / "koffi-darwin-arm64" / "package.json").unlink()
    assert check.missing_platform_packages(str(tmp_path), "darwin", "arm64") == [
        "@koromix/koffi-darwin-arm64 (wanted by lib/node_modules/openclaw/node_modules/koffi)"]


# --- the cross-build's npm command line ---------------------------------------------------------------------

def test_cross_build_runs_no_install_scripts():
    assert build.npm_install_argv("node", "npm-cli.js", "/s", "2026.9.6", "darwin", "arm64", cross=True) == [
        "node", "npm-cli.js", "install", "--global", "--prefix", "/s", "--no-fund", "--no-audit", "--loglevel=error",
        "--os=darwin", "--cpu=arm64", "--ignore-scripts", "openclaw@2026.9.6"]


def test_same_platform_build_is_unchanged():
    assert build.npm_install_argv("node", "npm-cli.js", "/s", "2026.9.6", "linux", "x64", cross=False) == [
        "node", "npm-cli.js", "install", "--global", "--prefix", "/s", "--no-fund", "--no-audit", "--loglevel=error",
        "--os=linux", "--cpu=x64", "openclaw@2026.9.6"]


@pytest.mark.parametrize("system, machine, expected", [
    ("Linux", "x86_64", ("linux", "x64")), ("Linux", "aarch64", ("linux", "arm64")),
    ("Darwin", "arm64", ("darwin", "arm64")), ("Darwin", "x86_64", ("darwin", "x64")),
])
def test_host_target(monkeypatch, system, machine, expected):
    monkeypatch.setattr(build.platform, "system", lambda: system)
    monkeypatch.setattr(build.platform, "machine", lambda: machine)
    assert build.host_target() == expected


# --- the build's gate before packing ------------------------------------------------------------------------

def test_build_gate_prunes_and_passes_a_clean_stage(tmp_path, capsys):
    _bundle(tmp_path)
    build.verify_darwin_stage(str(tmp_path), "darwin", "arm64")
    out = capsys.readouterr().out
    assert "pruned another platform's prebuilt addon: lib/node_modules/openclaw/node_modules/pi-tui/native/win32" in out
    assert "3 native files checked: all Mach-O arm64" in out


def test_build_gate_refuses_a_linux_addon(tmp_path, capsys):
    nm = _bundle(tmp_path)
    _write(nm / "koffi" / "build" / "koffi" / "linux_x64" / "koffi.node", elf(62))
    with pytest.raises(SystemExit, match="holds native files for another platform"):
        build.verify_darwin_stage(str(tmp_path), "darwin", "arm64")
    assert "FAIL lib/node_modules/openclaw/node_modules/koffi/build/koffi/linux_x64/koffi.node: ELF 64-bit x86-64" in (
        capsys.readouterr().out)


def test_build_gate_refuses_a_missing_platform_package(tmp_path):
    nm = _bundle(tmp_path)
    (nm / "@koromix" / "koffi-darwin-arm64" / "package.json").unlink()
    with pytest.raises(SystemExit, match="npm did not install the darwin-arm64 native packages: @koromix/koffi-darwin-arm64"):
        build.verify_darwin_stage(str(tmp_path), "darwin", "arm64")
