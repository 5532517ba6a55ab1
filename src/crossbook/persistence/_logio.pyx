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
