# cython: language_level=3
"""The journal log's record write, holding the GIL.

``os.writev`` releases the GIL around the system call. The projection thread is usually waiting
for the GIL (it takes it back after every SQLite step), so each record write handed the GIL over
and the event loop then waited to get it back: about 7 us per record write on the loop at one
order per batch, against about 2 us for the write itself. A record write into the page cache
is that short, so it is done without letting go of the GIL. (Under ``synchronous=FULL`` the
``fdatasync`` after it still releases the GIL: that one waits for the disk.)
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno
from libc.errno cimport EINTR, errno
from posix.uio cimport iovec, writev


def writev_held(int fd, bytes header not None, bytes payload not None) -> int:
    """``os.writev(fd, (header, payload))`` without releasing the GIL: the number of bytes
    written (a short count as the system call returns it). OSError as os.writev raises it;
    an interrupted call is retried after signal handlers ran (PEP 475, as os.writev does)."""
    cdef iovec iov[2]
    cdef Py_ssize_t n
    iov[0].iov_base = <void*>PyBytes_AS_STRING(header)
    iov[0].iov_len = <size_t>PyBytes_GET_SIZE(header)
    iov[1].iov_base = <void*>PyBytes_AS_STRING(payload)
    iov[1].iov_len = <size_t>PyBytes_GET_SIZE(payload)
    while True:
        n = writev(fd, iov, 2)
        if n >= 0:
            return n
        if errno != EINTR:
            PyErr_SetFromErrno(OSError)
            return -1
        if PyErr_CheckSignals() < 0:
            return -1


# ---------------------------------------------------------------------------------------------
# Words shared with the projection process (crossbook.persistence.projector).

from libc.stdint cimport uint64_t
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_WRITABLE, PyBUF_SIMPLE

cdef extern from *:
    """
    #include <stdint.h>
    static inline void cb_store_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline uint64_t cb_load_u64(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    """
    void cb_store_u64(uint64_t *p, uint64_t v) nogil
    uint64_t cb_load_u64(uint64_t *p) nogil


cdef class SharedWords:
    """``count`` unsigned 64-bit words at the start of a writable buffer (an ``mmap`` of a file
    that another process maps too), stored and loaded atomically.

    Why not ``struct.pack_into`` or a memoryview: those copy the bytes with ``memcpy``, which
    the compiler may split, and a reader in the other process could then see half of a new
    position and half of the old one. A whole aligned word with release/acquire ordering also
    means a reader that sees a position sees everything written before it was published."""
    cdef Py_buffer _view
    cdef uint64_t *_words
    cdef readonly Py_ssize_t count

    def __cinit__(self, buffer, Py_ssize_t count):
        self._words = NULL
        if count < 1:
            raise ValueError(f"count must be positive, got {count}")
        try:
            PyObject_GetBuffer(buffer, &self._view, PyBUF_WRITABLE | PyBUF_SIMPLE)
        except BufferError as exc:
            raise TypeError(f"SharedWords needs a writable buffer: {exc}") from None
        if self._view.len < count * 8:
            PyBuffer_Release(&self._view)
            raise ValueError(f"buffer of {self._view.len} bytes is too small for {count} words")
        if (<size_t>self._view.buf) % 8:
            PyBuffer_Release(&self._view)
            raise ValueError("buffer is not 8-byte aligned")
        self._words = <uint64_t*>self._view.buf
        self.count = count

    def __dealloc__(self):
        if self._words != NULL:
            PyBuffer_Release(&self._view)
            self._words = NULL

    def release(self) -> None:
        """Let go of the buffer (the mmap can then be closed); later use raises ValueError."""
        if self._words != NULL:
            PyBuffer_Release(&self._view)
            self._words = NULL

    cdef inline uint64_t *_word(self, Py_ssize_t index) except NULL:
        if self._words == NULL:
            raise ValueError("shared words released")
        if index < 0 or index >= self.count:
            raise ValueError(f"word index {index} out of range 0..{self.count - 1}")
        return self._words + index

    def store(self, Py_ssize_t index, uint64_t value) -> None:
        """Publish ``value`` in word ``index`` (release store)."""
        cb_store_u64(self._word(index), value)

    def load(self, Py_ssize_t index) -> int:
        """Word ``index`` (acquire load)."""
        return cb_load_u64(self._word(index))
