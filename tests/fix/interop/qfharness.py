"""Build and run the QuickFIX C++ programs of this folder (used by test_quickfix_interop.py).

The programs are compiled with g++ against Debian's libquickfix-dev on first use and
cached in the system temp dir under a hash of their sources and flags, so repeated runs
(and the pytest-xdist workers of one run) compile each program once.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import queue
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICKFIX_HEADER = Path("/usr/include/quickfix/Application.h")
CXXFLAGS = ["-std=gnu++14", "-O1", "-Wall", "-Wno-deprecated", "-Wno-deprecated-declarations"]
LIBS = ["-lquickfix", "-lpthread"]
CACHE_DIR = Path(tempfile.gettempdir()) / "crossbook-quickfix-interop"


def missing_toolchain() -> str | None:
    """Why the QuickFIX programs cannot be built here, or None when they can."""
    if shutil.which("g++") is None:
        return "g++ is not installed (apt-get install g++)"
    if not QUICKFIX_HEADER.exists():
        return ("QuickFIX headers not found at /usr/include/quickfix "
                "(apt-get install libquickfix-dev)")
    if not any(Path(d).glob("libquickfix.so*") for d in
               ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib",
                "/usr/local/lib")):
        return "libquickfix.so not found (apt-get install libquickfix-dev)"
    return None


def build(name: str, folder: Path = HERE) -> Path:
    """Compile ``folder``/<name>.cpp (default: this folder) once per source hash and return the
    binary. Every program includes qf_common.h from this folder, wherever it lives itself."""
    sources = [folder / f"{name}.cpp", HERE / "qf_common.h"]
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.read_bytes())
    digest.update(" ".join(CXXFLAGS + LIBS).encode())
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    binary = CACHE_DIR / f"{name}-{digest.hexdigest()[:16]}"
    if binary.exists():
        return binary
    # One compiler at a time: xdist workers would otherwise all compile the same program.
    with open(CACHE_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        partial = binary.with_suffix(f".tmp{os.getpid()}")
        result = subprocess.run(["g++", *CXXFLAGS, f"-I{HERE}", str(sources[0]), "-o", str(partial), *LIBS],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"compiling {name}.cpp failed:\n{result.stderr[-4000:]}")
        os.replace(partial, binary)
    return binary


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A port that is free now, for a program that binds it later (QuickFIX cannot bind 0
    and tell us the port).

    Taken outside the kernel's ephemeral range: there, every outgoing connection on the
    machine (and every bind to port 0) may take the port between our check and QuickFIX's
    bind; below the range only a program naming the port itself can, and
    ``start_acceptor`` retries that case.
    """
    low, _ = _ephemeral_range()
    top = min(low, 65536) - 1
    bottom = max(1024, top - 20000)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(bottom, top)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    with socket.socket() as s:  # a machine with every low port taken: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_settings(path: Path, *, role: str, begin_string: str, sender: str, target: str,
                   port: int, log_dir: Path, heartbeat: int = 30,
                   default_appl_ver_id: str | None = None, extra: dict | None = None) -> Path:
    """A QuickFIX 1.15 settings file for one session, without a data dictionary."""
    default = {
        "ConnectionType": role,
        "StartTime": "00:00:00",
        "EndTime": "00:00:00",
        "UseDataDictionary": "N",
        "FileLogPath": str(log_dir),
        "ResetOnLogon": "Y",
        "SocketNodelay": "Y",
    }
    if role == "acceptor":
        default.update(SocketAcceptPort=str(port), SocketReuseAddress="Y")
    else:
        default.update(SocketConnectHost="127.0.0.1", SocketConnectPort=str(port),
                       HeartBtInt=str(heartbeat), ReconnectInterval="1")
    session = {"BeginString": begin_string, "SenderCompID": sender, "TargetCompID": target}
    if default_appl_ver_id:
        session["DefaultApplVerID"] = default_appl_ver_id
    session.update(extra or {})
    lines = ["[DEFAULT]"] + [f"{k}={v}" for k, v in default.items()]
    lines += ["", "[SESSION]"] + [f"{k}={v}" for k, v in session.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def fix_fields(line: str) -> dict[int, str]:
    """The fields of a SENT/RECV line's message (first value per tag)."""
    out: dict[int, str] = {}
    for part in line.split(" ", 1)[1].split("|"):
        tag, eq, value = part.partition("=")
        if eq and tag.isdigit():
            out.setdefault(int(tag), value)
    return out


class EventLog:
    """The SENT/RECV/... lines one QuickFIX program printed, with simple queries."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def messages(self, direction: str, msg_type: str | None = None) -> list[dict[int, str]]:
        out = []
        for line in self.lines:
            if line.startswith(direction + " "):
                fields = fix_fields(line)
                if msg_type is None or fields.get(35) == msg_type:
                    out.append(fields)
        return out

    def line(self, prefix: str) -> str | None:
        return next((ln for ln in self.lines if ln.startswith(prefix)), None)

    def __str__(self) -> str:
        return "\n".join(self.lines[-80:])


def key_values(line: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in line.split() if "=" in word)


class QuickFixAcceptor:
    """qf_acceptor as a subprocess: started, READY awaited, stopped by closing its stdin."""

    def __init__(self, binary: Path, settings: Path, *, duration: float = 120):
        self._cmd = [str(binary), "--config", str(settings), "--duration", str(duration)]
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "QuickFixAcceptor":
        if self.proc is not None:  # already started (by start_acceptor)
            return self
        self.proc = subprocess.Popen(self._cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     cwd=tempfile.gettempdir())
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        self.wait_for(lambda line: line == "READY", 20, "READY")
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, predicate, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"qf_acceptor: no {what} within {timeout}s; saw:\n"
                                     + "\n".join(self.lines[-40:]))
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"qf_acceptor exited before {what}; saw:\n"
                                     + "\n".join(self.lines[-40:]))
            self.lines.append(line)
            if predicate(line):
                return line

    def stop(self, timeout: float = 60) -> EventLog:
        """Close stdin, wait for it to exit, and collect everything it printed.

        The output is complete: the reader thread is joined (it ends at the end of the
        program's stdout) before the lines are taken, instead of waiting a fixed time for
        lines that a loaded machine may deliver late.
        """
        assert self.proc is not None
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:  # it already exited and the pipe is broken
                pass
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout)
        if self._reader.is_alive():
            raise AssertionError(f"qf_acceptor's output did not end within {timeout}s of its exit")
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return EventLog(self.lines)

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            if self.proc is not None and self.proc.poll() is None:
                self.stop()


def start_acceptor(binary: Path, write_config, attempts: int = 5) -> tuple[QuickFixAcceptor, int]:
    """Start qf_acceptor on a free port; ``write_config(port)`` returns its settings file.

    A port found free can be taken by another test before QuickFIX binds it; then QuickFIX
    exits with "Address already in use" and we try again with another port.
    """
    for attempt in range(attempts):
        port = free_port()
        acceptor = QuickFixAcceptor(binary, write_config(port))
        try:
            return acceptor.__enter__(), port
        except AssertionError:
            if attempt == attempts - 1 or not any("Address already in use" in ln
                                                  for ln in acceptor.lines):
                raise
    raise AssertionError("unreachable")


def run_initiator(binary: Path, settings: Path, *, orders: int, heartbeats: int,
                  timeout: float = 20, symbol: str = "IBM",
                  sent_heartbeats: int = 0) -> tuple[int, EventLog]:
    """Run qf_initiator to completion; returns its exit code and event lines.

    It logs out once ``orders`` are answered, ``heartbeats`` Heartbeats came from the peer
    and it sent ``sent_heartbeats`` itself; every wait is bounded by ``timeout``.
    """
    result = subprocess.run(
        [str(binary), "--config", str(settings), "--orders", str(orders),
         "--heartbeats", str(heartbeats), "--sent-heartbeats", str(sent_heartbeats),
         "--timeout", str(timeout), "--symbol", symbol],
        capture_output=True, text=True, timeout=timeout * 5 + 30, cwd=tempfile.gettempdir())
    lines = result.stdout.splitlines() + [f"STDERR {ln}" for ln in result.stderr.splitlines()]
    return result.returncode, EventLog(lines)
