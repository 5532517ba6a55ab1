"""Sans-IO session: logon, sequence numbers, resend, rejects, timers (test clock, no sockets)."""
from __future__ import annotations

import pytest

from crossbook.fix.messages import Message
from crossbook.fix.session import (
    AppMessageReceived, DisconnectRequested, LoggedOn, LoggedOut, Session, SessionID, TestClock,
    UnsupportedMessageType,
)
from crossbook.fix.store import MemoryStore

from fix_sessionkit import Peer, Recorder, logged_on, make, out, settings


def fields_of(m: Message) -> list[tuple[int, bytes]]:
    return [(t, v) for t, v in m.fields if t not in (9, 10, 52, 122)]


def test_logon_reply_is_quickfix_shaped_and_logs_on():
    s, peer, clock, app = make()
    s.receive(peer.logon(hb=30))
    [reply] = out(s)
    assert fields_of(reply) == [(8, b"FIX.4.4"), (35, b"A"), (34, b"1"), (49, b"ISLD"), (56, b"TW"),
                                (98, b"0"), (108, b"30")]
    assert len(reply[52]) == 21  # milliseconds
    assert s.is_logged_on and app.logons == 1
    assert any(isinstance(e, LoggedOn) for e in s.events())
    assert s.next_target_seq == 2 and s.next_sender_seq == 2


def test_fixt_logon_needs_default_appl_ver_id():
    s, peer, clock, app = make(begin_string="FIXT.1.1", default_appl_ver_id="9")
    s.receive(peer.logon(extra=[(1137, b"9")]))
    [reply] = out(s)
    assert reply[1137] == b"9"
    s2, peer2, _, _ = make(begin_string="FIXT.1.1", default_appl_ver_id="9")
    s2.receive(peer2.build(b"A", [(98, b"0"), (108, b"30")]))
    assert out(s2) == [] and not s2.connected
    assert any(isinstance(e, DisconnectRequested) for e in s2.events())


def test_reset_seq_num_flag_is_echoed_and_resets():
    s, peer, clock, app = logged_on()
    for _ in range(3):
        s.receive(peer.build(b"0"))
    s.receive(peer.logon(extra=[(141, b"Y")], seq=1))
    [reply] = out(s)
    assert reply[141] == b"Y" and reply[34] == b"1"
    assert s.next_target_seq == 2


def test_credentials_are_checked():
    s, peer, clock, app = make(username="u", password="p")
    s.receive(peer.logon(extra=[(553, b"u"), (554, b"wrong")]))
    [reply] = out(s)
    assert reply.msg_type == b"5" and b"Username" in reply[58]
    assert not s.connected
    s, peer, clock, app = make(username="u", password="p")
    s.receive(peer.logon(extra=[(553, b"u"), (554, b"p")]))
    assert s.is_logged_on


def test_test_request_is_answered_with_its_id():
    s, peer, clock, app = logged_on()
    s.receive(peer.build(b"1", [(112, b"HELLO")]))
    [hb] = out(s)
    assert hb.msg_type == b"0" and hb[112] == b"HELLO"


def test_seq_too_high_queues_and_asks_for_resend_then_replays_queue():
    s, peer, clock, app = logged_on()
    peer.seq = 4
    s.receive(peer.build(b"D", [(11, b"B")]))  # 4, expecting 2
    [rr] = out(s)
    assert rr.msg_type == b"2" and rr[7] == b"2" and rr[16] == b"0"
    assert app.received == []
    s.receive(peer.build(b"D", [(11, b"A2")], seq=2))
    s.receive(peer.build(b"D", [(11, b"A3")], seq=3))
    assert [m[11] for m in app.received] == [b"A2", b"A3", b"B"]
    assert s.next_target_seq == 5
    assert [type(e) for e in s.events() if isinstance(e, AppMessageReceived)] == [AppMessageReceived] * 3


def test_seq_too_low_without_possdup_logs_out_with_quickfix_text():
    s, peer, clock, app = logged_on()
    s.receive(peer.build(b"0"))
    s.receive(peer.build(b"0", seq=2))
    [logout] = out(s)
    assert logout.msg_type == b"5"
    assert logout[58] == b"MsgSeqNum too low, expecting 3 but received 2"
    assert not s.connected


