"""macos_user: exact command lines, real macOS output samples (docs/reference/macos-admin.md), refusals."""
from __future__ import annotations

import plistlib

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _macos_user as mu
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandRunner
from ansible_collections.mirascope.clawfarm.plugins.modules.macos_user import MacosUser
from ansible_collections.mirascope.clawfarm.plugins.modules.macos_user_processes import stop_user_processes
from conftest import FakeModule

NAME = "claw-1a2b3c4d"
REAL = "claw 1a2b3c4d-0000-4000-8000-000000000001"

# Real output shapes (reference 2.1-2.2).
DSCL_NOT_FOUND = (56, "", "<dscl_cmd> DS Error: -14136 (eDSRecordNotFound)\n")
DSCL_LIST = "_amavisd                 83\nadmin                    501\nclaw-99999999            600\nnobody                   -2\nroot                     0\n"
DSCL_READ_PLAIN = (
    "dsAttrTypeNative:IsHidden: 1\nNFSHomeDirectory: /Users/claw-1a2b3c4d\nPrimaryGroupID: 20\n"
    "RealName:\n claw 1a2b3c4d-0000-4000-8000-000000000001\nUniqueID: 601\nUserShell: /usr/bin/false\n"
)
SYSADMINCTL_DELETE = (
    "2026-11-20 10:11:12.345 sysadminctl[4242:a1b2c3] Killing all processes for UID 601\n"
    "2026-11-20 10:11:12.400 sysadminctl[4242:a1b2c3] Deleting record for claw-1a2b3c4d\n"
)
SYSADMINCTL_FDA = "2026-11-20 10:11:12.400 sysadminctl[4242:a1b2c3] ### Error:-14120 File:/AppleInternal/DSRecord.m\n"


def record_plist(uid=601, gid=20, home=f"/Users/{NAME}", shell="/usr/bin/false", real=REAL, hidden="1"):
    return plistlib.dumps({
        "dsAttrTypeStandard:UniqueID": [str(uid)], "dsAttrTypeStandard:PrimaryGroupID": [str(gid)],
        "dsAttrTypeStandard:NFSHomeDirectory": [home], "dsAttrTypeStandard:UserShell": [shell],
        "dsAttrTypeStandard:RealName": [real], "dsAttrTypeNative:IsHidden": [hidden],
    }).decode()


HIGH_WATER = {}


@pytest.fixture(autouse=True)
def high_water_file(tmp_path_factory):
    """Every test gets its own high-water mark path (no file yet) in a root-only directory."""
    directory = tmp_path_factory.mktemp("db")
    directory.chmod(0o700)
    HIGH_WATER["path"] = str(directory / "mirascope" / "claw-uid-high-water")
    return HIGH_WATER["path"]


CRON = {}


@pytest.fixture(autouse=True)
def cron_dir(tmp_path_factory):
    """Every test gets its own cron directory (as /usr/lib/cron: root's, 0755; tabs 0700) with no cron.deny yet."""
    directory = tmp_path_factory.mktemp("cron")
    directory.chmod(0o755)
    (directory / "tabs").mkdir(mode=0o700)
    CRON.update(deny=str(directory / "cron.deny"), tabs=str(directory / "tabs"))
    return directory


def params(**overrides):
    base = dict(name=NAME, state="present", uid=None, uid_range=[600, 999], group_id=20, home=None, home_mode="0700",
                shell="/usr/bin/false", real_name=REAL, hidden=True, remove_home=False,
                managed_pattern=mu.DEFAULT_MANAGED_PATTERN, uid_high_water_path=HIGH_WATER["path"],
                deny_cron=True, cron_deny_path=CRON["deny"], cron_tabs_dir=CRON["tabs"])
    base.update(overrides)
    return base


def test_parse_plain_read_sample():
    parsed = mu.parse_dscl_read(DSCL_READ_PLAIN + "No such key: AuthenticationAuthority\n")
    view = mu.current_view(parsed)
    assert view == {"uid": 601, "gid": 20, "home": "/Users/claw-1a2b3c4d", "shell": "/usr/bin/false",
                    "real_name": REAL, "hidden": True}


def test_parse_plist_read_strips_prefixes():
    assert mu.current_view(mu.parse_dscl_plist(record_plist()))["uid"] == 601


def test_parse_uid_list_and_pick_uid():
    users = mu.parse_uid_list(DSCL_LIST)
    assert users["nobody"] == -2 and users["claw-99999999"] == 600
    assert mu.pick_uid(users.values(), 600, 999) == 601
    with pytest.raises(ValueError, match="no unused UID left in 600-601: UIDs up to 601 were handed out"):
        mu.pick_uid([600, 601], 600, 601)


