"""`crossbook venue` as a child process, for the tests that run real venue processes
(tests/routing, tests/e2e, tests/venues)."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

READY = re.compile(r"listening on ([\d.]+):(\d+)")


def venue_config(tmp: Path, name: str, *, port: int = 0, faults: str = "", sessions=("CROSSBOOK",),
                 extra: str = "", storage: str | None = None, filename: str | None = None) -> Path:
    """Write a venue config for ``name`` in ``tmp``: one session per CompID in ``sessions`` (with
    reason codes), optional ``[faults]`` lines and ``extra`` text. FIX stores go to ``storage``
    (default ``store-<name>``, relative to ``tmp``), the file to ``filename`` (default
    ``<name>.toml``)."""
    text = f'[venue]\nname = "{name}"\nport = {port}\nstorage = "{storage or f"store-{name}"}"\n'
    for comp_id in sessions:
        text += f'\n[[sessions]]\ncomp_id = "{comp_id}"\nreason_codes = true\n'
    if faults:
        text += f"\n[faults]\n{faults}\n"
    text += extra
    path = tmp / (filename or f"{name}.toml")
    path.write_text(text)
    return path


class VenueProcess:
    """`crossbook venue` as a child process; the port is read from its start line.

    Runs in ``cwd`` (default: the config's folder, where relative store paths point). Its output
    is kept in ``lines``; the constructor fails with that output if no start line comes in 30 s.
    """

    def __init__(self, config: Path, port: int | None = None, cwd: Path | None = None):
        args = [sys.executable, "-m", "crossbook.app.cli", "venue", "--config", str(config)]
        if port is not None:
            args += ["--port", str(port)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=cwd if cwd is not None else config.parent)
        self.lines: list[str] = []
        found = threading.Event()
        self.port = 0

        def read():
            for line in self.proc.stdout:
                self.lines.append(line)
                m = READY.search(line)
                if m and not found.is_set():
                    self.port = int(m.group(2))
                    found.set()
            found.set()

        # A thread keeps draining the pipe, so a chatty venue never blocks on a full one.
        threading.Thread(target=read, daemon=True).start()
        if not found.wait(30) or not self.port:
            self.kill()
            raise AssertionError("venue did not start:\n" + "".join(self.lines))

    def signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (the venue's books die with it) and wait."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM (a clean stop) and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)
