"""FIX session throughput: NewOrderSingle in, ExecutionReport out, through the sans-IO Session.

One unit of work is what an order gateway's session does per order: frame the bytes (BodyLength,
CheckSum), split the fields, check the header, validate against the FIX.4.4 dictionary, run the
sequence / SendingTime / CompID checks, call the application, whose ``from_app`` sends an
ExecutionReport (12 body fields) that the session numbers, encodes and stores for resend. The
NewOrderSingles (12 body fields, ~200 bytes) arrive in 4 KiB reads; the time injected is a
TestClock, so no wall clock or socket is involved.

Same run, same messages, two engines:

* **reference**: the engine before the fast paths, rebuilt from its parts that remain as
  references: the pure-Python framer (``framing.py``, ``Session(framer="python")``), the full
  QuickFIX-order validation for every message (``validation.validate_reference``) and the
  pure-Python encoder (``messages.encode_reference``);
* **codec**: the engine as shipped: Cython framing and splitting (``reader.CodecFrameReader``),
  one-pass acceptance of flat messages (``validation.validate_split``) and the Cython encoder.

Both must produce the same output bytes. Short mode asserts a ratio floor well below the
measured ratio; full mode asserts 2x (measured: see docs/benchmarks.md, "FIX session").
"""
from __future__ import annotations

import contextlib
import time

from crossbook.fix import messages, session as session_module
from crossbook.fix.dictionary import load_dictionary
from crossbook.fix.messages import encode, format_timestamp
from crossbook.fix.session import Application, RejectInfo, Session, TestClock
from crossbook.fix.settings import SessionSettings
from crossbook.fix.store import MemoryStore
from crossbook.fix.validation import ValidationOptions, validate_reference

from conftest import best_time

TITLE = "FIX session: NewOrderSingle -> validate -> app -> ExecutionReport (msgs/s)"
CHUNK = 4096


class Executor(Application):
    """Acknowledges every order with an ExecutionReport, as a venue's gateway would."""

    def from_app(self, session, m):
        session.send(b"8", [(37, b"O-1"), (11, m[11]), (17, b"E-1"), (150, b"0"), (39, b"0"), (1, m[1]),
                            (55, m[55]), (54, m[54]), (38, m[38]), (44, m[44]), (151, m[38]), (14, b"0"),
                            (6, b"0")])


def settings() -> SessionSettings:
    return SessionSettings(begin_string="FIX.4.4", sender_comp_id="VENUE", target_comp_id="FIRM")


def order_stream(n: int, clock: TestClock) -> tuple[bytes, list[bytes]]:
    stamp = format_timestamp(clock.now())
    head = [(49, b"FIRM"), (52, stamp), (56, b"VENUE")]
    logon = encode(b"FIX.4.4", b"A", [(34, 1), *head], [(98, 0), (108, 30)])
    blob = b"".join(
        encode(b"FIX.4.4", b"D", [(34, i + 2), *head],
               [(11, b"ORD-%09d" % i), (1, b"ACCOUNT-7"), (55, (b"AAPL", b"MSFT", b"ESZ6")[i % 3]),
                (54, b"12"[i % 2:i % 2 + 1]), (38, 100 + i % 900), (40, b"2"), (44, b"%d.%02d" % (100 + i % 50, i % 100)),
                (59, b"0"), (60, stamp), (21, b"1"), (15, b"USD"), (100, b"XNAS")])
        for i in range(n))
    return logon, [blob[i:i + CHUNK] for i in range(0, len(blob), CHUNK)]


def reference_validator():
    dd = load_dictionary("FIX.4.4")
    options = ValidationOptions()

    def run(fields, begin_string, appl_ver_id):
        err = validate_reference(fields, dd, options)
        return None if err is None else RejectInfo(err.reason, err.ref_tag, err.text)

    return run


@contextlib.contextmanager
def reference_encoder():
    """The session module's encoder swapped for the pure-Python reference while timing it."""
    saved = session_module.encode
    session_module.encode = messages.encode_reference
    try:
        yield
    finally:
        session_module.encode = saved