def test_strip_nslog_and_errors():
    assert mu.strip_nslog(SYSADMINCTL_DELETE)[0] == "Killing all processes for UID 601"
    assert mu.sysadminctl_errors(SYSADMINCTL_FDA) == ["### Error:-14120 File:/AppleInternal/DSRecord.m"]
    assert mu.sysadminctl_errors(SYSADMINCTL_DELETE) == []


@pytest.mark.parametrize("name", ["admin", "root", "claw-1A2B3C4D", "claw-1a2b3c4", "../etc", "-claw", "claw-1a2b3c4d; rm"])
def test_names_outside_the_managed_pattern_are_refused(name):
    with pytest.raises(mu.UserSafetyError):
        mu.validate_name(name)


def test_create_runs_exactly_these_commands(tmp_path):
    home = str(tmp_path / NAME)
    read = mu.cmd_read(NAME)
    module = FakeModule(params(home=home), {
        tuple(read): [DSCL_NOT_FOUND, (0, record_plist(home=home), "")],
        tuple(mu.cmd_list_uids()): (0, DSCL_LIST, ""),
    })
    user = MacosUser(module, CommandRunner(module))
    result = user.present(user.read())
    assert result["changed"] and result["uid"] == 601
    assert module.calls == [
        ["/usr/bin/dscl", "-plist", ".", "-read", f"/Users/{NAME}"],
        ["/usr/bin/dscl", ".", "-list", "/Users", "UniqueID"],
        ["/usr/bin/dscl", ".", "-search", "/Users", "UniqueID", "601"],
        ["/usr/bin/dscl", ".", "-create", f"/Users/{NAME}"],
        ["/usr/bin/dscl", ".", "-create", f"/Users/{NAME}", "UniqueID", "601"],
        ["/usr/bin/dscl", ".", "-create", f"/Users/{NAME}", "PrimaryGroupID", "20"],
        ["/usr/bin/dscl", ".", "-create", f"/Users/{NAME}", "NFSHomeDirectory", home],
        ["/usr/bin/dscl", ".", "-create", f"/Users/{NAME}", "UserShell", "/usr/bin/false"],
        ["/usr/bin/dscl", ".", "-create", f"/Users/{NAME}", "RealName", REAL],
        ["/usr/bin/dscl", ".", "-create", f"/Users/{NAME}", "IsHidden", "1"],
        ["/usr/bin/dscl", "-q", "."],
        ["/usr/bin/dscacheutil", "-flushcache"],
        ["/usr/bin/dscl", "-plist", ".", "-read", f"/Users/{NAME}"],
    ]
    # The password goes on stdin only, never on a command line.
    password_input = [s for s in module.stdin if s][0]
    assert password_input.startswith(f"-passwd /Users/{NAME} ") and password_input.endswith("\n-quit\n")
    assert not any(password_input.split()[2] in " ".join(c) for c in module.calls)
    assert oct((tmp_path / NAME).stat().st_mode & 0o777) == "0o700"
    # The module makes the home itself: no createhomedir, so none of the template's TCC-protected folders
    # (Desktop, Documents, Downloads) that root over SSH could not back up or move without Full Disk Access.
    assert not any("createhomedir" in c[0] for c in module.calls)
    assert list((tmp_path / NAME).iterdir()) == []


def test_check_mode_creates_nothing():
    module = FakeModule(params(), {tuple(mu.cmd_read(NAME)): DSCL_NOT_FOUND,
                                   tuple(mu.cmd_list_uids()): (0, DSCL_LIST, "")}, check_mode=True)
    user = MacosUser(module, CommandRunner(module))
    result = user.present(user.read())
    assert result["changed"] and result["diff"]["before"] == {} and result["diff"]["after"]["uid"] == 601
    assert all("-create" not in c for c in module.calls)


def test_existing_user_with_changed_shell_is_updated_and_diffed(tmp_path):
    home = tmp_path / NAME
    home.mkdir(mode=0o700)
    import os
    os.chown(home, 601, 20)
    module = FakeModule(params(home=str(home), shell="/bin/sh"), {
        tuple(mu.cmd_read(NAME)): [(0, record_plist(home=str(home)), ""), (0, record_plist(home=str(home), shell="/bin/sh"), "")],
        tuple(mu.cmd_checkmember(NAME)): (67, f"no {NAME} is NOT a member of admin\n", ""),
    })
    user = MacosUser(module, CommandRunner(module))
    result = user.present(user.read())
    assert result["changed_attributes"] == ["UserShell"]
    assert result["diff"]["before"]["shell"] == "/usr/bin/false" and result["diff"]["after"]["shell"] == "/bin/sh"
    assert ["/usr/bin/dscl", ".", "-create", f"/Users/{NAME}", "UserShell", "/bin/sh"] in module.calls


