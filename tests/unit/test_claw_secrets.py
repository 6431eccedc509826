"""A claw's secrets go only to that claw: the .env reader, env edits, and the probe's listener check.

The attacks (issue 12): a tenant points its .env at a neighbour's (symlink, hard link), or listens on a stopped
neighbour's port to receive the neighbour's token from the root health probe.
"""
from __future__ import annotations

import os
import shutil
import socket
import threading

import pytest
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _claw
from ansible_collections.mirascope.clawfarm.plugins.module_utils import _gateway_probe as probe
from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandResult

TOKEN = "T" * 40
NEIGHBOUR_TOKEN = "N" * 40
LABEL = "com.mirascope.claw.1a2b3c4d-0000-4000-8000-000000000001"


# ---- .env reader -----------------------------------------------------------------------------------------------

def write_env(path, token, uid=None, **env):
    path.write_text(_claw.render_dotenv(dict(env, **{_claw.TOKEN_VAR: token})))
    os.chmod(path, 0o600)
    if uid is not None:
        os.chown(path, uid, -1)
    return path


def test_reads_the_claws_own_env(tmp_path):
    env_file = write_env(tmp_path / ".env", TOKEN, os.getuid(), A="1")
    assert _claw.read_token(str(env_file), os.getuid()) == TOKEN
    assert _claw.read_dotenv(str(env_file), os.getuid()) == {"A": "1", _claw.TOKEN_VAR: TOKEN}


def test_missing_env_is_none(tmp_path):
    assert _claw.read_token(str(tmp_path / ".env"), os.getuid()) is None


def test_symlink_to_a_neighbours_env_is_refused(tmp_path):
    neighbour = write_env(tmp_path / "neighbour.env", NEIGHBOUR_TOKEN, os.getuid())
    (tmp_path / ".env").symlink_to(neighbour)
    with pytest.raises(_claw.DotenvRefused, match="symbolic link") as info:
        _claw.read_token(str(tmp_path / ".env"), os.getuid())
    assert NEIGHBOUR_TOKEN not in str(info.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_hard_link_to_a_neighbours_env_is_refused(tmp_path):
    neighbour = write_env(tmp_path / "neighbour.env", NEIGHBOUR_TOKEN, 4242)
    os.link(neighbour, tmp_path / ".env")
    with pytest.raises(_claw.DotenvRefused, match="owned by uid 4242, not the claw's uid 600"):
        _claw.read_token(str(tmp_path / ".env"), 600)


def test_hard_link_even_to_an_own_file_is_refused(tmp_path):
    own = write_env(tmp_path / "other.env", TOKEN, os.getuid())
    os.link(own, tmp_path / ".env")
    with pytest.raises(_claw.DotenvRefused, match="2 hard links"):
        _claw.read_token(str(tmp_path / ".env"), os.getuid())


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_file_owned_by_another_uid_is_refused(tmp_path):
    env_file = write_env(tmp_path / ".env", NEIGHBOUR_TOKEN, 4242)
    with pytest.raises(_claw.DotenvRefused, match="not the claw's uid"):
        _claw.read_token(str(env_file), 600)


def test_unknown_user_trusts_no_file(tmp_path):
    env_file = write_env(tmp_path / ".env", TOKEN, os.getuid())
    with pytest.raises(_claw.DotenvRefused, match="not the claw's uid None"):
        _claw.read_token(str(env_file), None)


def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / ".env")
    with pytest.raises(_claw.DotenvRefused, match="not a regular file"):
        _claw.read_token(str(tmp_path / ".env"), os.getuid())