def run_session(engine: str, logon: bytes, reads: list[bytes], n: int) -> bytes:
    clock = TestClock()
    kwargs = {"framer": "python", "validator": reference_validator()} if engine == "reference" else {}
    s = Session(settings(), store=MemoryStore(clock.now()), clock=clock, application=Executor(), **kwargs)
    s.on_connected()
    s.receive(logon)
    out = [s.data_to_send()]
    s.events()
    for data in reads:
        s.receive(data)
        out.append(s.data_to_send())
        s.events()
    assert s.next_target_seq == n + 2 and s.next_sender_seq == n + 2 and s.connected
    return b"".join(out)


def timed(engine: str, logon: bytes, reads: list[bytes], n: int, repeat: int) -> float:
    ctx = reference_encoder() if engine == "reference" else contextlib.nullcontext()
    with ctx:
        return best_time(lambda: run_session(engine, logon, reads, n), repeat=repeat)


def test_session_new_order_to_execution_report(bench_mode, bench_table):
    n = bench_mode.size(full=50_000, short=5_000)
    logon, reads = order_stream(n, TestClock())
    with reference_encoder():
        reference_bytes = run_session("reference", logon, reads, n)
    assert run_session("codec", logon, reads, n) == reference_bytes  # same answers, byte for byte
    repeat = bench_mode.size(full=5, short=3)
    ref = timed("reference", logon, reads, n, repeat)
    fast = timed("codec", logon, reads, n, repeat)
    ratio = ref / fast
    bench_table.add(TITLE, "session, codec + fast validation + Cython encoder", n / fast, "msgs/s",
                    f"{fast / n * 1e6:.1f} us/order, x{ratio:.2f} the reference engine")
    bench_table.add(TITLE, "session, reference (framing.py, full validation, Python encoder)", n / ref,
                    "msgs/s", f"{ref / n * 1e6:.1f} us/order")
    bench_mode.check_ratio("session codec vs reference", ratio, target=2.0, floor=1.5)


def test_validation_fast_acceptance_vs_full(bench_mode, bench_table):
    """The validation step alone, on the same NewOrderSingles split once."""
    from crossbook.fix.framing import iter_frames
    from crossbook.fix.validation import validate_split

    n = bench_mode.size(full=50_000, short=5_000)
    logon, reads = order_stream(n, TestClock())
    frames = [e.fields for e in iter_frames(b"".join(reads))]
    assert len(frames) == n
    dd = load_dictionary("FIX.4.4")
    options = ValidationOptions()
    assert all(validate_split(f, dd, options) is None and validate_reference(f, dd, options) is None
               for f in frames[:100])

    def fast():
        for f in frames:
            validate_split(f, dd, options)

    def full():
        for f in frames:
            validate_reference(f, dd, options)

    repeat = bench_mode.size(full=5, short=3)
    t_fast, t_full = best_time(fast, repeat=repeat), best_time(full, repeat=repeat)
    ratio = t_full / t_fast
    bench_table.add(TITLE, "validation only, fast acceptance", n / t_fast, "msgs/s",
                    f"{t_fast / n * 1e6:.2f} us/msg, x{ratio:.1f} full")
    bench_table.add(TITLE, "validation only, full QuickFIX-order checks", n / t_full, "msgs/s",
                    f"{t_full / n * 1e6:.2f} us/msg")
    bench_mode.check_ratio("fast vs full validation", ratio, target=2.0, floor=1.5)


# ---------------------------------------------------------------------------------------------
# The OMS's ExecutionReports: one compiled call per body + the session stamping it, vs the list
# ---------------------------------------------------------------------------------------------
class _NoManager:
    """Report sending needs no order manager: the gateway only registers its output sink."""

    def set_output_sink(self, send, store) -> None:
        pass


class _ListSession(Session):
    """The gateway sends a session without ``send_encoded`` the field list (the reference path)."""

    send_encoded = None


