"""FIX engine: dictionary and validation, codec, sans-IO session, stores, transports.

Start with ``docs/fix.md``. The pieces an embedder uses:

* ``crossbook.fix.settings``: ``load_settings(path)`` -> frozen ``SessionSettings``;
* ``crossbook.fix.transport``: ``Acceptor`` / ``Initiator`` (asyncio), ``install_uvloop()``;
* ``crossbook.fix.session``: ``Application`` callbacks, ``Session`` (sans-IO), events, clocks;
* ``crossbook.fix.store``: ``MemoryStore``, ``FileStore``;
* ``crossbook.fix.messages``: ``Message`` (received), ``encode``.
"""
