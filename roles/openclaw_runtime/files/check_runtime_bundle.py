#!/usr/bin/env python3
"""Check that every native binary in an OpenClaw runtime bundle is built for the bundle's target platform.

    check_runtime_bundle.py --os darwin --cpu arm64 BUNDLE   (a built .tar.gz or an unpacked bundle directory)

A darwin-arm64 bundle is built on a Linux control node without running install scripts (see
build_runtime_bundle.py), so nothing proves by running it that its native parts load on a Mac.  This reads their
headers instead: every ``*.node`` and ``*.dylib``, ``bin/node``, and any other file whose first bytes are an object
file (ELF, Mach-O, universal, PE) must be a Mach-O for the target CPU (darwin) or an ELF for it (linux); a universal
("fat") file must contain a slice for it.  WebAssembly (``\\0asm``) is platform-neutral and not checked.  It prints
every file it checked and every problem, and exits 1 when there is a problem, 2 when it checked nothing.

The header parsing functions are pure (bytes in, description out) and unit-tested with synthetic headers in
tests/unit/test_runtime_bundle.py.  Runs on the control node (Python 3.11); standard library only.
"""
from __future__ import annotations

import argparse
import json
import os
import posixpath
import stat
import struct
import sys
import tarfile
from typing import NamedTuple

# Mach-O (mach-o/loader.h, mach-o/fat.h). Thin headers are in the file's byte order, fat headers big-endian.
MH_MAGIC = 0xFEEDFACE
MH_MAGIC_64 = 0xFEEDFACF
FAT_MAGIC = 0xCAFEBABE
FAT_MAGIC_64 = 0xCAFEBABF
CPU_TYPE_X86 = 7
CPU_TYPE_ARM = 12
CPU_ARCH_ABI64 = 0x01000000
CPU_ARCH_ABI64_32 = 0x02000000
CPU_TYPE_X86_64 = CPU_TYPE_X86 | CPU_ARCH_ABI64
CPU_TYPE_ARM64 = CPU_TYPE_ARM | CPU_ARCH_ABI64  # 0x0100000c
MACHO_CPU_NAMES = {
    CPU_TYPE_ARM64: "arm64",
    CPU_TYPE_X86_64: "x86_64",
    CPU_TYPE_X86: "i386",
    CPU_TYPE_ARM: "arm",
    CPU_TYPE_ARM | CPU_ARCH_ABI64_32: "arm64_32",
}
MACHO_FILE_TYPES = {1: "object", 2: "executable", 6: "dylib", 8: "bundle"}
# A Java class file also starts with 0xcafebabe; its next word (minor/major version) is >= 45.  Apple's file(1)
# draws the line at 20 architectures, so do we.
MAX_FAT_ARCHS = 20

# ELF e_machine values (elf.h).
ELF_MACHINES = {3: "i386", 40: "arm", 62: "x86-64", 183: "aarch64", 243: "riscv", 258: "loongarch"}
# PE/COFF machine values.
PE_MACHINES = {0x14C: "i386", 0x8664: "x86-64", 0xAA64: "arm64", 0x1C4: "arm"}

# What a native binary must be for each bundle target: (format, architecture name as describe_binary spells it).
EXPECTED = {
    ("darwin", "arm64"): ("Mach-O", "arm64"),
    ("darwin", "x64"): ("Mach-O", "x86_64"),
    ("linux", "arm64"): ("ELF", "aarch64"),
    ("linux", "x64"): ("ELF", "x86-64"),
}
# Files named like a native addon or library are checked whatever their first bytes say.
NATIVE_SUFFIXES = (".node", ".dylib")
HEADER_BYTES = 4096


class Binary(NamedTuple):
    """What a file's header says it is: format ("Mach-O", "ELF", "PE"), the architectures it holds, a summary."""

    format: str
    archs: tuple[str, ...]
    summary: str


