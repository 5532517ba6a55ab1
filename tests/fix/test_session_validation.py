"""The session with the real FIX dictionary: Rejects per version, FIXT application versions."""
from __future__ import annotations

import pytest

from crossbook.fix.session import Session, TestClock, UnsupportedMessageType
from crossbook.fix.store import MemoryStore

from fix_sessionkit import Peer, Recorder, out, settings

pytest.importorskip("crossbook.fix.validation")

ORDER = [(11, b"ID"), (21, b"1"), (38, b"100"), (40, b"1"), (54, b"1"), (55, b"ABC"), (60, b"20260101-00:00:00")]


def session_for(begin: str, **kw):
    clock = TestClock()
    app = Recorder()
    s = Session(settings(begin_string=begin, **kw), store=MemoryStore(), clock=clock, application=app)
    assert s.validator is not None
    s.on_connected()
    peer = Peer(clock, begin=begin)
    extra = [(1137, kw["default_appl_ver_id"].encode())] if begin == "FIXT.1.1" else []
    s.receive(peer.logon(extra=extra))
    [logon] = out(s)
    assert logon.msg_type == b"A"
    return s, peer, app


@pytest.mark.parametrize("begin, kw", [("FIX.4.2", {}), ("FIX.4.4", {}),
                                       ("FIXT.1.1", {"default_appl_ver_id": "7"}),
                                       ("FIXT.1.1", {"default_appl_ver_id": "9"})])
def test_valid_order_reaches_the_application(begin, kw):
    s, peer, app = session_for(begin, **kw)
    s.receive(peer.build(b"D", ORDER))
    assert out(s) == [] and len(app.received) == 1
    assert s.next_target_seq == 3


@pytest.mark.parametrize("begin, kw", [("FIX.4.2", {}), ("FIX.4.4", {}), ("FIXT.1.1", {"default_appl_ver_id": "8"})])
def test_missing_required_tag_is_rejected_and_counted(begin, kw):
    s, peer, app = session_for(begin, **kw)
    s.receive(peer.build(b"D", [f for f in ORDER if f[0] != 54]))
    [rej] = out(s)
    assert (rej.msg_type, rej[45], rej[58], rej[371], rej[372], rej[373]) == (
        b"3", b"2", b"Required tag missing", b"54", b"D", b"1")
    assert app.received == [] and s.next_target_seq == 3


def test_fix42_omits_reason_above_invalid_msg_type():
    s, peer, app = session_for("FIX.4.2")
    s.receive(peer.build(b"D", ORDER[:3] + [(40, b"1"), (40, b"2")] + ORDER[4:]))
    [rej] = out(s)
    assert rej[58] == b"Tag appears more than once" and rej[371] == b"40" and 373 not in rej
    s2, peer2, _ = session_for("FIX.4.4")
    s2.receive(peer2.build(b"D", ORDER[:3] + [(40, b"1"), (40, b"2")] + ORDER[4:]))
    [rej2] = out(s2)
    assert rej2[373] == b"13"


def test_unknown_msg_type_and_invalid_tag():
    s, peer, app = session_for("FIX.4.4")
    s.receive(peer.build(b"*"))
    [rej] = out(s)
    assert rej[58] == b"Invalid MsgType" and rej[373] == b"11" and 371 not in rej
    s.receive(peer.build(b"0", [(999, b"HI")]))
    [rej] = out(s)
    assert rej[58] == b"Invalid tag number" and rej[371] == b"999" and rej[373] == b"0"
    assert s.next_target_seq == 4


def test_fixt_application_version_comes_from_1128_or_the_logon():
    s, peer, app = session_for("FIXT.1.1", default_appl_ver_id="9")
    s.receive(peer.build(b"D", ORDER, header=[(1128, b"9")]))
    assert len(app.received) == 1 and out(s) == []


def test_business_reject_carries_appl_ver_on_fixt():
    class Refuser(Recorder):
        def from_app(self, session, message):
            raise UnsupportedMessageType()

    clock = TestClock()
    s = Session(settings(begin_string="FIXT.1.1", default_appl_ver_id="7"), store=MemoryStore(), clock=clock,
                application=Refuser())
    s.on_connected()
    peer = Peer(clock, begin="FIXT.1.1")
    s.receive(peer.logon(extra=[(1137, b"7")]))
    out(s)
    s.receive(peer.build(b"8", [(6, b"0"), (14, b"0"), (17, b"E"), (37, b"O"), (39, b"0"), (54, b"1"), (55, b"X"),
                                (150, b"0"), (151, b"1")]))
    [rej] = out(s)
    assert rej.msg_type == b"j" and rej[1137] == b"7" and rej[380] == b"3"


def test_validation_switches_reach_the_validator():
    s, peer, app = session_for("FIX.4.4", validate_fields_have_values=False)
    s.receive(peer.build(b"D", ORDER + [(58, b"")]))
    assert out(s) == [] and len(app.received) == 1
    s2, peer2, app2 = session_for("FIX.4.4")
    s2.receive(peer2.build(b"D", ORDER + [(58, b"")]))
    [rej] = out(s2)
    assert rej[373] == b"4" and rej[371] == b"58"