@pytest.mark.parametrize("state", ["present", "absent"])
@pytest.mark.parametrize("record,checkmember,message", [
    (record_plist(uid=499), (67, "no", ""), "below 500"),
    (record_plist(uid=601), (0, f"yes {NAME} is a member of admin\n", ""), "administrator"),
    (record_plist(real="claw 1a2b3c4d-ffff-4000-8000-000000000009"), (67, "no", ""), "another claw"),
])
def test_protected_accounts_are_refused(state, record, checkmember, message):
    module = FakeModule(params(state=state), {tuple(mu.cmd_read(NAME)): (0, record, ""),
                                              tuple(mu.cmd_checkmember(NAME)): checkmember})
    user = MacosUser(module, CommandRunner(module))
    with pytest.raises(mu.UserSafetyError, match=message):
        user.present(user.read()) if state == "present" else user.absent(user.read())
    assert not any(c[0].endswith("sysadminctl") or "-create" in c or "-delete" in c for c in module.calls)


def test_delete_verifies_and_falls_back_to_dscl_when_sysadminctl_lies():
    read = tuple(mu.cmd_read(NAME))
    module = FakeModule(params(state="absent"), {
        read: [(0, record_plist(), ""), (0, record_plist(), ""), DSCL_NOT_FOUND],
        tuple(mu.cmd_checkmember(NAME)): (67, "no", ""),
        tuple(mu.cmd_delete_user(NAME)): (0, "", SYSADMINCTL_FDA),  # exit 0 but nothing deleted
    })
    user = MacosUser(module, CommandRunner(module))
    result = user.absent(user.read())
    assert result["changed"]
    assert ["/usr/sbin/sysadminctl", "-deleteUser", NAME, "-keepHome"] in module.calls
    assert ["/usr/bin/dscl", ".", "-delete", f"/Users/{NAME}"] in module.calls


def test_delete_fails_with_a_fix_when_the_record_survives():
    read = tuple(mu.cmd_read(NAME))
    module = FakeModule(params(state="absent"), {
        read: (0, record_plist(), ""),
        tuple(mu.cmd_checkmember(NAME)): (67, "no", ""),
        tuple(mu.cmd_delete_user(NAME)): (0, "", SYSADMINCTL_FDA),
        tuple(mu.cmd_delete_record(NAME)): (40, "", "delete: DS Error: -14120 (eDSPermissionError)"),
    })
    user = MacosUser(module, CommandRunner(module))
    with pytest.raises(Exception, match="full disk access"):
        user.absent(user.read())


def test_absent_user_is_ok():
    module = FakeModule(params(state="absent"), {tuple(mu.cmd_read(NAME)): DSCL_NOT_FOUND})
    user = MacosUser(module, CommandRunner(module))
    assert user.absent(user.read())["changed"] is False


def test_a_link_in_place_of_the_home_is_refused_and_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    (tmp_path / NAME).symlink_to(target)
    module = FakeModule(params(home=str(tmp_path / NAME)), {})
    user = MacosUser(module, CommandRunner(module))
    with pytest.raises(mu.UserSafetyError, match="not a directory"):
        user.ensure_home(601, 20)
    assert oct(target.stat().st_mode & 0o777) == "0o755" and target.stat().st_uid == 0


def deletion(tmp_path, on_delete=None, **overrides):
    """A user whose home is ``tmp_path/NAME``; ``on_delete`` runs when sysadminctl -deleteUser is called."""
    home = tmp_path / NAME
    home.mkdir(mode=0o700)
    (home / ".openclaw").mkdir()

    def sysadminctl():
        if on_delete:
            on_delete(home)
        return (0, "", SYSADMINCTL_DELETE)

    module = FakeModule(params(state="absent", home=str(home), **overrides), {
        tuple(mu.cmd_read(NAME)): [(0, record_plist(home=str(home)), ""), DSCL_NOT_FOUND],
        tuple(mu.cmd_checkmember(NAME)): (67, "no", ""),
        tuple(mu.cmd_delete_user(NAME)): sysadminctl,
    })
    user = MacosUser(module, CommandRunner(module))
    return home, module, user


