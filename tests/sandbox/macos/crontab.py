#!/usr/bin/python3
"""Sandbox stand-in for macOS's crontab(1), its privileged part (run as root through sudo by bin/crontab).

As crontab(1) on macOS (Vixie cron): when /usr/lib/cron/cron.allow exists, only the users it lists may use crontab;
otherwise the users /usr/lib/cron/cron.deny lists may not (one name a line, compared as a whole line; other lines are
ignored); with neither, every user may. root always may. A refused user gets Vixie cron's two lines on stderr
("You (NAME) are not allowed to use this program (crontab)", "See crontab(1) for more information") and exit 1.
Forms: ``crontab [-u user] file|-`` installs, ``-l`` lists (``crontab: no crontab for NAME`` and exit 1 when there is
none), ``-r`` removes; ``-u`` is root's only; ``-e`` is not offered (no editor here). A user's table is
/usr/lib/cron/tabs/NAME (root, 0600). No cron daemon runs the tables in the sandbox: tests check what can be installed.
"""
import os
import pwd
import sys

CRON = "/usr/lib/cron"


def listed(path, name):
    """Whether ``name`` is a line of ``path``; None when the file does not exist."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return name in handle.read().splitlines()
    except FileNotFoundError:
        return None


def main(argv):
    caller_uid = int(os.environ.get("SUDO_UID", os.getuid()))
    args = argv[1:]
    user = pwd.getpwuid(caller_uid).pw_name
    if args[:1] == ["-u"]:
        if caller_uid != 0:
            sys.stderr.write("crontab: must be privileged to use -u\n")
            return 1
        user, args = args[1], args[2:]
    if caller_uid != 0:
        allowed = listed(f"{CRON}/cron.allow", user)
        if allowed is False or (allowed is None and listed(f"{CRON}/cron.deny", user)):
            sys.stderr.write(f"You ({user}) are not allowed to use this program (crontab)\n"
                             "See crontab(1) for more information\n")
            return 1
    table = f"{CRON}/tabs/{user}"
    if args == ["-l"]:
        try:
            with open(table) as handle:
                sys.stdout.write(handle.read())
            return 0
        except FileNotFoundError:
            sys.stderr.write(f"crontab: no crontab for {user}\n")
            return 1
    if args == ["-r"]:
        try:
            os.unlink(table)
            return 0
        except FileNotFoundError:
            sys.stderr.write(f"crontab: no crontab for {user}\n")
            return 1
    if len(args) != 1 or args[0].startswith("-") and args[0] != "-":
        sys.stderr.write("usage: crontab [-u user] file\n       crontab [-u user] { -l | -r }\n")
        return 1
    if args[0] == "-":
        text = sys.stdin.read()
    else:
        # Read as the caller would (a setuid crontab opens the file with the caller's rights).
        os.setegid(pwd.getpwuid(caller_uid).pw_gid)
        os.seteuid(caller_uid)
        try:
            with open(args[0]) as handle:
                text = handle.read()
        finally:
            os.seteuid(0)
            os.setegid(0)
    fd = os.open(table + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(table + ".new", table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
