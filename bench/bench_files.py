"""File sharing benchmark: upload and download throughput on loopback, and chat while it runs.

Usage::

    .venv/bin/python bench/bench_files.py                 # 1 GiB, 50 chatting clients
    .venv/bin/python bench/bench_files.py --size-mib 256 --chat-seconds 5

In one run, on 127.0.0.1:

1. Our server (``desktop-chat-server``, a fresh data folder) and nginx (Debian's nginx-light,
   started here as an ordinary process from a config in a temp folder, stopped by its pid)
   serving the same generated file, plain and TLS (nginx uses our server's certificate).
2. Upload: ``curl -T`` streams the file as one tus ``PATCH`` (plain, then TLS); MB/s.
3. Download: ``curl`` fetches the file from our server and from nginx (plain, then TLS); MB/s
   and the ratio ours / nginx.
4. The desktop app's transfer code (``net/client/files.py``, TLS with the pin), up and down;
   again with a second thread of the benchmark's process keeping Python busy (``--no-desktop``
   skips these rows).
5. Chat: 50 clients (``loadgen.py``) at a fixed total rate; fan-out p99 without a transfer,
   while ``curl`` downloads the file (plain) in a loop, while it uploads it in a loop (to the
   uploader's own DMs), and while it downloads the same file from nginx in a loop: the
   control, a transfer our server takes no part in, so its ratio is what any transfer costs
   the chat on this machine (curl's CPU, the kernel's copying). The ratios with / without.

Throughput is a best of ``--repeat`` (the machine is shared: the best is the least
disturbed); the chat p99s are medians of ``--chat-repeat`` quiet/busy pairs, run alternately
with the same 50 clients. Targets: plain download ≥ 0.5× nginx, upload ≥ 200 MB/s, chat p99
during a transfer ≤ 2× without.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # this checkout's desktop_chat

from loadgen import LoadGenerator, warm_up
from serverproc import ServerProcess, free_port, raise_nofile

from desktop_chat.net.client import files as dc_files
from desktop_chat.net.protocol.tls import fingerprint_of_der

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MIB = 1 << 20


def make_file(path: Path, size: int) -> None:
    """``size`` bytes of incompressible data, written 8 MiB at a time (never all in memory)."""
    block = os.urandom(8 * MIB)
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


def login(host: str, port: int, name: str) -> tuple[socket.socket, str]:
    """A logged-in chat connection (kept open) and its session token."""
    sock = socket.create_connection((host, port), timeout=10)
    hello = {"type": "hello", "protocol": 1, "name": name}
    sock.sendall(json.dumps(hello).encode() + b"\n")
    data = b""
    while b"\n" not in data:
        data += sock.recv(65536)
    welcome = json.loads(data.split(b"\n", 1)[0])
    # Read (and drop) what comes, or the chat of the 50 clients would fill this connection's
    # buffer, the server would cut it off as slow, and DMs to it would be refused.
    threading.Thread(target=_drain, args=(sock,), name="bench-uploader").start()
    return sock, str(welcome["session"])


def _drain(sock: socket.socket) -> None:
    """Read (and drop) everything but pings, which are answered: the server closes a
    connection that does not answer them, and DMs to the uploader would then be refused."""
    sock.settimeout(None)
    buf = b""
    try:
        while chunk := sock.recv(65536):
            *lines, buf = (buf + chunk).split(b"\n")
            for line in lines:
                if line.startswith(b'{"type":"ping"'):
                    n = json.loads(line)["n"]
                    sock.sendall(json.dumps({"type": "pong", "n": n}).encode() + b"\n")
    except OSError:
        return  # closed by main()


def curl(*args: str) -> float:
    """Run curl; the seconds it took (raises if it failed)."""
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", *args], check=True)
    return time.perf_counter() - t0


def upload(base: str, token: str, path: Path, tls: bool, dest: str = "room general") -> float:
    """One tus upload of ``path`` (POST, then one streamed PATCH); the PATCH's seconds.
    ``dest`` is ``room <name>`` or ``to <name>``."""
    size = path.stat().st_size
    auth = f"Authorization: Bearer {token}"
    b64 = base64.b64encode
    key, _, value = dest.partition(" ")
    meta = f"filename {b64(b'bench.bin').decode()},{key} {b64(value.encode()).decode()}"
    extra = ["-k"] if tls else []
    out = subprocess.run(
        ["curl", "-sS", "--fail", "-D", "-", "-o", "/dev/null", *extra, "-X", "POST",
         "-H", "Tus-Resumable: 1.0.0", "-H", auth, "-H", f"Upload-Length: {size}",
         "-H", f"Upload-Metadata: {meta}", f"{base}/files"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    location = next(
        line.split(":", 1)[1].strip()
        for line in out.stdout.splitlines()
        if line.lower().startswith("location:")
    )
    return curl(
        *extra, "-T", str(path), "-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", auth,
        "-H", "Upload-Offset: 0", "-H", "Content-Type: application/offset+octet-stream",
        "-H", "Expect:", f"{base}{location}",
    )  # fmt: skip


class Nginx:
    """nginx serving one folder on a plain and a TLS loopback port; stopped by its pid."""

    def __init__(self, root: Path, folder: Path, cert: Path, key: Path) -> None:
        self.folder = folder
        self.plain = free_port()
        self.tls = free_port()
        conf = folder / "nginx.conf"
        conf.write_text(
            f"""
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{self.plain};
        listen 127.0.0.1:{self.tls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {root};
    }}
}}
"""
        )
        self.proc = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.plain), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not start: {(folder / 'error.log').read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def chat_runs(
    args: argparse.Namespace,
    host: str,
    port: int,
    token: str,
    file_id: str,
    src: Path,
    nginx: Nginx,
) -> dict[str, list[float]]:
    """Chat p99s without a transfer, during downloads from our server, during uploads to it,
    and during downloads of the same file from nginx, alternated (the machine's noise hits
    all four). The nginx row is the control: our server moves no byte of that transfer, so
    what it does to the chat is the cost of any transfer on this machine (curl's CPU, the
    kernel's copying), not ours."""
    p99s: dict[str, list[float]] = {"quiet": [], "downloads": [], "uploads": [], "nginx": []}
    auth = ["-H", f"Authorization: Bearer {token}"]
    url = f"http://{host}:{port}/files/{file_id}"
    # Uploads go to the uploader's own DMs: the 50 clients see only the chat they measure.
    loops: dict[str, Callable[[], object]] = {
        "downloads": lambda: curl(*auth, url),
        "uploads": lambda: upload(f"http://{host}:{port}", token, src, False, "to uploader"),
        "nginx": lambda: curl(f"http://127.0.0.1:{nginx.plain}/{src.name}"),
    }
    with LoadGenerator(host, port) as gen:
        joined = gen.join(args.clients, timeout=30)
        if joined.ready != args.clients:
            raise RuntimeError(f"only {joined.ready} of {args.clients} clients joined")
        gen.settle()
        for _ in range(args.chat_repeat):
            for what in p99s:
                with Transfers(loops.get(what)):
                    result = gen.run_rate(gen.live[:10], args.rate, args.chat_seconds)
                p99s[what].append(result.p99_ms)
    return p99s


class Transfers:
    """``transfer`` called in a loop, in a thread, while the block runs (None: nothing)."""

    def __init__(self, transfer: Callable[[], object] | None) -> None:
        self.transfer = transfer
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="bench-transfer")

    def _loop(self) -> None:
        while self.transfer is not None and not self.stop.is_set():
            self.transfer()

    def __enter__(self) -> Transfers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024 MiB)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N for throughput (3)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rate", type=float, default=100.0, help="chat messages/s in total")
    ap.add_argument("--chat-seconds", type=float, default=6.0)
    ap.add_argument("--chat-repeat", type=int, default=3, help="quiet/busy pairs (median)")
    ap.add_argument("--no-desktop", action="store_true", help="skip the desktop app's rows")
    args = ap.parse_args()
    raise_nofile()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="bench-files-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx's workers run as an unprivileged user: they must reach www
        www = tmp / "www"
        www.mkdir()
        src = www / "bench.bin"
        make_file(src, size)
        rows: list[tuple[str, float, float | None]] = []
        with ServerProcess("ours", tmp / "data") as srv:
            host, port = srv.host, srv.port
            warm_up(host, port)
            nginx_dir = tmp / "nginx"
            nginx_dir.mkdir()
            nginx = Nginx(
                www, nginx_dir, tmp / "data" / "tls-cert.pem", tmp / "data" / "tls-key.pem"
            )
            keep, token = login(host, port, "uploader")
            try:
                file_id = measure(args, host, port, token, src, nginx, rows)
                if not args.no_desktop:
                    desktop_rows(args, srv, token, src, file_id, rows)
                p99s = chat_runs(args, host, port, token, file_id, src, nginx)
            finally:
                keep.shutdown(socket.SHUT_RDWR)  # ends the drain thread's recv
                keep.close()
                nginx.stop()
        mb = size / 1e6
        print(
            f"\nfile: {args.size_mib} MiB, best of {args.repeat}; loopback, {os.cpu_count()} cores"
        )
        print(f"{'what':<36}{'ours MB/s':>12}{'nginx MB/s':>12}{'ratio':>8}")
        for what, ours, theirs in rows:
            ratio = f"{(mb / ours) / (mb / theirs):.2f}" if theirs else "-"
            their_text = f"{mb / theirs:.0f}" if theirs else "-"
            print(f"{what:<36}{mb / ours:>12.0f}{their_text:>12}{ratio:>8}")
        runs = args.chat_repeat
        print(f"\nchat p99 ({args.clients} clients, {args.rate:.0f} msg/s; median of {runs} runs):")
        quiet = statistics.median(p99s["quiet"])
        print(f"  without a transfer      {quiet:8.2f} ms   {_ms(p99s['quiet'])}")
        labels = {"downloads": "downloads", "uploads": "uploads", "nginx": "nginx downloads"}
        for what, label in labels.items():
            busy = statistics.median(p99s[what])
            ratio = f"ratio {busy / quiet:.2f}"
            print(f"  during {label:<16} {busy:8.2f} ms   {_ms(p99s[what])}   {ratio}")
    return 0