def move_aside(home):
    home.rename(f"{home} (Deleted)")


def test_delete_runs_exactly_these_commands_and_keeps_the_home_in_place(tmp_path):
    home, module, user = deletion(tmp_path)
    result = user.absent(user.read())
    assert module.calls == [
        ["/usr/bin/dscl", "-plist", ".", "-read", f"/Users/{NAME}"],
        ["/usr/sbin/dseditgroup", "-o", "checkmember", "-m", NAME, "admin"],
        ["/bin/launchctl", "bootout", "user/601"],
        ["/bin/launchctl", "bootout", "gui/601"],
        ["/bin/ps", "-A", "-o", "pid=", "-o", "uid=", "-o", "ruid=", "-o", "stat="],
        ["/usr/sbin/sysadminctl", "-deleteUser", NAME, "-keepHome"],
        ["/usr/bin/dscl", "-plist", ".", "-read", f"/Users/{NAME}"],
        ["/usr/bin/dscacheutil", "-flushcache"],
    ]
    assert result["home"] == str(home) and result["home_moved_from"] is None
    assert (home / ".openclaw").is_dir()


def test_a_home_that_sysadminctl_moved_to_deleted_is_put_back(tmp_path):
    """macOS may rename a kept home to '/Users/NAME (Deleted)'; absent.yml then finds it at its own path."""
    home, module, user = deletion(tmp_path, on_delete=move_aside)
    result = user.absent(user.read())
    assert result["home"] == str(home) and result["home_moved_from"] == f"{home} (Deleted)"
    assert (home / ".openclaw").is_dir() and not (tmp_path / f"{NAME} (Deleted)").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def test_the_home_is_found_by_inode_whatever_name_it_was_given(tmp_path):
    home, module, user = deletion(tmp_path, on_delete=lambda h: h.rename(tmp_path / f"{NAME} (Deleted) 2"))
    # An older, unrelated "(Deleted)" folder is never taken for the home.
    (tmp_path / f"{NAME} (Deleted)").mkdir()
    (tmp_path / f"{NAME} (Deleted)" / "old").write_text("someone else")
    result = user.absent(user.read())
    assert result["home_moved_from"] == str(tmp_path / f"{NAME} (Deleted) 2")
    assert (home / ".openclaw").is_dir()
    assert (tmp_path / f"{NAME} (Deleted)" / "old").read_text() == "someone else"


def test_an_unrelated_deleted_folder_is_left_alone_when_the_home_stayed(tmp_path):
    home, module, user = deletion(tmp_path)
    (tmp_path / f"{NAME} (Deleted)").mkdir()
    result = user.absent(user.read())
    assert result["home_moved_from"] is None and (home / ".openclaw").is_dir()
    assert (tmp_path / f"{NAME} (Deleted)").is_dir()


def test_a_home_that_disappeared_fails_with_where_to_look(tmp_path):
    import shutil
    home, module, user = deletion(tmp_path, on_delete=shutil.rmtree)
    with pytest.raises(mu.UserSafetyError, match=r"is gone.*\(Deleted\)"):
        user.absent(user.read())


def test_a_new_directory_in_place_of_the_moved_home_is_never_overwritten(tmp_path):
    def move_and_replace(h):
        move_aside(h)
        h.mkdir()
        (h / "new").write_text("x")

    home, module, user = deletion(tmp_path, on_delete=move_and_replace)
    with pytest.raises(mu.UserSafetyError, match="exists again"):
        user.absent(user.read())
    assert (home / "new").exists() and (tmp_path / f"{NAME} (Deleted)" / ".openclaw").is_dir()


def test_check_mode_deletes_nothing(tmp_path):
    home, module, user = deletion(tmp_path, on_delete=move_aside)
    module.check_mode = True
    result = user.absent(user.read())
    assert result["changed"] and result["home_moved_from"] is None
    assert not any(c[0].endswith("sysadminctl") for c in module.calls) and (home / ".openclaw").is_dir()


def test_remove_home_deletes_the_home_even_after_it_was_moved(tmp_path):
    home, module, user = deletion(tmp_path, on_delete=move_aside, remove_home=True)
    result = user.absent(user.read())
    assert result["home_moved_from"] == f"{home} (Deleted)"
    assert list(tmp_path.iterdir()) == []


