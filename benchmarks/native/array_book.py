"""Build benchmarks/native/array_book.c with ``gcc -O3`` into a temp dir and call it via ctypes."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("array_book.c")
# The fields the C book reads, in the order of its F_* offsets enum.
FIELDS = ("op", "order_id", "side", "price", "qty", "ord_type", "tif")
FILL_RECORD = np.dtype([("cmd_index", "i8"), ("maker_id", "i8"), ("taker_id", "i8"), ("price", "i8"), ("qty", "i8")])


class ArrayBook:
    """The compiled C array book; :meth:`process` runs a whole COMMAND_DTYPE array in one call."""

    def __init__(self, build_dir: Path, compiler: str | None = None):
        compiler = compiler or shutil.which("gcc") or shutil.which("cc")
        if compiler is None:
            raise RuntimeError("no C compiler (gcc/cc) on PATH: the C ceiling cannot be built")
        lib_path = Path(build_dir) / "array_book.so"
        # The same optimisation flags as setup.py gives the Cython extensions (-O3, no
        # -march=native), so the ratio compares code, not instruction sets.
        subprocess.run(
            [compiler, "-O3", "-shared", "-fPIC", "-o", str(lib_path), str(SOURCE)],
            check=True, capture_output=True, text=True,
        )
        self._lib = ctypes.CDLL(str(lib_path))
        fn = self._lib.array_book_process
        fn.restype = ctypes.c_int64
        fn.argtypes = [
            ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
            ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
            ctypes.c_void_p, ctypes.c_int64, ctypes.POINTER(ctypes.c_int64),
        ]
        self._fn = fn

    def prepare(self, commands: np.ndarray):
        """Everything the call needs that is not the work itself (bounds, offsets, output buffer),
        computed once so the timed call is only the book."""
        if not commands.flags.c_contiguous:
            raise ValueError("commands must be C-contiguous")
        offsets = np.array([commands.dtype.fields[f][1] for f in FIELDS], dtype=np.int64)
        limit = commands[(commands["op"] != 2) & (commands["ord_type"] == 2)]["price"]
        bounds = (int(commands["order_id"].max()), int(limit.min()), int(limit.max()))
        fills = np.empty(2 * len(commands), dtype=FILL_RECORD)
        return commands, offsets, bounds, fills

    def process(self, prepared) -> tuple[np.ndarray, int]:
        """Run the prepared stream from an empty book; returns (fills, traded volume)."""
        commands, offsets, (max_id, min_price, max_price), fills = prepared
        volume = ctypes.c_int64(0)
        n = self._fn(
            commands.ctypes.data, len(commands), commands.dtype.itemsize, offsets.ctypes.data,
            max_id, min_price, max_price, fills.ctypes.data, len(fills), ctypes.byref(volume),
        )
        if n < 0:
            raise RuntimeError(f"array_book_process failed with {n} (ids/prices out of bounds or no memory)")
        return fills[:n], volume.value
