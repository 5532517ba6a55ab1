"""crossbook.persistence._logio.writev_held: the log's record write that keeps the GIL."""
import os

import pytest

from crossbook.persistence._logio import writev_held


def test_writes_header_then_payload_and_returns_the_count(tmp_path):
    path = tmp_path / "seg"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        assert writev_held(fd, b"HDR8byte", b"payload") == 15
        assert writev_held(fd, b"", b"x" * 70_000) == 70_000
    finally:
        os.close(fd)
    assert path.read_bytes() == b"HDR8bytepayload" + b"x" * 70_000


def test_failure_raises_oserror_as_os_writev_does():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as exc:
        writev_held(w, b"a", b"b")
    with pytest.raises(OSError) as expected:
        os.writev(w, (b"a", b"b"))
    assert exc.value.errno == expected.value.errno


def test_only_bytes_are_taken():
    with pytest.raises(TypeError):
        writev_held(1, "text", b"")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        writev_held(1, b"", None)  # type: ignore[arg-type]
