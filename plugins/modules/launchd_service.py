#!/usr/bin/python
# Copyright (c) 2026 Mirascope
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: launchd_service
short_description: Manage one launchd job from data, with bootstrap/bootout domain targets
version_added: 0.1.0
description:
  - Renders a launchd.plist(5) from options (never from a hand-written file), writes it with
    C(plistlib) atomically (temporary file in the same directory, then rename), C(root:wheel 0644)
    for the system domain, and compares it semantically with the plist on disk.
  - Loads and unloads with C(launchctl bootstrap <domain> <plist>) and C(launchctl bootout <domain>/<label>);
    reads the job with C(launchctl print <domain>/<label>) (exit status 0 loaded, 113 not loaded).
  - C(bootout) sends SIGTERM (SIGKILL after C(ExitTimeOut)) and may return before the process is gone, with 0
    or, on current macOS, with C(36 Operation now in progress) (C(37 Operation already in progress) when a bootout
    is already under way). All three mean "stopping", and the module then polls C(print) until it answers 113, for at
    most O(wait_timeout) plus the job's C(ExitTimeOut), and fails with what to do when the job is still there.
  - Restarts gracefully. C(launchctl kill SIGTERM <domain>/<label>) lets the program shut down cleanly, launchd
    spawns it again (C(KeepAlive)), and the module waits for the new run (C(runs) grows, a new pid). A job that
    launchd does not spawn again by itself is started with C(launchctl kickstart) (without C(-k)); one whose
    process is still there C(ExitTimeOut) seconds after the SIGTERM gets C(launchctl kill SIGKILL), as launchd's
    own stop would. C(kickstart -k) is never used, because on macOS it kills the running instance with SIGKILL.
  - When the plist changes on a loaded job, boots it out, waits until C(print) answers 113
    (bootstrapping too early fails with C(5 Input/output error) or C(37)), then bootstraps it again.
  - Runs C(launchctl enable <domain>/<label>) before C(bootstrap), because the override database
    outlives the plist; O(enabled=false) runs C(launchctl disable) so a stopped job stays stopped
    across reboots.
  - Every other launchctl failure becomes a message naming the command, its exit status, the
    decoded error and how to fix it.
  - Unlike C(community.general.launchd), it writes the plist itself and uses domain targets, not the
    legacy C(load)/C(unload) verbs that exit 0 on failure.
  - Plists in C(/Library/LaunchDaemons) are world-readable; never put secrets in O(environment).
  - Follows launchctl(1), launchd.plist(5) and the collection's docs/macos-launchd.md.
author:
  - Mirascope platform team (@mirascope)
extends_documentation_fragment:
  - mirascope.clawfarm._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff is the plist on disk before and the desired plist after, as dictionaries.
  idempotent:
    support: full
    details: O(state=restarted) always restarts and reports a change.
