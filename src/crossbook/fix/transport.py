"""asyncio transports around the sans-IO ``Session``: an acceptor and an initiator.

* ``Acceptor``: one listening port for many sessions. The first message of a connection
  must be a Logon whose CompIDs (reversed) and BeginString name a configured session
  that is not already connected; anything else is refused by closing the connection
  without a reply.
* ``Initiator``: connects, logs on, and reconnects every ``ReconnectInterval`` seconds
  after a disconnect until stopped.

Each socket is an ``asyncio.Protocol`` (``_Connection``): bytes read go to
``Session.receive`` in the read callback and the answers are written at its end, in one
``write``; a peer is not read while what we wrote to it is above the transport's
high-water mark.

Both take an ``Application`` (callbacks) and expose ``send(session_id, msg_type, body)``.
TLS is on when the settings name certificate files (or pass an ``ssl.SSLContext``).
``install_uvloop()`` switches the event-loop policy to uvloop when it is installed.
"""
from __future__ import annotations

import asyncio
import logging
import os
import ssl
from typing import Any, Callable, Iterable

from crossbook.fix.framing import FrameReader, Garbled
from crossbook.fix.messages import FieldValue, Message
from crossbook.fix.reader import CodecFrameReader, make_frame_reader
from crossbook.fix.session import (
    Application, Clock, DisconnectRequested, LoggedOn, Session, SessionID, SessionLog, SystemClock, Validator,
)
from crossbook.fix.settings import SessionSettings
from crossbook.fix.store import FileStore, MemoryStore, MessageStore, store_name

log = logging.getLogger("crossbook.fix")

#: Bytes queued for a peer that does not read before the connection is dropped.
MAX_WRITE_BUFFER = 16 << 20
#: Most bytes of one read handed to the session before the loop runs other callbacks (the
#: transport may deliver 256 KiB at once; a journal's completions then wait behind a
#: thousand orders, and the two threads overlap less). 16 KiB is about 80 orders; at
#: 20,000 orders/s it answered 17.3-19.4k/s against 14.6-19.4k/s with 64 KiB.
READ_CHUNK = 16384
TIMER_INTERVAL = 0.1


def install_uvloop() -> bool:
    """Use uvloop for new event loops when it is installed; returns whether it is."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def make_store(settings: SessionSettings, now: float) -> MessageStore:
    """The store the settings ask for (MessageStore=memory|file, FileStorePath, FileStoreSync)."""
    if settings.store == "file":
        assert settings.file_store_path is not None
        name = store_name(settings.begin_string, settings.sender_comp_id, settings.target_comp_id,
                          settings.session_qualifier)
        # Batched: the Session writes each read's and each flush's store records at once.
        return FileStore(settings.file_store_path, name, now=now, fsync=settings.file_store_sync, batch=True)
    return MemoryStore(now)


def server_ssl_context(settings: SessionSettings) -> ssl.SSLContext | None:
    """TLS server context from SSLCertificateFile/SSLCertificateKeyFile (and SSLCAFile to verify clients)."""
    if settings.tls_cert_file is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    if settings.tls_ca_file:
        ctx.load_verify_locations(settings.tls_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if settings.tls_verify_peer else ssl.CERT_OPTIONAL
    return ctx


def client_ssl_context(settings: SessionSettings) -> ssl.SSLContext | None:
    """TLS client context: trusts SSLCAFile, presents SSLCertificateFile if given."""
    if settings.tls_ca_file is None and settings.tls_cert_file is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_ca_file:
        ctx.load_verify_locations(settings.tls_ca_file)
    else:
        ctx.load_default_certs()
    ctx.check_hostname = settings.tls_verify_peer
    ctx.verify_mode = ssl.CERT_REQUIRED if settings.tls_verify_peer or settings.tls_ca_file else ssl.CERT_NONE
    if settings.tls_cert_file:
        ctx.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return ctx


def _describe_connect_error(exc: BaseException) -> str:
    """A short reason for a failed connect: "Connection refused", "timed out", the TLS error."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)  # asyncio's own text ("Connect call failed (...)") hides it
    return str(exc) or type(exc).__name__


