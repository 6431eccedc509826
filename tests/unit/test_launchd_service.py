"""launchd_service: plist rendering, `launchctl print` parsing (reference 2.4 samples), exact command sequences."""
from __future__ import annotations

import plistlib

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _launchd as ld
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandRunner
from ansible_collections.mirascope.clawfarm.plugins.modules.launchd_service import LaunchdService
from conftest import Failed, FakeModule

LABEL = "com.mirascope.claw.1a2b3c4d-0000-4000-8000-000000000001"
TARGET = f"system/{LABEL}"

PRINT_RUNNING = f"""system/{LABEL} = {{
\tactive count = 1
\tpath = /Library/LaunchDaemons/{LABEL}.plist
\ttype = LaunchDaemon
\tstate = running

\tprogram = /opt/openclaw/2026.9.6/bin/node
\tendpoints = {{
\t\t"com.example" = {{
\t\t\tstate = active
\t\t}}
\t}}
\tdomain = system
\tusername = claw-1a2b3c4d
\tminimum runtime = 10
\texit timeout = 30
\truns = 3
\tpid = 51234
\tlast exit code = 78: EX_CONFIG
\tproperties = keepalive | runatload | inferred program
}}
"""
PRINT_NOT_FOUND = (113, "", f'Bad request.\nCould not find service "{LABEL}" in domain for system\n')
PRINT_DISABLED_NEW = 'disabled services = {\n\t"com.apple.ftpd" => disabled\n\t"%s" => enabled\n}\n' % LABEL
PRINT_DISABLED_OLD = 'disabled services = {\n\t"com.apple.ftpd" => true\n\t"%s" => false\n}\n' % LABEL


def test_parse_print_reads_only_top_level_lines():
    info = ld.parse_print(PRINT_RUNNING)
    assert info["state"] == "running" and info["pid"] == 51234 and info["runs"] == 3
    assert info["last_exit_code"] == 78 and info["last_exit_reason"] == "EX_CONFIG"
    assert info["path"] == f"/Library/LaunchDaemons/{LABEL}.plist"


def test_parse_print_never_exited_and_signal():
    text = "system/x = {\n\tstate = not running\n\truns = 1\n\tlast terminating signal = Killed: 9\n}\n"
    info = ld.parse_print(text)
    assert info["pid"] is None and info["last_exit_code"] is None and info["last_exit_reason"] == "Killed: 9"
    assert ld.parse_print("x = {\n\tlast exit code = (never exited)\n}\n")["last_exit_code"] is None


@pytest.mark.parametrize("text", [PRINT_DISABLED_NEW, PRINT_DISABLED_OLD])
def test_parse_print_disabled_both_formats(text):
    assert ld.parse_print_disabled(text) == {"com.apple.ftpd": True, LABEL: False}


def test_build_plist_umask_is_decimal_and_unset_keys_are_left_out():
    plist = ld.build_plist({"label": LABEL, "program_arguments": ["/bin/node", "x"], "umask": "0077",
                            "keep_alive": True, "environment": {"HOME": "/Users/x"}})
    assert plist == {"Label": LABEL, "ProgramArguments": ["/bin/node", "x"], "KeepAlive": True, "Umask": 63,
                     "EnvironmentVariables": {"HOME": "/Users/x"}}


@pytest.mark.parametrize("bad,message", [
    ({"program_arguments": ["node"]}, "absolute path"),
    ({"program_arguments": ["/bin/x"], "environment": {"N": 1}}, "must be strings"),
    ({"program_arguments": ["/bin/x"], "soft_resource_limits": {"Memory": 1}}, "keys must be among"),
])
def test_build_plist_refuses_bad_input(bad, message):
    with pytest.raises(ld.LaunchdError, match=message):
        ld.build_plist(dict({"label": LABEL}, **bad))


@pytest.mark.parametrize("label", ["", "../x", "a b", "-x", "x" * 300, "$(reboot)"])
def test_bad_labels(label):
    with pytest.raises(ld.LaunchdError):
        ld.validate_label(label)


def test_explain_names_the_fix():
    assert "0644" in ld.explain(122) and "enable" in ld.explain(119) and "launchctl error 999" in ld.explain(999)


