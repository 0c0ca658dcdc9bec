"""Training throughput against the hardware: tokens/s, model FLOP utilisation (MFU) and peak memory.

MFU = tokens/s x training FLOPs per token / peak FLOP/s (the PaLM definition: model FLOPs, so
recomputation such as flash attention's backward counts nothing extra).
- FLOPs per token: `lm336.accounting.flops_per_token` (matmuls only, 3x the forward, full
  non-causal attention scores), so the same figure for every attention implementation.
- Peak, in this order: an explicit override (e.g. a run's `peak_flops` setting); on CUDA the
  datasheet dense bfloat16 tensor-core rate of the GPU, looked up by its name in GPU_PEAK_FLOPS;
  on the CPU a float32 matmul rate measured once per thread count and cached for the process
  (so CPU MFU reads "share of this machine's own matmul speed").
- Peak memory: CUDA's peak allocated bytes since the last reset; on the CPU the process's peak
  resident set size.

    peak, source = peak_flops(device)             # e.g. (989.4e12, "datasheet bf16 dense, NVIDIA H100 80GB HBM3")
    fpt = flops_per_token(cfg.model)              # lm336.accounting
    print(f"MFU {mfu(tokens_per_s, fpt, peak):.1%}")
"""

from __future__ import annotations

import functools
import math
import sys
import time

import torch

from .accounting import flops_per_token  # noqa: F401  (re-exported: the numerator of MFU)

# Dense (no sparsity) bfloat16 tensor-core peaks in FLOP/s, from NVIDIA's datasheets, matched
# against torch.cuda.get_device_name() by substring (case-insensitive), first match wins: the more
# specific names come first ("H100 PCIe" before "H100", "A100" before "A10").
# None: no datasheet figure we trust (peak_flops then asks for an override).
GPU_PEAK_FLOPS: tuple[tuple[str, float | None], ...] = (
    ("GH200", 989.4e12),
    ("H200", 989.4e12),
    ("H100 PCIe", 756.5e12),
    ("H100 NVL", 835.5e12),
    ("H100", 989.4e12),  # SXM (the "H100 80GB HBM3" name)
    ("H800", 989.4e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362.05e12),
    ("L40", 181.05e12),
    ("L4", 121e12),
    ("A10G", None),  # a cloud variant of the A10 without a published tensor-core figure
    ("A10", 125e12),
    ("RTX 4090", 165.2e12),
    ("RTX 3090", 71e12),
)


def gpu_datasheet_flops(name: str) -> float | None:
    """The dense bf16 peak of a GPU by its name, or None when unknown.

    Example: gpu_datasheet_flops("NVIDIA H100 PCIe") -> 756.5e12.
    """
    lowered = name.lower()
    for key, flops in GPU_PEAK_FLOPS:
        if key.lower() in lowered:
            return flops
    return None


@functools.cache
def _cpu_matmul_flops(threads: int, n: int) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up (allocation, thread pool)
    best = math.inf
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def cpu_matmul_flops(n: int = 1024) -> float:
    """The float32 rate of an n x n matmul on the CPU with torch's current thread count: best of
    five, measured once per thread count and cached for the process (a fraction of a second). NOTE:
    on a machine shared with other work this can come out low, and MFU then high (even above 100%)."""
    return _cpu_matmul_flops(torch.get_num_threads(), n)


def peak_flops(device: torch.device | str, override: float | None = None) -> tuple[float, str]:
    """(peak FLOP/s, where it came from) for MFU on `device`.

    Args:
        device: where the model runs.
        override: FLOP/s to use as is (> 0); None or 0 = decide from the device.
    Raises:
        ValueError: a negative or non-finite override, or a GPU missing from GPU_PEAK_FLOPS
            (the message says to pass an override).
    """
    if override:
        if not (math.isfinite(override) and override > 0):
            raise ValueError(f"peak FLOP/s override must be a positive number, got {override!r}")
        return float(override), "override"
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        flops = gpu_datasheet_flops(name)
        if flops is None:
            raise ValueError(
                f"no datasheet peak for {name!r}; pass the GPU's dense bf16 FLOP/s as an override (e.g. run.peak_flops=312e12)"
            )
        return flops, f"datasheet bf16 dense, {name}"
    return cpu_matmul_flops(), f"measured float32 matmul, {torch.get_num_threads()} threads"


def mfu(tokens_per_s: float, flops_per_tok: float, peak: float) -> float:
    """Model FLOP utilisation, a fraction: tokens/s x FLOPs/token / peak FLOP/s.

    Example: mfu(1e6, 111.7e6, 989.4e12) -> 0.1129.
    """
    return tokens_per_s * flops_per_tok / peak


def peak_memory_bytes(device: torch.device | str) -> int:
    """Peak memory so far: CUDA's max allocated bytes on that device (torch.cuda.reset_peak_memory_stats
    starts a new window), else this process's peak resident set size (RSS)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux
