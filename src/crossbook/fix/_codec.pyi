"""Type stubs for the compiled FIX codec (public names re-exported by crossbook.fix.codec)."""
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any, TypeVar, overload

_Buffer = bytes | bytearray | memoryview
_Value = str | bytes | int | bool | Decimal
_DecimalValue = int | str | bytes | Decimal
_T = TypeVar("_T")

DEFAULT_MAX_BODY_LENGTH: int
DATA_FIELDS: dict[int, int]

class FieldError(ValueError):
    code: int
    tag: int
    position: int
    def __init__(self, code: int, tag: int, position: int, message: str) -> None: ...

class DecimalFormatError(ValueError): ...
class OffGridError(ValueError): ...

class FrameScan:
    status: int
    start: int
    end: int
    skip: int
    reason_code: int
    @property
    def reason(self) -> str: ...

def find_frame(data: _Buffer, offset: int = 0, max_body_length: int = ...) -> FrameScan: ...

class Garbled:
    reason_code: int
    data: bytes
    def __init__(self, reason_code: int, data: bytes) -> None: ...
    @property
    def reason(self) -> str: ...

class FrameReader:
    def __init__(self, max_body_length: int = ...) -> None: ...
    @property
    def max_body_length(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    def feed(self, data: _Buffer) -> None: ...
    def clear(self) -> None: ...
    def next_event(self) -> bytes | Garbled | None: ...
    def __iter__(self) -> FrameReader: ...
    def __next__(self) -> bytes | Garbled: ...

def to_ticks(value: str | bytes, tick_units: int, scale: int) -> int: ...
def to_units(value: str | bytes, scale: int) -> int: ...
def parse_utc_timestamp(value: str | bytes) -> int: ...
def parse_sending_time(value: bytes) -> float | None: ...
def format_utc_timestamp(ns: int, precision: int = 3) -> bytes: ...

class Fields:
    def parse(self, data: _Buffer, start: int = 0, end: int = -1) -> bool: ...
    def release(self) -> None: ...
    @property
    def data(self) -> _Buffer | None: ...
    @property
    def ok(self) -> bool: ...
    @property
    def complete(self) -> bool: ...
    @property
    def error(self) -> int: ...
    @property
    def error_tag(self) -> int: ...
    @property
    def error_position(self) -> int: ...
    @property
    def error_reason(self) -> str: ...
    def raise_for_error(self) -> None: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[tuple[int, bytes]]: ...
    def __contains__(self, tag: int) -> bool: ...
    def pairs(self) -> list[tuple[int, bytes]]: ...
    def tags(self) -> list[int]: ...
    @overload
    def get(self, tag: int) -> bytes | None: ...
    @overload
    def get(self, tag: int, default: _T) -> bytes | _T: ...
    def get_all(self, tag: int) -> list[bytes]: ...
    def find(self, tag: int, start_index: int = 0) -> int: ...
    def tag_at(self, index: int) -> int: ...
    def value_at(self, index: int) -> bytes: ...
    def span_at(self, index: int) -> tuple[int, int]: ...
    def get_int(self, tag: int, default: Any = None) -> int | Any: ...
    def get_ticks(self, tag: int, tick_units: int, scale: int, default: Any = None) -> int | Any: ...
    def get_units(self, tag: int, scale: int, default: Any = None) -> int | Any: ...

def split_fields(data: _Buffer, start: int = 0, end: int = -1) -> Fields: ...

class OrderMessage(Fields):
    begin_string: str | None
    msg_type: str | None
    msg_seq_num: int | None
    sender_comp_id: str | None
    target_comp_id: str | None
    sender_sub_id: str | None
    target_sub_id: str | None
    on_behalf_of_comp_id: str | None
    deliver_to_comp_id: str | None
    sending_time: str | None
    sending_time_ns: int | None
    orig_sending_time: str | None
    orig_sending_time_ns: int | None
    poss_dup: bool
    poss_resend: bool
    cl_ord_id: str | None
    orig_cl_ord_id: str | None
    order_id: str | None
    account: str | None
    symbol: str | None
    security_id: str | None
    security_id_source: str | None
    security_exchange: str | None
    security_type: str | None
    maturity_month_year: str | None
    strike_price: str | None
    put_or_call: int | None
    currency: str | None
    side: str | None
    order_qty: str | None
    ord_type: str | None
    price: str | None
    stop_px: str | None
    time_in_force: str | None
    expire_time: str | None
    expire_time_ns: int | None
    expire_date: str | None
    max_floor: str | None
    min_qty: str | None
    exec_inst: str | None
    handl_inst: str | None
    ex_destination: str | None
    transact_time: str | None
    transact_time_ns: int | None
    text: str | None
    def price_ticks(self, tick_units: int, scale: int) -> int | None: ...
    def stop_px_ticks(self, tick_units: int, scale: int) -> int | None: ...
    def strike_price_ticks(self, tick_units: int, scale: int) -> int | None: ...
    def order_qty_units(self, scale: int = 0) -> int | None: ...
    def max_floor_units(self, scale: int = 0) -> int | None: ...
    def min_qty_units(self, scale: int = 0) -> int | None: ...

def decode_order(data: _Buffer, start: int = 0, end: int = -1) -> OrderMessage: ...

class MessageEncoder:
    def __init__(self, initial_capacity: int = 1024) -> None: ...
    def encode(
        self,
        begin_string: str | bytes,
        msg_type: str | bytes,
        header: Iterable[tuple[int, _Value]] = (),
        body: Iterable[tuple[int, _Value]] = (),
    ) -> bytes: ...

def encode_message(
    begin_string: str | bytes,
    msg_type: str | bytes,
    header: Iterable[tuple[int, _Value]] = (),
    body: Iterable[tuple[int, _Value]] = (),
) -> bytes: ...

class ExecutionReportEncoder(MessageEncoder):
    begin_string: bytes
    sender_comp_id: bytes
    target_comp_id: bytes
    price_scale: int
    qty_scale: int
    timestamp_precision: int
    def __init__(
        self,
        begin_string: str | bytes,
        sender_comp_id: str | bytes,
        target_comp_id: str | bytes,
        *,
        sender_sub_id: str | bytes | None = None,
        target_sub_id: str | bytes | None = None,
        on_behalf_of_comp_id: str | bytes | None = None,
        deliver_to_comp_id: str | bytes | None = None,
        price_scale: int = 0,
        qty_scale: int = 0,
        timestamp_precision: int = 3,
        initial_capacity: int = 1024,
    ) -> None: ...
    def encode(  # type: ignore[override]
        self,
        msg_seq_num: int,
        sending_time_ns: int,
        *,
        order_id: _Value,
        exec_id: _Value,
        exec_type: _Value,
        ord_status: _Value,
        symbol: _Value,
        side: _Value,
        leaves_qty: _DecimalValue,
        cum_qty: _DecimalValue,
        avg_px: _DecimalValue,
        cl_ord_id: _Value | None = None,
        orig_cl_ord_id: _Value | None = None,
        exec_ref_id: _Value | None = None,
        exec_trans_type: _Value | None = None,
        ord_rej_reason: _Value | None = None,
        account: _Value | None = None,
        security_type: _Value | None = None,
        order_qty: _DecimalValue | None = None,
        ord_type: _Value | None = None,
        price: _DecimalValue | None = None,
        stop_px: _DecimalValue | None = None,
        time_in_force: _Value | None = None,
        currency: _Value | None = None,
        ex_destination: _Value | None = None,
        last_qty: _DecimalValue | None = None,
        last_px: _DecimalValue | None = None,
        last_mkt: _Value | None = None,
        transact_time_ns: int | None = None,
        text: _Value | None = None,
        poss_dup: bool = False,
        poss_resend: bool = False,
        orig_sending_time_ns: int | None = None,
        extra: Iterable[tuple[int, _Value]] | None = None,
    ) -> bytes: ...

# the OMS gateway's ExecutionReports (body in one call, header stamped around it)
MAX_STAMPED_EPOCH: float

class ReportInstrument:
    fields: bytes
    known: bool
    def __init__(
        self,
        fields: bytes,
        tick_size: Decimal | None = None,
        price_text: Callable[[int], bytes] | None = None,
        avg_px_text: Callable[[int, int], str | bytes] | None = None,
        avg_px_extra_decimals: int = 6,
    ) -> None: ...
    def price_text(self, ticks: int) -> bytes: ...
    def avg_px_text(self, cum_value: int, cum_qty: int) -> bytes: ...

class ExecutionReportBodyEncoder:
    begin_string: str
    def __init__(
        self,
        begin_string: str,
        report_fields: Sequence[str],
        execution_fields: Sequence[str],
        ord_types: dict[int, bytes],
        tifs: dict[int, bytes],
        priced_ord_types: Iterable[int],
        instruments: dict[str, ReportInstrument],
        resolve_instrument: Callable[[str], ReportInstrument],
    ) -> None: ...
    def encode(self, report: tuple[Any, ...]) -> bytes: ...

def format_sending_time(epoch_seconds: float, millis: bool = True) -> bytes: ...
def encode_stamped(
    begin_string: bytes,
    msg_type: bytes,
    msg_seq_num: int,
    sender_comp_id: bytes,
    sending_time: float | bytes,
    millis: bool,
    target_comp_id: bytes,
    body: bytes,
    header: list[tuple[int, bytes]] | None = None,
) -> bytes: ...

# session helpers
def first_values(fields: Iterable[tuple[int, bytes]]) -> dict[int, bytes]: ...
def split_message(raw: bytes) -> tuple[list[tuple[int, bytes]], dict[int, bytes]] | None: ...
def split_message_lazy(raw: bytes) -> tuple[dict[int, bytes], int] | None: ...
def accepts_flat_first(first: dict[int, bytes], count: int, begin: bytes, table: dict, required: frozenset,
                       have_values: bool) -> bool: ...
def register_format_checks(
    int32: Callable[[bytes], bool], uint64: Callable[[bytes], bool], float_: Callable[[bytes], bool],
    char_: Callable[[bytes], bool], bool_: Callable[[bytes], bool], utc_timestamp: Callable[[bytes], bool],
) -> None: ...
def compiled_format_check(check: Callable[[bytes], bool], value: bytes) -> bool: ...
def accepts_flat(
    fields: Sequence[tuple[int, bytes]],
    begin: bytes,
    table: dict[int, tuple[int, Callable[[bytes], bool] | None, frozenset[bytes] | None, bool]],
    required: frozenset[int],
    have_values: bool,
) -> bool: ...
def bytes_values(pairs: list[tuple[int, Any]]) -> bool: ...