class _Connection(asyncio.Protocol):
    """One socket and the session it carries: an ``asyncio.Protocol``.

    Bytes go to ``Session.receive`` in the transport's read callback, and what the session
    answered is written at the end of that same callback: no task wake-up per read and no
    loop hop before the answer leaves. Output produced elsewhere (an application sending from
    another callback) is written once per loop iteration (``on_output`` schedules a flush),
    or, between the engine's ``hold_output()`` and ``release_output()``, at the release.

    Backpressure: while the transport holds more than its high-water mark of unsent bytes
    (``pause_writing``), the peer is not read, so a peer that stops reading stops feeding us
    work; one holding more than ``MAX_WRITE_BUFFER`` is cut off.

    An acceptor's connection starts without a session (``session`` is None): the engine picks
    the session from the first message, a Logon (``_Engine._first_data``).
    """

    def __init__(self, engine: "_Engine", on_logon: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.on_logon = on_logon
        self._flush_scheduled = False
        # While set, output the session queues is written by the caller's own flush at the end
        # (inside a read callback or a connect), not by a scheduled one.
        self._batching = False
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: The acceptor's frame reader until the Logon picked the session.
        self.framer: CodecFrameReader | FrameReader | None = None
        self._logon_timer: asyncio.TimerHandle | None = None
        # Bytes read but not yet handed to the session (beyond READ_CHUNK), and why reading
        # is paused: a backlog of our own, or a peer that is not taking our output.
        self._backlog = b""
        self._paused_for_backlog = False
        self._paused_for_output = False

    def bind(self, session: Session) -> None:
        """Carry ``session`` from now on (its output is written to this socket)."""
        self.session = session
        session.on_output = self._schedule_flush

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.engine._connection_made(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        session = self.session
        if session is None:
            self.engine._first_data(self, data)
            return
        if self._backlog:  # still working through an earlier read: keep the order
            self._backlog += data
            return
        self._receive(session, data)

    def _receive(self, session: Session, data: bytes) -> None:
        if len(data) > READ_CHUNK:
            self._backlog = data[READ_CHUNK:]
            data = data[:READ_CHUNK]
            if not self._paused_for_backlog:
                self._paused_for_backlog = True
                self._set_reading()
        self._batching = True
        try:
            session.receive(data)
            after_read = self.engine.after_read
            if after_read is not None:
                after_read()
        except Exception:
            # Peer input never raises (see the fuzz tests); this is an application callback
            # failing. The message was not counted, so the peer will send it again after
            # reconnecting: drop the connection rather than lose it.
            log.exception("%s: application callback failed; disconnecting", session.session_id)
            self._batching = False
            self.flush()
            self.close()
            return
        self._batching = False
        self.flush()
        if self._backlog and not self.closed:
            # The next chunk is queued only now, behind what this one caused (the venues'
            # answers, the journal flush with its reports): those reports do not wait for it.
            asyncio.get_running_loop().call_soon(self._receive_backlog)

    def _receive_backlog(self) -> None:
        session = self.session
        if self.closed or session is None:
            return
        data, self._backlog = self._backlog, b""
        self._receive(session, data)
        if not self._backlog:
            self._paused_for_backlog = False
            self._set_reading()

    def _set_reading(self) -> None:
        """Pause or resume reading from the socket as the two reasons say."""
        if self.closed or self.transport is None:
            return
        if self._paused_for_backlog or self._paused_for_output:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        return False  # the peer is done: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        session = self.session
        if session is not None and not self.closed:
            backlog, self._backlog = self._backlog, b""
            if backlog and exc is None:
                # What the peer sent before it closed still counts (as a stream reader's
                # buffered bytes would), though no answer can leave any more.
                try:
                    session.receive(backlog)
                except Exception:
                    log.exception("%s: application callback failed", session.session_id)
            session.data_to_send()  # the socket is gone: nothing more leaves, but events count
            events = session.events()
            if events:
                self._handle_events(events)
        self.close()
        self.engine._connection_lost(self)
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        # Backpressure: stop reading from a peer until it takes what we already sent.
        self._paused_for_output = True
        self._set_reading()

    def resume_writing(self) -> None:
        self._paused_for_output = False
        self._set_reading()

    async def wait_lost(self) -> None:
        """Until the socket is gone (``connection_lost``)."""
        await asyncio.shield(self._lost)

    # -- output
    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and not self._batching and not self.closed:
            self._flush_scheduled = True
            engine = self.engine
            if engine._holding:
                engine._held.append(self)  # written by release_output(), in this callback
            else:
                asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write pending output and act on the session's events."""
        self._flush_scheduled = False
        session = self.session
        if session is None:
            return
        if self.closed:
            session.data_to_send()
            session.events()
            return
        data = session.data_to_send()
        if data:
            transport = self.transport
            assert transport is not None
            transport.write(data)
            if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                # The peer stopped reading (or asks for resends faster than it takes them):
                # cut it off rather than hold its backlog in memory.
                log.warning("%s: peer is not reading; disconnecting", session.session_id)
                self.close(f"peer is not reading (more than {MAX_WRITE_BUFFER} bytes waiting)")
                return
        events = session.events()
        if events:
            self._handle_events(events)

    def _handle_events(self, events: list[Any]) -> None:
        for event in events:
            kind = type(event)
            if kind is SessionLog:
                log.debug("%s: %s", event.session_id, event.text)
            elif kind is DisconnectRequested:
                log.info("%s: %s", event.session_id, event.reason)
                self.close(event.reason)
            elif kind is LoggedOn and self.on_logon is not None:
                self.on_logon()

    def close(self, reason: str = "connection closed") -> None:
        if self.closed:
            return
        self.closed = True
        if self._logon_timer is not None:
            self._logon_timer.cancel()
            self._logon_timer = None
        session = self.session
        if session is not None:
            if session.on_output == self._schedule_flush:
                session.on_output = None
            session.on_disconnected(reason)
            session.data_to_send()
            session.events()
        if self.transport is not None:
            try:
                self.transport.close()
            except Exception:  # the socket may already be gone; closing is best effort
                pass


class _Engine:
    """Shared parts: sessions, the timer task, the send API."""

    def __init__(self, clock: Clock | None) -> None:
        self.clock = clock or SystemClock()
        self.sessions: dict[SessionID, Session] = {}
        self._connections: dict[SessionID, _Connection] = {}
        self._timer_task: asyncio.Task | None = None
        # hold_output() depth, and the connections whose output waits for release_output().
        self._holding = 0
        self._held: list[_Connection] = []
        #: Called with no argument at the end of every read callback, once the session has
        #: handled what was read and before its answers are written (None: nothing). The server
        #: sets the order manager's ``flush_soon``: what the read caused is queued by then, so
        #: the journal batch need not wait a second loop hop for it. An exception from it counts
        #: as the application's: the connection is dropped.
        self.after_read: Callable[[], None] | None = None

    def hold_output(self) -> None:
        """Until the matching :meth:`release_output`, output that sessions queue outside a read
        callback is collected instead of being scheduled for the next loop iteration. For a
        caller about to send many messages from one callback (the OMS delivering a durable
        batch's reports to several sessions): each connection is then written once, at the
        release, in that same callback, instead of one loop iteration later, when the reports
        would wait behind whatever else that iteration runs (a backlog of reads under load).
        Calls nest; a connection inside its own read callback is written at the end of that
        callback as always."""
        self._holding += 1

    def release_output(self) -> None:
        """End a :meth:`hold_output`; the outermost release writes every connection that has
        output waiting (in the order they first had some)."""
        if self._holding <= 0:
            raise RuntimeError("release_output() without hold_output()")
        self._holding -= 1
        if self._holding or not self._held:
            return
        held, self._held = self._held, []
        for conn in held:
            if conn._flush_scheduled:  # (not flushed meanwhile by other means)
                try:
                    conn.flush()
                except Exception:  # e.g. its FIX store cannot write: that connection ends, the
                    # others' output still leaves (and the caller's delivery goes on)
                    log.exception("%s: writing held output failed; disconnecting",
                                  conn.session.session_id if conn.session else "connection")
                    conn.close()

    def _build_sessions(self, settings: Iterable[SessionSettings], application: Application,
                        store_factory: Callable[[SessionSettings], MessageStore] | None,
                        validator: Validator | None | str) -> None:
        for s in settings:
            store = store_factory(s) if store_factory else make_store(s, self.clock.now())
            session = Session(s, store=store, clock=self.clock, application=application, validator=validator)
            if session.session_id in self.sessions:
                raise ValueError(f"session {session.session_id} configured twice")
            self.sessions[session.session_id] = session

    def session(self, session_id: SessionID | None = None) -> Session:
        """The session with this ID (or the only one)."""
        if session_id is None:
            if len(self.sessions) != 1:
                raise ValueError("several sessions: name one")
            return next(iter(self.sessions.values()))
        try:
            return self.sessions[session_id]
        except KeyError:
            raise KeyError(f"no session {session_id}") from None

    def send(self, session_id: SessionID | None, msg_type: FieldValue, body: Iterable[tuple[int, FieldValue]],
             header: Iterable[tuple[int, FieldValue]] = ()) -> bool:
        """Send an application message on a session (stored for resend if not logged on)."""
        session = self.session(session_id)
        ok = session.send(msg_type, body, header)
        conn = self._connections.get(session.session_id)
        if conn is not None:
            conn.flush()
        return ok

    def is_logged_on(self, session_id: SessionID | None = None) -> bool:
        return self.session(session_id).is_logged_on

    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(TIMER_INTERVAL)
            for sid, conn in list(self._connections.items()):
                if conn.closed:
                    continue
                try:
                    conn.session.on_timer()
                    conn.flush()
                except Exception:  # an application callback (on_logout...) failed
                    log.exception("%s: timer handling failed; disconnecting", sid)
                    conn.close()

    def _start_timer(self) -> None:
        if self._timer_task is None:
            self._timer_task = asyncio.get_running_loop().create_task(self._timer())

    async def _stop_timer(self) -> None:
        if self._timer_task is not None:
            self._timer_task.cancel()
            try:
                await self._timer_task
            except asyncio.CancelledError:
                pass
            self._timer_task = None

    # -- connection callbacks (from _Connection)
    def _connection_made(self, conn: _Connection) -> None:
        """A socket is up for ``conn``."""

    def _first_data(self, conn: _Connection, data: bytes) -> None:
        """Bytes on a connection without a session (an acceptor's, before its Logon)."""
        conn.close()

    def _connection_lost(self, conn: _Connection) -> None:
        session = conn.session
        if session is not None and self._connections.get(session.session_id) is conn:
            del self._connections[session.session_id]

    async def _logout_all(self, grace: float) -> None:
        for conn in list(self._connections.values()):
            if not conn.closed and conn.session.is_logged_on:
                conn.session.logout("")
                conn.flush()
        deadline = asyncio.get_running_loop().time() + grace
        while any(not c.closed for c in self._connections.values()):
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self._connections.values()):
            conn.close()


class Acceptor(_Engine):
    """Many sessions on one listening socket."""

    def __init__(self, settings: Iterable[SessionSettings], application: Application | None = None, *,
                 host: str | None = None, port: int | None = None, ssl_context: ssl.SSLContext | None = None,
                 clock: Clock | None = None, store_factory: Callable[[SessionSettings], MessageStore] | None = None,
                 validator: Validator | None | str = "dictionary") -> None:
        super().__init__(clock)
        settings = list(settings)
        if not settings:
            raise ValueError("an acceptor needs at least one session")
        for s in settings:
            if s.is_initiator:
                raise ValueError(f"session {s.key()} is an initiator, not an acceptor")
        first = settings[0]
        if port is None and len({s.socket_accept_port for s in settings}) > 1:
            raise ValueError("sessions name different SocketAcceptPort values; build one Acceptor per port")
        self.host = host if host is not None else first.socket_accept_host
        port = port if port is not None else first.socket_accept_port
        if port is None:
            raise ValueError("no port: pass port= or set SocketAcceptPort")
        self._port = port
        self.ssl_context = ssl_context if ssl_context is not None else server_ssl_context(first)
        self.application = application or Application()
        self._build_sessions(settings, self.application, store_factory, validator)
        self._by_wire: dict[tuple[bytes, bytes, bytes], Session] = {
            (s.settings.begin_string.encode(), s.settings.target_comp_id.encode(),
             s.settings.sender_comp_id.encode()): s for s in self.sessions.values()
        }
        self._max_message = max(s.max_message_size for s in settings)
        self._logon_timeout = max(s.logon_timeout for s in settings)
        self._server: asyncio.AbstractServer | None = None
        # Connections still waiting for their Logon (closed at stop()).
        self._pending: set[_Connection] = set()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is not None and self._server.sockets:
            return self._server.sockets[0].getsockname()[1]
        return self._port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.host, self._port,
                                                ssl=self.ssl_context)
        self._start_timer()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self, logout_grace: float = 2.0) -> None:
        """Log every session out (waiting up to ``logout_grace``), close everything."""
        if self._server is not None:
            self._server.close()
        await self._logout_all(logout_grace)
        for conn in list(self._pending):
            conn.close()
        self._pending.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        await self._stop_timer()
        for session in self.sessions.values():
            session.store.close()

    # -- a new connection: its first message must be a Logon for a configured session
    def _connection_made(self, conn: _Connection) -> None:
        conn.framer = make_frame_reader(self._max_message)
        self._pending.add(conn)
        conn._logon_timer = asyncio.get_running_loop().call_later(self._logon_timeout, self._logon_timed_out, conn)

    def _logon_timed_out(self, conn: _Connection) -> None:
        conn._logon_timer = None
        if conn.session is None:
            self._pending.discard(conn)
            conn.close()

    def _connection_lost(self, conn: _Connection) -> None:
        self._pending.discard(conn)
        super()._connection_lost(conn)

    def _first_data(self, conn: _Connection, data: bytes) -> None:
        framer = conn.framer
        assert framer is not None
        framer.feed(data)
        first = framer.next_event()
        if first is None:
            return  # more bytes to come (until the logon timeout)
        self._pending.discard(conn)
        if isinstance(first, Garbled):
            log.info("refused connection: garbled first message (%s)", first.reason)
            conn.close()
            return
        msg = Message(first.fields, first.raw)
        session = self._by_wire.get((msg.begin_string, msg.get(49, b""), msg.get(56, b"")))
        if session is None or msg.msg_type != b"A":
            log.info("refused connection: no session for %r", first.raw[:120])
            conn.close()
            return
        if session.connected or session.session_id in self._connections:
            log.info("refused connection: %s already connected", session.session_id)
            conn.close()
            return
        if conn._logon_timer is not None:
            conn._logon_timer.cancel()
            conn._logon_timer = None
        conn.framer = None
        conn.bind(session)
        self._connections[session.session_id] = conn
        conn._batching = True
        try:
            session.on_connected(framer)
            session.next_event(first)
            conn._batching = False
            conn.flush()
            if not conn.closed:
                conn._batching = True
                session.process_buffered()
                conn._batching = False
                conn.flush()
        except Exception:  # an application callback (on_logon...) failed: this connection ends
            log.exception("%s: connection handler failed", session.session_id)
            conn._batching = False
            conn.close()


