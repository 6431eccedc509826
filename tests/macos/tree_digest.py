#!/usr/bin/env python3
"""Print a JSON digest of a directory tree: relative path -> [type, mode, sha256 or link target].

Run on the Mini (ansible.builtin.script) before a backup and after the restore; the two digests must be equal.
Does not follow symlinks. Python 3.9 (a Mac's /usr/bin/python3), standard library only.
"""
import hashlib
import json
import os
import stat
import sys


def digest(root):
    out = {}
    for parent, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(parent, name)
            rel = os.path.relpath(path, root)
            info = os.lstat(path)
            mode = oct(stat.S_IMODE(info.st_mode))
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ["link", os.readlink(path)]
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ["dir", mode]
            elif stat.S_ISREG(info.st_mode):
                sha = hashlib.sha256()
                with open(path, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        sha.update(chunk)
                out[rel] = ["file", mode, sha.hexdigest()]
            else:
                out[rel] = ["other", mode]
    return out


if __name__ == "__main__":
    print(json.dumps(digest(sys.argv[1]), sort_keys=True))