def describe_binary(header: bytes) -> Binary | None:
    """Parse the first bytes of a file; None when it is not a native object file (text, JavaScript, wasm, ...).

    Thin Mach-O (either byte order, 32/64-bit), universal Mach-O (fat, 32/64-bit offsets), ELF and PE are
    recognised.  A fat header whose architecture table runs past ``header`` is reported with no architectures.
    """
    if len(header) >= 8:
        magic_le = struct.unpack_from("<I", header)[0]
        magic_be = struct.unpack_from(">I", header)[0]
        for order, magic in (("<", magic_le), (">", magic_be)):
            if magic in (MH_MAGIC, MH_MAGIC_64):
                cputype = struct.unpack_from(order + "i", header, 4)[0] & 0xFFFFFFFF
                arch = MACHO_CPU_NAMES.get(cputype, f"cputype {cputype:#x}")
                kind = "64-bit" if magic == MH_MAGIC_64 else "32-bit"
                filetype = struct.unpack_from(order + "I", header, 12)[0] if len(header) >= 16 else 0
                ftype = MACHO_FILE_TYPES.get(filetype, f"filetype {filetype}")
                return Binary("Mach-O", (arch,), f"Mach-O {kind} {ftype} {arch}")
        if magic_be in (FAT_MAGIC, FAT_MAGIC_64):
            count = struct.unpack_from(">I", header, 4)[0]
            if not 0 < count <= MAX_FAT_ARCHS:
                return None  # a Java class file, not a universal binary
            entry = 20 if magic_be == FAT_MAGIC else 32
            if len(header) < 8 + count * entry:
                return Binary("Mach-O", (), f"universal Mach-O with {count} slices (table truncated)")
            archs = tuple(
                MACHO_CPU_NAMES.get(cputype, f"cputype {cputype:#x}")
                for cputype in (struct.unpack_from(">I", header, 8 + i * entry)[0] for i in range(count))
            )
            return Binary("Mach-O", archs, f"universal Mach-O ({', '.join(archs)})")
    if header[:4] == b"\x7fELF" and len(header) >= 20:
        order = "<" if header[5] == 1 else ">"
        machine = struct.unpack_from(order + "H", header, 18)[0]
        arch = ELF_MACHINES.get(machine, f"e_machine {machine}")
        bits = {1: "32-bit", 2: "64-bit"}.get(header[4], "?-bit")
        return Binary("ELF", (arch,), f"ELF {bits} {arch} (Linux/BSD)")
    if header[:2] == b"MZ" and len(header) >= 0x40:
        offset = struct.unpack_from("<I", header, 0x3C)[0]
        if header[offset:offset + 4] == b"PE\0\0" and len(header) >= offset + 6:
            machine = struct.unpack_from("<H", header, offset + 4)[0]
            arch = PE_MACHINES.get(machine, f"machine {machine:#x}")
            return Binary("PE", (arch,), f"PE {arch} (Windows)")
    return None


def is_native_name(relpath: str) -> bool:
    """True for paths that must be a native binary whatever their content: ``bin/node``, ``*.node``, ``*.dylib``."""
    return relpath == "bin/node" or relpath.endswith(NATIVE_SUFFIXES)


def check_header(relpath: str, header: bytes, os_name: str, cpu: str) -> tuple[bool, str] | None:
    """Check one file. None: not a native binary, nothing to check. Otherwise (ok, description of what was found)."""
    want_format, want_arch = EXPECTED[(os_name, cpu)]
    binary = describe_binary(header)
    if binary is None:
        if not is_native_name(relpath):
            return None
        return False, "not a native object file (no Mach-O, ELF or PE header)"
    ok = binary.format == want_format and want_arch in binary.archs
    return ok, binary.summary


def is_foreign_prebuild(dirname: str, os_name: str, cpu: str) -> bool:
    """True for a prebuildify-style directory (``prebuilds/<platform>-<arch>[+<arch>...]``) of another platform.

    ``darwin-x64+arm64`` is a universal prebuild and stays in an arm64 bundle.  Names that do not follow the
    pattern are not foreign (they stay and the header check judges their files).
    """
    platform, sep, archs = dirname.partition("-")
    if not sep or platform not in {"darwin", "linux", "win32", "freebsd", "openbsd", "netbsd", "android", "aix",
                                   "sunos", "ios", "linuxmusl"}:
        return False
    return platform != os_name or cpu not in archs.split("+")


def prune_foreign_prebuilds(root: str, os_name: str, cpu: str) -> list[str]:
    """Delete other platforms' prebuilt addons (``.../prebuilds/<other-platform>-<arch>``) under ``root``.

    Packages such as pi-tui ship every platform's addon and pick one at run time by ``process.platform`` and
    ``process.arch``; the others are dead weight in a single-platform bundle and would fail the check.
    Returns the removed paths, relative to ``root``.
    """
    import shutil

    removed = []
    for parent, dirs, _files in os.walk(root):
        if os.path.basename(parent) != "prebuilds":
            continue
        for name in list(dirs):
            path = os.path.join(parent, name)
            if is_foreign_prebuild(name, os_name, cpu) and not os.path.islink(path):
                shutil.rmtree(path)
                dirs.remove(name)
                removed.append(os.path.relpath(path, root))
    return sorted(removed)


def missing_platform_packages(root: str, os_name: str, cpu: str) -> list[str]:
    """Platform packages for the target that an installed package lists as optional but npm did not install.

    Native addons ship as optional per-platform packages (``@koromix/koffi-darwin-arm64``, ``sqlite-vec-darwin-arm64``):
    if npm skipped the target's one (no ``--os/--cpu``), the addon is silently absent and there is nothing to check.
    Resolves like Node: ``<package>/node_modules/<name>``, then each enclosing ``node_modules``.
    """
    suffix = f"-{os_name}-{cpu}"
    missing = []
    for parent, _dirs, files in os.walk(root):
        if "package.json" not in files or "node_modules" not in parent.split(os.sep):
            continue
        try:
            with open(os.path.join(parent, "package.json"), encoding="utf-8") as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            continue
        if not isinstance(manifest, dict) or not isinstance(manifest.get("optionalDependencies"), dict):
            continue
        for name in manifest["optionalDependencies"]:
            if not name.endswith(suffix):
                continue
            here = parent
            while True:
                if os.path.isfile(os.path.join(here, "node_modules", name, "package.json")):
                    break
                up = os.path.dirname(here)
                if up == here or not up.startswith(root):
                    missing.append(f"{name} (wanted by {os.path.relpath(parent, root)})")
                    break
                here = up
    return sorted(set(missing))