def test_huge_file_is_refused(tmp_path):
    env_file = tmp_path / ".env"
    with open(env_file, "wb") as handle:
        handle.truncate(_claw.MAX_DOTENV_BYTES + 1)
    with pytest.raises(_claw.DotenvRefused, match="bytes"):
        _claw.read_token(str(env_file), os.getuid())


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_state_dir_linked_to_a_neighbours_is_refused(tmp_path):
    """A link higher up (~/.openclaw -> the neighbour's state dir) reaches a file owned by the neighbour."""
    neighbour_dir = tmp_path / "neighbour"
    neighbour_dir.mkdir()
    write_env(neighbour_dir / ".env", NEIGHBOUR_TOKEN, 4242)
    (tmp_path / "state").symlink_to(neighbour_dir)
    with pytest.raises(_claw.DotenvRefused, match="uid 4242"):
        _claw.read_token(str(tmp_path / "state" / ".env"), 600)


# ---- env edits: settings change only when asked ---------------------------------------------------------------

CURRENT = {"ANTHROPIC_API_KEY": "sk-1", "PRIMARY_MODEL_ID": "m1", _claw.TOKEN_VAR: TOKEN}


def test_omitted_env_keeps_the_current_env():
    assert _claw.desired_env(CURRENT) == ({"ANTHROPIC_API_KEY": "sk-1", "PRIMARY_MODEL_ID": "m1"}, [])


def test_claw_env_replaces():
    assert _claw.desired_env(CURRENT, replace={"B": "2"}) == ({"B": "2"}, [])
    assert _claw.desired_env(CURRENT, replace={}) == ({}, [])


def test_set_and_unset_edit_single_keys():
    env, dropped = _claw.desired_env(CURRENT, set_={"PRIMARY_MODEL_ID": "m2", "NEW": 3}, unset=["ANTHROPIC_API_KEY", "ABSENT"])
    assert env == {"PRIMARY_MODEL_ID": "m2", "NEW": "3"} and dropped == []


def test_set_and_unset_apply_after_a_replace():
    assert _claw.desired_env(CURRENT, replace={"A": "1", "B": "2"}, set_={"C": "3"}, unset=["A"])[0] == {"B": "2", "C": "3"}


def test_hand_written_invalid_entries_are_dropped_and_named():
    env, dropped = _claw.desired_env({"PATH": "/evil", "OK": "1", "bad-name": "x"})
    assert env == {"OK": "1"} and dropped == ["PATH", "bad-name"]


@pytest.mark.parametrize("kwargs,message", [
    ({"set_": {"A": "1"}, "unset": ["A"]}, "both name A"),
    ({"unset": ["CLAW_GATEWAY_TOKEN"]}, "cannot be removed"),
    ({"unset": "A"}, "must be a list"),
    ({"unset": ["no-dash"]}, "not a valid"),
    ({"set_": {"HOME": "/x"}}, "cannot be overridden"),
    ({"set_": {"A": "x\ny"}}, "newline"),
])
def test_bad_edits(kwargs, message):
    with pytest.raises(_claw.ClawInputError, match=message) as info:
        _claw.desired_env(CURRENT, **kwargs)
    assert "x\ny" not in str(info.value)


# ---- lsof / ps parsing (real output of `lsof -nP -iTCP@127.0.0.1:56140 -FpRuLn`, `ps -A -o pid= -o ppid=`) -------

LSOF = "p27792\nR27784\nu601\nLclaw-0a1b2c3d\nn127.0.0.1:8102->127.0.0.1:56140\np28640\nR27784\nu0\nLroot\nn127.0.0.1:56140->127.0.0.1:8102\n"
PS = "    1     0\n  412     1\n27792   412\n28640 27784\n"


def test_command_lines():
    assert probe.cmd_lsof_connection("/usr/sbin/lsof", 56140) == ["/usr/sbin/lsof", "-nP", "-iTCP@127.0.0.1:56140", "-FpRuLn"]
    assert probe.cmd_ps_parents("/bin/ps") == ["/bin/ps", "-A", "-o", "pid=", "-o", "ppid="]