def _oms_reports(n: int) -> list:
    """The two reports per order the OMS sends for a resting limit order: PendingNew, New."""
    from crossbook.model.enums import ExecType, OrdStatus
    from crossbook.model.orders import Execution
    from crossbook.oms.reports import ExecReport

    reports = []
    for i in range(n):
        for k, (exec_type, status) in enumerate(((ExecType.PENDING_NEW, OrdStatus.PENDING_NEW),
                                                 (ExecType.NEW, OrdStatus.NEW))):
            seq = 2 * i + k + 1
            ex = Execution(f"X{seq}", f"O{i + 1}", seq, f"C{i}", "", exec_type, status, "AAPL", 1 + i % 2, 1,
                           22_900 + i % 200, 0, 0, 0, 1, 0, "VENUE-A", "", "", -1,
                           1_764_061_200_000_000_000 + seq * 50_000, "ACC1", "FIRM1")
            reports.append(ExecReport("FIRM1", ex, order_qty=1, ord_type=2, tif=0))
    return reports


def _send_reports(path: str, session_class, reports) -> tuple[float, bytes]:
    """Best time to hand ``reports`` to a logged-on session (batching FileStore, as the server's)
    through the gateway, written to the store once per 10 reports (a flush's worth); and the
    bytes of the last run, wire and store."""
    import tomllib

    from crossbook.app.config import DEFAULT_CONFIG, parse_config
    from crossbook.fix.store import FileStore
    from crossbook.oms.gateway import FixGateway

    cfg = parse_config(tomllib.loads(DEFAULT_CONFIG), "<bench>")
    results = []

    def run() -> None:
        clock = TestClock(1_764_061_200.0)
        gateway = FixGateway(_NoManager(), cfg.instruments, cfg.directory)
        store = FileStore(path, f"r{len(results)}", now=clock.now(), batch=True)
        s = session_class(SessionSettings(begin_string="FIX.4.4", sender_comp_id="CROSSBOOK", target_comp_id="FIRM1"),
                          store=store, clock=clock, application=gateway)
        s.on_connected()
        s.received_logon = s.sent_logon = True   # logged on: reports go straight out
        send, store_outputs = gateway.send_output, gateway.store_outputs
        start = time.perf_counter()
        for i, report in enumerate(reports):
            send(report)
            if i % 10 == 9:
                store_outputs()
        store_outputs()
        elapsed = time.perf_counter() - start
        results.append((elapsed, s.data_to_send() + b"".join(raw for _, raw in store.get(1, len(reports)))))
        store.close()

    for _ in range(3):
        run()
    best = min(r[0] for r in results)
    return best, results[-1][1]


def test_oms_execution_reports_encoded_vs_list(tmp_path, bench_mode, bench_table):
    """The gateway's report path per ExecutionReport: ``execution_report_bytes`` (compiled body)
    + ``Session.send_encoded`` (compiled header stamp) against ``execution_report_body`` (a list
    of fields) + ``Session.send``; same reports, same bytes on the wire and in the store."""
    n = bench_mode.size(full=20_000, short=2_000)
    reports = _oms_reports(n)
    title = "OMS ExecutionReports through the gateway and session (PendingNew + New per order)"
    t_list = t_encoded = float("inf")
    for _ in range(bench_mode.size(full=3, short=2)):   # alternating, best of each
        t, list_bytes = _send_reports(str(tmp_path / "list"), _ListSession, reports)
        t_list = min(t_list, t)
        t, encoded_bytes = _send_reports(str(tmp_path / "encoded"), Session, reports)
        t_encoded = min(t_encoded, t)
        assert encoded_bytes == list_bytes            # byte for byte, wire and store
    ratio = t_list / t_encoded
    bench_table.add(title, "compiled body + send_encoded", t_encoded / len(reports) * 1e6, "us/report",
                    f"x{ratio:.2f} the list path")
    bench_table.add(title, "field list + send (reference)", t_list / len(reports) * 1e6, "us/report")
    bench_mode.check_ratio("encoded vs list ExecutionReports", ratio, target=2.0, floor=1.3)
