"""OrderManager.set_delivery_hooks: ``before`` / ``after`` around each durable batch's delivery
(what lets the server's FIX acceptor write a batch's reports in the callback that made them
durable), including a batch whose delivery fails."""
from __future__ import annotations

import asyncio

import pytest

from crossbook.core import Side
from crossbook.model.enums import ExecType
from crossbook.publish import EventBus

from test_manager import HoldingJournal, new, running


def test_hooks_bracket_every_delivered_batch_outputs_and_events_inside():
    async def scenario():
        journal = HoldingJournal()
        async with running(journal) as (cfg, venues, m):
            trace: list = []
            m.set_output_sink(lambda out: trace.append(("out", out.execution.exec_type)),
                              lambda: trace.append("stored"))
            EventBus(m).subscribe(lambda event: trace.append(("event", event.execution.exec_type)))
            m.set_delivery_hooks(lambda: trace.append("before"), lambda: trace.append("after"))
            m.new_order(new(cfg, "b1"))
            await asyncio.sleep(0.01)              # the venue's ack joins the batch
            assert trace == []                     # nothing before the journal says durable
            journal.release()
            assert trace == ["before", ("out", ExecType.PENDING_NEW), ("out", ExecType.NEW), "stored",
                             ("event", ExecType.PENDING_NEW), ("event", ExecType.NEW), "after"]
            trace.clear()
            m.new_order(new(cfg, "s1", side=Side.SELL, qty=4, session="FIRM2", account="ACC3"))
            await asyncio.sleep(0.01)
            journal.release()                      # one batch per flush: one bracket each
            assert trace.count("before") == trace.count("after") == len([t for t in trace if t == "before"]) >= 1
            assert trace[0] == "before" and trace[-1] == "after"
            assert ("out", ExecType.TRADE) in trace

    asyncio.run(scenario())


def test_after_runs_when_delivery_fails_and_hooks_must_be_callables():
    async def scenario():
        journal = HoldingJournal()
        async with running(journal) as (cfg, venues, m):
            calls: list[str] = []
            m.set_output_sink(lambda out: None)
            m.set_delivery_hooks(lambda: calls.append("before"), lambda: calls.append("after"))
            m.new_order(new(cfg, "b1"))
            await asyncio.sleep(0.01)
            m._deliver = lambda batch: (_ for _ in ()).throw(RuntimeError("delivery broke"))
            with pytest.raises(RuntimeError, match="delivery broke"):
                journal.release()
            assert calls == ["before", "after"]    # the acceptor's hold is always released
            with pytest.raises(TypeError, match="two callables"):
                m.set_delivery_hooks(None, lambda: None)

    asyncio.run(scenario())


def test_flush_soon_saves_the_first_hop_and_the_batch_still_holds_the_venue_answer():
    """flush_soon() at the end of a callback that entered an order: the batch is flushed one loop
    hop later (not two) and still holds the in-process venue's ack (PendingNew and New share it)."""
    async def scenario():
        for hurry in (False, True):
            journal = HoldingJournal()
            async with running(journal) as (cfg, venues, m):
                m.set_output_sink(lambda out: None)
                m.new_order(new(cfg, "b1"))
                if hurry:
                    m.flush_soon()
                await asyncio.sleep(0)                 # one loop iteration
                if not hurry:
                    assert journal.held == []          # the second hop has not run yet
                    await asyncio.sleep(0)
                assert len(journal.held) == 1
                batch = journal.held[0][0]
                assert [o.execution.exec_type for o in batch.outputs] == [ExecType.PENDING_NEW, ExecType.NEW]
                m.flush_soon()                         # nothing scheduled: nothing happens
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                assert len(journal.held) == 1

    asyncio.run(scenario())


def test_a_direct_flush_cancels_the_scheduled_hops():
    async def scenario():
        journal = HoldingJournal()
        async with running(journal) as (cfg, venues, m):
            m.set_output_sink(lambda out: None)
            m.new_order(new(cfg, "b1"))
            m.flush()                                  # e.g. note_meta with a write-ahead send
            assert len(journal.held) == 1
            for _ in range(3):
                await asyncio.sleep(0)
            # The venue's ack made a batch of its own; the cancelled hops added no empty flush.
            assert len(journal.held) == 2
            assert [o.execution.exec_type for o in journal.held[1][0].outputs] == [ExecType.NEW]

    asyncio.run(scenario())