def test_parse_lsof_and_find_the_server_side():
    procs = probe.parse_lsof(LSOF)
    assert procs[0] == {"pid": 27792, "ppid": 27784, "uid": 601, "login": "claw-0a1b2c3d",
                        "names": ["127.0.0.1:8102->127.0.0.1:56140"]}
    assert probe.connection_holder(procs, 8102, 56140)["pid"] == 27792
    assert probe.connection_holder(procs, 8103, 56140) is None


def test_descendants():
    parents = probe.parse_ps_parents(PS)
    assert parents == {1: 0, 412: 1, 27792: 412, 28640: 27784}
    assert probe.descends_from(27792, 412, parents) and probe.descends_from(27792, 27792, parents)
    assert not probe.descends_from(412, 27792, parents)


def test_holder_problems():
    holder = probe.parse_lsof(LSOF)[0]
    assert probe.holder_problem(holder, 8102, LABEL, 601, 27792) is None
    assert probe.holder_problem(holder, 8102, LABEL, 601, 412, probe.parse_ps_parents(PS)) is None
    assert probe.holder_problem(holder, 8102, LABEL, 600, 27792) == \
        f"port 8102 held by pid 27792 of user claw-0a1b2c3d, not {LABEL}"
    assert "no running process" in probe.holder_problem(holder, 8102, LABEL, 601, None)
    assert "or one of its child processes" in probe.holder_problem(holder, 8102, LABEL, 601, 999, probe.parse_ps_parents(PS))


# ---- the probe never sends the token to a foreign listener (a real socket, real lsof) --------------------------

class Recorder:
    """A listener that records every byte it receives (the tenant's trap)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.sock.accept()
        conn.settimeout(5)
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                self.received += chunk
                if b"\r\n\r\n" in self.received:
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                                 b"\x81\x2a" + b'{"type":"event","event":"connect.challenge"}'[:42])
        except OSError:
            pass
        finally:
            conn.close()


class Runner:
    def __init__(self):
        self.history = []

    def __call__(self, argv):
        import subprocess

        self.history.append(argv)
        done = subprocess.run(argv, capture_output=True, text=True)
        return CommandResult(argv, done.returncode, done.stdout, done.stderr)


LSOF_BIN = shutil.which("lsof") or "/usr/sbin/lsof"


@pytest.mark.skipif(not os.path.exists(LSOF_BIN), reason="needs lsof")
def test_token_is_not_sent_to_a_listener_that_is_not_the_job():
    trap = Recorder()
    runner = Runner()
    check = probe.ListenerCheck(runner, LSOF_BIN, shutil.which("ps") or "/bin/ps", LABEL, os.getuid(), job_pid=None)
    outcome = probe.probe_gateway(trap.port, TOKEN, timeout=5, verify=check)
    trap.thread.join(10)
    assert outcome["result"] == probe.FOREIGN
    assert outcome["error"].startswith(f"port {trap.port} held by pid {os.getpid()} of user ")
    assert "the token was not sent" in outcome["error"] and TOKEN not in outcome["error"]
    assert trap.received == b"", "nothing at all is sent to a foreign listener"


@pytest.mark.skipif(not os.path.exists(LSOF_BIN), reason="needs lsof")
def test_wrong_uid_is_foreign_even_with_the_right_pid():
    trap = Recorder()
    check = probe.ListenerCheck(Runner(), LSOF_BIN, "/bin/ps", LABEL, os.getuid() + 1, job_pid=os.getpid())
    outcome = probe.probe_gateway(trap.port, TOKEN, timeout=5, verify=check)
    trap.thread.join(10)
    assert outcome["result"] == probe.FOREIGN and trap.received == b""


@pytest.mark.skipif(not os.path.exists(LSOF_BIN), reason="needs lsof")
def test_the_jobs_own_process_gets_the_handshake():
    """Here the test process is 'the job': the check passes and the WebSocket upgrade is sent."""
    trap = Recorder()
    check = probe.ListenerCheck(Runner(), LSOF_BIN, "/bin/ps", LABEL, os.getuid(), job_pid=os.getpid())
    probe.probe_gateway(trap.port, TOKEN, timeout=3, verify=check)
    trap.thread.join(10)
    assert trap.received.startswith(b"GET / HTTP/1.1")


def test_no_holder_seen_means_no_token():
    """lsof that never shows the accepted connection (a listener that never accepts): foreign, nothing sent."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    calls = []

    def empty(argv):
        calls.append(argv)
        return CommandResult(argv, 1, "", "")

    check = probe.ListenerCheck(empty, "/usr/sbin/lsof", "/bin/ps", LABEL, 601, 27792, attempts=3, pause=0)
    outcome = probe.probe_gateway(port, TOKEN, timeout=3, verify=check)
    listener.close()
    assert outcome["result"] == probe.FOREIGN and "no process was seen" in outcome["error"]
    assert len(calls) == 3 and all(c[:3] == ["/usr/sbin/lsof", "-nP", calls[0][2]] for c in calls)