options:
  label:
    description: The job's C(Label), unique in its domain, for example V(com.mirascope.claw.<claw_id>).
    type: str
    required: true
  program_arguments:
    description:
      - C(ProgramArguments). The first element must be an absolute path.
      - When omitted, the task manages the job defined by the plist already at O(plist_path) (start, stop,
        restart) and every other plist option is ignored.
    type: list
    elements: str
  user_name:
    description: C(UserName) the job runs as (system domain only).
    type: str
  group_name:
    description: C(GroupName) the job runs as; defaults to the user's primary group.
    type: str
  environment:
    description: C(EnvironmentVariables). Values must be strings. World-readable; no secrets.
    type: dict
  working_directory:
    description: C(WorkingDirectory).
    type: path
  keep_alive:
    description: C(KeepAlive); V(true) restarts the job whenever it exits.
    type: bool
  run_at_load:
    description: C(RunAtLoad).
    type: bool
  throttle_interval:
    description: C(ThrottleInterval), minimum seconds between spawns (launchd default 10).
    type: int
  exit_timeout:
    description:
      - C(ExitTimeOut), seconds between SIGTERM and SIGKILL when the job is stopped (launchd default 20).
      - Also how long a graceful restart waits for the old process after its SIGTERM before it sends SIGKILL.
    type: int
  start_interval:
    description:
      - C(StartInterval), run the job every this many seconds (counted from its load). launchd skips a run while
        the previous one is still running. Together with O(run_at_load=true) the job also runs at load and boot.
    type: int
  standard_out_path:
    description: C(StandardOutPath); created by launchd as the job's user.
    type: path
  standard_error_path:
    description: C(StandardErrorPath).
    type: path
  standard_in_path:
    description: C(StandardInPath).
    type: path
  soft_resource_limits:
    description: C(SoftResourceLimits) (keys C(Core), C(CPU), C(Data), C(FileSize), C(MemoryLock),
      C(NumberOfFiles), C(NumberOfProcesses), C(ResidentSetSize), C(Stack)). In a daemon C(NumberOfFiles)
      and C(NumberOfProcesses) also change system-wide sysctls.
    type: dict
  hard_resource_limits:
    description: C(HardResourceLimits), same keys as O(soft_resource_limits).
    type: dict
  umask:
    description: C(Umask) as an octal string such as V("0077"); written as its decimal value (63).
    type: str
  process_type:
    description: C(ProcessType).
    type: str
    choices: [Background, Standard, Adaptive, Interactive]
  abandon_process_group:
    description: C(AbandonProcessGroup).
    type: bool
  domain:
    description: Domain target. V(system) for LaunchDaemons; C(gui/<uid>) exists only during a GUI login.
    type: str
    default: system
  plist_path:
    description: Where the plist lives. Defaults to C(/Library/LaunchDaemons/<label>.plist).
    type: path
  state:
    description:
      - V(running) writes the plist, loads the job and waits until it runs.
      - V(stopped) writes the plist and boots the job out (the plist stays).
      - V(restarted) is V(running) plus a graceful restart when nothing else restarted it (C(launchctl kill SIGTERM),
        then wait for launchd to spawn it again, with C(kickstart) without C(-k) when it does not), then wait until it runs.
      - V(loaded) writes the plist and loads the job (C(bootstrap)) without waiting for it or starting it again,
        for one-shot jobs (O(run_at_load=true), no O(keep_alive)) that run at load and at every boot and then exit.
        A loaded job that has exited is left as it is.
      - V(absent) boots the job out and deletes the plist.
    type: str
    choices: [running, stopped, restarted, loaded, absent]
    default: running
  enabled:
    description: Whether the job is enabled in launchd's override database. V(false) keeps it from loading at boot.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for C(state = running) after a start. V(0) does not wait for it.
      - A bootout, and the new run of a restart, are waited for this long plus the job's C(ExitTimeOut) (and, for a
        restart, its C(ThrottleInterval)), at least 1 s.
    type: int
    default: 30
notes:
  - Needs root (C(become=true)) for the system domain.
seealso:
  - module: community.general.launchd
  - name: launchctl(1)
    description: Interfaces with launchd.
    link: https://keith.github.io/xcode-man-pages/launchctl.1.html
  - name: launchd.plist(5)
    description: System wide and per-user daemon/agent configuration files.
    link: https://keith.github.io/xcode-man-pages/launchd.plist.5.html
"""

EXAMPLES = r"""
- name: Run a claw's gateway as its own user
  mirascope.clawfarm.launchd_service:
    label: com.mirascope.claw.1a2b3c4d-0000-4000-8000-000000000001
    program_arguments: [/opt/openclaw/2026.9.6/bin/node, /opt/openclaw/2026.9.6/lib/node_modules/openclaw/openclaw.mjs, gateway, run]
    user_name: claw-1a2b3c4d
    environment:
      HOME: /Users/claw-1a2b3c4d
      OPENCLAW_STATE_DIR: /Users/claw-1a2b3c4d/.openclaw
    working_directory: /Users/claw-1a2b3c4d
    keep_alive: true
    run_at_load: true
    standard_out_path: /Library/Logs/mirascope/claws/claw-1a2b3c4d/launchd.out.log
    standard_error_path: /Library/Logs/mirascope/claws/claw-1a2b3c4d/launchd.err.log
    umask: "0077"
    wait_timeout: 60
  become: true

