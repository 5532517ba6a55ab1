"""QuickFIX's 297 server acceptance scripts against `crossbook fix-test-server` (a real subprocess).

Needs ../shared (the scripts and the fixat runner); skips with a message when it is absent.
All five folders run in one fixat process with --jobs 5 (about 40 s, mostly the heartbeat
scripts). Set CROSSBOOK_FIXAT_MATCH=quickfixj to compare with QuickFIX/J's rules instead.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
FIXAT = SHARED / "tools" / "fixat" / "fixat.py"
DEFS = SHARED / "conformance" / "quickfix-acceptance" / "test" / "definitions" / "server"
FOLDERS = {"fix42": 58, "fix44": 59, "fix50": 60, "fix50sp1": 60, "fix50sp2": 60}

pytestmark = [
    pytest.mark.shared,
    pytest.mark.slow,
    pytest.mark.skipif(not FIXAT.is_file() or not DEFS.is_dir(),
                       reason=f"acceptance scripts not found under {SHARED} (../shared is absent)"),
]


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen([sys.executable, "-m", "crossbook.app.cli", "fix-test-server", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on ([\d.]+):(\d+)", line)
        assert m, f"fix-test-server did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        yield int(m.group(2))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_all_acceptance_scripts_pass(server):
    match = os.environ.get("CROSSBOOK_FIXAT_MATCH", "quickfix")
    cmd = [sys.executable, str(FIXAT), "--host", "127.0.0.1", "--port", str(server), "--jobs", "5",
           "--match", match, "-q"]
    # fixat takes one --defs; give it the parent and let the folder groups run in parallel.
    cmd += ["--defs", str(DEFS)]
    for folder in FOLDERS:
        cmd += ["--only", f"{folder}/"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    failed = [line for line in output.splitlines() if line.startswith("FAIL")]
    assert not failed, "\n".join(failed) + "\n" + output[-4000:]
    m = re.search(r"(\d+) passed, (\d+) failed", output)
    assert m, output[-2000:]
    assert (int(m.group(1)), int(m.group(2))) == (sum(FOLDERS.values()), 0), output[-2000:]
    for folder, count in FOLDERS.items():
        passed = sum(1 for line in output.splitlines() if line.startswith("PASS") and f"{folder}/" in line)
        assert passed == count, f"{folder}: {passed}/{count} passed"
    assert result.returncode == 0
