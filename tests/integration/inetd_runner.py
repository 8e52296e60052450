"""
A small inetd for the tests: listens on a TCP port and, for every
connection, runs one command with the connection as its stdin, stdout
and stderr, as xinetd does for a `wait = no` service (the classic
checker's pgsqlchk entry). Used to run `pgbdr-agent --inetd` under
HAProxy's `option httpchk`, the way the classic checker was deployed.
"""

import socket
import subprocess
import threading

from harness import CAPTURED


class InetdRunner:
    def __init__(self, registry, port, argv):
        self.port = port
        self.argv = list(argv)
        self.served = 0
        self.failed = 0
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._children = []
        registry.add(self)

    def start(self):
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                self._reap()
                continue
            except OSError:
                break
            try:
                fd = conn.fileno()
                p = subprocess.Popen(self.argv, stdin=fd, stdout=fd, stderr=fd, close_fds=True)
                self._children.append(p)
                self.served += 1
            except OSError as e:
                CAPTURED.text("inetd runner", str(e))
                self.failed += 1
            finally:
                conn.close()
            self._reap()

    def _reap(self):
        alive = []
        for p in self._children:
            rc = p.poll()
            if rc is None:
                alive.append(p)
            elif rc != 0:
                self.failed += 1
        self._children = alive

    def cleanup(self):
        self._stop.set()
        self._sock.close()
        self._thread.join(5)
        for p in self._children:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