- name: A one-shot job that runs now and at every boot (loaded once; a second run changes nothing)
  mirascope.clawfarm.launchd_service:
    label: com.mirascope.openclaw-tmp
    program_arguments: [/opt/mirascope/bin/openclaw-tmp-dirs]
    run_at_load: true
    standard_out_path: /var/log/mirascope/com.mirascope.openclaw-tmp.log
    standard_error_path: /var/log/mirascope/com.mirascope.openclaw-tmp.log
    state: loaded
  become: true

- name: Stop it and keep it stopped across reboots
  mirascope.clawfarm.launchd_service:
    label: com.mirascope.claw.1a2b3c4d-0000-4000-8000-000000000001
    state: stopped
    enabled: false
  become: true

- name: Remove it
  mirascope.clawfarm.launchd_service:
    label: com.mirascope.claw.1a2b3c4d-0000-4000-8000-000000000001
    state: absent
  become: true
"""

RETURN = r"""
label:
  description: The job's label.
  returned: always
  type: str
plist_path:
  description: Path of the plist.
  returned: always
  type: str
plist_changed:
  description: Whether the plist on disk was (or in check mode would be) rewritten.
  returned: always
  type: bool
state:
  description: C(state) from C(launchctl print) after the task (for example V(running), V(not running)), or V(not loaded).
  returned: always
  type: str
pid:
  description: Process id of the running job, or null.
  returned: always
  type: int
last_exit_code:
  description: The job's last exit status (null if it never exited). V(78) is EX_CONFIG.
  returned: always
  type: int
runs:
  description: How many times launchd has spawned the job since it was loaded.
  returned: always
  type: int
actions:
  description:
    - launchctl verbs the task used, in order (for example V([write, enable, bootstrap])).
    - A graceful restart shows V(kill SIGTERM) (then V(kickstart) or V(kill SIGKILL) when they were needed).
  returned: always
  type: list
  elements: str