def test_find_moved_home_ignores_links(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    identity = mu.directory_identity(str(real))
    (tmp_path / "claw (Deleted)").symlink_to(real)
    assert mu.directory_identity(str(tmp_path / "claw (Deleted)")) is None
    assert mu.find_moved_home(str(tmp_path / "claw"), identity) == str(real)
    assert mu.deleted_home_name("/Users/claw-1a2b3c4d") == "/Users/claw-1a2b3c4d (Deleted)"


def test_a_failed_deletion_puts_a_moved_home_back(tmp_path):
    """Without Full Disk Access the record stays: the home must not stay renamed either."""
    home, module, user = deletion(tmp_path, on_delete=move_aside)
    module.responses[tuple(mu.cmd_read(NAME))] = (0, record_plist(home=str(home)), "")
    module.responses[tuple(mu.cmd_delete_record(NAME))] = (40, "", "delete: DS Error: -14120 (eDSPermissionError)")
    with pytest.raises(Exception, match="full disk access"):
        user.absent(user.read())
    assert (home / ".openclaw").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == [NAME]


# ---------------------------------------------------------------------------
# UIDs are never reused (high-water mark) and nothing of a deleted claw keeps running
# ---------------------------------------------------------------------------

def test_pick_uid_goes_above_the_high_water_mark_and_every_uid_in_the_range():
    assert mu.pick_uid([600], 600, 999, high_water=0) == 601
    # 601..640 were handed out and deleted: never again, although free.
    assert mu.pick_uid([600], 600, 999, high_water=640) == 641
    # A UID in use above the mark counts too; people (501) and UIDs past the range do not.
    assert mu.pick_uid([501, 600, 700, 5000], 600, 999, high_water=640) == 701
    assert mu.pick_uid([], 600, 999) == 600
    with pytest.raises(ValueError, match="UIDs up to 999 were handed out to claws before and are never reused"):
        mu.pick_uid([600], 600, 999, high_water=999)
    # Accounts in the range that are not claws' (a person's, a system account) are skipped, not a new start.
    assert mu.pick_uid([600, 996, 997, 998], 600, 999, high_water=600, claw_uids=[600]) == 601
    assert mu.pick_uid([600, 601, 602], 600, 999, high_water=600, claw_uids=[600]) == 603
    assert mu.pick_uid([996, 997, 998], 600, 999, high_water=995, claw_uids=[]) == 999


def test_high_water_mark_file_is_root_only_atomic_and_never_followed(tmp_path):
    path = tmp_path / "db" / "claw-uid-high-water"
    assert mu.read_high_water(str(path)) == 0
    mu.write_high_water(str(path), 612)
    assert path.read_text() == "612\n" and oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "db").stat().st_mode & 0o777) == "0o700"
    assert mu.read_high_water(str(path)) == 612
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["claw-uid-high-water"]  # no temporary left
    # A link in its place is refused on read, and replaced (never written through) on write.
    target = tmp_path / "elsewhere"
    target.write_text("999\n")
    path.unlink()
    path.symlink_to(target)
    with pytest.raises(mu.UserSafetyError, match="a link is refused"):
        mu.read_high_water(str(path))
    mu.write_high_water(str(path), 613)
    assert target.read_text() == "999\n" and not path.is_symlink() and path.read_text() == "613\n"
    path.write_text("garbage")
    with pytest.raises(mu.UserSafetyError, match="does not hold a number"):
        mu.read_high_water(str(path))
    path.write_text("613\n")
    path.chmod(0o666)
    with pytest.raises(mu.UserSafetyError, match="regular file of root, mode 0600"):
        mu.read_high_water(str(path))


def test_a_new_claw_never_gets_a_deleted_claws_uid(high_water_file):
    """claw-99999999 holds 600; 601..700 were given to claws since deleted: the next claw gets 701."""
    module = FakeModule(params(), {tuple(mu.cmd_read(NAME)): DSCL_NOT_FOUND,
                                   tuple(mu.cmd_list_uids()): (0, DSCL_LIST + "polkitd  996\nsystemd-network  998\n", "")},
                        check_mode=True)
    user = MacosUser(module, CommandRunner(module))
    assert user.present(user.read())["uid"] == 601  # other accounts in the range do not move the start
    mu.write_high_water(high_water_file, 700)
    module = FakeModule(params(), {tuple(mu.cmd_read(NAME)): DSCL_NOT_FOUND,
                                   tuple(mu.cmd_list_uids()): (0, DSCL_LIST, "")}, check_mode=True)
    user = MacosUser(module, CommandRunner(module))
    assert user.present(user.read())["uid"] == 701
    assert mu.read_high_water(high_water_file) == 700  # check mode writes nothing


