"""Logging under systemd: when JOURNAL_STREAM names the stream on stderr
(as systemd sets it for StandardError=journal), every line starts with
an sd-daemon "<N>" priority prefix, so journald stores an ERROR at
priority 3 instead of the unit's default. Without it, or when it names
another stream, lines keep their timestamp and no prefix."""

import os
import re
import socket
import subprocess

from harness import agent_binary, write_config


def run_with_busy_port(registry, journal_stream):
    """Start the agent on a port that is taken: it logs an ERROR and exits.
    journal_stream(fstat of stderr) gives the JOURNAL_STREAM value."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = write_config(registry, f"[agent]\nhttp_listen = 127.0.0.1:{port}\n"
                                      "allow_root = yes\n\n[postgresql]\nhost = 127.0.0.1\n"
                                      "port = 1\n", "journal")
        r, w = os.pipe()
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        value = journal_stream(os.fstat(w))
        if value is not None:
            env["JOURNAL_STREAM"] = value
        proc = subprocess.Popen([agent_binary(), "-c", path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=w, env=env)
        os.close(w)
        try:
            assert proc.wait(10) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with os.fdopen(r, "rb") as f:
            return f.read().decode()


def test_error_line_has_journald_priority(registry):
    out = run_with_busy_port(registry, lambda st: f"{st.st_dev}:{st.st_ino}")
    lines = out.splitlines()
    errors = [l for l in lines if "Address already in use" in l]
    assert errors and errors[0].startswith("<3>"), out
    assert all(re.match(r"<[0-7]>", l) for l in lines), out


def test_no_prefix_when_stderr_is_not_the_journal(registry):
    for value in (lambda st: None, lambda st: f"{st.st_dev}:{st.st_ino + 1}",
                  lambda st: "garbage"):
        out = run_with_busy_port(registry, value)
        lines = out.splitlines()
        assert lines, out
        for l in lines:
            assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (ERROR|WARNING|INFO) ", l), out
