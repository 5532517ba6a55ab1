"""``crossbook loadgen``: an open-loop FIX load generator with HdrHistogram-style latency reports.

* ``LoadConfig`` (what to send), ``run_load(config)`` (async, one process) or
  ``run_processes(config, k)`` (sync, k processes) give a ``Report``;
* ``Histogram``: log-bucketed latency histogram (3 significant digits, mergeable);
* ``sink``: a fast answering FIX peer to measure the generator alone.

docs/loadgen.md explains the method (intended send times, coordinated omission) and the options.
"""
from crossbook.loadgen.config import LoadConfig, OrderMix, SessionSpec, SymbolSpec
from crossbook.loadgen.histogram import Histogram
from crossbook.loadgen.multi import run_processes
from crossbook.loadgen.report import KindCounts, Report
from crossbook.loadgen.runner import LoadRun, Progress, run_load

__all__ = ["Histogram", "KindCounts", "LoadConfig", "LoadRun", "OrderMix", "Progress", "Report", "SessionSpec",
           "SymbolSpec", "run_load", "run_processes"]