def test_possdup_duplicate_is_ignored_and_needs_orig_sending_time():
    s, peer, clock, app = logged_on()
    s.receive(peer.build(b"D", [(11, b"X")]))
    s.receive(peer.build(b"D", [(11, b"X")], seq=2, header=[(43, b"Y"), (122, b"20200101-00:00:00")]))
    assert len(app.received) == 1 and out(s) == []
    s.receive(peer.build(b"D", [(11, b"X")], seq=2, header=[(43, b"Y")]))
    [rej] = out(s)
    assert rej.msg_type == b"3" and rej[371] == b"122" and rej[373] == b"1"
    assert s.next_target_seq == 3


def test_resend_replays_app_messages_and_gap_fills_admin():
    s, peer, clock, app = logged_on()   # we sent Logon = 1
    s.send(b"8", [(11, b"a")])          # 2
    s.send(b"8", [(11, b"b")])          # 3
    s.receive(peer.build(b"1", [(112, b"T")]))  # heartbeat 4
    s.send(b"8", [(11, b"c")])          # 5
    out(s)
    clock.advance(5)
    s.receive(peer.build(b"2", [(7, 1), (16, 0)]))
    replies = out(s)
    summary = [(m.msg_type, int(m[34]), m.get(36), m.get(43)) for m in replies]
    assert summary == [(b"4", 1, b"2", b"Y"), (b"8", 2, None, b"Y"), (b"8", 3, None, b"Y"),
                       (b"4", 4, b"5", b"Y"), (b"8", 5, None, b"Y")]
    assert all(m.get(122) for m in replies)
    assert replies[1][122] != replies[1][52]  # original time kept, new SendingTime
    assert s.next_sender_seq == 6


def test_sequence_reset_reset_and_gap_fill():
    s, peer, clock, app = logged_on()
    s.receive(peer.build(b"4", [(36, 10)], seq=0))
    assert s.next_target_seq == 10
    s.receive(peer.build(b"4", [(36, 5)], seq=0))
    [rej] = out(s)
    assert rej.msg_type == b"3" and rej[373] == b"5" and rej[45] == b"0"
    peer.seq = 10
    s.receive(peer.build(b"4", [(36, 20), (123, b"Y")]))
    assert s.next_target_seq == 20


def test_sending_time_accuracy_rejects_and_logs_out():
    s, peer, clock, app = logged_on()
    s.receive(peer.build(b"0", sending_time=clock.now() - 121))
    rej, logout = out(s)
    assert rej.msg_type == b"3" and rej[373] == b"10" and rej[58] == b"SendingTime accuracy problem"
    assert logout.msg_type == b"5"


def test_comp_id_problem_rejects_and_logs_out():
    s, peer, clock, app = logged_on()
    peer.sender = b"WT"
    s.receive(peer.build(b"D", [(11, b"x")]))
    rej, logout = out(s)
    assert rej[373] == b"9" and rej[58] == b"CompID problem" and logout.msg_type == b"5"
    assert app.received == []


def test_wrong_begin_string_logs_out():
    s, peer, clock, app = logged_on()
    peer.begin = b"FIX.4.1"
    s.receive(peer.build(b"1", [(112, b"x")]))
    [logout] = out(s)
    assert logout[58] == b"Incorrect BeginString"
    clock.advance(2.1)
    s.on_timer()
    assert not s.connected  # LogoutTimeout


def test_garbled_message_is_ignored_without_advancing():
    s, peer, clock, app = logged_on()
    good = peer.build(b"1", [(112, b"A")])
    bad = good[:-4] + b"000\x01" if not good.endswith(b"=000\x01") else good[:-4] + b"001\x01"
    s.receive(bad)
    assert out(s) == [] and s.next_target_seq == 2 and s.connected
    s.receive(good)
    [hb] = out(s)
    assert hb[112] == b"A"


def test_unsupported_message_gets_business_reject():
    class Refuser(Recorder):
        def from_app(self, session, message):
            raise UnsupportedMessageType()

    clock = TestClock()
    s = Session(settings(), store=MemoryStore(), clock=clock, application=Refuser(), validator=None)
    s.on_connected()
    peer = Peer(clock)
    s.receive(peer.logon())
    out(s)
    s.receive(peer.build(b"8", [(37, b"x")]))
    [rej] = out(s)
    assert rej.msg_type == b"j" and rej[380] == b"3" and rej[58] == b"Unsupported Message Type"
    assert rej[372] == b"8" and rej[45] == b"2"
    assert s.next_target_seq == 3