# ---- a settings change, checked on the control node ------------------------------------------------------------

def test_validate_settings_names_only():
    summary = _claw.validate_settings(None, {"B": "secret-value"}, ["C"], TOKEN)
    assert summary == {"replace": None, "set": ["B"], "unset": ["C"], "token": True}
    assert _claw.validate_settings({}, {}, [], "")["replace"] is None, "an empty claw_env keeps the env"
    assert _claw.validate_settings({"A": "1"})["replace"] == ["A"]


@pytest.mark.parametrize("kwargs,message", [
    ({}, "nothing to change"),
    ({"gateway_token": "short"}, "at least 32"),
    ({"env_unset": ["PATH"]}, "cannot be removed"),
    ({"env": {"A": "x\ny"}}, "newline"),
])
def test_validate_settings_refuses(kwargs, message):
    with pytest.raises(_claw.ClawInputError, match=message) as info:
        _claw.validate_settings(require_one=True, **kwargs)
    assert "x\ny" not in str(info.value) and "short" not in str(info.value)


class LoopRecorder(Recorder):
    """A Recorder that keeps accepting (claw_status first checks that the port answers, then probes)."""

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    self.received += chunk
            except OSError:
                pass
            conn.close()


@pytest.mark.skipif(not os.path.exists(LSOF_BIN), reason="needs lsof")
def test_claw_status_never_reports_ok_for_a_job_launchd_does_not_know(tmp_path):
    """Issue 12: the probe said `health: ok` for a job launchd does not know, to whoever listened on its port."""
    import pwd

    from ansible_collections.mirascope.clawfarm.plugins.module_utils._command import CommandRunner
    from ansible_collections.mirascope.clawfarm.plugins.modules import claw_status
    from conftest import FakeModule

    trap = LoopRecorder()
    env_file = write_env(tmp_path / ".env", TOKEN, os.getuid())

    class Module(FakeModule):
        def run_command(self, argv, environ_update=None, data=None, binary_data=False):
            self.calls.append(list(argv))
            if argv[0] == "/bin/launchctl":
                return 113, "", f'Bad request.\nCould not find service "{LABEL}" in domain for system\n'
            result = Runner()(argv)
            return result.rc, result.stdout, result.stderr

    module = Module({})
    status = claw_status.snapshot(CommandRunner(module), {"user": pwd.getpwuid(os.getuid()).pw_name, "label": LABEL,
                                                          "port": trap.port, "env_file": str(env_file)},
                                  {"lsof": LSOF_BIN, "ps": shutil.which("ps") or "/bin/ps"})
    assert status["loaded"] is False and status["listening"] is True
    assert status["health"] == "foreign listener" and "launchd reports no running process" in status["health_error"]
    assert module.calls[0] == ["/bin/launchctl", "print", f"system/{LABEL}"]
    assert module.calls[1][:2] == [LSOF_BIN, "-nP"] and module.calls[1][3] == "-FpRuLn"
    assert trap.received == b"", "nothing was sent to the listener"