def test_the_high_water_mark_is_raised_before_the_account_is_created(tmp_path, high_water_file):
    home = str(tmp_path / NAME)
    marks = []

    def create_record():
        marks.append(mu.read_high_water(high_water_file))
        return (0, "", "")

    module = FakeModule(params(home=home), {
        tuple(mu.cmd_read(NAME)): [DSCL_NOT_FOUND, (0, record_plist(home=home), "")],
        tuple(mu.cmd_list_uids()): (0, DSCL_LIST, ""),
        tuple(mu.cmd_create(NAME)): create_record,
    })
    user = MacosUser(module, CommandRunner(module))
    assert user.present(user.read())["uid"] == 601
    assert marks == [601] and mu.read_high_water(high_water_file) == 601


def test_an_explicit_uid_at_or_below_the_high_water_mark_is_refused(high_water_file):
    mu.write_high_water(high_water_file, 650)
    module = FakeModule(params(uid=640), {tuple(mu.cmd_read(NAME)): DSCL_NOT_FOUND,
                                          tuple(mu.cmd_list_uids()): (0, DSCL_LIST, "")})
    user = MacosUser(module, CommandRunner(module))
    with pytest.raises(mu.UserSafetyError, match="at or below the high-water mark 650"):
        user.present(user.read())
    assert all("-create" not in c for c in module.calls)


def test_deleting_a_claw_records_its_uid_as_used(tmp_path, high_water_file):
    home, module, user = deletion(tmp_path)
    user.absent(user.read())
    assert mu.read_high_water(high_water_file) == 601


PS = ["/bin/ps", "-A", "-o", "pid=", "-o", "uid=", "-o", "ruid=", "-o", "stat="]
PKILLS = [["/usr/bin/pkill", "-STOP", "-U", "601"], ["/usr/bin/pkill", "-STOP", "-u", "601"],
          ["/usr/bin/pkill", "-KILL", "-U", "601"], ["/usr/bin/pkill", "-KILL", "-u", "601"]]
# ps -A -o pid= -o uid= -o ruid= -o stat= as macOS prints it: right-aligned numbers, BSD state letters.
PS_ORPHANS = ("    1     0     0 Ss\n  312   501   501 S\n 4242   601   601 Ss\n 4243   601   601 S\n"
              " 4250     0   601 S\n 4251   601   602 T\n 4260   601   601 Z\n 4270   602   602 R\n")


def test_parse_processes_takes_real_and_effective_uid_and_skips_zombies():
    assert mu.parse_processes(PS_ORPHANS, 601) == [(4242, "Ss"), (4243, "S"), (4250, "S"), (4251, "T")]
    assert mu.parse_processes("garbage\n", 601) == []


def test_kill_user_processes_boots_out_the_domains_and_kills_until_ps_shows_none():
    module = FakeModule({}, {tuple(PS): [(0, PS_ORPHANS, ""), (0, " 4243   601   601 T\n", ""), (0, "", "")]})
    pauses = []
    killed = mu.kill_user_processes(CommandRunner(module), 601, sleep=pauses.append)
    assert killed == [4242, 4243, 4250, 4251]
    assert module.calls == ([["/bin/launchctl", "bootout", "user/601"], ["/bin/launchctl", "bootout", "gui/601"]]
                            + [PS] + PKILLS + [PS] + PKILLS + [PS])
    assert pauses == [0.1, 0.1]


def test_kill_user_processes_fails_naming_the_survivors():
    module = FakeModule({}, {tuple(PS): (0, " 4242   601   601 S\n", "")})
    with pytest.raises(mu.UserSafetyError, match=r"still run after 3 rounds of SIGKILL: pids 4242; nothing was deleted"):
        mu.kill_user_processes(CommandRunner(module), 601, rounds=3, sleep=lambda _: None)
    with pytest.raises(mu.UserSafetyError, match="below 500"):
        mu.kill_user_processes(CommandRunner(module), 0)


def test_kill_user_processes_reports_a_pkill_that_failed():
    from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandError
    module = FakeModule({}, {tuple(PS): (0, " 4242   601   601 S\n", ""), tuple(PKILLS[0]): (2, "", "pkill: bad option")})
    with pytest.raises(CommandError, match="pkill -STOP -U 601` failed with exit status 2"):
        mu.kill_user_processes(CommandRunner(module), 601, sleep=lambda _: None)


def test_a_claw_whose_processes_survive_is_not_deleted(tmp_path, monkeypatch):
    home, module, user = deletion(tmp_path)
    module.responses[tuple(PS)] = (0, " 4242   601   601 S\n", "")
    monkeypatch.setattr(mu.time, "sleep", lambda _: None)
    with pytest.raises(mu.UserSafetyError, match="pids 4242; nothing was deleted"):
        user.absent(user.read())
    assert not any(c[0].endswith("sysadminctl") or "-delete" in c for c in module.calls)
    assert (home / ".openclaw").is_dir()