class Initiator(_Engine):
    """One session that connects out, logs on and reconnects after a disconnect.

    It reconnects every ``ReconnectInterval`` seconds for as long as it runs, unless
    ``max_logon_attempts`` is given: after that many connection attempts in a row that
    end without a logon (connect refused or timed out, TLS failure, Logon refused, no
    Logon answer, connection closed), it stops trying and ``gave_up`` becomes True. A
    logon resets the count. ``last_disconnect_reason`` always says why the last attempt
    or connection ended.
    """

    def __init__(self, settings: SessionSettings, application: Application | None = None, *,
                 ssl_context: ssl.SSLContext | None = None, clock: Clock | None = None,
                 store: MessageStore | None = None, validator: Validator | None | str = "dictionary",
                 max_logon_attempts: int | None = None) -> None:
        super().__init__(clock)
        if not settings.is_initiator:
            raise ValueError(f"session {settings.key()} is not an initiator (ConnectionType=initiator)")
        if max_logon_attempts is not None and (isinstance(max_logon_attempts, bool)
                                               or not isinstance(max_logon_attempts, int)
                                               or max_logon_attempts < 1):
            raise ValueError(f"max_logon_attempts must be None or an int >= 1, got {max_logon_attempts!r}")
        self.settings = settings
        self.application = application or Application()
        self.ssl_context = ssl_context if ssl_context is not None else client_ssl_context(settings)
        self._build_sessions([settings], self.application, (lambda s: store) if store is not None else None, validator)
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.max_logon_attempts = max_logon_attempts
        #: Connection attempts so far (each TCP connect tried counts).
        self.connect_attempts = 0
        #: Attempts in a row that ended without a logon.
        self.logon_failures = 0
        #: Why the last connection attempt or connection ended; None while none has.
        self.last_disconnect_reason: str | None = None
        #: True once ``max_logon_attempts`` failed attempts in a row made the initiator stop.
        self.gave_up = False
        self._changed: asyncio.Event | None = None

    async def start(self) -> None:
        """Start connecting in the background."""
        self._stopping = False
        self.gave_up = False
        self.logon_failures = 0
        self._changed = asyncio.Event()
        self._start_timer()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_logged_on(self, timeout: float) -> bool:
        """Wait until the session is logged on; False on timeout or when the initiator gave
        up (``gave_up``; ``last_disconnect_reason`` says why)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        session = self.session()
        while not session.is_logged_on:
            remaining = deadline - loop.time()
            if self.gave_up or remaining <= 0:
                return False
            changed = self._changed
            if changed is None:  # not started: nothing will change by itself but the clock
                await asyncio.sleep(min(remaining, 0.05))
                continue
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return True

    async def stop(self, logout_grace: float = 2.0) -> None:
        """Log out (waiting up to ``logout_grace`` for the answer), stop reconnecting."""
        self._stopping = True
        await self._logout_all(logout_grace)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._stop_timer()
        self.session().store.close()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _attempt_ended(self, reason: str, logged_on: bool) -> None:
        """Book-keeping after a connect failure or the end of a connection."""
        self.last_disconnect_reason = reason
        if logged_on:
            self.logon_failures = 0
        else:
            self.logon_failures += 1
            if self.max_logon_attempts is not None and self.logon_failures >= self.max_logon_attempts:
                log.info("%s: giving up after %d attempts without a logon: %s", self.settings.key(),
                         self.logon_failures, reason)
                self.gave_up = True
        self._notify()

    async def _run(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        session = self.session()
        while not self._stopping:
            self.connect_attempts += 1
            logons_before = session.logon_count
            conn = _Connection(self, on_logon=self._notify)
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: conn, s.socket_connect_host, s.socket_connect_port,
                                           ssl=self.ssl_context,
                                           server_hostname=s.socket_connect_host if self.ssl_context else None),
                    timeout=s.logon_timeout)
            except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
                if conn.transport is not None:  # timed out just after the socket came up
                    conn.close()
                    self._connection_lost(conn)
                text = _describe_connect_error(exc)
                log.info("%s: connect failed: %s", s.key(), text)
                self._attempt_ended(f"connect failed: {text}", logged_on=False)
            else:
                try:
                    await conn.wait_lost()
                finally:
                    conn.close()
                    self._connection_lost(conn)
                    self._attempt_ended(session.last_disconnect_reason or "connection closed",
                                        logged_on=session.logon_count > logons_before)
            if self._stopping or self.gave_up:
                break
            await asyncio.sleep(self.reconnect_delay())

    def _connection_made(self, conn: _Connection) -> None:
        # The Logon goes out from the connect callback itself, before any byte can arrive.
        session = self.session()
        conn.bind(session)
        self._connections[session.session_id] = conn
        conn._batching = True
        try:
            session.on_connected()
        except Exception:  # an application callback (to_admin...) failed: this attempt ends
            log.exception("%s: connection handler failed", session.session_id)
            conn._batching = False
            conn.close()
            return
        conn._batching = False
        conn.flush()

    def reconnect_delay(self) -> float:
        """Seconds to wait before the next connection attempt. The default is the session's
        fixed ReconnectInterval; subclasses override it for backoff (e.g. FixVenue)."""
        return self.settings.reconnect_interval
