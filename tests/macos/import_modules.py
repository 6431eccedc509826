#!/usr/bin/env python3
"""Compile and import every Mini-side Python file of the collection under the interpreter running this script.

    /usr/bin/python3 tests/macos/import_modules.py IMPORT_ROOT

IMPORT_ROOT holds only ``ansible`` (the control node's ansible-core package: its module_utils are target-side code)
and ``ansible_collections`` (this checkout). The macOS workflow runs it with the Mac's /usr/bin/python3 (the Command
Line Tools' CPython 3.9.6), which the sandbox only imitates with a pyenv 3.9. Prints the interpreter, each file,
and exits 1 when anything fails to compile or import. Python 3.9, standard library only.
"""
import glob
import importlib
import os
import platform
import sys
import traceback


def main(root):
    sys.dont_write_bytecode = True
    sys.path[:0] = [root]
    plugins = os.path.join(root, "ansible_collections", "mirascope", "clawfarm", "plugins")
    files = sorted(glob.glob(os.path.join(plugins, "module_utils", "*.py"))) + sorted(
        glob.glob(os.path.join(plugins, "modules", "*.py")))
    print("%s %s (%s)" % (platform.python_implementation(), platform.python_version(), sys.executable))
    failed = 0
    for path in files:
        kind, name = os.path.basename(os.path.dirname(path)), os.path.splitext(os.path.basename(path))[0]
        try:
            with open(path, encoding="utf-8") as handle:
                compile(handle.read(), path, "exec", dont_inherit=True)
            importlib.import_module("ansible_collections.mirascope.clawfarm.plugins.%s.%s" % (kind, name))
            print("ok   %s/%s" % (kind, name))
        except BaseException:
            failed += 1
            print("FAIL %s/%s\n%s" % (kind, name, traceback.format_exc(limit=-3)))
    if len(files) < 20:
        print("FAIL only %d files found under %s" % (len(files), plugins))
        return 1
    print("%d of %d files failed" % (failed, len(files)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
