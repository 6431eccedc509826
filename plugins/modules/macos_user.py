#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: macos_user
short_description: Manage one hidden, non-admin macOS user for a claw
version_added: 0.1.0
description:
  - Creates, updates or deletes one local macOS account in the local directory node, the way a
    multi-tenant Mac Mini needs it, one account per claw.
  - Creation uses C(dscl . -create) one attribute at a time, C(UniqueID) right after the record,
    then sets a random password through C(dscl -q .) on standard input (never on a command line).
  - The module creates the home itself, an empty directory with O(home_mode) owned by the account
    (links are refused), instead of C(createhomedir), whose user template adds Desktop, Documents and
    Downloads. macOS protects those folders with TCC (privacy consent), so root over SSH could not
    back them up, move or delete them without Full Disk Access; a claw keeps everything in its state
    directory and workspace and never needs them.
  - Claw UIDs are never reused. A new account gets the UID above the highest one ever handed out on the host
    (the high-water mark in O(uid_high_water_path), root-only, updated atomically before the account is created
    and before one is deleted) and above every claw account's UID in O(uid_range) (other accounts there are skipped); a deleted claw's UID is never given
    again, so a process it left behind can never own a later claw's home. See the collection's docs/claw-uids.md.
  - Before an account is deleted, every process of its UID (real or effective) is killed. Its launchd domains
    C(user/UID) and C(gui/UID) are booted out, then C(pkill -STOP) and C(pkill -KILL) by UID run until
    C(ps -A -o pid= -o uid= -o ruid= -o stat=) shows no live process of it (zombies do not count). If processes survive 50
    rounds the module fails naming their pids and deletes nothing.
  - Deletion uses C(sysadminctl -deleteUser NAME -keepHome).  C(sysadminctl) logs to standard error
    and can exit 0 when it failed, so every change is verified with C(dscl -plist . -read) afterwards;
    if the record survived, C(dscl . -delete) is tried once before the module fails.
  - C(sysadminctl -deleteUser -keepHome) may move the kept home aside to C(/Users/NAME (Deleted)).
    The module finds it again by its inode and renames it back, so the home is always at its
    original path afterwards (RV(home)); RV(home_moved_from) says where it had been moved. If the
    home cannot be found, or something else took its place, the module fails and says where to look.
  - Safety first. The module refuses to modify or delete an account whose UID is below 500, who is a
    member of C(admin), or whose name does not match O(managed_pattern). A typo can never delete a
    person's account.
  - When O(real_name) records the claw id, an existing user with the same name but another real name
    (a second claw whose id shares the first 8 hex characters) is refused instead of shared.
  - With O(deny_cron) (the default) the account may not use cron - a claw's code must not run outside its launchd
    job, for example while its gateway is stopped for a backup or a migration. A present account is listed in
    O(cron_deny_path) (crontab(1) then refuses it) and a table it made before is removed from O(cron_tabs_dir) (cron
    runs existing tables whether or not their user may still edit them); an absent account's line and table are
    removed. The file is replaced as a whole (root, 0644), never written through a link; other lines are kept.
  - Follows dscl(1), sysadminctl(8) usage, dseditgroup(8), docs/reference/macos-admin.md sections
    2.1-2.3 and the collection's docs/macos-tcc.md.
author:
  - Mirascope platform team (@mirascope)
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows uid, gid, home, shell, real_name and hidden before and after. The password never appears.
  idempotent:
    support: full