def params(tmp_path, **overrides):
    base = dict(label=LABEL, program_arguments=["/opt/openclaw/bin/node", "gateway"], user_name="claw-1a2b3c4d",
                group_name=None, environment={"HOME": "/Users/claw-1a2b3c4d"}, working_directory=None,
                keep_alive=True, run_at_load=True, throttle_interval=None, exit_timeout=None,
                standard_out_path=None, standard_error_path=None, standard_in_path=None,
                soft_resource_limits=None, hard_resource_limits=None, umask="0077", process_type=None,
                abandon_process_group=None, domain="system", plist_path=str(tmp_path / f"{LABEL}.plist"),
                state="running", enabled=True, wait_timeout=5)
    base.update(overrides)
    return base


def service(module):
    clock = iter(range(0, 10_000))
    return LaunchdService(module, CommandRunner(module), sleep=lambda s: None, clock=lambda: next(clock) * 0.1)


def test_new_job_is_written_enabled_and_bootstrapped(tmp_path, monkeypatch):
    monkeypatch.setattr("os.chown", lambda *a: None)
    p = params(tmp_path)
    module = FakeModule(p, {
        ("/bin/launchctl", "print", TARGET): [PRINT_NOT_FOUND, PRINT_NOT_FOUND, (0, PRINT_RUNNING, "")],
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW.replace("enabled", "disabled"), ""),
    })
    result = service(module).run()
    assert module.calls == [
        ["/bin/launchctl", "print", TARGET],
        ["/bin/launchctl", "print-disabled", "system"],
        ["/bin/launchctl", "enable", TARGET],
        ["/bin/launchctl", "bootstrap", "system", p["plist_path"]],
        ["/bin/launchctl", "print", TARGET],
        ["/bin/launchctl", "print", TARGET],
    ]
    assert result["changed"] and result["plist_changed"] and result["pid"] == 51234
    written = plistlib.loads((tmp_path / f"{LABEL}.plist").read_bytes())
    assert written["Umask"] == 63 and written["UserName"] == "claw-1a2b3c4d"
    assert oct((tmp_path / f"{LABEL}.plist").stat().st_mode & 0o777) == "0o644"
    assert result["diff"]["before"] == {} and result["diff"]["after"]["Label"] == LABEL


def test_changed_plist_on_loaded_job_boots_out_waits_and_bootstraps(tmp_path, monkeypatch):
    monkeypatch.setattr("os.chown", lambda *a: None)
    p = params(tmp_path)
    old = ld.build_plist(dict(p, environment={"HOME": "/old"}))
    (tmp_path / f"{LABEL}.plist").write_bytes(ld.dump_plist(old))
    (tmp_path / f"{LABEL}.plist").chmod(0o644)
    module = FakeModule(p, {
        # loaded; still loaded right after bootout (asynchronous); gone; then running again
        ("/bin/launchctl", "print", TARGET): [(0, PRINT_RUNNING.replace(f"/Library/LaunchDaemons/{LABEL}.plist", p["plist_path"]), ""),
                                              (0, PRINT_RUNNING, ""), PRINT_NOT_FOUND, (0, PRINT_RUNNING, "")],
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, ""),
    })
    result = service(module).run()
    verbs = [c[1] for c in module.calls]
    assert verbs == ["print", "print-disabled", "bootout", "print", "print", "bootstrap", "print", "print"]
    assert result["actions"] == ["write", "bootout", "bootstrap"]
    assert result["diff"]["before"]["EnvironmentVariables"] == {"HOME": "/old"}


def test_unchanged_running_job_is_ok_and_runs_no_verbs(tmp_path):
    p = params(tmp_path)
    path = tmp_path / f"{LABEL}.plist"
    path.write_bytes(ld.dump_plist(ld.build_plist(p)))
    path.chmod(0o644)
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root to own the plist as root")
    module = FakeModule(p, {
        ("/bin/launchctl", "print", TARGET): (0, PRINT_RUNNING.replace(f"/Library/LaunchDaemons/{LABEL}.plist", p["plist_path"]), ""),
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, ""),
    })
    result = service(module).run()
    assert result["changed"] is False and [c[1] for c in module.calls] == ["print", "print-disabled"]


def test_check_mode_writes_nothing(tmp_path):
    p = params(tmp_path)
    module = FakeModule(p, {("/bin/launchctl", "print", TARGET): PRINT_NOT_FOUND,
                            ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, "")}, check_mode=True)
    result = service(module).run()
    assert result["changed"] and not (tmp_path / f"{LABEL}.plist").exists()
    assert [c[1] for c in module.calls] == ["print", "print-disabled"]