"""

import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _launchd as ld
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandRunner

POLL_SECONDS = 0.25


class LaunchdService:
    """Applies one launchd_service task; launchctl runs only through ``self.runner``."""

    def __init__(self, module, runner: CommandRunner, sleep=time.sleep, clock=time.monotonic):
        self.module = module
        self.runner = runner
        self.sleep = sleep
        self.clock = clock
        p = module.params
        self.p = p
        self.label = p["label"]
        self.domain = p["domain"]
        self.target = ld.service_target(self.domain, self.label)
        self.plist_path = p["plist_path"] or f"/Library/LaunchDaemons/{self.label}.plist"
        self.actions = []
        self.job_plist = None  # the plist the job runs with (desired, or the one on disk)

    def seconds(self, option: str, key: str, default: int) -> int:
        """A timing of the job: the task's option, else the plist's key, else launchd's default."""
        if self.p.get(option) is not None:
            return self.p[option]
        return ld.plist_seconds(self.job_plist, key, default)

    def fail(self, msg: str, **extra):
        self.module.fail_json(msg=msg, label=self.label, actions=self.actions, commands=self.runner.history, **extra)

    # -- launchctl ----------------------------------------------------------
    def print_job(self):
        """``parse_print`` dict when loaded, None when launchctl answers 113."""
        result = self.runner.run(ld.cmd_print(self.target))
        if result.rc == ld.NOT_LOADED:
            return None
        if result.rc != 0:
            self.fail(f"`launchctl print {self.target}` failed: {ld.explain(result.rc)}: {result.text.strip()}")
        return ld.parse_print(result.stdout)

    def launchctl(self, action: str, argv: list, ok=(0,)):
        self.actions.append(action)
        result = self.runner.run(argv)
        if result.rc not in ok:
            self.fail(f"`{' '.join(argv)}` failed with {ld.explain(result.rc)}: {result.text.strip()}", rc=result.rc)
        return result

    def wait_until_gone(self, rc: int):
        """Poll ``print`` until the job is gone (113), bounded by wait_timeout + ExitTimeOut."""
        exit_timeout = self.seconds("exit_timeout", "ExitTimeOut", ld.DEFAULT_EXIT_TIMEOUT)
        budget = max(self.p["wait_timeout"], 1) + exit_timeout
        deadline = self.clock() + budget
        while True:
            info = self.print_job()
            if info is None:
                return
            if self.clock() > deadline:
                self.fail(f"{self.target} is still loaded {budget} s after `launchctl bootout {self.target}` "
                          f"(exit {rc}: stopping): state={info.get('state')}, pid={info.get('pid')}. launchd sends "
                          f"SIGTERM, then SIGKILL after ExitTimeOut={exit_timeout} s; a process that outlives both is "
                          f"stuck (for example in uninterruptible I/O). Check `sudo launchctl print {self.target}`; if the "
                          f"pid is still there, end it with `sudo kill -KILL <pid>` and run the task again",
                          state=info.get("state"), pid=info.get("pid"))
            self.sleep(POLL_SECONDS)

    def bootout(self):
        # 0: accepted; 36/37 (current macOS): accepted and still stopping; 3/113: not loaded. Then wait for 113.
        result = self.launchctl("bootout", ld.cmd_bootout(self.target),
                                ok=(0, ld.NO_SUCH_PROCESS, ld.NOT_LOADED) + ld.STOPPING)
        self.wait_until_gone(result.rc)

    def restart_gracefully(self, info: dict) -> dict:
        """SIGTERM the running job and wait for launchd's next run of it; start a job that is not running.

        ``kickstart -k`` is not used: macOS kills the running instance with SIGKILL, so the program
        gets no chance to shut down cleanly. Returns the ``print`` of the new run.
        """
        if not ld.is_running(info):
            self.launchctl("kickstart", ld.cmd_kickstart(self.target), ok=(0,) + ld.STOPPING)
            return info
        old_pid, old_runs = info["pid"], info.get("runs")
        exit_timeout = self.seconds("exit_timeout", "ExitTimeOut", ld.DEFAULT_EXIT_TIMEOUT)
        throttle = self.seconds("throttle_interval", "ThrottleInterval", ld.DEFAULT_THROTTLE)
        self.launchctl("kill SIGTERM", ld.cmd_kill("SIGTERM", self.target), ok=(0, ld.NO_SUCH_PROCESS))
        kill_at = self.clock() + exit_timeout
        budget = exit_timeout + throttle + max(self.p["wait_timeout"], 1)
        deadline = self.clock() + budget
        killed = kickstarted = False
        while True:
            self.sleep(POLL_SECONDS)
            info = self.print_job()
            if info is None:
                self.fail(f"{self.target} was booted out while it restarted (another task or person stopped it); "
                          f"start it again with state=running")
            if ld.is_new_run(info, old_pid, old_runs):
                return info
            if info.get("pid") is None:
                if not kickstarted and info.get("state") not in ("spawn scheduled", "spawning", "xpcproxy"):
                    # The old process is gone and launchd will not spawn it again by itself (no KeepAlive for an
                    # exit 0): start it, without -k.
                    self.launchctl("kickstart", ld.cmd_kickstart(self.target), ok=(0,) + ld.STOPPING)
                    kickstarted = True
            elif not killed and self.clock() > kill_at:
                # Still there ExitTimeOut after the SIGTERM: what launchd's own stop would do.
                self.launchctl("kill SIGKILL", ld.cmd_kill("SIGKILL", self.target), ok=(0, ld.NO_SUCH_PROCESS))
                killed = True
            if self.clock() > deadline:
                if info.get("pid") == old_pid:
                    what = (f"process {old_pid} is still there after SIGTERM" + (" and SIGKILL" if killed else "")
                            + f"; check `ps -p {old_pid}` and `sudo launchctl print {self.target}`")
                else:
                    what = (f"launchd did not spawn it again (state={info.get('state')}); read the job's "
                            f"standard_error_path log and `sudo launchctl print {self.target}`, then start it with "
                            f"`sudo launchctl kickstart {self.target}`")
                self.fail(f"{self.target} did not restart within {budget} s of `launchctl kill SIGTERM`: {what}",
                          state=info.get("state"), pid=info.get("pid"))

    def bootstrap(self):
        # A previous bootout may still be tearing down (rc 5/36/37): retry until the deadline.
        deadline = self.clock() + max(self.p["wait_timeout"], 5)
        self.actions.append("bootstrap")
        while True:
            result = self.runner.run(ld.cmd_bootstrap(self.domain, self.plist_path))
            if result.rc == 0:
                return
            if result.rc in (5, 17, 36, 37) and self.print_job() is not None:
                return  # loaded after all
            if result.rc not in (5, 36, 37) or self.clock() > deadline:
                self.fail(f"`launchctl bootstrap {self.domain} {self.plist_path}` failed with "
                          f"{ld.explain(result.rc)}: {result.text.strip()}", rc=result.rc)
            self.sleep(POLL_SECONDS * 2)

    def is_disabled(self) -> bool:
        result = self.runner.run(ld.cmd_print_disabled(self.domain))
        return ld.parse_print_disabled(result.stdout).get(self.label, False)

    def wait_running(self):
        info = self.print_job()
        deadline = self.clock() + self.p["wait_timeout"]
        while self.p["wait_timeout"] > 0 and not (info and ld.is_running(info)):
            if self.clock() > deadline:
                code = info and info.get("last_exit_code")
                hint = " (exit 78 is EX_CONFIG: the program rejected its configuration)" if code == ld.EXIT_CONFIG else ""
                self.fail(f"{self.target} did not reach state 'running' within {self.p['wait_timeout']} s: "
                          f"state={info and info.get('state')}, last exit code={code}{hint}. "
                          f"Read the job's standard_error_path log",
                          last_exit_code=code, state=info and info.get("state"))
            self.sleep(POLL_SECONDS)
            info = self.print_job()
        return info

    # -- plist --------------------------------------------------------------
    def current_plist(self):
        try:
            with open(self.plist_path, "rb") as handle:
                return ld.read_plist_bytes(handle.read())
        except FileNotFoundError:
            return None

    def plist_mode_wrong(self) -> bool:
        try:
            st = os.stat(self.plist_path)
        except FileNotFoundError:
            return False
        return self.domain == "system" and (st.st_uid != 0 or st.st_gid != 0 or (st.st_mode & 0o777) != 0o644)

    def write_plist(self, plist: dict):
        self.actions.append("write")
        directory = os.path.dirname(self.plist_path)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.label}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(ld.dump_plist(plist))
                handle.flush()
                os.fsync(handle.fileno())
            if self.domain == "system":
                os.chown(tmp, 0, 0)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.plist_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    # -- states -------------------------------------------------------------
    def run(self) -> dict:
        state = self.p["state"]
        before = self.current_plist()
        info = self.print_job()
        self.job_plist = before
        if state == "absent":
            changed = info is not None or before is not None or os.path.exists(self.plist_path)
            if changed and not self.module.check_mode:
                if info is not None:
                    self.bootout()
                if os.path.exists(self.plist_path):
                    self.actions.append("delete")
                    os.unlink(self.plist_path)
            return self.result(changed, False, before, None, None)

        if not self.p["program_arguments"]:
            # No job definition given: manage the job of the plist already on disk.
            if before is None:
                self.fail(f"no readable plist at {self.plist_path}: give program_arguments to create the job")
            desired = before
        else:
            try:
                desired = ld.build_plist(self.p)
            except ld.LaunchdError as exc:
                self.fail(str(exc))
        self.job_plist = desired
        plist_changed = before != desired or self.plist_mode_wrong()
        loaded_elsewhere = info is not None and info.get("path") not in (None, self.plist_path)
        disabled = self.is_disabled()
        want_enabled = self.p["enabled"]
        check = self.module.check_mode

        changed = plist_changed or (disabled == want_enabled)
        if state in ("running", "restarted"):
            changed = changed or info is None or not ld.is_running(info) or state == "restarted"
        elif state == "loaded":
            changed = changed or info is None or loaded_elsewhere
        else:  # stopped
            changed = changed or info is not None
        if check or not changed:
            return self.result(changed, plist_changed, before, desired, info)

        if plist_changed:
            self.write_plist(desired)
        if want_enabled and disabled:
            self.launchctl("enable", ld.cmd_enable(self.target))
        if state == "stopped":
            if not want_enabled and not disabled:
                self.launchctl("disable", ld.cmd_disable(self.target))
            if info is not None:
                self.bootout()
            return self.result(True, plist_changed, before, desired, None)

        restarted = False
        if info is not None and (plist_changed or loaded_elsewhere):
            self.bootout()  # launchd keeps its in-memory copy: reload to apply the new plist
            info = None
        if info is None:
            self.bootstrap()
            restarted = True
            info = self.print_job()
        if state == "restarted" and not restarted:
            info = self.restart_gracefully(info)
        elif info is not None and not ld.is_running(info) and state == "running" and not restarted:
            self.launchctl("kickstart", ld.cmd_kickstart(self.target))
        if not want_enabled and not disabled:
            self.launchctl("disable", ld.cmd_disable(self.target))
        info = info if state == "loaded" else self.wait_running()
        return self.result(True, plist_changed, before, desired, info)

    def result(self, changed, plist_changed, before, after, info) -> dict:
        info = info or {}
        out = {
            "changed": changed,
            "label": self.label,
            "plist_path": self.plist_path,
            "plist_changed": plist_changed,
            "state": info.get("state") or "not loaded",
            "pid": info.get("pid"),
            "last_exit_code": info.get("last_exit_code"),
            "runs": info.get("runs"),
            "actions": self.actions,
            "commands": self.runner.history,
        }
        if self.module._diff:
            out["diff"] = {"before": before or {}, "after": after or {},
                           "before_header": self.plist_path, "after_header": self.plist_path}
        return out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            label=dict(type="str", required=True),
            program_arguments=dict(type="list", elements="str"),
            user_name=dict(type="str"),
            group_name=dict(type="str"),
            environment=dict(type="dict"),
            working_directory=dict(type="path"),
            keep_alive=dict(type="bool"),
            run_at_load=dict(type="bool"),
            throttle_interval=dict(type="int"),
            exit_timeout=dict(type="int"),
            standard_out_path=dict(type="path"),
            standard_error_path=dict(type="path"),
            standard_in_path=dict(type="path"),
            soft_resource_limits=dict(type="dict"),
            hard_resource_limits=dict(type="dict"),
            umask=dict(type="str"),
            process_type=dict(type="str", choices=list(ld.PROCESS_TYPES)),
            abandon_process_group=dict(type="bool"),
            start_interval=dict(type="int"),
            domain=dict(type="str", default="system"),
            plist_path=dict(type="path"),
            state=dict(type="str", default="running", choices=["running", "stopped", "restarted", "loaded", "absent"]),
            enabled=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    try:
        ld.validate_label(module.params["label"])
        ld.validate_domain(module.params["domain"])
        if module.params["umask"] is not None:
            int(module.params["umask"], 8)
    except ld.LaunchdError as exc:
        module.fail_json(msg=str(exc))
    except ValueError:
        module.fail_json(msg=f"umask {module.params['umask']!r} is not an octal string such as '0077'")
    service = LaunchdService(module, CommandRunner(module))
    module.exit_json(**service.run())


if __name__ == "__main__":
    main()
