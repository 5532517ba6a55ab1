"""asyncio transports on loopback: our initiator against our acceptor, refusals, reconnects."""
from __future__ import annotations

import asyncio
import logging
import contextlib
import socket

from crossbook.fix.session import SystemClock
from crossbook.fix.settings import SessionSettings
from crossbook.fix.transport import Acceptor, Initiator

from fix_sessionkit import ORDER, Collect, ExecutingVenue, Peer, until


def acceptor_settings(*targets: str, **kw) -> list[SessionSettings]:
    return [SessionSettings(begin_string="FIX.4.4", sender_comp_id="VENUE", target_comp_id=t, **kw) for t in targets]


def initiator_settings(sender: str, port: int, **kw) -> SessionSettings:
    base = dict(begin_string="FIX.4.4", sender_comp_id=sender, target_comp_id="VENUE", connection_type="initiator",
                socket_connect_host="127.0.0.1", socket_connect_port=port, heart_bt_int=5, reconnect_interval=0.2)
    base.update(kw)
    return SessionSettings(**base)


@contextlib.asynccontextmanager
async def running_acceptor(app, *targets: str, port: int = 0, **kw):
    """An Acceptor on loopback for ``targets`` (settings ``kw``), started; stopped at the end."""
    acceptor = Acceptor(acceptor_settings(*targets, **kw), app, host="127.0.0.1", port=port)
    await acceptor.start()
    try:
        yield acceptor
    finally:
        await acceptor.stop()


@contextlib.asynccontextmanager
async def running_initiator(sender: str, port: int, app, *, max_logon_attempts: int | None = None, **kw):
    """An Initiator for ``sender`` to ``port`` (settings ``kw``), started; stopped at the end."""
    ini = Initiator(initiator_settings(sender, port, **kw), app, max_logon_attempts=max_logon_attempts)
    try:
        await ini.start()
        yield ini
    finally:
        await ini.stop()


def test_initiator_and_acceptor_exchange_orders_and_log_out():
    async def main():
        venue = ExecutingVenue()
        acceptor = Acceptor(acceptor_settings("FIRM1", "FIRM2"), venue, host="127.0.0.1", port=0)
        await acceptor.start()
        firms = [Collect(), Collect()]
        initiators = [Initiator(initiator_settings(f"FIRM{i + 1}", acceptor.port), firms[i]) for i in range(2)]
        try:
            for ini in initiators:
                await ini.start()
            assert all([await ini.wait_logged_on(5) for ini in initiators])
            for ini in initiators:
                ini.send(None, b"D", ORDER)
            assert await until(lambda: all(len(f.messages) == 1 for f in firms))
            assert sorted(t for t, _ in venue.messages) == ["FIRM1", "FIRM2"]
            report = firms[0].messages[0][1]
            assert report.msg_type == b"8" and report[11] == b"C1" and report[55] == b"ABC"
        finally:
            for ini in initiators:
                await ini.stop(logout_grace=2.0)
            await until(lambda: venue.logouts == 2, 3)
            await acceptor.stop()
        assert venue.logons == 2 and venue.logouts == 2
        assert all(f.logouts == 1 for f in firms)

    asyncio.run(main())