class Report(NamedTuple):
    """Result of a check: (relpath, description) for every checked file, and (relpath, problem) for each failure."""

    checked: list[tuple[str, str]]
    problems: list[tuple[str, str]]


def _symlink_problem(relpath: str, target: str) -> tuple[str, str] | None:
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(relpath), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        return relpath, f"symlink to {target}, outside the bundle"
    return None  # the target is a file of the bundle and is checked on its own


def check_tree(root: str, os_name: str, cpu: str) -> Report:
    """Check every file under an unpacked bundle directory (symlinks are not followed)."""
    checked, problems = [], []
    for parent, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(parent, name)
            relpath = os.path.relpath(path, root).replace(os.sep, "/")
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                if is_native_name(relpath):
                    problem = _symlink_problem(relpath, os.readlink(path))
                    if problem:
                        problems.append(problem)
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            with open(path, "rb") as handle:
                result = check_header(relpath, handle.read(HEADER_BYTES), os_name, cpu)
            _record(relpath, result, checked, problems)
    return Report(checked, problems)


def check_tarball(tarball: str, os_name: str, cpu: str) -> Report:
    """Check every member of a bundle tarball without unpacking it."""
    checked, problems = [], []
    with tarfile.open(tarball, "r:*") as archive:
        for member in archive:
            relpath = posixpath.normpath(member.name)
            if relpath.startswith("./"):
                relpath = relpath[2:]
            if member.issym():
                if is_native_name(relpath):
                    problem = _symlink_problem(relpath, member.linkname)
                    if problem:
                        problems.append(problem)
                continue
            if not member.isreg():
                continue
            handle = archive.extractfile(member)
            result = check_header(relpath, handle.read(HEADER_BYTES) if handle else b"", os_name, cpu)
            _record(relpath, result, checked, problems)
    return Report(sorted(checked), sorted(problems))


def _record(relpath, result, checked, problems):
    if result is None:
        return
    ok, summary = result
    checked.append((relpath, summary))
    if not ok:
        problems.append((relpath, summary))


def check_bundle(path: str, os_name: str, cpu: str) -> Report:
    """Check a bundle tarball or directory for the target; see the module docstring."""
    if (os_name, cpu) not in EXPECTED:
        raise ValueError(f"no native format known for {os_name}/{cpu}")
    if os.path.isdir(path):
        return check_tree(path, os_name, cpu)
    return check_tarball(path, os_name, cpu)


def print_report(report: Report, os_name: str, cpu: str, out=None) -> bool:
    """Print what was checked and what failed (to ``out``, default stdout); True when the bundle passes."""
    out = out or sys.stdout
    want_format, want_arch = EXPECTED[(os_name, cpu)]
    for relpath, summary in report.checked:
        mark = "FAIL" if (relpath, summary) in report.problems else "ok  "
        print(f"[openclaw-runtime] {mark} {relpath}: {summary}", file=out)
    for relpath, problem in report.problems:
        if (relpath, problem) not in report.checked:
            print(f"[openclaw-runtime] FAIL {relpath}: {problem}", file=out)
    if report.problems:
        print(f"[openclaw-runtime] {len(report.problems)} of the bundle's native files are not {want_format} {want_arch} "
              f"for {os_name}/{cpu}: they would not load on the Mini. Find the npm package that brought each one "
              f"(the path under node_modules) and whether it has a prebuilt {os_name}-{cpu} package.", file=out)
        return False
    if not report.checked:
        print("[openclaw-runtime] FAIL no native file found: not a runtime bundle (bin/node is missing)", file=out)
        return False
    print(f"[openclaw-runtime] {len(report.checked)} native files checked: all {want_format} {want_arch}", file=out)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--os", required=True, choices=["darwin", "linux"])
    parser.add_argument("--cpu", required=True, choices=["arm64", "x64"])
    parser.add_argument("--json", action="store_true", help="print the report as JSON on the last line")
    parser.add_argument("bundle", help="a bundle .tar.gz or an unpacked bundle directory")
    args = parser.parse_args(argv)
    report = check_bundle(args.bundle, args.os, args.cpu)
    ok = print_report(report, args.os, args.cpu)
    if args.json:
        print(json.dumps({"ok": ok, "checked": report.checked, "problems": report.problems}))
    if not report.checked:
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
