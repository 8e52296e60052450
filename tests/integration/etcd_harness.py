"""A real etcd (Debian's etcd-server, v3 API) for the write-leader
tests: one member on free loopback ports, in a temp dir, stopped with
the test's registry. pause()/resume() freeze it with SIGSTOP/SIGCONT,
the way a hung etcd host looks to its clients."""

import base64
import json
import os
import signal
import subprocess
import urllib.request

from harness import free_port, wait_for


class Etcd:
    def __init__(self, registry, name="etcd"):
        self.registry = registry
        self.name = name
        self.base = registry.mkdtemp(name)
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.logfile = os.path.join(self.base, "etcd.log")
        self.proc = None
        self._log = None
        registry.add(self)

    def start(self, timeout=20):
        peer = f"http://127.0.0.1:{self.peer_port}"
        self._log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            ["etcd", "--name", self.name, "--data-dir", os.path.join(self.base, "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"{self.name}={peer}", "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.base)

        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"etcd exited {self.proc.returncode}:\n{self.log()}")
            return self.post("/v3/kv/range", {"key": _b64("/")}, timeout=1) is not None
        wait_for(healthy, timeout, interval=0.2, desc="etcd answers /v3/kv/range")
        return self

    def post(self, path, body, timeout=2):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def get_key(self, key):
        """(value, lease) of key, or None when absent."""
        kvs = self.post("/v3/kv/range", {"key": _b64(key)}).get("kvs")
        if not kvs:
            return None
        return base64.b64decode(kvs[0]["value"]).decode(), kvs[0].get("lease")

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def log(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        if self._log:
            self._log.close()
            self._log = None


def _b64(s):
    return base64.b64encode(s.encode()).decode()
