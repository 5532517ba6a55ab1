"""The session with the real FIX dictionary: Rejects per version, FIXT application versions."""
from __future__ import annotations

import pytest

from crossbook.fix.session import Session, TestClock, UnsupportedMessageType
from crossbook.fix.store import MemoryStore

from fix_sessionkit import Peer, Recorder, logged_on, out, settings

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


# -- validator results other than a Reject, unknown application versions -----------------

def test_validator_garbled_result_is_ignored_without_advancing():
    from crossbook.fix.session import RejectInfo

    def validator(fields, begin_string, appl_ver_id):
        if any(t == 7777 for t, _ in fields):
            return RejectInfo(None, None, "odd structure", kind="garbled")
        return None

    s, peer, _, _ = logged_on(validator=validator)
    s.receive(peer.build(b"D", ORDER + [(7777, b"x")]))   # seq 2: dropped, no answer
    assert out(s) == [] and s.next_target_seq == 2 and s.connected
    assert any("garbled input ignored: odd structure" in getattr(e, "text", "") for e in s.events())
    s.receive(peer.build(b"D", ORDER, seq=2))              # the peer's resend is taken
    assert s.application.received and s.next_target_seq == 3


def test_validator_garbled_result_before_logon_disconnects():
    from crossbook.fix.session import DisconnectRequested, RejectInfo

    s = Session(settings(), store=MemoryStore(), clock=TestClock(), application=Recorder(),
                validator=lambda f, b, a: RejectInfo(None, kind="garbled"))
    s.on_connected()
    s.receive(Peer(s.clock).logon())
    assert out(s) == [] and not s.connected
    assert any(isinstance(e, DisconnectRequested) for e in s.events())


def test_validator_unsupported_version_gets_the_begin_string_logout():
    from crossbook.fix.session import RejectInfo

    def validator(fields, begin_string, appl_ver_id):
        if any(t == 7777 for t, _ in fields):
            return RejectInfo(None, 8, "Incorrect BeginString", kind="unsupported_version")
        return None

    s, peer, _, _ = logged_on(validator=validator)
    s.receive(peer.build(b"D", ORDER + [(7777, b"x")]))
    [logout] = out(s)
    assert logout.msg_type == b"5" and logout[58] == b"Incorrect BeginString"


def test_validator_contract_violations_are_clear_errors():
    from crossbook.fix.session import RejectInfo

    for bad, exc in ((RejectInfo(None), TypeError), (RejectInfo(5, kind="whatever"), ValueError)):
        s = Session(settings(), store=MemoryStore(), clock=TestClock(), application=Recorder(),
                    validator=lambda f, b, a, bad=bad: None if f[2] == (35, b"A") else bad)
        s.on_connected()
        peer = Peer(s.clock)
        s.receive(peer.logon())
        out(s)
        with pytest.raises(exc, match="validator returned"):
            s.receive(peer.build(b"0"))


def test_dictionary_validator_reports_garbled_structure_as_garbled():
    """The real validator's "garbled" verdict (8, 9, 35 not first) never reaches int()."""
    from crossbook.fix.messages import Message

    s, peer, app = session_for("FIX.4.4")
    fields = [(9, b"5"), (8, b"FIX.4.4"), (35, b"0"), (34, b"2"), (49, b"TW"), (52, b"20231114-22:13:20"),
              (56, b"ISLD"), (10, b"000")]
    s.next_message(Message(fields))
    assert out(s) == [] and s.next_target_seq == 2 and s.connected


@pytest.mark.parametrize("appl", [b"99", b"", b"FIX.5.0SP2", b"\xff"])
def test_unknown_appl_ver_id_gets_a_reject_never_an_exception(appl):
    s, peer, app = session_for("FIXT.1.1", default_appl_ver_id="9")
    s.receive(peer.build(b"D", ORDER, header=[(1128, appl)]))
    [rej] = out(s)
    assert rej.msg_type == b"3" and rej[45] == b"2" and rej[371] == b"1128"
    assert rej[373] == (b"4" if appl == b"" else b"5")
    assert app.received == [] and s.next_target_seq == 3 and s.connected


@pytest.mark.parametrize("appl", [b"5", b"0", b"7"])
def test_known_appl_ver_id_values_without_a_spec_fall_back_to_the_session_dictionary(appl):
    # 5 (FIX.4.3) and 0 (FIX27) are valid ApplVerIDs the engine has no spec for; 7 has one.
    s, peer, app = session_for("FIXT.1.1", default_appl_ver_id="9")
    s.receive(peer.build(b"D", ORDER, header=[(1128, appl)]))
    assert out(s) == [] and len(app.received) == 1


