"""A restart after a kill inside a client session's store reset: the journal's inbound mark of
the old numbering must not move a reset store forward (the client, which reset too, logs on
with MsgSeqNum 1 and would be logged out as "too low")."""
from __future__ import annotations

import os
import types

from crossbook.app.server import Server
from crossbook.fix.store import FileStore
from crossbook.oms.gateway import INBOUND_MARK


class _Killed(BaseException):
    pass


def _restart(store: FileStore, meta: dict[str, str]) -> None:
    session = types.SimpleNamespace(settings=types.SimpleNamespace(target_comp_id="FIRM1"),
                                    session_id="FIRM1", store=store)
    Server._rewind_inbound(types.SimpleNamespace(acceptor=types.SimpleNamespace(sessions={"x": session})), meta)


def test_restart_after_a_kill_inside_reset_never_resumes_the_old_numbering_at_1(tmp_path, monkeypatch):
    meta = {INBOUND_MARK + "FIRM1": f"42 {100.0!r}"}     # the journal's last mark, old numbering
    finished = False
    kill_at = 0
    while not finished:
        assert kill_at < 32, "reset() never finished"
        directory = str(tmp_path / str(kill_at))
        s = FileStore(directory, "FIRM1", now=100.0, batch=True)
        for seq in (1, 2, 3):
            s.store_sent(seq, b"sent %d" % seq)
        s.set_next_target_seq(42)
        s.write_deferred()
        calls = []
        for name in ("ftruncate", "pwrite", "replace", "fsync"):
            def wrapper(*args, _real=getattr(os, name), _name=name):
                if len(calls) == kill_at:
                    raise _Killed(_name)
                calls.append(_name)
                return _real(*args)
            monkeypatch.setattr(os, name, wrapper)
        try:
            s.reset(200.0)            # ResetOnLogout / ResetOnDisconnect / a 141=Y logon
            finished = True
        except _Killed:
            pass
        monkeypatch.undo()
        for fd in (s._body_fd, s._index_fd, s._seq_fd):
            os.close(fd)
        s._body_fd = s._index_fd = s._seq_fd = -1
        r = FileStore(directory, "FIRM1", now=300.0, batch=True)
        _restart(r, meta)
        # Either the reset never happened (the old numbering: both numbers where they were) or it
        # did (both at 1). Before: the "1 1" line under the old creation time, whose target the
        # restart moved to the journal's old mark: the client, which reset, sends 1: "too low".
        state = (r.creation_time(), r.get_next_sender_seq(), r.get_next_target_seq())
        assert state in ((100.0, 4, 42), (200.0, 1, 1)), f"killed at call {kill_at} ({calls}): {state}"
        r.close()
        kill_at += 1
