"""
A small TCP proxy for the failover benchmark: it sits on the network path
to one PostgreSQL node and can black-hole it.

While forwarding, every listener relays bytes both ways to the upstream
port; a connection to a dead upstream is reset at once, as the server's
own refusal would be. black_hole() makes the path silent without closing
anything: bytes already in flight and new bytes are dropped, new
connections are accepted and never forwarded (what a peer sees through
a router that has lost its route, once TCP's handshake is done). restore()
resets every connection that lived through the black hole (their streams
have lost bytes) and forwards new ones again.

It runs an asyncio loop in a thread of the calling process.
"""

import asyncio
import socket
import struct
import threading


class TcpProxy:
    def __init__(self, upstream_port, listen_ports):
        """listen_ports: {label: port} on 127.0.0.1, all relayed to
        127.0.0.1:upstream_port."""
        self.upstream_port = upstream_port
        self.listen_ports = dict(listen_ports)
        self.blackholed = False
        self._conns = set()      # (client writer, upstream writer or None)
        self._loop = asyncio.new_event_loop()
        self._servers = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(10)

    # -- the loop thread ----------------------------------------------------
    def _run(self):
        asyncio.set_event_loop(self._loop)
        for port in self.listen_ports.values():
            srv = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", port, reuse_address=True))
            self._servers.append(srv)
        self._ready.set()
        self._loop.run_forever()

    @staticmethod
    def _reset(writer):
        """Close with a RST (SO_LINGER 0), as a dead peer's kernel would."""
        if writer is None:
            return
        sock = writer.get_extra_info("socket")
        try:
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        writer.transport.abort()

    async def _pump(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.blackholed:
                    continue          # lost on the way
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        if not self.blackholed:
            writer.close()

    async def _handle(self, creader, cwriter):
        if self.blackholed:
            # accepted, never forwarded: read and drop until restore() resets it
            key = (cwriter, None)
            self._conns.add(key)
            try:
                while await creader.read(65536):
                    pass
            except (ConnectionError, OSError):
                pass
            self._conns.discard(key)
            return
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self._reset(cwriter)
            return
        key = (cwriter, uwriter)
        self._conns.add(key)
        await asyncio.gather(self._pump(creader, uwriter), self._pump(ureader, cwriter))
        self._conns.discard(key)

    # -- control, from any thread ---------------------------------------------
    def black_hole(self):
        self.blackholed = True

    def restore(self):
        def reset_all():
            for cw, uw in list(self._conns):
                self._reset(cw)
                self._reset(uw)
            self._conns.clear()
            self.blackholed = False
        self._loop.call_soon_threadsafe(reset_all)
        # wait until the loop has run it
        fut = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self._loop)
        fut.result(10)

    def close(self):
        def stop():
            for s in self._servers:
                s.close()
            for cw, uw in list(self._conns):
                self._reset(cw)
                self._reset(uw)
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            # one more turn of the loop lets the cancelled tasks finish
            self._loop.call_soon(self._loop.stop)
        self._loop.call_soon_threadsafe(stop)
        self._thread.join(10)

    # harness Registry protocol
    def cleanup(self):
        self.close()