def test_reject_reverses_routing_fields():
    s, peer, clock, app = logged_on()
    peer.sender = b"WT"  # CompID problem -> Reject, whose header must reverse the routing fields
    s.receive(peer.build(b"0", header=[(115, b"JCD"), (116, b"CS"), (144, b"CHI"), (129, b"")]))
    rej, _logout = out(s)
    assert rej.msg_type == b"3" and rej[373] == b"9"
    assert rej[128] == b"JCD" and rej[129] == b"CS" and rej[145] == b"CHI"
    assert 115 not in rej and 116 not in rej and 144 not in rej


def test_heartbeat_test_request_and_timeout():
    s, peer, clock, app = logged_on()  # HeartBtInt 30
    clock.advance(29.9)
    s.on_timer()
    assert out(s) == []
    clock.advance(0.2)
    s.on_timer()
    [hb] = out(s)
    assert hb.msg_type == b"0" and 112 not in hb
    clock.advance(6)  # 36.1 s of silence >= 1.2 x 30
    s.on_timer()
    [tr] = out(s)
    assert tr.msg_type == b"1" and tr[112] == b"TEST"
    clock.advance(30)  # 66.1 s < 2.4 x 30 = 72
    s.on_timer()
    assert s.connected
    clock.advance(6)
    s.on_timer()
    assert not s.connected
    events = s.events()
    assert any(isinstance(e, DisconnectRequested) for e in events)
    assert any(isinstance(e, LoggedOut) for e in events) and app.logouts == 1


def test_logout_exchange():
    s, peer, clock, app = logged_on()
    s.logout("bye")
    [lo] = out(s)
    assert lo.msg_type == b"5" and lo[58] == b"bye"
    assert s.connected
    s.receive(peer.build(b"5"))
    assert not s.connected


def test_unsolicited_logout_is_answered():
    s, peer, clock, app = logged_on()
    s.receive(peer.build(b"5", [(58, b"done")]))
    [lo] = out(s)
    assert lo.msg_type == b"5" and not s.connected


def test_app_messages_sent_while_offline_are_stored_for_resend():
    clock = TestClock()
    s = Session(settings(), store=MemoryStore(), clock=clock, validator=None)
    assert s.send(b"8", [(11, b"a")])
    assert s.data_to_send() == b""
    assert s.next_sender_seq == 2 and len(s.store.get(1, 1)) == 1


def test_send_refuses_admin_types_and_session_header_tags():
    s, peer, clock, app = logged_on()
    with pytest.raises(ValueError):
        s.send(b"0", [])
    with pytest.raises(ValueError):
        s.send(b"D", [], header=[(34, 5)])


def test_initiator_logs_on_and_detects_logon_timeout():
    clock = TestClock()
    s = Session(settings(connection_type="initiator", socket_connect_host="127.0.0.1", socket_connect_port=1,
                         heart_bt_int=10, reset_on_logon=True),
                store=MemoryStore(), clock=clock, validator=None)
    s.on_connected()
    [logon] = out(s)
    assert logon.msg_type == b"A" and logon[108] == b"10" and logon[141] == b"Y"
    clock.advance(11)
    s.on_timer()
    assert not s.connected


def test_initiator_logon_response():
    clock = TestClock()
    s = Session(settings(connection_type="initiator", socket_connect_host="h", socket_connect_port=1,
                         heart_bt_int=10), store=MemoryStore(), clock=clock, validator=None)
    s.on_connected()
    out(s)
    peer = Peer(clock)
    s.receive(peer.logon(hb=10))
    assert s.is_logged_on and out(s) == []


def test_peer_racing_ahead_forever_is_cut_off(monkeypatch):
    import crossbook.fix.session as session_module
    monkeypatch.setattr(session_module, "MAX_QUEUED", 20)
    s, peer, clock, app = logged_on()
    peer.seq = 100
    for _ in range(25):
        s.receive(peer.build(b"0"))
    replies = out(s)
    assert replies[0].msg_type == b"2"  # one ResendRequest, then a Logout when the queue is full
    assert replies[-1].msg_type == b"5" and b"ahead" in replies[-1][58]
    assert not s.connected and len(s._queue) == 0


def test_resend_request_for_nothing_sent_is_ignored_but_counted():
    s, peer, clock, app = logged_on()
    s.receive(peer.build(b"2", [(7, 50), (16, 0)]))
    s.receive(peer.build(b"2", [(7, 5), (16, 2)]))
    assert out(s) == [] and s.next_target_seq == 4 and s.connected