def existing_job(tmp_path, monkeypatch, **overrides):
    """Params for a task on the job whose plist is already on disk (root-owned 0644 as far as the module sees)."""
    p = params(tmp_path, program_arguments=None, **overrides)
    path = tmp_path / f"{LABEL}.plist"
    path.write_bytes(ld.dump_plist(ld.build_plist(params(tmp_path, exit_timeout=30, throttle_interval=10))))
    monkeypatch.setattr(LaunchdService, "plist_mode_wrong", lambda self: False)
    return p


def printed(pid=None, runs=3, state=None, last="0", path=None):
    """``launchctl print`` of the job: running with ``pid``, or without a pid in ``state``."""
    text = PRINT_RUNNING.replace("\truns = 3", f"\truns = {runs}").replace("78: EX_CONFIG", last)
    if path:
        text = text.replace(f"/Library/LaunchDaemons/{LABEL}.plist", path)
    if pid is None:
        return text.replace("\tstate = running", f"\tstate = {state or 'not running'}").replace("\tpid = 51234\n", "")
    text = text.replace("\tpid = 51234", f"\tpid = {pid}")
    return text.replace("\tstate = running", f"\tstate = {state}") if state else text


KILL_TERM = ["/bin/launchctl", "kill", "SIGTERM", TARGET]
KILL_KILL = ["/bin/launchctl", "kill", "SIGKILL", TARGET]
KICKSTART = ["/bin/launchctl", "kickstart", TARGET]


def test_restarted_sends_sigterm_and_waits_for_a_new_pid(tmp_path, monkeypatch):
    """Graceful restart: kill TERM (the program shuts down cleanly), KeepAlive brings it back, wait for the new pid."""
    p = existing_job(tmp_path, monkeypatch, state="restarted")
    here = p["plist_path"]
    module = FakeModule(p, {
        ("/bin/launchctl", "print", TARGET): [
            (0, printed(51234, path=here), ""),                           # before: running
            (0, printed(51234, state="SIGTERMed", path=here), ""),        # shutting down
            (0, printed(None, state="spawn scheduled", path=here), ""),   # exited 0, KeepAlive respawn pending
            (0, printed(51300, runs=4, path=here), ""),                   # the new run
            (0, printed(51300, runs=4, path=here), ""),                   # wait_running
        ],
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, ""),
    })
    result = service(module).run()
    assert module.calls == [
        ["/bin/launchctl", "print", TARGET],
        ["/bin/launchctl", "print-disabled", "system"],
        KILL_TERM,
        ["/bin/launchctl", "print", TARGET],
        ["/bin/launchctl", "print", TARGET],
        ["/bin/launchctl", "print", TARGET],
        ["/bin/launchctl", "print", TARGET],
    ]
    assert result["changed"] and result["actions"] == ["kill SIGTERM"]
    assert result["pid"] == 51300 and result["runs"] == 4 and result["last_exit_code"] == 0
    assert not any("-k" in c for c in module.calls)  # kickstart -k is a SIGKILL on macOS


def test_restarted_job_that_is_not_running_is_kickstarted_without_k(tmp_path, monkeypatch):
    p = existing_job(tmp_path, monkeypatch, state="restarted")
    module = FakeModule(p, {
        ("/bin/launchctl", "print", TARGET): [(0, printed(None, state="spawn scheduled", path=p["plist_path"]), ""),
                                              (0, printed(51300, runs=4, path=p["plist_path"]), "")],
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, ""),
    })
    result = service(module).run()
    assert module.calls[2:] == [KICKSTART, ["/bin/launchctl", "print", TARGET]]
    assert result["actions"] == ["kickstart"] and result["pid"] == 51300


def test_restart_starts_a_job_launchd_does_not_spawn_again(tmp_path, monkeypatch):
    """No KeepAlive for an exit 0: the old process is gone and the job stays 'not running', so kickstart (no -k)."""
    p = existing_job(tmp_path, monkeypatch, state="restarted")
    here = p["plist_path"]
    module = FakeModule(p, {
        ("/bin/launchctl", "print", TARGET): [(0, printed(51234, path=here), ""), (0, printed(None, path=here), ""),
                                              (0, printed(51300, runs=4, path=here), "")],
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, ""),
    })
    result = service(module).run()
    assert module.calls[2:] == [KILL_TERM, ["/bin/launchctl", "print", TARGET], KICKSTART,
                                ["/bin/launchctl", "print", TARGET], ["/bin/launchctl", "print", TARGET]]
    assert result["actions"] == ["kill SIGTERM", "kickstart"]