def test_deletion_kills_the_claws_processes_first(tmp_path):
    home, module, user = deletion(tmp_path)
    module.responses[tuple(PS)] = [(0, PS_ORPHANS, ""), (0, "", "")]
    result = user.absent(user.read())
    assert result["processes_killed"] == [4242, 4243, 4250, 4251]
    delete_at = module.calls.index(["/usr/sbin/sysadminctl", "-deleteUser", NAME, "-keepHome"])
    assert module.calls[2:delete_at] == ([["/bin/launchctl", "bootout", "user/601"],
                                          ["/bin/launchctl", "bootout", "gui/601"]] + [PS] + PKILLS + [PS])


def processes_module(check_mode=False, record=None, checkmember=(67, "no", ""), ps=None, **overrides):
    p = dict(name=NAME, real_name=REAL, state="absent", managed_pattern=mu.DEFAULT_MANAGED_PATTERN)
    p.update(overrides)
    return FakeModule(p, {tuple(mu.cmd_read(NAME)): record or (0, record_plist(), ""),
                          tuple(mu.cmd_checkmember(NAME)): checkmember,
                          tuple(PS): ps or [(0, PS_ORPHANS, ""), (0, "", "")]}, check_mode=check_mode)


def test_macos_user_processes_kills_everything_of_the_claw():
    module = processes_module()
    result = stop_user_processes(module, CommandRunner(module))
    assert result == {"changed": True, "uid": 601, "processes_killed": [4242, 4243, 4250, 4251]}
    assert module.calls == ([mu.cmd_read(NAME), mu.cmd_checkmember(NAME), ["/bin/launchctl", "bootout", "user/601"],
                             ["/bin/launchctl", "bootout", "gui/601"], PS] + PKILLS + [PS])
    again = processes_module(ps=[(0, "", "")])
    assert stop_user_processes(again, CommandRunner(again)) == {"changed": False, "uid": 601, "processes_killed": []}


def test_macos_user_processes_check_mode_only_lists():
    module = processes_module(check_mode=True)
    result = stop_user_processes(module, CommandRunner(module))
    assert result == {"changed": True, "uid": 601, "processes_killed": [4242, 4243, 4250, 4251]}
    assert module.calls == [mu.cmd_read(NAME), mu.cmd_checkmember(NAME), PS]


def test_macos_user_processes_of_a_missing_user_is_nothing_to_do():
    module = processes_module(record=DSCL_NOT_FOUND)
    assert stop_user_processes(module, CommandRunner(module)) == {"changed": False, "uid": None, "processes_killed": []}
    assert module.calls == [mu.cmd_read(NAME)]


@pytest.mark.parametrize("overrides,message", [
    (dict(record=(0, record_plist(uid=499), "")), "below 500"),
    (dict(checkmember=(0, f"yes {NAME} is a member of admin\n", "")), "administrator"),
    (dict(real_name="claw 1a2b3c4d-ffff-4000-8000-000000000009"), "another claw"),
    (dict(name="admin"), "managed pattern"),
])
def test_macos_user_processes_refuses_what_macos_user_refuses(overrides, message):
    module = processes_module(**overrides)
    with pytest.raises(mu.UserSafetyError, match=message):
        stop_user_processes(module, CommandRunner(module))
    assert not any(c[0] in ("/bin/ps", "/usr/bin/pkill", "/bin/launchctl") for c in module.calls)


def test_a_linked_high_water_directory_is_refused(tmp_path):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "db").symlink_to(tmp_path / "real")
    with pytest.raises(mu.UserSafetyError, match="a link is refused"):
        mu.write_high_water(str(tmp_path / "db" / "claw-uid-high-water"), 601)
    assert list((tmp_path / "real").iterdir()) == []