def test_unknown_default_appl_ver_id_in_the_logon_falls_back_to_ours():
    clock = TestClock()
    app = Recorder()
    s = Session(settings(begin_string="FIXT.1.1", default_appl_ver_id="9"), store=MemoryStore(), clock=clock,
                application=app)
    s.on_connected()
    peer = Peer(clock, begin="FIXT.1.1")
    s.receive(peer.logon(extra=[(1137, b"42")]))
    [logon] = out(s)
    assert logon.msg_type == b"A"
    s.receive(peer.build(b"D", ORDER))
    s.receive(peer.build(b"D", [f for f in ORDER if f[0] != 54]))
    [rej] = out(s)
    assert len(app.received) == 1 and rej[371] == b"54" and rej[373] == b"1"


BUSINESS_REJECT = [(45, b"2"), (58, b"Unsupported Message Type"), (372, b"8"), (380, b"3")]


@pytest.mark.parametrize("appl", ["7", "8", "9"])
def test_fixt_business_reject_with_default_appl_ver_id_is_accepted(appl):
    """QuickFIX's acceptor (and fix-test-server) put 1137 on 35=j; we must read it quietly."""
    s, peer, app = session_for("FIXT.1.1", default_appl_ver_id=appl)
    s.receive(peer.build(b"j", BUSINESS_REJECT + [(1137, appl.encode())]))
    assert out(s) == [] and len(app.received) == 1 and app.received[0][1137] == appl.encode()


def test_fixt_business_reject_is_still_validated_apart_from_one_1137():
    s, peer, app = session_for("FIXT.1.1", default_appl_ver_id="9")
    s.receive(peer.build(b"j", BUSINESS_REJECT + [(1137, b"9"), (1137, b"9")]))
    s.receive(peer.build(b"j", BUSINESS_REJECT + [(1137, b"9"), (44, b"1")]))
    s.receive(peer.build(b"j", [f for f in BUSINESS_REJECT if f[0] != 380] + [(1137, b"9")]))
    twice, undefined, missing = out(s)
    assert (twice[373], twice[371]) == (b"2", b"1137")          # a second 1137 is not excused
    assert (undefined[373], undefined[371]) == (b"2", b"44")
    assert (missing[373], missing[371]) == (b"1", b"380")
    assert app.received == []


def test_1137_on_other_fixt_application_messages_is_still_refused():
    s, peer, app = session_for("FIXT.1.1", default_appl_ver_id="9")
    s.receive(peer.build(b"D", ORDER + [(1137, b"9")]))
    [rej] = out(s)
    assert (rej[373], rej[371]) == (b"2", b"1137")


def test_business_reject_from_our_acceptor_passes_our_validating_initiator():
    """End to end in memory: the acceptor refuses a message with 35=j carrying 1137 and our
    initiator, validating with the same dictionary, takes it without a Reject."""
    class Refuser(Recorder):
        def from_app(self, session, message):
            super().from_app(session, message)
            raise UnsupportedMessageType()

    clock = TestClock()
    acc_app, ini_app = Refuser(), Recorder()
    acc = Session(settings(begin_string="FIXT.1.1", default_appl_ver_id="9"), store=MemoryStore(), clock=clock,
                  application=acc_app)
    ini = Session(settings(begin_string="FIXT.1.1", default_appl_ver_id="9", sender_comp_id="TW",
                           target_comp_id="ISLD", connection_type="initiator",
                           socket_connect_host="127.0.0.1", socket_connect_port=1),
                  store=MemoryStore(), clock=clock, application=ini_app)
    acc.on_connected()
    ini.on_connected()

    def pump():
        for _ in range(10):
            a, b = ini.data_to_send(), acc.data_to_send()
            if not a and not b:
                return
            acc.receive(a)
            ini.receive(b)

    pump()
    assert ini.is_logged_on and acc.is_logged_on
    ini.send(b"H", [(11, b"X"), (54, b"1"), (55, b"IBM")])
    pump()
    [reject] = ini_app.received
    assert reject.msg_type == b"j" and reject[1137] == b"9" and reject[380] == b"3"
    assert ini.next_target_seq == acc.next_sender_seq and acc.next_target_seq == ini.next_sender_seq
