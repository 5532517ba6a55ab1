"""Crossbook: a low-latency, exchange-connected order management and matching core.

Subpackages, one per stage of an order's path (imports point down this list only):

* ``crossbook.core``: Cython order book and matching engine, Numba kernels. No I/O, no clock.
* ``crossbook.fix``: the FIX engine (codec, sans-IO session, stores, asyncio transports).
* ``crossbook.app``: command-line entry points.
"""

__version__ = "0.1.0"