def test_cron_deny_edit():
    assert mu.cron_deny_edit(None, NAME, True) == f"{NAME}\n"
    assert mu.cron_deny_edit("# comment\nclaw-00000000", NAME, True) == f"# comment\nclaw-00000000\n{NAME}\n"
    assert mu.cron_deny_edit(f"a\n{NAME}\n", NAME, True) is None
    # crontab compares whole lines: " NAME" does not deny, and is left alone
    assert mu.cron_deny_edit(f" {NAME}\n", NAME, True) == f" {NAME}\n{NAME}\n"
    assert mu.cron_deny_edit(f"a\n{NAME}\nb\n{NAME}\n", NAME, False) == "a\nb\n"
    assert mu.cron_deny_edit("a\n", NAME, False) is None and mu.cron_deny_edit(None, NAME, False) is None
    # crontab(1) splits the file on "\n" only: a line "NAME\r" does not deny NAME, and other lines keep their bytes.
    assert mu.cron_deny_edit(f"{NAME}\r\n", NAME, True) == f"{NAME}\r\n{NAME}\n"
    assert mu.cron_deny_edit(f"a\rb\n{NAME}\n", NAME, False) == "a\rb\n"
    assert mu.cron_deny_edit(f"a\n{NAME}", NAME, False) == "a"


def existing_user(tmp_path, **overrides):
    import os

    home = tmp_path / NAME
    home.mkdir(mode=0o700)
    os.chown(home, 601, 20)
    module = FakeModule(params(home=str(home), **overrides), {
        tuple(mu.cmd_read(NAME)): (0, record_plist(home=str(home)), ""),
        tuple(mu.cmd_checkmember(NAME)): (67, f"no {NAME} is NOT a member of admin\n", ""),
    })
    return MacosUser(module, CommandRunner(module))


def test_a_present_account_is_kept_from_cron_and_its_table_removed(tmp_path, cron_dir):
    """A claw's code must not schedule itself outside its launchd job (it would run while the gateway is stopped
    for a backup or a migration): listed in cron.deny, and a table it made before the farm denied cron is removed."""
    import os

    (cron_dir / "cron.deny").write_text("# the operator's\nclaw-00000000\n")
    table = cron_dir / "tabs" / NAME
    table.write_text("* * * * * /Users/claw-1a2b3c4d/persist.sh\n")
    user = existing_user(tmp_path)
    result = user.present(user.read())
    assert result["changed"] and result["cron_changed"] == [CRON["deny"], str(table)]
    assert (cron_dir / "cron.deny").read_text() == f"# the operator's\nclaw-00000000\n{NAME}\n"
    st = os.stat(cron_dir / "cron.deny")
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o644) and not table.exists()
    again = user.present(user.read())
    assert not again["changed"] and again["cron_changed"] == []


def test_check_mode_reports_the_cron_change_and_makes_none(tmp_path, cron_dir):
    user = existing_user(tmp_path)
    user.module.check_mode = True
    result = user.present(user.read())
    assert result["changed"] and result["cron_changed"] == [CRON["deny"]] and not (cron_dir / "cron.deny").exists()


def test_an_absent_account_leaves_cron_deny_and_its_table_is_removed(cron_dir):
    (cron_dir / "cron.deny").write_text(f"claw-00000000\n{NAME}\n")
    (cron_dir / "tabs" / NAME).write_text("* * * * * true\n")
    module = FakeModule(params(state="absent"), {tuple(mu.cmd_read(NAME)): DSCL_NOT_FOUND})
    user = MacosUser(module, CommandRunner(module))
    result = user.absent(user.read())
    assert result["changed"] and (cron_dir / "cron.deny").read_text() == "claw-00000000\n"
    assert not (cron_dir / "tabs" / NAME).exists()
    assert user.absent(user.read())["changed"] is False


def test_a_link_as_cron_deny_is_refused_and_never_written_through(tmp_path, cron_dir):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (cron_dir / "cron.deny").symlink_to(victim)
    user = existing_user(tmp_path)
    with pytest.raises(mu.UserSafetyError, match="a link is refused"):
        user.present(user.read())
    assert victim.read_text() == "keep\n"


def test_a_cron_directory_others_can_write_is_refused(tmp_path, cron_dir):
    cron_dir.chmod(0o777)
    user = existing_user(tmp_path)
    with pytest.raises(mu.UserSafetyError, match="must be a directory of root that others cannot write to"):
        user.present(user.read())


def test_deny_cron_false_leaves_cron_alone(tmp_path, cron_dir):
    user = existing_user(tmp_path, deny_cron=False)
    result = user.present(user.read())
    assert result["cron_changed"] == [] and not (cron_dir / "cron.deny").exists()


def test_a_mac_without_crons_directory_has_nothing_to_deny(tmp_path):
    user = existing_user(tmp_path, cron_deny_path=str(tmp_path / "no-cron" / "cron.deny"),
                         cron_tabs_dir=str(tmp_path / "no-cron" / "tabs"))
    result = user.present(user.read())
    assert result["cron_changed"] == [] and not result["changed"]
