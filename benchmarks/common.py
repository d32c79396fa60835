"""Helpers shared by the benchmarks: timing, peak-memory probes, inputs, the machine description."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIM_HOME = ROOT / "build" / "cann-sim"


# ---- timing ------------------------------------------------------------------------------------------
def now() -> float:
    return time.perf_counter()


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Samples:
    """Named lists of timings (seconds) collected in one run, interleaved so drift hits every series alike."""

    def __init__(self) -> None:
        self.data: Dict[str, List[float]] = {}

    def add(self, name: str, seconds: float) -> None:
        self.data.setdefault(name, []).append(seconds)

    def time(self, name: str, fn: Callable[[], object]) -> object:
        t0 = now()
        out = fn()
        self.add(name, now() - t0)
        return out

    def med(self, name: str) -> float:
        return median(self.data.get(name, []))


# ---- memory ------------------------------------------------------------------------------------------
def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> Optional[int]:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def reset_peak() -> bool:
    """Reset the kernel's resident high-water mark (VmHWM) to the current RSS; False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> Optional[int]:
    kb = _status_kb("VmHWM")
    return None if kb is None else kb * 1024


@dataclass
class MemoryUse:
    """Resident bytes around one call: inputs (already resident), outputs left resident, and the peak."""

    inputs: int
    outputs: int
    peak: int            # inputs + everything the call had resident at its high-water mark

    @property
    def ratio(self) -> float:
        return self.peak / max(1, self.inputs + self.outputs)


@contextmanager
def measure_memory(inputs_resident: int) -> Iterator[dict]:
    """``with measure_memory(n) as m: out = op()`` fills ``m["use"]`` with a :class:`MemoryUse` (or None)."""
    box: dict = {"use": None}
    before = rss_bytes()
    ok = before is not None and reset_peak()
    yield box
    if ok:
        after, hwm = rss_bytes(), peak_bytes()
        if after is not None and hwm is not None:
            box["use"] = MemoryUse(inputs_resident, max(0, after - before), inputs_resident + max(0, hwm - before))


# ---- the copy floor -------------------------------------------------------------------------------------
class CopyFloor:
    """``np.copyto`` of ``rows`` rows of ``row_bytes`` bytes: the memory-bandwidth floor of moving them once.

    ``warm()`` copies into a destination allocated and touched beforehand (pure bandwidth); ``fresh()``
    allocates the destination first (``np.empty``: new pages, faulted in and zeroed by the kernel on first
    write), which is what any function returning new arrays pays. The source is ``min(rows, cap)`` rows of
    contiguous data, copied round-robin, so the floor never reads a cache-resident source.
    """

    CAP_BYTES = 256 << 20

    def __init__(self, rows: int, row_bytes: int) -> None:
        self.rows, self.row_bytes = int(rows), int(row_bytes)
        src_rows = max(1, min(self.rows, self.CAP_BYTES // max(1, self.row_bytes)))
        self.src = np.full((src_rows, self.row_bytes), 0x5A, np.uint8)    # contents do not matter to a copy
        self.dst = np.empty((self.rows, self.row_bytes), np.uint8)
        self._copy(self.dst)          # touch: the warm destination is resident from here on

    def _copy(self, dst: np.ndarray) -> None:
        n = self.src.shape[0]
        for a in range(0, self.rows, n):
            b = min(self.rows, a + n)
            np.copyto(dst[a:b], self.src[:b - a])

    def warm(self) -> None:
        self._copy(self.dst)

    def fresh(self) -> None:
        dst = np.empty((self.rows, self.row_bytes), np.uint8)
        self._copy(dst)
        del dst

    @property
    def nbytes(self) -> int:
        return self.rows * self.row_bytes

    def release(self) -> None:
        self.src = self.dst = None


# ---- inputs -------------------------------------------------------------------------------------------
def fast_bf16(rng: np.random.Generator, shape) -> np.ndarray:
    """Random finite bf16 values in +-[2**-15, 2) with random mantissas, from random bits (much faster than
    rounding normal samples; the values only need to be ordinary numbers)."""
    from aclnn_py.dtypes import bfloat16
    bits = rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)
    bits &= np.uint16(0x87FF)               # sign, 4 low exponent bits, 7 mantissa bits
    bits |= np.uint16(0x3800)               # exponent 0x70..0x7F: scale 2**-15 .. 2**0
    return bits.view(bfloat16)


def moe_inputs(ep: int, bs: int, h: int, k: int, experts: int, seed: int = 0) -> dict:
    """Per-rank x (bf16), expert_ids (distinct per token, int32) and routing weights (fp32)."""
    from aclnn_py.demos.common import distinct_ids, routing_weights
    rng = np.random.default_rng(seed)
    cand = np.arange(experts)
    return {
        "x": [fast_bf16(rng, (bs, h)) for _ in range(ep)],
        "expert_ids": [distinct_ids(rng, bs, k, cand) for _ in range(ep)],
        "expert_scales": [routing_weights(rng, bs, k) for _ in range(ep)],
    }


def set_buffsize(*, h: int, bs: int, ep: int, experts: int, k: int, shared: int = 0) -> int:
    """Set HCCL_BUFFSIZE to the smallest size the tiling accepts for this configuration; returns MB."""
    from aclnn_py.validate import required_hccl_buffsize_mb
    mb = required_hccl_buffsize_mb(h=h, max_bs=bs, ep_world_size=ep, local_expert_num=experts // ep, k=k,
                                   shared_expert_num=shared)
    os.environ["HCCL_BUFFSIZE"] = str(mb)
    return mb


def use_simulator() -> Path:
    """Point aclnn_py at the simulator tree (build.sh must have built it); returns its path."""
    if not (SIM_HOME / "lib64" / "libopapi.so").exists():
        raise SystemExit(f"the simulator is not built ({SIM_HOME}); run ./build.sh first")
    os.environ["ACLNN_PY_CANN_HOME"] = str(SIM_HOME)
    os.environ.setdefault("ACLNN_PY_BACKEND", "device")
    return SIM_HOME


# ---- reporting ------------------------------------------------------------------------------------------
def machine() -> Dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    thp = ""
    try:
        thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        pass
    virt = ""
    try:
        virt = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    import ml_dtypes
    return {
        "cpu": f"{cpu} x {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))})",
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}" + (f" ({virt})" if virt else ""),
        "transparent_hugepage": thp,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "ml_dtypes": ml_dtypes.__version__,
    }


def table(rows: List[List[str]], header: List[str]) -> str:
    """A GitHub-markdown table."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def fmt_x(ratio: float) -> str:
    return f"{ratio:.2f}x"


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "NOT met"