def test_custom_validator_reasons_and_texts():
    from crossbook.fix.session import RejectInfo

    def validator(fields, begin_string, appl_ver_id):
        tags = [t for t, _ in fields]
        if 7777 in tags:
            return RejectInfo(18, 7777, "Invalid/Unsupported Application Version")
        if 6666 in tags:
            return RejectInfo(5, 6666, "some other wording")
        return None

    s, peer, clock, app = logged_on(validator=validator)
    s.receive(peer.build(b"D", [(7777, b"x")]))
    s.receive(peer.build(b"D", [(6666, b"x")]))
    first, second = out(s)
    assert first[373] == b"18" and first[58] == b"Invalid/Unsupported Application Version"
    assert second[58] == b"Value is incorrect (out of range) for this tag"  # QuickFIX's text wins
    assert s.next_target_seq == 4


def test_logout_times_out_even_without_heartbeats():
    s, peer, clock, app = make()
    s.receive(peer.logon(hb=0))
    out(s)
    s.logout()
    clock.advance(2.5)
    s.on_timer()
    assert not s.connected


def test_send_leaves_the_callers_body_alone_and_to_app_works_on_a_copy():
    """send() hands a body of bytes values straight to the encoder when to_app is the base
    no-op; an overriding to_app gets a copy (and may change it) and the caller's list never
    changes either way; other values are converted as before."""
    from crossbook.fix.codec import bytes_values

    s, peer, clock, app = logged_on()
    body = [(11, b"C1"), (55, b"AAPL"), (54, b"1")]
    kept = list(body)
    assert s.send(b"D", body) and body == kept
    [m] = out(s)
    assert [(t, v) for t, v in fields_of(m) if t in (11, 55, 54)] == kept

    class Tagging(Recorder):
        def to_app(self, session, msg_type, sent_body):
            assert sent_body is not body
            sent_body.append((58, b"tagged"))

    s.application = Tagging()
    assert s.send(b"D", body) and body == kept
    [m] = out(s)
    assert m.get(58) == b"tagged"
    s.application = app
    assert s.send(b"D", [(11, "C2"), (38, 100), (54, b"2")])
    [m] = out(s)
    assert (m.get(11), m.get(38), m.get(54)) == (b"C2", b"100", b"2")
    assert bytes_values([(1, b"x"), (2, b"")]) and bytes_values([])
    assert not bytes_values([(1, "x")]) and not bytes_values([(1, 5)]) and not bytes_values([[1, b"x"]])
    assert not bytes_values([(1, bytearray(b"x"))]) and not bytes_values([(1, b"x", 3)])



def test_resend_request_received_while_too_high_is_answered_then_counted_when_the_gap_closes():
    s, peer, clock, app = logged_on()            # expecting 2 from the peer
    s.send(b"8", [(11, b"a")])                   # our 2
    out(s)
    peer.seq = 4
    s.receive(peer.build(b"2", [(7, 2), (16, 0)]))   # its 4, while we expect 2
    [resent] = out(s)                            # answered at once (no deadlock, QFJ-673)...
    assert resent.msg_type == b"8" and resent[43] == b"Y"
    assert s.next_target_seq == 2
    s.receive(peer.build(b"0", seq=2))
    s.receive(peer.build(b"0", seq=3))
    assert s.next_target_seq == 5                # ...and its number counted once the gap closed
    assert out(s) == []                          # not answered twice


def test_app_message_event_is_a_frozen_dataclass_like_the_others():
    """AppMessageReceived has its own __init__ (speed); it must still behave as its siblings."""
    import dataclasses
    sid = SessionID("FIX.4.4", "A", "B")
    msg = object()
    ev = AppMessageReceived(sid, msg)
    assert ev == AppMessageReceived(session_id=sid, message=msg) and hash(ev) == hash(AppMessageReceived(sid, msg))
    assert ev != AppMessageReceived(sid, object()) and ev != LoggedOut(sid, "")
    assert [f.name for f in dataclasses.fields(ev)] == ["session_id", "message"]
    assert dataclasses.replace(ev, message=1).message == 1 and ev.message is msg
    assert repr(ev).startswith("AppMessageReceived(session_id=")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.message = None
    with pytest.raises(TypeError):
        AppMessageReceived(sid)