def _raw_exchange(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    """Send bytes, return what came back before the acceptor closed (b'' = closed silently)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return b"<open>" + b"".join(chunks)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_unknown_comp_ids_and_non_logon_are_refused_by_closing():
    async def main():
        async with running_acceptor(Collect(), "FIRM1") as acceptor:
            clock = SystemClock()
            loop = asyncio.get_running_loop()
            unknown = Peer(clock, sender="WHO", target="VENUE").logon()
            assert await loop.run_in_executor(None, _raw_exchange, acceptor.port, unknown) == b""
            not_logon = Peer(clock, sender="FIRM1", target="VENUE").build(b"0")
            assert await loop.run_in_executor(None, _raw_exchange, acceptor.port, not_logon) == b""
            garbage = b"hello world\x01" * 10 + b"8=FIX.4.4\x019=5\x0135=A\x0110=000\x01"
            assert await loop.run_in_executor(None, _raw_exchange, acceptor.port, garbage) == b""

    asyncio.run(main())


def test_second_connection_for_a_logged_on_session_is_refused():
    async def main():
        async with running_acceptor(Collect(), "FIRM1") as acceptor, \
                running_initiator("FIRM1", acceptor.port, Collect()) as ini:
            assert await ini.wait_logged_on(5)
            dup = Peer(SystemClock(), sender="FIRM1", target="VENUE").logon()
            got = await asyncio.get_running_loop().run_in_executor(None, _raw_exchange, acceptor.port, dup)
            assert got == b""
            assert ini.is_logged_on()

    asyncio.run(main())


def test_initiator_reconnects_after_acceptor_restart_and_resumes_sequence_numbers():
    async def main():
        venue = Collect()
        async with running_acceptor(venue, "FIRM1") as acceptor, \
                running_initiator("FIRM1", acceptor.port, Collect()) as ini:
            assert await ini.wait_logged_on(5)
            ini.send(None, b"D", ORDER)
            assert await until(lambda: len(venue.messages) == 1)
            sent_before = ini.session().next_sender_seq
            # Drop the connection from the acceptor side without a logout.
            acceptor_session = acceptor.session()
            for conn in list(acceptor._connections.values()):
                conn.close()
            assert await until(lambda: not ini.session().is_logged_on)
            assert await until(lambda: ini.session().is_logged_on, 5)
            assert ini.connect_attempts >= 2
            # Sequence numbers continued: the new Logon used the next number, nothing was reset.
            assert ini.session().next_sender_seq == sent_before + 1
            assert acceptor_session.next_target_seq == sent_before + 1

    asyncio.run(main())


def test_initiator_keeps_retrying_until_the_acceptor_appears():
    async def main():
        port = _free_port()
        async with running_initiator("FIRM1", port, Collect()) as ini:
            assert await until(lambda: ini.connect_attempts >= 2, 5)
            async with running_acceptor(Collect(), "FIRM1", port=port):
                try:
                    assert await ini.wait_logged_on(5)
                finally:
                    await ini.stop()   # while the acceptor is up: a clean logout, not a reconnect loop

    asyncio.run(main())


def test_failing_application_costs_the_connection_not_the_acceptor():
    class Broken(Collect):
        def from_app(self, session, message):
            raise RuntimeError("bug in the application")

    async def main():
        broken = Broken()
        async with running_acceptor(broken, "FIRM1") as acceptor, \
                running_initiator("FIRM1", acceptor.port, Collect()) as ini:
            assert await ini.wait_logged_on(5)
            ini.send(None, b"D", ORDER)
            assert await until(lambda: broken.logouts >= 1)
            # The order was not counted ...
            assert acceptor.session().next_target_seq == 2
            # ... so after the reconnect it is asked for again (and fails again: still no crash).
            assert await until(lambda: broken.logons >= 2 and broken.logouts >= 2, 5)
            assert acceptor.session().next_target_seq == 2

    asyncio.run(main())


def test_acceptor_refuses_sessions_on_different_ports():
    import pytest
    settings = [SessionSettings(begin_string="FIX.4.4", sender_comp_id="V", target_comp_id=t, socket_accept_port=p)
                for t, p in (("A", 1000), ("B", 1001))]
    with pytest.raises(ValueError, match="SocketAcceptPort"):
        Acceptor(settings)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_engines_from_a_config_file_with_credentials_and_file_stores(tmp_path):
    """Both ends built from one settings file; the acceptor restarts and resumes from disk."""
    from crossbook.fix.settings import load_settings

    port = _free_port()
    cfg = tmp_path / "fix.cfg"
    cfg.write_text(f"""
[default]
BeginString=FIX.4.4
MessageStore=file
FileStorePath={tmp_path / "store"}
HeartBtInt=5

[session venue]
ConnectionType=acceptor
SenderCompID=VENUE
TargetCompID=FIRM1
SocketAcceptHost=127.0.0.1
SocketAcceptPort={port}
Username=firm1
Password=s3cret

[session firm]
ConnectionType=initiator
SenderCompID=FIRM1
TargetCompID=VENUE
SocketConnectHost=127.0.0.1
SocketConnectPort={port}
ReconnectInterval=0.2
Username=firm1
Password=s3cret
""")
    engine = load_settings(str(cfg))

    async def main():
        venue = ExecutingVenue()
        acceptor = Acceptor(engine.acceptors(), venue)
        await acceptor.start()
        firm = Collect()
        ini = Initiator(engine.initiators()[0], firm)
        try:
            await ini.start()
            assert await ini.wait_logged_on(5)
            for i in range(3):
                ini.send(None, b"D", [(11, b"C%d" % i)] + ORDER[1:])
            assert await until(lambda: len(firm.messages) == 3)
            await acceptor.stop(logout_grace=0.5)  # the whole acceptor goes away (after a Logout) ...
            assert await until(lambda: not ini.is_logged_on())
            venue_seqs = (acceptor.session().next_sender_seq, acceptor.session().next_target_seq)
            assert venue_seqs == (6, 6)  # Logon, 3 reports, Logout sent; Logon, 3 orders, Logout received
            acceptor = Acceptor(engine.acceptors(), venue)  # ... and comes back from its files
            assert (acceptor.session().next_sender_seq, acceptor.session().next_target_seq) == venue_seqs
            await acceptor.start()
            assert await ini.wait_logged_on(5)
            ini.send(None, b"D", [(11, b"C9")] + ORDER[1:])
            assert await until(lambda: len(firm.messages) == 4)
            assert firm.messages[-1][1][11] == b"C9"
        finally:
            await ini.stop()
            await acceptor.stop()

    asyncio.run(main())


def test_wrong_password_is_refused_with_a_logout():
    async def main():
        async with running_acceptor(Collect(), "FIRM1", username="u", password="right") as acceptor, \
                running_initiator("FIRM1", acceptor.port, Collect(), username="u", password="wrong") as ini:
            assert await until(lambda: ini.connect_attempts >= 2, 5)
            assert not ini.is_logged_on() and not acceptor.is_logged_on()

    asyncio.run(main())


def test_exchange_under_uvloop():
    import pytest
    uvloop = pytest.importorskip("uvloop")

    async def main():
        firm = Collect()
        async with running_acceptor(ExecutingVenue(), "FIRM1") as acceptor, \
                running_initiator("FIRM1", acceptor.port, firm) as ini:
            assert await ini.wait_logged_on(5)
            ini.send(None, b"D", ORDER)
            assert await until(lambda: len(firm.messages) == 1)
            assert isinstance(asyncio.get_running_loop(), uvloop.Loop)

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_peer_that_never_reads_is_cut_off(monkeypatch):
    """Resend requests from a peer that does not read must not grow our memory."""
    import crossbook.fix.transport as transport

    monkeypatch.setattr(transport, "MAX_WRITE_BUFFER", 64 * 1024)

    async def main():
        app = Collect()
        acceptor = Acceptor(acceptor_settings("FIRM1"), app, host="127.0.0.1", port=0)
        await acceptor.start()
        session = acceptor.session()
        for i in range(2000):  # a backlog to replay: stored while nobody is connected
            session.send(b"8", [(11, b"C%d" % i), (58, b"x" * 200)])
        try:
            peer = Peer(SystemClock(), sender="FIRM1", target="VENUE")
            peer.seq = 1
            reader, writer = await asyncio.open_connection("127.0.0.1", acceptor.port)
            writer.transport.pause_reading()  # we never read
            writer.write(peer.logon())
            for _ in range(50):
                writer.write(peer.build(b"2", [(7, 1), (16, 0)]))
            await writer.drain()
            assert await until(lambda: app.logouts == 1, 10)
            assert app.logons == 1 and not session.connected
            writer.close()
        finally:
            await acceptor.stop()

    asyncio.run(main())


# -- why an initiator could not log on: last_disconnect_reason, max_logon_attempts ---------

def test_initiator_gives_up_after_max_logon_attempts_with_the_reason():
    async def main():
        port = _free_port()  # nothing listens there
        ini = Initiator(initiator_settings("FIRM1", port), Collect(), max_logon_attempts=3)
        await ini.start()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert not await ini.wait_logged_on(20)
            assert loop.time() - started < 15  # returned when it gave up, not at the timeout
            assert ini.gave_up and ini.connect_attempts == 3 and ini.logon_failures == 3
            assert ini.last_disconnect_reason.startswith("connect failed: ")
            assert "refused" in ini.last_disconnect_reason.lower(), ini.last_disconnect_reason
            await asyncio.sleep(0.5)  # three reconnect intervals and more: no fourth attempt
            assert ini.connect_attempts == 3
        finally:
            await ini.stop()

    asyncio.run(main())


def test_logon_refused_with_a_logout_reports_its_text():
    async def main():
        async with running_acceptor(Collect(), "FIRM1", username="u", password="right") as acceptor, \
                running_initiator("FIRM1", acceptor.port, Collect(), username="u", password="wrong",
                                  max_logon_attempts=1) as ini:
            assert not await ini.wait_logged_on(10)
            assert ini.gave_up and ini.connect_attempts == 1
            assert ini.last_disconnect_reason == "logout: Invalid Username or Password"
            assert ini.session().last_disconnect_reason == "logout: Invalid Username or Password"

    asyncio.run(main())


def test_unknown_comp_id_closed_by_the_acceptor_is_a_failed_attempt():
    async def main():
        async with running_acceptor(Collect(), "FIRM1") as acceptor, \
                running_initiator("STRANGER", acceptor.port, Collect(), max_logon_attempts=2) as ini:
            assert not await ini.wait_logged_on(10)
            assert ini.gave_up and ini.connect_attempts == 2
            assert ini.last_disconnect_reason == "connection closed"

    asyncio.run(main())


def test_no_logon_answer_is_reported_as_a_logon_timeout():
    async def main():
        # A server that accepts the connection and never answers.
        silent: list[asyncio.StreamWriter] = []

        async def hold(reader, writer):
            silent.append(writer)
            await reader.read()

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ini = Initiator(initiator_settings("FIRM1", port, logon_timeout=0.5), Collect(), max_logon_attempts=1)
        try:
            await ini.start()
            assert not await ini.wait_logged_on(10)
            assert ini.gave_up
            assert ini.last_disconnect_reason == "timed out waiting for logon response"
        finally:
            await ini.stop()
            for w in silent:
                w.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_a_logon_resets_the_failure_count_and_the_reason_follows_the_session():
    async def main():
        port = _free_port()
        venue = Collect()
        async with running_initiator("FIRM1", port, Collect(), max_logon_attempts=50) as ini:
            assert await until(lambda: ini.logon_failures >= 2, 10)
            async with running_acceptor(venue, "FIRM1", port=port) as acceptor:
                try:
                    assert await ini.wait_logged_on(10)
                    acceptor.session().logout("maintenance")
                    acceptor._connections[acceptor.session().session_id].flush()
                    assert await until(lambda: ini.last_disconnect_reason == "logout: maintenance", 10)
                    assert ini.logon_failures == 0 and not ini.gave_up
                    assert await ini.wait_logged_on(10)  # and it reconnects
                finally:
                    await ini.stop()   # while the acceptor is up: a clean logout, not a reconnect loop

    asyncio.run(main())


def test_max_logon_attempts_is_checked():
    import pytest
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="max_logon_attempts"):
            Initiator(initiator_settings("FIRM1", 1), Collect(), max_logon_attempts=bad)


def test_a_peer_that_does_not_read_is_not_read_from():
    """Input is bounded by output: while what we wrote to a peer waits above the transport's
    high-water mark, that peer's further messages stay unread in the socket (they are taken,
    in order, once it reads again); a flood therefore costs a bounded backlog, not memory and
    CPU for answers nobody collects."""
    async def main():
        app = Collect()
        async with running_acceptor(app, "FIRM1") as acceptor:
            peer = Peer(SystemClock(), sender="FIRM1", target="VENUE")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)  # small kernel buffers both ways
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", acceptor.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(peer.logon())
            assert await until(lambda: app.logons == 1)
            conn = acceptor._connections[acceptor.session().session_id]
            conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
            writer.transport.pause_reading()  # from now on we do not read
            count = 40_000  # each TestRequest is answered with a Heartbeat of about the same size
            flood = b"".join(peer.build(b"1", [(112, b"T%d" % i)]) for i in range(count))
            writer.write(flood)
            session = acceptor.session()
            await asyncio.sleep(0.5)
            stalled_at = session.next_target_seq
            await asyncio.sleep(0.3)
            assert session.next_target_seq == stalled_at < count // 2, (stalled_at, count)
            assert conn.transport.get_write_buffer_size() < 1 << 20
            writer.transport.resume_reading()  # reading again: everything is answered, in order
            got, tail = 0, b""
            while got < count:
                data = await asyncio.wait_for(reader.read(1 << 20), 10)
                assert data
                window = tail + data  # a marker may straddle two reads
                got += window.count(b"\x0135=0\x01")
                tail = window[-5:]  # shorter than a marker: never counted twice
            assert session.next_target_seq == count + 2 and session.is_logged_on
            writer.close()

    asyncio.run(main())


def test_a_large_read_is_handed_to_the_session_in_chunks_with_the_loop_running_between(monkeypatch):
    """More than READ_CHUNK bytes at once: every message is processed, in order, but in slices
    with other callbacks (a journal's completions) running between them."""
    import crossbook.fix.transport as transport

    monkeypatch.setattr(transport, "READ_CHUNK", 1024)

    class Counting(Collect):
        def __init__(self):
            super().__init__()
            self.test_requests: list[bytes] = []
            self.seen_by_other_callback: int | None = None

        def from_admin(self, session, message):
            super().from_admin(session, message)
            if message.msg_type == b"1":
                if not self.test_requests:
                    asyncio.get_running_loop().call_soon(self._other_callback)
                self.test_requests.append(message[112])

        def _other_callback(self):
            self.seen_by_other_callback = len(self.test_requests)

    async def main():
        app = Counting()
        async with running_acceptor(app, "FIRM1") as acceptor:
            peer, reader, writer = await connect_peer(acceptor, "FIRM1")
            assert await until(lambda: app.logons == 1)
            ids = [b"T%d" % i for i in range(300)]
            writer.write(b"".join(peer.build(b"1", [(112, i)]) for i in ids))  # ~22 KiB in one write
            assert await until(lambda: len(app.test_requests) == len(ids))
            assert app.test_requests == ids
            assert app.seen_by_other_callback is not None and app.seen_by_other_callback < len(ids)
            got, tail = 0, b""
            while got < len(ids):
                data = await asyncio.wait_for(reader.read(1 << 16), 5)
                window = tail + data
                got += window.count(b"\x0135=0\x01")
                tail = window[-5:]
            writer.close()

    asyncio.run(main())


async def connect_peer(acceptor, comp: str):
    """A raw peer ``comp`` (to VENUE) connected to ``acceptor`` with its Logon written: the
    peer, reader and writer (the caller waits for the logon)."""
    peer = Peer(SystemClock(), sender=comp, target="VENUE")
    reader, writer = await asyncio.open_connection("127.0.0.1", acceptor.port)
    writer.write(peer.logon())
    return peer, reader, writer


async def logged_on_peers(acceptor, app, *comps: str):
    """Connect one raw peer per comp id to ``acceptor`` and log each on; returns the
    (reader, writer) and the acceptor's session per comp id, once all are logged on."""
    streams = {}
    for comp in comps:
        _, reader, writer = await connect_peer(acceptor, comp)
        streams[comp] = (reader, writer)
    assert await until(lambda: app.logons == len(comps))
    sessions = {s.settings.target_comp_id: s for s in acceptor.sessions.values()}
    return streams, sessions


def test_output_sent_between_hold_and_release_is_written_at_the_release_once_per_connection():
    """hold_output() / release_output(): what sessions send from an ordinary callback in between
    leaves at the release, in that same callback (not a loop iteration later), in one write per
    connection; nested holds write at the outermost release; a release without a hold is refused."""
    async def main():
        app = Collect()
        async with running_acceptor(app, "FIRM1", "FIRM2") as acceptor:
            streams, sessions = await logged_on_peers(acceptor, app, "FIRM1", "FIRM2")
            conns = {comp: acceptor._connections[s.session_id] for comp, s in sessions.items()}
            writes = {comp: 0 for comp in conns}
            for comp, conn in conns.items():
                real = conn.flush

                def counting_flush(comp=comp, real=real):
                    if sessions[comp]._out:
                        writes[comp] += 1
                    real()
                conn.flush = counting_flush
            observed = {}

            def deliver():  # a plain loop callback, as the OMS's journal completion is
                acceptor.hold_output()
                acceptor.hold_output()
                sessions["FIRM1"].send(b"8", [(11, b"A1")])
                sessions["FIRM2"].send(b"8", [(11, b"B1")])
                sessions["FIRM1"].send(b"8", [(11, b"A2")])
                acceptor.release_output()
                observed["after inner release"] = (len(sessions["FIRM1"]._out), len(sessions["FIRM2"]._out))
                acceptor.release_output()
                observed["after release"] = (len(sessions["FIRM1"]._out), len(sessions["FIRM2"]._out),
                                             dict(writes))

            asyncio.get_running_loop().call_soon(deliver)
            for comp, ids in (("FIRM1", [b"A1", b"A2"]), ("FIRM2", [b"B1"])):
                reader = streams[comp][0]
                data = b""
                while data.count(b"\x0135=8\x01") < len(ids):
                    data += await asyncio.wait_for(reader.read(1 << 16), 5)
                assert [i for i in ids if b"\x0111=" + i + b"\x01" in data] == ids
                assert data.index(b"\x0111=" + ids[0]) <= data.index(b"\x0111=" + ids[-1])
            assert observed["after inner release"] == (2, 1)    # still held
            assert observed["after release"] == (0, 0, {"FIRM1": 1, "FIRM2": 1})
            await asyncio.sleep(0.05)
            assert writes == {"FIRM1": 1, "FIRM2": 1}           # no second write later
            # Without a hold, the same sends wait for the next loop iteration (one write each).
            sessions["FIRM1"].send(b"8", [(11, b"A3")])
            assert len(sessions["FIRM1"]._out) == 1
            assert await until(lambda: writes["FIRM1"] == 2 and not sessions["FIRM1"]._out)
            try:
                acceptor.release_output()
            except RuntimeError as exc:
                assert "without hold_output" in str(exc)
            else:
                raise AssertionError("release_output() without a hold was accepted")
            for _, writer in streams.values():
                writer.close()

    asyncio.run(main())


def test_a_held_connection_whose_write_fails_ends_alone_and_the_others_output_still_leaves(caplog):
    """release_output(): one connection's flush raising (e.g. its FIX store cannot write) must not
    leave the connections after it with their output held for good: that one is disconnected,
    the others are written at the same release."""
    async def main():
        app = Collect()
        async with running_acceptor(app, "FIRM1", "FIRM2") as acceptor:
            streams, sessions = await logged_on_peers(acceptor, app, "FIRM1", "FIRM2")
            broken = acceptor._connections[sessions["FIRM1"].session_id]

            def failing_flush():
                raise OSError("disk full")
            broken.flush = failing_flush
            observed = {}

            def deliver():
                acceptor.hold_output()
                sessions["FIRM1"].send(b"8", [(11, b"A1")])   # FIRM1 is held first: it fails first
                sessions["FIRM2"].send(b"8", [(11, b"B1")])
                acceptor.release_output()
                observed["FIRM2 left"] = not sessions["FIRM2"]._out
                observed["FIRM1 closed"] = broken.closed

            asyncio.get_running_loop().call_soon(deliver)
            reader = streams["FIRM2"][0]
            data = b""
            while b"\x0111=B1\x01" not in data:
                data += await asyncio.wait_for(reader.read(1 << 16), 5)
            assert observed == {"FIRM2 left": True, "FIRM1 closed": True}
            for _, writer in streams.values():
                writer.close()

    with caplog.at_level(logging.ERROR, logger="crossbook.fix"):
        asyncio.run(main())
    assert any("writing held output failed" in r.getMessage() for r in caplog.records)


def test_after_read_runs_at_the_end_of_each_read_before_the_answers_are_written():
    """Engine.after_read: called once per read callback, after the session handled every message
    of the read and before its answers leave; one that raises costs the connection."""
    async def main():
        app = Collect()
        async with running_acceptor(app, "FIRM1") as acceptor:
            session = acceptor.session()
            seen: list[tuple[int, int]] = []
            acceptor.after_read = lambda: seen.append((session.next_target_seq, len(session._out)))
            peer, reader, writer = await connect_peer(acceptor, "FIRM1")
            assert await until(lambda: app.logons == 1)
            writer.write(b"".join(peer.build(b"1", [(112, b"T%d" % i)]) for i in range(3)))
            data = b""
            while data.count(b"\x0135=0\x01") < 3:
                data += await asyncio.wait_for(reader.read(1 << 16), 5)
            assert seen and seen[-1][0] == 5                    # Logon (1) and the three (2-4) handled
            assert all(waiting > 0 for _, waiting in seen)      # the answers were not written yet
            assert not session._out

            def broken():
                raise RuntimeError("hook failed")
            acceptor.after_read = broken
            writer.write(peer.build(b"1", [(112, b"T9")]))
            assert await until(lambda: not session.connected)
            writer.close()

    asyncio.run(main())


def test_what_a_chunk_caused_runs_before_the_next_chunk_is_handled(monkeypatch):
    """A read larger than READ_CHUNK: the callbacks the first chunk's messages queued (in the OMS:
    the venues' answers and the journal flush that sends the reports) run before the second
    chunk is handled, so those reports do not wait for it."""
    import crossbook.fix.transport as transport

    monkeypatch.setattr(transport, "READ_CHUNK", 1024)

    class Counting(Collect):
        def __init__(self):
            super().__init__()
            self.handled = 0
            self.seen_by_first_callback: int | None = None

        def from_admin(self, session, message):
            super().from_admin(session, message)
            if message.msg_type == b"1":
                self.handled += 1
                if self.handled == 1:
                    asyncio.get_running_loop().call_soon(self._first_callback)

        def _first_callback(self):
            self.seen_by_first_callback = self.handled

    async def main():
        app = Counting()
        async with running_acceptor(app, "FIRM1") as acceptor:
            peer, reader, writer = await connect_peer(acceptor, "FIRM1")
            assert await until(lambda: app.logons == 1)
            messages = [peer.build(b"1", [(112, b"T%d" % i)]) for i in range(300)]
            in_first_chunk, size = 0, 0
            while size + len(messages[in_first_chunk]) <= 1024:
                size += len(messages[in_first_chunk])
                in_first_chunk += 1
            writer.write(b"".join(messages))  # ~22 KiB in one write
            assert await until(lambda: app.handled == len(messages))
            # At most the first chunk's messages (fewer if the kernel split the bytes smaller).
            assert app.seen_by_first_callback is not None and app.seen_by_first_callback <= in_first_chunk
            writer.close()

    asyncio.run(main())
