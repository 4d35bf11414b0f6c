"""A TLS front for the fake hub of the test suite: terminates TLS on loopback and relays every
connection's bytes, unchanged, to a plain-HTTP backend on loopback.

Usage: tls_front.py CERT KEY BACKEND_PORT [BACKEND_PORT ...]

Listens on one ephemeral 127.0.0.1 port per backend (HTTP/1.1 only: no ALPN), prints
"ports P1 P2 ..." in the order of the backends once all listen, and runs until its standard
input closes, so it ends with the test process that started it.
"""

import asyncio
import ssl
import sys


async def relay(reader, writer):
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        writer.close()


def front_for(backend_port):
    async def serve(client_reader, client_writer):
        try:
            backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", backend_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(relay(client_reader, backend_writer), relay(backend_reader, client_writer))

    return serve


async def main():
    cert, key, *backends = sys.argv[1:]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    # A client that rejects the certificate ends the handshake: expected here, not worth a traceback.
    loop.set_exception_handler(lambda loop, context: None)
    servers = [
        await asyncio.start_server(front_for(int(port)), "127.0.0.1", 0, ssl=context) for port in backends
    ]
    print("ports", *(server.sockets[0].getsockname()[1] for server in servers), flush=True)
    await loop.run_in_executor(None, sys.stdin.buffer.read)


asyncio.run(main())
