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
    def __init__(self, registry, name="etcd", peer_port=None):
        self.registry = registry
        self.name = name
        self.base = registry.mkdtemp(name)
        self.client_port = free_port()
        self.peer_port = peer_port or free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.initial_cluster = f"{self.name}={self.peer_url}"
        self.logfile = os.path.join(self.base, "etcd.log")
        self.proc = None
        self._log = None
        registry.add(self)

    def spawn(self):
        self._log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            ["etcd", "--name", self.name, "--data-dir", os.path.join(self.base, "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", self.initial_cluster, "--initial-cluster-state", "new",
             "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.base)
        return self

    def start(self, timeout=20):
        self.spawn()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout=20):

        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"etcd exited {self.proc.returncode}:\n{self.log()}")
            return self.post("/v3/kv/range", {"key": _b64("/")}, timeout=1) is not None
        wait_for(healthy, timeout, interval=0.2, desc="etcd answers /v3/kv/range")

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

    def raft_leader(self):
        """Whether this member says it leads the raft group (its own
        status, answered without a quorum); None when it does not answer."""
        try:
            st = self.post("/v3/maintenance/status", {}, timeout=1)
        except OSError:
            return None
        return st.get("leader") not in (None, "0") and \
            st.get("leader") == st.get("header", {}).get("member_id")

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


def etcd_cluster(registry, n=3):
    """n members that form one cluster, all started and answering."""
    members = [Etcd(registry, name=f"etcd{i}") for i in range(1, n + 1)]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    for m in members:
        m.initial_cluster = initial
        m.spawn()
    for m in members:
        m.wait_healthy(30)
    return members
