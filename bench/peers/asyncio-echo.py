#!/usr/bin/env python3
"""asyncio-echo: a Python asyncio echo server on the Protocol API.

data_received writes the bytes straight back; when the transport's write
buffer passes its high-water mark (pause_writing) the protocol stops reading
until it drains (resume_writing), so a client that never reads costs bounded
memory. A peer for bench/echo and bench/memory; prints nothing on success.

Usage: asyncio-echo.py PORT
"""
import asyncio
import socket
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def eof_received(self):
        return False  # close once the echo is out


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port, backlog=4096,
                                      reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        port = int(sys.argv[1]) if len(sys.argv) == 2 else 0
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        sys.stderr.write("usage: asyncio-echo.py PORT\n")
        sys.exit(2)
    try:
        asyncio.run(main(port))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        sys.stderr.write(f"asyncio-echo: {e}\n")
        sys.exit(1)
