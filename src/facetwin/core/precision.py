"""Choosing the arithmetic of CPU inference: bfloat16 where the CPU computes it natively, float32 elsewhere.

``auto`` picks bf16 when the CPU advertises AMX-BF16 or AVX-512 BF16 (``amx_bf16`` / ``avx512_bf16`` in
``/proc/cpuinfo``, or PyTorch's own ``AVX512_BF16``/``AMX`` capability); on other CPUs bf16 would be
emulated and slower than float32, so ``auto`` means fp32 there. ``fp32`` and ``bf16`` force the choice.

What "bf16" means is up to each backbone: VGG-Face keeps its first layers, where rounding errors are
amplified most, in float32 (``bf16``) unless asked for bf16 everywhere (``bf16-all``, fastest, least exact).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from facetwin.core.runtimes import openvino
from facetwin.errors import FacetwinError

PRECISIONS = ("auto", "fp32", "bf16", "bf16-all")
OPENVINO_PRECISIONS = ("auto", "fp32", "bf16")
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where the file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX-BF16 or AVX-512 BF16)."""
    if any(flag in cpu_flags() for flag in _BF16_FLAGS):
        return True
    import torch

    try:
        capability = torch.backends.cpu.get_cpu_capability().upper()
    except Exception:  # pragma: no cover - very old or unusual builds
        return False
    return "AMX" in capability or "BF16" in capability


@functools.cache
def has_openvino() -> bool:
    """Whether OpenVINO can be imported (a dependency; missing only where it has no wheel)."""
    try:
        openvino()
    except ImportError:
        return False
    return True


@functools.cache
def openvino_bf16() -> bool:
    """True when OpenVINO is installed and reports native bfloat16 on this CPU (AVX512_BF16 or AMX)."""
    if not has_openvino():
        return False
    return "BF16" in openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def openvino_precision(who: str, precision: str) -> str:
    """``"bf16"`` or ``"fp32"`` for a network OpenVINO runs: ``auto`` is bf16 where OpenVINO reports native
    bfloat16, else fp32; ``bf16`` where it cannot run is one sentence naming the network (``who``)."""
    if precision not in OPENVINO_PRECISIONS:
        raise FacetwinError(f"unknown {who} precision '{precision}'; choose one of: {', '.join(OPENVINO_PRECISIONS)}.")
    bf16 = openvino_bf16()
    if precision == "bf16" and not bf16:
        raise FacetwinError(
            f"{who} precision bf16 runs in OpenVINO on a CPU with native bfloat16 (AVX512_BF16 or AMX); "
            "OpenVINO is not installed or this CPU has no bf16: pip install openvino, or use fp32."
        )
    return "bf16" if precision == "bf16" or (precision == "auto" and bf16) else "fp32"


def default_threads() -> int:
    """Intra-op threads of one inference runtime: the cores, at most two (more only adds contention here)."""
    return max(1, min(2, os.cpu_count() or 1))


def resolve(precision: str = "auto") -> str:
    """``"fp32"``, ``"bf16"`` or ``"bf16-all"`` for a requested ``auto|fp32|bf16|bf16-all``."""
    if precision not in PRECISIONS:
        raise FacetwinError(f"unknown precision '{precision}'; choose one of: {', '.join(PRECISIONS)}.")
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


def configure_cpu(threads: int | None = None) -> None:
    """Process-wide torch settings, made once at the edge (CLI, service): flush denormals (they can slow
    convolutions 30×) and, when given, the number of intra-op threads."""
    import torch

    torch.set_flush_denormal(True)
    if threads:
        torch.set_num_threads(max(1, int(threads)))
