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


def test_shared_words_are_seen_through_another_mapping_of_the_file(tmp_path):
    import mmap

    from crossbook.persistence._logio import SharedWords

    path = tmp_path / "shared"
    path.write_bytes(b"\0" * mmap.PAGESIZE)
    with open(path, "r+b") as a, open(path, "r+b") as b:
        map_a, map_b = mmap.mmap(a.fileno(), mmap.PAGESIZE), mmap.mmap(b.fileno(), mmap.PAGESIZE)
        writer, reader = SharedWords(map_a, 4), SharedWords(map_b, 4)
        writer.store(3, 2**64 - 1)
        writer.store(0, 123456789)
        assert (reader.load(0), reader.load(3)) == (123456789, 2**64 - 1)
        assert map_b[:8] == (123456789).to_bytes(8, "little")
        with pytest.raises(ValueError, match="out of range"):
            reader.load(4)
        with pytest.raises(ValueError, match="too small"):
            SharedWords(map_a, mmap.PAGESIZE // 8 + 1)
        with pytest.raises(TypeError):
            SharedWords(b"read-only bytes", 1)
        writer.release()
        with pytest.raises(ValueError, match="released"):
            writer.store(0, 1)
        reader.release()
        map_a.close()                        # released: nothing holds the buffer any more
        map_b.close()
