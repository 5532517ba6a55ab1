"""The result of a load run: counts, latency histograms, a per-second timeline; as a table or JSON.

Latencies are measured from each message's **intended** send time (its slot in the open-loop
schedule), so a stall anywhere (server, network, or the generator itself) shows up in every
message that should have gone out during it. ``service`` histograms measure from the actual
write instead; the gap between the two is the generator's own lag (``send_lag``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from crossbook.loadgen.histogram import Histogram

KIND_NAMES = ("passive", "marketable", "cancel", "replace")
PERCENTILES = (50.0, 99.0, 99.9)


@dataclass
class KindCounts:
    sent: int = 0
    acked: int = 0
    rejected: int = 0
    timed_out: int = 0
    late: int = 0            # answers that came after the request had been counted as timed out

    def add(self, other: "KindCounts") -> None:
        self.sent += other.sent
        self.acked += other.acked
        self.rejected += other.rejected
        self.timed_out += other.timed_out
        self.late += other.late

    @property
    def consistent(self) -> bool:
        return self.sent == self.acked + self.rejected + self.timed_out


@dataclass
class Report:
    """Everything a run measured. Histograms are keyed ``<kind>.first``, ``<kind>.ack``,
    ``<kind>.service``, plus ``all.ack``, ``rejected`` and ``send_lag``."""

    target_rate: float
    planned: int
    elapsed_s: float                       # first scheduled slot to last scheduled slot
    counts: dict[str, KindCounts]
    histograms: dict[str, Histogram]
    timeline: list[dict] = field(default_factory=list)
    sessions: int = 0
    processes: int = 1
    follow_up_reports: int = 0             # fills and other reports after a request was answered
    unmatched: int = 0                     # answers naming no request or order of this run
    substituted: int = 0                   # mix draws replaced (no order to cancel, resting cap)
    seq_gaps: int = 0
    garbled: int = 0
    resend_requests: int = 0
    cleanup_sent: int = 0
    cleanup_answered: int = 0
    logout_texts: list[str] = field(default_factory=list)

    # -- derived
    @property
    def total(self) -> KindCounts:
        t = KindCounts()
        for c in self.counts.values():
            t.add(c)
        return t

    @property
    def achieved_rate(self) -> float:
        return self.total.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    # -- combining runs of several processes
    def merge(self, other: "Report") -> "Report":
        self.planned += other.planned
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        for name, c in other.counts.items():
            self.counts.setdefault(name, KindCounts()).add(c)
        for name, h in other.histograms.items():
            if name in self.histograms:
                self.histograms[name].merge(h)
            else:
                self.histograms[name] = h.copy()
        by_second = {row["second"]: row for row in self.timeline}
        for row in other.timeline:
            mine = by_second.get(row["second"])
            if mine is None:
                by_second[row["second"]] = dict(row)
                continue
            for key in ("sent", "answered", "in_flight", "timed_out"):
                mine[key] += row[key]
            for key in ("ack_p50_us", "ack_p99_us", "ack_max_us"):
                mine[key] = max(mine[key], row[key])  # the worse process (exact merge needs the histograms)
        self.timeline = [by_second[k] for k in sorted(by_second)]
        self.sessions += other.sessions
        self.processes += other.processes
        for name in ("follow_up_reports", "unmatched", "substituted", "seq_gaps", "garbled", "resend_requests",
                     "cleanup_sent", "cleanup_answered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.logout_texts += other.logout_texts
        return self

    # -- output
    def to_dict(self) -> dict:
        def hist(h: Histogram) -> dict:
            p = h.percentiles(PERCENTILES)
            return {"count": h.count, "p50_us": p[50.0] / 1e3, "p99_us": p[99.0] / 1e3, "p99_9_us": p[99.9] / 1e3,
                    "max_us": h.max / 1e3, "mean_us": round(h.mean / 1e3, 3)}
        total = self.total
        return {
            "target_rate": self.target_rate, "achieved_rate": round(self.achieved_rate, 1), "planned": self.planned,
            "elapsed_s": round(self.elapsed_s, 3), "sessions": self.sessions, "processes": self.processes,
            "counts": {name: vars(c) for name, c in self.counts.items()},
            "total": vars(total), "consistent": all(c.consistent for c in self.counts.values()),
            "latency": {name: hist(h) for name, h in sorted(self.histograms.items()) if h.count},
            "timeline": self.timeline,
            "follow_up_reports": self.follow_up_reports, "unmatched": self.unmatched, "substituted": self.substituted,
            "seq_gaps": self.seq_gaps, "garbled": self.garbled, "resend_requests": self.resend_requests,
            "cleanup_sent": self.cleanup_sent, "cleanup_answered": self.cleanup_answered,
            "logout_texts": self.logout_texts,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format_table(self) -> str:
        """The human report."""
        total = self.total
        lines = [
            f"target {self.target_rate:,.0f}/s, achieved {self.achieved_rate:,.0f}/s over {self.elapsed_s:.2f} s "
            f"({self.sessions} sessions, {self.processes} process{'es' if self.processes > 1 else ''})",
            "",
            f"{'':12} {'sent':>10} {'acked':>10} {'rejected':>10} {'timed out':>10} {'late':>6}",
        ]
        for name in KIND_NAMES:
            c = self.counts.get(name, KindCounts())
            lines.append(f"{name:12} {c.sent:>10,} {c.acked:>10,} {c.rejected:>10,} {c.timed_out:>10,} {c.late:>6,}")
        lines.append(f"{'total':12} {total.sent:>10,} {total.acked:>10,} {total.rejected:>10,} "
                     f"{total.timed_out:>10,} {total.late:>6,}")
        lines += ["", "latency from the intended send time, microseconds "
                      "(first = first answer, ack = venue's answer or final reply)",
                  f"{'':20} {'count':>9} {'p50':>9} {'p99':>9} {'p99.9':>9} {'max':>10}"]
        order = [f"{k}.{s}" for k in KIND_NAMES for s in ("first", "ack")] + ["all.ack", "rejected", "send_lag"]
        for name in order:
            h = self.histograms.get(name)
            if h is None or h.count == 0:
                continue
            p = h.percentiles(PERCENTILES)
            lines.append(f"{name:20} {h.count:>9,} {p[50.0] / 1e3:>9.1f} {p[99.0] / 1e3:>9.1f} "
                         f"{p[99.9] / 1e3:>9.1f} {h.max / 1e3:>10.1f}")
        extra = [f"{name.replace('_', ' ')} {getattr(self, name):,}" for name in
                 ("follow_up_reports", "unmatched", "substituted", "seq_gaps", "garbled", "resend_requests")
                 if getattr(self, name)]
        if self.cleanup_sent:
            extra.append(f"cleanup cancels {self.cleanup_answered:,}/{self.cleanup_sent:,} answered")
        if extra:
            lines += ["", "; ".join(extra)]
        if not all(c.consistent for c in self.counts.values()):
            lines += ["", "WARNING: sent != acked + rejected + timed out"]
        return "\n".join(lines)