def test_restart_sends_sigkill_when_the_process_outlives_exit_timeout(tmp_path, monkeypatch):
    p = existing_job(tmp_path, monkeypatch, state="restarted")
    here = p["plist_path"]
    still = (0, printed(51234, state="SIGTERMed", path=here), "")
    answers = [(0, printed(51234, path=here), "")] + [still] * 180 + [(0, printed(51300, runs=4, path=here), "")]
    module = FakeModule(p, {("/bin/launchctl", "print", TARGET): answers,
                            ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, "")})
    result = service(module).run()
    verbs = [c for c in module.calls if c[1] == "kill"]
    assert verbs == [KILL_TERM, KILL_KILL]
    assert result["actions"] == ["kill SIGTERM", "kill SIGKILL"] and result["pid"] == 51300
    # SIGKILL only after the plist's ExitTimeOut (30 s at 0.1 s per clock reading) of SIGTERMed polls
    assert module.calls.index(KILL_KILL) > 100


def test_restart_that_never_comes_back_fails_with_what_to_do(tmp_path, monkeypatch):
    p = existing_job(tmp_path, monkeypatch, state="restarted")
    here = p["plist_path"]
    module = FakeModule(p, {("/bin/launchctl", "print", TARGET): [(0, printed(51234, path=here), ""),
                                                                  (0, printed(None, state="spawn scheduled", path=here), "")],
                            ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, "")})
    with pytest.raises(Failed, match=r"did not restart within 45 s .*launchd did not spawn it again "
                                     r"\(state=spawn scheduled\).*kickstart system/"):
        service(module).run()
    assert KICKSTART not in module.calls  # a scheduled spawn is launchd's to make


def test_restart_sees_a_new_run_that_already_exited(tmp_path, monkeypatch):
    """A new run that exits at once (78, a config error) is still a new run: runs grew; wait_running reports it."""
    p = existing_job(tmp_path, monkeypatch, state="restarted", wait_timeout=1)
    here = p["plist_path"]
    module = FakeModule(p, {("/bin/launchctl", "print", TARGET): [
        (0, printed(51234, path=here), ""),
        (0, printed(None, runs=4, state="spawn scheduled", last="78: EX_CONFIG", path=here), "")],
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, "")})
    with pytest.raises(Failed, match=r"did not reach state 'running'.*last exit code=78.*EX_CONFIG"):
        service(module).run()
    assert [c for c in module.calls if c[1] in ("kill", "kickstart")] == [KILL_TERM]


@pytest.mark.parametrize("rc,text", [(36, "Boot-out failed: 36: Operation now in progress\n"),
                                     (37, "Boot-out failed: 37: Operation already in progress\n"),
                                     (0, "")])
def test_stop_bootout_in_progress_waits_until_print_answers_113(tmp_path, monkeypatch, rc, text):
    """Current macOS: bootout of a job that takes time to stop exits 36; it is stopping, not failing."""
    p = existing_job(tmp_path, monkeypatch, state="stopped")
    here = p["plist_path"]
    module = FakeModule(p, {
        ("/bin/launchctl", "print", TARGET): [(0, printed(51234, path=here), ""),
                                              (0, printed(51234, state="SIGTERMed", path=here), ""),
                                              (0, printed(51234, state="SIGTERMed", path=here), ""), PRINT_NOT_FOUND],
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, ""),
        ("/bin/launchctl", "bootout", TARGET): (rc, "", text),
    })
    result = service(module).run()
    assert module.calls == [
        ["/bin/launchctl", "print", TARGET],
        ["/bin/launchctl", "print-disabled", "system"],
        ["/bin/launchctl", "bootout", TARGET],
        ["/bin/launchctl", "print", TARGET],
        ["/bin/launchctl", "print", TARGET],
        ["/bin/launchctl", "print", TARGET],
    ]
    assert result["changed"] and result["state"] == "not loaded" and result["actions"] == ["bootout"]


def test_bootout_that_never_finishes_fails_with_what_to_do(tmp_path, monkeypatch):
    p = existing_job(tmp_path, monkeypatch, state="stopped", wait_timeout=5)
    module = FakeModule(p, {
        ("/bin/launchctl", "print", TARGET): (0, printed(51234, state="SIGKILLed", path=p["plist_path"]), ""),
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, ""),
        ("/bin/launchctl", "bootout", TARGET): (36, "", "Boot-out failed: 36: Operation now in progress\n"),
    })
    # 5 s wait_timeout + ExitTimeOut 30 from the plist on disk
    with pytest.raises(Failed, match=r"still loaded 35 s after `launchctl bootout .*` \(exit 36: stopping\): "
                                     r"state=SIGKILLed, pid=51234.*kill -KILL <pid>"):
        service(module).run()


