"""FIX data dictionaries for FIX.4.2, FIX.4.4 and FIXT.1.1 with FIX.5.0 / 5.0SP1 / 5.0SP2.

The data comes from QuickFIX's spec XML files (QuickFIX Software License, see
``spec/LICENSE.quickfix``), converted by ``tools/gen_fix_dictionary.py`` into the compact
``spec/*.json.gz`` files beside this module, which are loaded lazily and cached.

>>> dd = load_dictionary("FIX.4.4")
>>> dd.field_name(44), dd.field_type(44), dd.is_admin("A")
('Price', 'PRICE', True)
>>> fixt = load_dictionary("FIXT.1.1", appl_ver_id="9")   # FIXT.1.1 transport + FIX.5.0SP2 application

A dictionary for FIXT.1.1 is a merged view: admin messages, the header and the trailer come from
the transport spec (FIXT11), application messages from the application spec picked by
``appl_ver_id`` (ApplVerID / DefaultApplVerID, tag 1128 / 1137).
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Mapping

__all__ = [
    "APPL_VER_IDS",
    "DataDictionary",
    "FieldDef",
    "GroupDef",
    "MessageDef",
    "Spec",
    "load_dictionary",
    "load_spec",
]

# ApplVerID (1128) values -> spec file; the FIX.4.x ones are accepted as FIXT application
# dictionaries, as QuickFIX does.
APPL_VER_IDS: Mapping[str, str] = MappingProxyType(
    {"4": "FIX42", "6": "FIX44", "7": "FIX50", "8": "FIX50SP1", "9": "FIX50SP2"}
)
_APPL_VER_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "FIX.4.2": "4",
        "FIX.4.4": "6",
        "FIX.5.0": "7",
        "FIX.5.0SP1": "8",
        "FIX.5.0SP2": "9",
    }
)
_SESSION_SPECS: Mapping[str, str] = MappingProxyType({"FIX.4.2": "FIX42", "FIX.4.4": "FIX44", "FIXT.1.1": "FIXT11"})

# QuickFIX's Message::isHeaderField / isTrailerField hard-coded lists: these tags count as
# header/trailer fields whatever the dictionary says (it matters when parsing and ordering).
STANDARD_HEADER_TAGS = frozenset(
    {8, 9, 35, 49, 56, 115, 128, 90, 34, 50, 142, 57, 143, 116, 144, 129, 145, 43, 97, 52, 122, 212, 213, 347, 369,
     370, 1128, 1129, 627}
)
STANDARD_TRAILER_TAGS = frozenset({93, 89, 10})
# QuickFIX's isAdminMsgType: one character among these.
_ADMIN_MSG_TYPES = frozenset({"0", "A", "1", "2", "3", "4", "5"})


@dataclass(frozen=True, slots=True)
class FieldDef:
    """A field of the ``<fields>`` section: tag, name, XML type (``"PRICE"``, ``"UTCTIMESTAMP"``...)
    and enumerated values (``None`` when the field takes any value)."""

    tag: int
    name: str
    type: str
    values: frozenset[bytes] | None
    value_names: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class GroupDef:
    """A repeating group as QuickFIX sees it inside one message type.

    ``fields`` are the member tags in spec order (nested group count tags included, members of
    nested groups not), ``delim`` the first member, which starts every entry, ``required`` the
    members QuickFIX requires in each entry, ``groups`` the nested groups.
    """

    tag: int
    delim: int
    fields: tuple[int, ...]
    field_set: frozenset[int]
    required: tuple[int, ...]
    groups: Mapping[int, "GroupDef"]
    order: Mapping[int, int]  # member tag -> position, for writing entries in spec order


@dataclass(frozen=True, slots=True)
class MessageDef:
    """A message type: its fields (top-level, group count tags included), required fields in
    ascending tag order (QuickFIX's check order) and repeating groups by count tag."""

    msg_type: str
    name: str
    category: str  # "admin" or "app"
    fields: tuple[int, ...]
    field_set: frozenset[int]
    required: tuple[int, ...]
    groups: Mapping[int, GroupDef]

    @property
    def is_admin(self) -> bool:
        return self.category == "admin"


@dataclass(frozen=True, slots=True)
class SectionDef:
    """The standard header or trailer of a spec."""

    fields: tuple[int, ...]
    field_set: frozenset[int]
    required: tuple[int, ...]
    groups: Mapping[int, GroupDef]


class Spec:
    """One spec file (FIX42, FIX44, FIX50, FIX50SP1, FIX50SP2 or FIXT11), read-only."""

    def __init__(self, name: str, data: dict) -> None:
        if data.get("format") != 1:
            raise ValueError(f"spec {name}: unsupported format {data.get('format')!r}")
        self.name = name
        self.begin_string: str = data["begin_string"]  # QuickFIX's version string, e.g. "FIX.5.0"
        self.servicepack: int = data["servicepack"]
        self.source: str = data["source"]
        fields: dict[int, FieldDef] = {}
        for tag_s, entry in data["fields"].items():
            tag = int(tag_s)
            names = entry[2] if len(entry) > 2 else {}
            fields[tag] = FieldDef(
                tag=tag,
                name=entry[0],
                type=entry[1],
                values=frozenset(v.encode("latin-1") for v in names) if names else None,
                value_names=MappingProxyType(dict(names)),
            )
        self.fields: Mapping[int, FieldDef] = MappingProxyType(fields)
        self.tags_by_name: Mapping[str, int] = MappingProxyType({f.name: t for t, f in fields.items()})

        raw_groups = data.get("groups", [])
        built: dict[tuple[int, int], GroupDef] = {}

        def group(tag: int, idx: int) -> GroupDef:
            key = (tag, idx)
            g = built.get(key)
            if g is None:
                raw = raw_groups[idx]
                members = tuple(raw["fields"])
                g = GroupDef(
                    tag=tag,
                    delim=raw["delim"],
                    fields=members,
                    field_set=frozenset(members),
                    required=tuple(raw["required"]),
                    groups=groups_of(raw),
                    order=MappingProxyType({t: i for i, t in enumerate(members)}),
                )
                built[key] = g
            return g

        def groups_of(raw: dict) -> Mapping[int, GroupDef]:
            return MappingProxyType({int(t): group(int(t), i) for t, i in raw.get("groups", {}).items()})

        def section(raw: dict | None) -> SectionDef | None:
            if raw is None:
                return None
            return SectionDef(tuple(raw["fields"]), frozenset(raw["fields"]), tuple(raw["required"]), groups_of(raw))

        self.header = section(data.get("header"))
        self.trailer = section(data.get("trailer"))
        messages = {}
        for msg_type, raw in data["messages"].items():
            messages[msg_type] = MessageDef(
                msg_type=msg_type,
                name=raw["name"],
                category=raw["category"],
                fields=tuple(raw["fields"]),
                field_set=frozenset(raw["fields"]),
                required=tuple(raw["required"]),
                groups=groups_of(raw),
            )
        self.messages: Mapping[str, MessageDef] = MappingProxyType(messages)

    def __repr__(self) -> str:
        return f"<Spec {self.name} {self.begin_string} SP{self.servicepack}: {len(self.messages)} messages>"


@functools.cache
def load_spec(name: str) -> Spec:
    """Load one spec file by name (``"FIX44"``, ``"FIXT11"``, ...); cached."""
    if name not in set(APPL_VER_IDS.values()) | set(_SESSION_SPECS.values()):
        raise ValueError(f"unknown FIX spec {name!r}")
    blob = resources.files(__package__).joinpath("spec").joinpath(f"{name}.json.gz").read_bytes()
    return Spec(name, json.loads(gzip.decompress(blob)))


def _normalise_appl_ver_id(appl_ver_id: str | int | None) -> str | None:
    if appl_ver_id is None:
        return None
    value = str(appl_ver_id)
    value = _APPL_VER_NAMES.get(value, value)
    if value not in APPL_VER_IDS:
        raise ValueError(
            f"unsupported ApplVerID {appl_ver_id!r}: expected one of {sorted(APPL_VER_IDS)} "
            f"or {sorted(_APPL_VER_NAMES)}"
        )
    return value


class DataDictionary:
    """The dictionary of one session: transport spec plus application spec.

    For FIX.4.2 / FIX.4.4 both are the same spec. For FIXT.1.1 the transport spec is FIXT11 and the
    application spec is the one named by ``appl_ver_id``. Build it with :func:`load_dictionary`.
    """

    def __init__(self, begin_string: str, transport: Spec, app: Spec, appl_ver_id: str | None) -> None:
        self.begin_string = begin_string
        self.transport = transport
        self.app = app
        self.appl_ver_id = appl_ver_id
        self.is_fixt = begin_string == "FIXT.1.1"
        self.begin_bytes = begin_string.encode("ascii")
        header = transport.header
        trailer = transport.trailer
        assert header is not None and trailer is not None  # session specs always have them
        #: tags parsed as header / trailer fields: QuickFIX's fixed lists plus the transport spec's
        self.header_tags: frozenset[int] = STANDARD_HEADER_TAGS | header.field_set
        self.trailer_tags: frozenset[int] = STANDARD_TRAILER_TAGS | trailer.field_set

    def __repr__(self) -> str:
        extra = f" ApplVerID={self.appl_ver_id} ({self.app.name})" if self.is_fixt else ""
        return f"<DataDictionary {self.begin_string}{extra}>"

    # -- messages --------------------------------------------------------------------------
    def is_admin(self, msg_type: str) -> bool:
        """Session-level (admin) message type: Heartbeat, Logon, TestRequest, ResendRequest,
        Reject, SequenceReset, Logout."""
        return msg_type in _ADMIN_MSG_TYPES

    def spec_for(self, msg_type: str) -> Spec:
        """The spec that defines ``msg_type``: the transport spec for admin messages, else the
        application spec."""
        return self.transport if self.is_admin(msg_type) else self.app

    def message(self, msg_type: str) -> MessageDef | None:
        """The definition of ``msg_type``, or None if the dictionary does not know it."""
        return self.spec_for(msg_type).messages.get(msg_type)

    def has_message(self, msg_type: str) -> bool:
        return self.message(msg_type) is not None

    def message_name(self, msg_type: str) -> str | None:
        m = self.message(msg_type)
        return m.name if m is not None else None

    def required_fields(self, msg_type: str) -> tuple[int, ...]:
        m = self.message(msg_type)
        return m.required if m is not None else ()

    def group(self, msg_type: str, tag: int) -> GroupDef | None:
        """The repeating group whose count tag is ``tag`` in ``msg_type`` (top level), or None."""
        m = self.message(msg_type)
        return m.groups.get(tag) if m is not None else None

    def header_group(self, tag: int) -> GroupDef | None:
        return self.transport.header.groups.get(tag)  # type: ignore[union-attr]

    # -- fields ----------------------------------------------------------------------------
    def field(self, tag: int) -> FieldDef | None:
        """Field definition, application spec first, then transport spec."""
        f = self.app.fields.get(tag)
        if f is None and self.app is not self.transport:
            f = self.transport.fields.get(tag)
        return f

    def has_field(self, tag: int) -> bool:
        return self.field(tag) is not None

    def field_name(self, tag: int) -> str | None:
        f = self.field(tag)
        return f.name if f is not None else None

    def field_tag(self, name: str) -> int | None:
        tag = self.app.tags_by_name.get(name)
        if tag is None:
            tag = self.transport.tags_by_name.get(name)
        return tag

    def field_type(self, tag: int) -> str | None:
        """The spec's type name (``"INT"``, ``"PRICE"``, ``"UTCTIMESTAMP"``, ...) or None."""
        f = self.field(tag)
        return f.type if f is not None else None

    def field_values(self, tag: int) -> frozenset[bytes] | None:
        """Allowed values of an enumerated field (as bytes), or None when any value goes."""
        f = self.field(tag)
        return f.values if f is not None else None

    def value_name(self, tag: int, value: str | bytes) -> str | None:
        """Description of an enumerated value (``value_name(54, "1") == "BUY"``), or None."""
        f = self.field(tag)
        if f is None:
            return None
        key = value.decode("latin-1") if isinstance(value, bytes) else value
        return f.value_names.get(key)

    def is_data_field(self, tag: int) -> bool:
        """DATA fields may contain SOH; their length is in the preceding tag (93 for 89)."""
        return self.field_type(tag) == "DATA"

    def is_header_field(self, tag: int) -> bool:
        return tag in self.header_tags

    def is_trailer_field(self, tag: int) -> bool:
        return tag in self.trailer_tags


@functools.cache
def _dictionary(begin_string: str, appl_ver_id: str | None) -> DataDictionary:
    session_spec = _SESSION_SPECS.get(begin_string)
    if session_spec is None:
        raise ValueError(f"unsupported BeginString {begin_string!r}: expected one of {sorted(_SESSION_SPECS)}")
    transport = load_spec(session_spec)
    if begin_string == "FIXT.1.1":
        if appl_ver_id is None:
            raise ValueError("FIXT.1.1 needs appl_ver_id (DefaultApplVerID), e.g. '9' for FIX.5.0SP2")
        app = load_spec(APPL_VER_IDS[appl_ver_id])
    else:
        app = transport
        appl_ver_id = None
    return DataDictionary(begin_string, transport, app, appl_ver_id)


def load_dictionary(begin_string: str, appl_ver_id: str | int | None = None) -> DataDictionary:
    """The dictionary for a session: ``load_dictionary("FIX.4.4")`` or
    ``load_dictionary("FIXT.1.1", appl_ver_id="9")`` (also ``"FIX.5.0SP2"``); cached.

    ``appl_ver_id`` is ignored for FIX.4.x. Raises ValueError for unsupported versions.
    """
    if not isinstance(begin_string, str):
        raise TypeError(f"begin_string must be a str, not {type(begin_string).__name__}")
    return _dictionary(begin_string, _normalise_appl_ver_id(appl_ver_id) if begin_string == "FIXT.1.1" else None)