def _ms(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in values) + ")"


def measure(
    args: argparse.Namespace,
    host: str,
    port: int,
    token: str,
    src: Path,
    nginx: Nginx,
    rows: list[tuple[str, float, float | None]],
) -> str:
    """Add the throughput rows; return the id of the file uploaded."""
    auth = ["-H", f"Authorization: Bearer {token}"]
    for tls in (False, True):
        scheme = "https" if tls else "http"
        rows.append((f"upload {scheme}", min(upload(f"{scheme}://{host}:{port}", token, src, tls)
                                            for _ in range(args.repeat)), None))  # fmt: skip
    file_id = latest_file_id(host, port, token)
    for tls in (False, True):
        k = ["-k"] if tls else []
        scheme = "https" if tls else "http"
        ours = min(
            curl(*k, *auth, f"{scheme}://{host}:{port}/files/{file_id}") for _ in range(args.repeat)
        )
        nport = nginx.tls if tls else nginx.plain
        theirs = min(
            curl(*k, f"{scheme}://127.0.0.1:{nport}/bench.bin") for _ in range(args.repeat)
        )
        rows.append((f"download {scheme}", ours, theirs))
    return file_id


def desktop_rows(
    args: argparse.Namespace,
    srv: ServerProcess,
    token: str,
    src: Path,
    file_id: str,
    rows: list[tuple[str, float, float | None]],
) -> None:
    """The desktop app's own transfer code (``net/client/files.py``: always TLS, pinned), up
    and down; then again while another thread of this process keeps Python busy, as the GUI
    thread or a hosted server's chat can (they share the interpreter lock)."""
    pem = (srv.data_dir / "tls-cert.pem").read_text()
    fp = fingerprint_of_der(ssl.PEM_cert_to_DER_cert(pem))
    ep = dc_files.Endpoint(srv.host, srv.port, fp, token)
    size = src.stat().st_size
    sha = hashlib.sha256()
    with src.open("rb") as f:
        while block := f.read(8 * MIB):
            sha.update(block)
    folder = src.parent.parent / "desktop-downloads"
    folder.mkdir(exist_ok=True)

    def up() -> float:
        job = dc_files.UploadJob(str(src), "bench.bin", size, to="uploader")
        t0 = time.perf_counter()
        dc_files.upload(ep, job, lambda _n: None, dc_files.Cancel())
        return time.perf_counter() - t0

    def down() -> float:
        job = dc_files.DownloadJob(file_id, "bench.bin", size, sha.hexdigest(), str(folder))
        t0 = time.perf_counter()
        saved = dc_files.download(ep, job, lambda _n: None, dc_files.Cancel())
        seconds = time.perf_counter() - t0
        saved.unlink()
        return seconds

    for busy in (False, True):
        with Spinner(busy):
            label = "desktop {} (TLS)" + (", busy thread" if busy else "")
            rows.append((label.format("upload"), min(up() for _ in range(args.repeat)), None))
            rows.append((label.format("download"), min(down() for _ in range(args.repeat)), None))


class Spinner:
    """A thread that keeps Python busy while the block runs (when ``on``)."""

    def __init__(self, on: bool) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, name="bench-spinner") if on else None

    def _spin(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1

    def __enter__(self) -> Spinner:
        if self.thread is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def latest_file_id(host: str, port: int, token: str) -> str:
    """The id of the last file shared in ``general`` (from the history)."""
    sock = socket.create_connection((host, port), timeout=10)
    with sock:
        hello = {"type": "hello", "protocol": 1, "name": f"reader{time.monotonic_ns() % 10**6}"}
        sock.sendall(json.dumps(hello).encode() + b"\n")
        sock.sendall(b'{"type":"history","room":"general","limit":5}\n')
        data = b""
        while True:
            data += sock.recv(65536)
            for line in data.split(b"\n")[:-1]:
                obj = json.loads(line)
                if obj.get("type") == "history":
                    files = [m["file"] for m in obj["messages"] if m.get("file")]
                    return str(files[-1]["id"])


if __name__ == "__main__":
    raise SystemExit(main())