def test_bootout_other_errors_still_fail(tmp_path, monkeypatch):
    p = existing_job(tmp_path, monkeypatch, state="stopped")
    module = FakeModule(p, {
        ("/bin/launchctl", "print", TARGET): (0, printed(51234, path=p["plist_path"]), ""),
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, ""),
        ("/bin/launchctl", "bootout", TARGET): (1, "", "Boot-out failed: 1: Operation not permitted\n"),
    })
    with pytest.raises(Failed, match=r"bootout .* failed with 1: Operation not permitted \(run the task with become"):
        service(module).run()


def test_start_interval_is_written_and_checked():
    plist = ld.build_plist({"label": LABEL, "program_arguments": ["/bin/sh", "/opt/x"], "run_at_load": True,
                            "start_interval": 3600})
    assert plist["StartInterval"] == 3600 and plist["RunAtLoad"] is True
    for bad in (0, -5, True):
        with pytest.raises(ld.LaunchdError, match="start_interval"):
            ld.build_plist({"label": LABEL, "program_arguments": ["/bin/sh"], "start_interval": bad})


def test_kill_sends_only_the_signals_the_module_uses():
    assert ld.cmd_kill("SIGTERM", TARGET) == KILL_TERM
    with pytest.raises(ld.LaunchdError):
        ld.cmd_kill("SIGHUP; reboot", TARGET)


def test_bootstrap_error_message_names_command_and_fix(tmp_path, monkeypatch):
    monkeypatch.setattr("os.chown", lambda *a: None)
    p = params(tmp_path)
    module = FakeModule(p, {
        ("/bin/launchctl", "print", TARGET): PRINT_NOT_FOUND,
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, ""),
        ("/bin/launchctl", "bootstrap", "system", p["plist_path"]): (122, "", "Bootstrap failed: 122: Path had bad ownership/permissions\n"),
    })
    with pytest.raises(Failed, match=r"launchctl bootstrap system .* failed with 122.*root:wheel"):
        service(module).run()


def test_absent_boots_out_and_deletes(tmp_path):
    p = params(tmp_path, state="absent")
    path = tmp_path / f"{LABEL}.plist"
    path.write_bytes(b"x")
    module = FakeModule(p, {("/bin/launchctl", "print", TARGET): [(0, PRINT_RUNNING, ""), PRINT_NOT_FOUND]})
    result = service(module).run()
    assert result["changed"] and not path.exists()
    assert ["/bin/launchctl", "bootout", TARGET] in module.calls


PRINT_EXITED = PRINT_RUNNING.replace("\tstate = running", "\tstate = not running").replace("\tpid = 51234\n", "") \
    .replace("78: EX_CONFIG", "0").replace("keepalive | runatload", "runatload")


def test_loaded_one_shot_job_is_bootstrapped_once_and_not_waited_for(tmp_path, monkeypatch):
    monkeypatch.setattr("os.chown", lambda *a: None)
    p = params(tmp_path, state="loaded", keep_alive=None, user_name=None, environment=None, umask=None)
    module = FakeModule(p, {
        ("/bin/launchctl", "print", TARGET): [PRINT_NOT_FOUND, (0, PRINT_EXITED, "")],
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, ""),
    })
    result = service(module).run()
    assert module.calls == [
        ["/bin/launchctl", "print", TARGET],
        ["/bin/launchctl", "print-disabled", "system"],
        ["/bin/launchctl", "bootstrap", "system", p["plist_path"]],
        ["/bin/launchctl", "print", TARGET],
    ]
    assert result["changed"] and result["state"] == "not running" and result["pid"] is None


def test_loaded_job_that_has_exited_is_left_alone(tmp_path):
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root to own the plist as root")
    p = params(tmp_path, state="loaded", keep_alive=None, user_name=None, environment=None, umask=None)
    path = tmp_path / f"{LABEL}.plist"
    path.write_bytes(ld.dump_plist(ld.build_plist(p)))
    os.chown(path, 0, 0)
    path.chmod(0o644)
    module = FakeModule(p, {
        ("/bin/launchctl", "print", TARGET): (0, PRINT_EXITED.replace(f"/Library/LaunchDaemons/{LABEL}.plist", p["plist_path"]), ""),
        ("/bin/launchctl", "print-disabled", "system"): (0, PRINT_DISABLED_NEW, ""),
    })
    result = service(module).run()
    assert result["changed"] is False and [c[1] for c in module.calls] == ["print", "print-disabled"]
