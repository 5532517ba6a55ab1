"""crossbook.publish: execution fan-out beyond the originating FIX session.

``EventBus`` is the in-process subscription API: every order event (an ExecutionReport's content
plus the order after it), delivered on the event loop once it is durable, in order; routed
orders' events carry the venue that filled them (``Execution.venue``, LastMkt).

``crossbook.publish.dropcopy.DropCopyPublisher`` is the drop copy: FIX sessions (``[[drop_copy]]``
in the server's config, per firm or for all firms) that receive a copy of every ExecutionReport of
their scope, with their own sequence numbers and resend; it subscribes to the bus the same way an
embedder does. docs/config.md ("``[[drop_copy]]``") describes the settings.
"""
from crossbook.publish.bus import EventBus, EventQueue

__all__ = ["EventBus", "EventQueue"]
