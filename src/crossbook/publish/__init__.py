"""crossbook.publish: execution fan-out beyond the originating FIX session.

``EventBus`` is the in-process subscription API: every order event (an ExecutionReport's content
plus the order after it), delivered on the event loop once it is durable, in order. Drop copy
sessions and NATS (issue 5) subscribe to it the same way an embedder does.
"""
from crossbook.publish.bus import EventBus, EventQueue

__all__ = ["EventBus", "EventQueue"]