options:
  name:
    description: Short name of the account, for example V(claw-1a2b3c4d). Must match O(managed_pattern).
    type: str
    required: true
  state:
    description: Whether the account should exist.
    type: str
    choices: [present, absent]
    default: present
  uid:
    description:
      - UniqueID for a new account. When omitted the next unused UID of O(uid_range) is used (above the high-water
        mark and every claw UID in use in the range, skipping other accounts; a UID is never handed out twice).
      - A value at or below the high-water mark is refused (it may have been a deleted claw's).
      - The UID of an existing account is never changed; a different value fails.
    type: int
  uid_range:
    description:
      - Inclusive C([first, last]) range for automatic UIDs. Keep it away from 501+ people accounts.
      - UIDs are not reused, so the range bounds how many accounts the host ever gets; when it is used up the
        module fails and names the fix (a higher range).
      - With O(state=absent), the deleted account's UID raises the high-water mark when it is in this range.
    type: list
    elements: int
    default: [600, 29999]
  uid_high_water_path:
    description:
      - Root-only file (0600, in a directory of root that others cannot write to, made 0700 when missing) holding
        the highest claw UID ever handed out on the host. A link, a foreign owner or a content that is not a number
        fails the module.
    type: path
    default: /var/db/mirascope/claw-uid-high-water
  group_id:
    description: PrimaryGroupID of the account. V(20) is C(staff).
    type: int
    default: 20
  home:
    description: Home directory. Defaults to C(/Users/<name>).
    type: path
  home_mode:
    description: Mode of the home directory, as an octal string.
    type: str
    default: "0700"
  shell:
    description: Login shell (C(UserShell)). V(/usr/bin/false) means no interactive login.
    type: path
    default: /usr/bin/false
  real_name:
    description:
      - C(RealName) of the account. The claw role stores the full claw id here so that two claws
        whose ids share a prefix are told apart. When set and the existing account has another
        value, the module fails and changes nothing.
    type: str
  hidden:
    description: Set C(IsHidden) so the account is not shown in the login window or System Settings.
    type: bool
    default: true
  remove_home:
    description:
      - With O(state=absent), also delete the home directory after the account is gone.
      - When false the home stays at its original path, owned by the deleted account's UID.
    type: bool
    default: false
  managed_pattern:
    description: Python regular expression every managed name must match.
    type: str
    default: "^claw-[0-9a-f]{8}$"
  deny_cron:
    description:
      - Keep the account from cron (see the description); false leaves cron's files alone.
      - On a Mac without the directory of O(cron_deny_path) there is no cron to deny and nothing is done.
    type: bool
    default: true
  cron_deny_path:
    description: crontab's deny list (macOS, crontab(1)); its directory must be root's and writable by nobody else.
    type: path
    default: /usr/lib/cron/cron.deny
  cron_tabs_dir:
    description: cron's directory of user tables (macOS, crontab(1)); root's, writable by nobody else.
    type: path
    default: /usr/lib/cron/tabs
  lock_path:
    description:
      - File locked (C(flock), exclusive) while the module reads the directory and changes it, so that two runs on
        one Mini at the same time cannot pick the same free UID. Created 0600 when missing. Not taken in check mode.
      - A run that cannot get the lock within 120 seconds fails and changes nothing.
    type: path
    default: /var/run/mirascope.macos_user.lock
notes:
  - Deleting users over SSH needs "Allow full disk access for remote users" (Remote Login settings) on
    macOS 13 and later, otherwise C(dscl) answers C(eDSPermissionError) (-14120). The mini_base role
    (bootstrap) checks that grant first.
  - Needs root (C(become=true)).
seealso:
  - name: dscl(1)
    description: Directory Service command line utility.
    link: https://keith.github.io/xcode-man-pages/dscl.1.html
  - name: Apple HT203998
    description: Hide a user account in macOS.
    link: https://support.apple.com/en-us/HT203998
"""

EXAMPLES = r"""
- name: Create the account of claw 1a2b3c4d-...
  mirascope.clawfarm.macos_user:
    name: claw-1a2b3c4d
    real_name: "claw 1a2b3c4d-0000-4000-8000-000000000001"
  become: true
  register: claw_user

- name: Remove the account but keep its home
  mirascope.clawfarm.macos_user:
    name: claw-1a2b3c4d
    real_name: "claw 1a2b3c4d-0000-4000-8000-000000000001"
    state: absent
  become: true
"""

RETURN = r"""
name:
  description: The account name.
  returned: always
  type: str
  sample: claw-1a2b3c4d
uid:
  description: UniqueID of the account (null when absent).
  returned: always
  type: int
  sample: 600
gid:
  description: PrimaryGroupID of the account (null when absent).
  returned: always
  type: int
  sample: 20
home:
  description:
    - Home directory of the account (null when absent and never created).
    - After a deletion without O(remove_home), the home is at this path (never at a C(… (Deleted)) name).
  returned: always
  type: str
  sample: /Users/claw-1a2b3c4d
home_moved_from:
  description:
    - After a deletion, where C(sysadminctl) had moved the home before the module renamed it back to RV(home);
      null when the home stayed where it was (or there was none).
  returned: always
  type: str
  sample: /Users/claw-1a2b3c4d (Deleted)
processes_killed:
  description: PIDs of the account's processes that were found running and killed before the deletion.
  returned: always
  type: list
  elements: int
  sample: [4242]
changed_attributes:
  description: dscl attributes written on an existing account.
  returned: always
  type: list
  elements: str
  sample: [UserShell]
cron_changed:
  description:
    - What was changed to keep the account from cron (O(deny_cron)) - O(cron_deny_path) when the account's line was
      added or removed, the account's table in O(cron_tabs_dir) when it was removed; empty when nothing changed.
  returned: always
  type: list
  elements: str
  sample: [/usr/lib/cron/cron.deny]
commands:
  description: Every command run, as argv lists, in order (the password is never among them).
  returned: always
  type: list
  elements: list
"""

import contextlib
import os
import re
import secrets
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _macos_user as mu
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _r2 as r2
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandError, CommandRunner, exclusive_lock


class MacosUser:
    """Applies one macos_user task; all host access goes through ``self.runner``."""

    def __init__(self, module, runner: CommandRunner):
        self.module = module
        self.runner = runner
        self.p = module.params
        self.name = self.p["name"]
        self.home = self.p["home"] or f"/Users/{self.name}"

    # -- reads --------------------------------------------------------------
    def read(self):
        """Record as ``{attribute: [values]}``, or None when the user does not exist."""
        result = self.runner.run(mu.cmd_read(self.name))
        if result.rc == mu.DSCL_RECORD_NOT_FOUND or "eDSRecordNotFound" in result.text:
            return None
        if result.rc != 0:
            raise CommandError(result, "dscl could not read the local directory; run with become: true")
        return mu.parse_dscl_plist(result.stdout)

    def is_admin(self) -> bool:
        result = self.runner.run(mu.cmd_checkmember(self.name))
        return result.rc == 0 and result.stdout.strip().startswith("yes")

    def check_owner(self, record):
        mu.check_record_is_managed(record, self.name, self.is_admin())
        mu.check_real_name(record, self.name, self.p["real_name"])

    # -- present ------------------------------------------------------------
    def desired(self) -> dict:
        return {
            "gid": self.p["group_id"],
            "home": self.home,
            "shell": self.p["shell"],
            "real_name": self.p["real_name"] or self.name,
            "hidden": self.p["hidden"],
        }

    def present(self, record) -> dict:
        desired = self.desired()
        before = mu.current_view(record) if record else {}
        changes = {}
        if record is None:
            uid = self.choose_uid()
            after = dict(desired, uid=uid)
        else:
            self.check_owner(record)
            if self.p["uid"] is not None and before["uid"] != self.p["uid"]:
                raise mu.UserSafetyError(
                    f"user {self.name!r} has UID {before['uid']}, not {self.p['uid']}; "
                    "the module never changes an existing UID (files would be orphaned)"
                )
            changes = mu.changed_attributes(before, desired)
            after = dict(before, **desired)
        home_changed = self.home_needs_change(after["uid"], after["gid"])
        changed = record is None or bool(changes) or home_changed
        if changed and not self.module.check_mode:
            if record is None:
                self.create(after)
            for attribute, value in changes.items():
                self.runner.run(mu.cmd_create(self.name, attribute, value), check=True)
            if changes:
                self.runner.run(mu.cmd_flush_cache())
            self.verify(after)
            self.ensure_home(after["uid"], after["gid"])
        cron_changed = self.keep_from_cron(denied=True)
        return {
            "changed": changed or bool(cron_changed),
            "cron_changed": cron_changed,
            "uid": after["uid"],
            "gid": after["gid"],
            "home": self.home,
            "home_moved_from": None,
            "changed_attributes": sorted(changes),
            "processes_killed": [],
            "diff": {"before": before, "after": after},
        }

    def keep_from_cron(self, denied: bool) -> list:
        """List the account in cron.deny (``denied``) or take it out, and remove its table either way.

        Runs under the module's host-wide lock (two provisions edit cron.deny one after the other). Returns the paths
        changed (or that would be, in check mode).
        """
        path = self.p["cron_deny_path"]
        if not self.p["deny_cron"] or not os.path.isdir(os.path.dirname(path)):
            return []  # no cron directory: crontab has nowhere to keep a table, there is nothing to deny
        changed = []
        text = mu.cron_deny_edit(mu.read_cron_deny(path), self.name, denied)
        if text is not None:
            changed.append(path)
            if not self.module.check_mode:
                mu.write_cron_deny(path, text)
        table = mu.cron_table(self.name, self.p["cron_tabs_dir"])
        if table is not None:
            changed.append(table)
            if not self.module.check_mode:
                os.unlink(table)  # unlink never follows a link; the table directory is root's
        return changed

    def choose_uid(self) -> int:
        """A UID never handed out before: above the high-water mark and every claw's UID in the range."""
        users = mu.parse_uid_list(self.runner.run(mu.cmd_list_uids(), check=True).stdout)
        used = list(users.values())
        claw_uids = [uid for name, uid in users.items() if re.search(self.p["managed_pattern"], name)]
        high_water = mu.read_high_water(self.p["uid_high_water_path"])
        if self.p["uid"] is not None:
            uid = self.p["uid"]
            if uid < mu.PROTECTED_UID_BELOW:
                raise mu.UserSafetyError(f"uid {uid} is below {mu.PROTECTED_UID_BELOW}; choose a UID in uid_range")
            if uid in used:
                raise mu.UserSafetyError(f"uid {uid} is already used by another account")
            if uid <= high_water:
                raise mu.UserSafetyError(
                    f"uid {uid} is at or below the high-water mark {high_water} ({self.p['uid_high_water_path']}): "
                    "it may have belonged to a deleted claw and is never handed out again; choose a higher UID")
            return uid
        first, last = self.p["uid_range"]
        if first < mu.PROTECTED_UID_BELOW or last < first:
            raise mu.UserSafetyError(f"uid_range {first}-{last} must start at {mu.PROTECTED_UID_BELOW} or above")
        return mu.pick_uid(used, first, last, high_water, claw_uids)

    def record_high_water(self, uid: int) -> None:
        """Raise the high-water mark to ``uid`` (never lower it), before the UID is used or its user deleted."""
        first, last = self.p["uid_range"]
        if uid is None or not first <= uid <= last:
            return
        if uid > mu.read_high_water(self.p["uid_high_water_path"]):
            mu.write_high_water(self.p["uid_high_water_path"], uid)

    def create(self, after: dict) -> None:
        uid = after["uid"]
        search = self.runner.run(mu.cmd_search_uid(uid))
        if search.stdout.strip():
            raise mu.UserSafetyError(f"UID {uid} was taken while the module ran; run the task again")
        # Recorded before the record exists: even if the creation fails half-way, the UID is never handed out again.
        self.record_high_water(uid)
        for argv in mu.create_sequence(self.name, uid, after["gid"], after["home"], after["shell"],
                                       after["real_name"], after["hidden"]):
            self.runner.run(argv, check=True, hint="the record may be half-created; re-run the task to finish it")
        password = secrets.token_urlsafe(32)
        self.runner.run(mu.cmd_dscl_interactive(), check=True, stdin=mu.passwd_script(self.name, password),
                        hint="setting the account's random password failed")
        self.runner.run(mu.cmd_flush_cache())

    def verify(self, after: dict) -> None:
        record = self.read()
        if record is None:
            raise mu.UserSafetyError(f"user {self.name!r} is missing after the change: the directory refused it")
        view = mu.current_view(record)
        wrong = {k: (view.get(k), v) for k, v in after.items() if view.get(k) != v}
        if wrong:
            details = ", ".join(f"{k}={got!r} (wanted {want!r})" for k, (got, want) in sorted(wrong.items()))
            raise mu.UserSafetyError(f"user {self.name!r} did not take the change: {details}")

    def home_needs_change(self, uid, gid) -> bool:
        try:
            st = os.lstat(self.home)
        except FileNotFoundError:
            return True
        return (stat.S_ISDIR(st.st_mode), st.st_uid, st.st_gid, st.st_mode & 0o7777) != (
            True, uid, gid, int(self.p["home_mode"], 8))

    def ensure_home(self, uid: int, gid: int) -> None:
        """An empty home made here, not by createhomedir: its template's Desktop/Documents/Downloads are TCC-protected.

        The home is opened with O_NOFOLLOW and changed through the descriptor, so a link is never followed.
        """
        if not os.path.lexists(self.home):
            parent = os.path.dirname(self.home.rstrip("/"))
            if parent and not os.path.isdir(parent):
                os.makedirs(parent, mode=0o755)
            os.mkdir(self.home, 0o700)
        try:
            fd = os.open(self.home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            raise mu.UserSafetyError(
                f"home {self.home!r} is not a directory (a link or a file: {exc.strerror}); "
                "move it away and run the task again") from None
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, int(self.p["home_mode"], 8))
        finally:
            os.close(fd)

    # -- absent -------------------------------------------------------------
    def absent(self, record) -> dict:
        if record is None:
            cron_changed = self.keep_from_cron(denied=False)
            return {"changed": bool(cron_changed), "cron_changed": cron_changed, "uid": None, "gid": None, "home": None,
                    "home_moved_from": None, "changed_attributes": [], "processes_killed": [],
                    "diff": {"before": {}, "after": {}}}
        self.check_owner(record)
        before = mu.current_view(record)
        home = before["home"] or self.home
        moved_from = None
        killed = []
        if not self.module.check_mode:
            # Nothing of the claw's may outlive its user: a process left behind (double-forked, setsid) would keep
            # its UID. Killed first; if any survives the module fails here, before anything is deleted.
            if before["uid"] is not None:
                killed = mu.kill_user_processes(self.runner, before["uid"])
            self.record_high_water(before["uid"])
            # The home's inode, so it is found again wherever sysadminctl -keepHome renames it ("NAME (Deleted)").
            home_identity = mu.directory_identity(home) if home else None
            result = self.runner.run(mu.cmd_delete_user(self.name))
            try:
                if self.read() is not None:
                    self.runner.run(mu.cmd_delete_record(self.name), check=True,
                                    hint="enable 'Allow full disk access for remote users' for Remote Login")
                    if self.read() is not None:
                        errors = "; ".join(mu.sysadminctl_errors(result.text)) or "no error printed"
                        raise mu.UserSafetyError(
                            f"user {self.name!r} still exists after sysadminctl -deleteUser and dscl -delete "
                            f"({errors}); enable 'Allow full disk access for remote users' and retry"
                        )
            except (mu.UserSafetyError, CommandError):
                # The account stays: so does its home, at its own path (the claw is as it was). The deletion's
                # error is the one to report, so a home that cannot be put back does not hide it.
                with contextlib.suppress(mu.UserSafetyError, OSError):
                    self.put_home_back(home, home_identity)
                raise
            self.runner.run(mu.cmd_flush_cache())
            moved_from = self.put_home_back(home, home_identity)
            if self.p["remove_home"] and home and os.path.isdir(home) and not os.path.islink(home):
                try:
                    r2.check_removable(home)
                except ValueError as exc:
                    raise mu.UserSafetyError(str(exc)) from None
                r2.remove_tree(home)  # directory fds, never following the tenant's links, at any depth
        cron_changed = self.keep_from_cron(denied=False)
        return {"changed": True, "cron_changed": cron_changed, "uid": before["uid"], "gid": before["gid"], "home": home,
                "home_moved_from": moved_from, "changed_attributes": [], "processes_killed": killed,
                "diff": {"before": before, "after": {}}}

    def put_home_back(self, home: str, identity):
        """Bring a home that sysadminctl moved aside back to ``home``; return where it was (None: it stayed).

        The home is recognised by its inode (a rename keeps it), never by name alone, so nothing else that
        happens to be called ``NAME (Deleted)`` is ever taken for it. ``rename(2)`` within the root-owned parent
        does not follow links.
        """
        if identity is None or mu.directory_identity(home) == identity:
            return None
        found = mu.find_moved_home(home, identity)
        if found is None:
            raise mu.UserSafetyError(
                f"user {self.name!r} was deleted but its home {home!r} is gone: sysadminctl moved or removed it and "
                f"it is not in {os.path.dirname(home) or '/'} any more; look for {mu.deleted_home_name(home)!r} "
                "or a disk image in '/Users/Deleted Users', and move it back to its path by hand")
        if os.path.lexists(home):
            raise mu.UserSafetyError(
                f"user {self.name!r} was deleted and sysadminctl moved its home to {found!r}, but {home!r} exists "
                "again and is not that home; nothing was moved: compare both and move the right one to "
                f"{home!r} by hand")
        os.rename(found, home)
        return found


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            uid=dict(type="int"),
            uid_range=dict(type="list", elements="int", default=[600, 29999]),
            group_id=dict(type="int", default=20),
            home=dict(type="path"),
            home_mode=dict(type="str", default="0700"),
            shell=dict(type="path", default="/usr/bin/false"),
            real_name=dict(type="str"),
            hidden=dict(type="bool", default=True),
            remove_home=dict(type="bool", default=False),
            managed_pattern=dict(type="str", default=mu.DEFAULT_MANAGED_PATTERN),
            lock_path=dict(type="path", default="/var/run/mirascope.macos_user.lock"),
            uid_high_water_path=dict(type="path", default=mu.DEFAULT_UID_HIGH_WATER),
            deny_cron=dict(type="bool", default=True),
            cron_deny_path=dict(type="path", default=mu.CRON_DENY),
            cron_tabs_dir=dict(type="path", default=mu.CRON_TABS),
        ),
        supports_check_mode=True,
    )
    p = module.params
    runner = CommandRunner(module)
    try:
        mu.validate_name(p["name"], p["managed_pattern"])
        if len(p["uid_range"]) != 2:
            raise mu.UserSafetyError("uid_range must be [first, last]")
        try:
            int(p["home_mode"], 8)
        except ValueError:
            raise mu.UserSafetyError(f"home_mode {p['home_mode']!r} is not an octal mode such as '0700'")
        user = MacosUser(module, runner)
        # Concurrent runs on one Mini (two provisions) must not both pick the same free UID: read and write under
        # one host-wide lock. Check mode changes nothing and takes no lock.
        lock = (contextlib.nullcontext() if module.check_mode
                else exclusive_lock(p["lock_path"], what=f"creating or deleting user {p['name']}"))
        with lock:
            record = user.read()
            result = user.present(record) if p["state"] == "present" else user.absent(record)
    except (mu.UserSafetyError, CommandError, ValueError) as exc:
        module.fail_json(msg=str(exc), name=p["name"], commands=runner.history)
    if not module._diff:
        result.pop("diff")
    module.exit_json(name=p["name"], commands=runner.history, **result)


if __name__ == "__main__":
    main()
