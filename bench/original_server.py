"""A faithful minimal reproduction of the original chat-server design, for the benchmark only.

This is the design Desktop Chat replaced, kept so that every benchmark run can compare against it
on the same machine: one thread per client, a global list of client sockets, and a broadcast that
calls ``sendall`` on every client in a loop while holding one global lock — as the classic
tutorials do. Its flaws are kept on purpose (no ``TCP_NODELAY`` unless ``--nodelay`` is given,
one stuck reader freezes the whole room, daemon threads, no shutdown beyond the process ending).
Do not copy anything from here into ``desktop_chat``.

It speaks just enough of the native JSON Lines protocol for the load generator: it reads one
``hello`` line, answers ``welcome`` and ``users``, announces ``joined`` to the others, then relays
every ``say`` as a ``message`` (with a server-wide ``id`` and a ``ts``) to everyone, the sender
included, and answers ``ping`` with ``pong``. Lines are framed properly (TCP is a byte stream),
which the tutorials do not do; that is the one liberty taken, without it nothing would work
under load.

Run: ``python bench/original_server.py --host 127.0.0.1 --port 5151``. It prints the address it
listens on, then serves until it is killed or ``--max-seconds`` have passed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time

# The original design's module-level state, kept as it was: a global list and one global lock.
clients: list[tuple[socket.socket, str]] = []
lock = threading.Lock()
next_id = 0


def broadcast(data: bytes) -> None:
    """Send ``data`` to every client, in a loop, under the global lock (the original's flaw)."""
    with lock:
        send_to_all(data)


def send_to_all(data: bytes) -> None:
    """The broadcast loop itself; the caller holds ``lock``."""
    for sock, _name in list(clients):
        try:
            sock.sendall(data)
        except OSError:
            # The original dropped a client whose socket failed and carried on.
            remove(sock)


def remove(sock: socket.socket) -> None:
    """Drop ``sock`` from the global list; the caller holds ``lock``."""
    for i, (other, _name) in enumerate(clients):
        if other is sock:
            del clients[i]
            break


def read_lines(sock: socket.socket, buf: bytearray) -> list[bytes] | None:
    """Receive once and return the complete lines (``None`` when the peer has gone)."""
    try:
        chunk = sock.recv(65536)
    except OSError:
        return None
    if not chunk:
        return None
    buf += chunk
    cut = buf.rfind(b"\n")
    if cut < 0:
        return []
    lines = bytes(buf[:cut]).split(b"\n")
    del buf[: cut + 1]
    return lines


def handle(sock: socket.socket) -> None:
    """One thread per client: the hello, then relay every ``say`` to everyone."""
    global next_id
    buf = bytearray()
    name = ""
    while not name:
        lines = read_lines(sock, buf)
        if lines is None:
            sock.close()
            return
        for line in lines:
            try:
                hello = json.loads(line)
            except ValueError:
                continue
            if isinstance(hello, dict) and hello.get("type") == "hello":
                name = str(hello.get("name", ""))
                break
    welcome = {"type": "welcome", "protocol": 1, "name": name, "session": name}
    welcome |= {"server": "original", "rooms": ["general"]}
    joined = json.dumps({"type": "joined", "room": "general", "name": name}).encode() + b"\n"
    broadcast(joined)
    with lock:
        clients.append((sock, name))
        names = sorted((n for _s, n in clients), key=str.casefold)
        users = {"type": "users", "room": "general", "names": names}
        sock.sendall((json.dumps(welcome) + "\n" + json.dumps(users) + "\n").encode())
    while True:
        lines = read_lines(sock, buf)
        if lines is None:
            break
        for line in lines:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            kind = msg.get("type")
            if kind == "say":
                with lock:
                    next_id += 1
                    out = {"type": "message", "id": next_id, "ts": int(time.time() * 1000)}
                    out |= {"from": name, "room": "general", "text": msg.get("text", "")}
                    send_to_all(json.dumps(out).encode() + b"\n")
            elif kind == "ping":
                pong = json.dumps({"type": "pong", "n": msg.get("n")}).encode() + b"\n"
                with lock:
                    sock.sendall(pong)
    with lock:
        remove(sock)
    broadcast(json.dumps({"type": "left", "room": "general", "name": name}).encode() + b"\n")
    sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--nodelay", action="store_true", help="set TCP_NODELAY (lesson 1)")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="exit after this long")
    args = parser.parse_args(argv)

    # Bounded: the process ends by itself even if whoever started it forgets to.
    killer = threading.Timer(args.max_seconds, os._exit, args=(0,))
    killer.daemon = True
    killer.start()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen()
    host, port = listener.getsockname()[:2]
    print(f"{host}:{port}", flush=True)
    while True:
        sock, _addr = listener.accept()
        if args.nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
