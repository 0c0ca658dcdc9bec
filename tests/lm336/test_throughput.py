"""MFU pieces: the datasheet table, the measured CPU peak, overrides, the MFU arithmetic, peak memory.

cd tests && ../.venv/bin/python -m pytest -q lm336/test_throughput.py
"""

from __future__ import annotations

import pytest
import torch

from lm336.accounting import PRESETS
from lm336.throughput import cpu_matmul_flops, flops_per_token, gpu_datasheet_flops, mfu, peak_flops, peak_memory_bytes

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize(
    "name, flops",
    [
        ("NVIDIA H100 80GB HBM3", 989.4e12),
        ("NVIDIA H100 PCIe", 756.5e12),
        ("NVIDIA H100 NVL", 835.5e12),
        ("NVIDIA H200", 989.4e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA A100-PCIE-40GB", 312e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA L40S", 362.05e12),
        ("NVIDIA GeForce RTX 4090", 165.2e12),
        ("NVIDIA A10", 125e12),
        ("NVIDIA A10G", None),
        ("Tesla T4", None),
    ],
)
def test_datasheet_peaks_by_device_name(name, flops):
    assert gpu_datasheet_flops(name) == flops


def test_override_wins_and_is_validated():
    assert peak_flops("cpu", override=123e12) == (123e12, "override")
    with pytest.raises(ValueError, match="positive"):
        peak_flops("cpu", override=-1.0)
    with pytest.raises(ValueError, match="positive"):
        peak_flops("cpu", override=float("inf"))


def test_cpu_peak_is_measured_once_per_thread_count():
    first = cpu_matmul_flops(n=256)
    assert first > 1e8  # any CPU multiplies faster than 0.1 GFLOP/s
    assert cpu_matmul_flops(n=256) == first  # cached, not re-measured
    flops, source = peak_flops("cpu")
    assert flops > 1e8 and "measured float32 matmul, 1 threads" == source


def test_mfu_arithmetic_and_the_17m_flops():
    fpt = flops_per_token(PRESETS["tinystories-17m"])
    assert fpt == pytest.approx(111.7e6, rel=1e-3)  # 3 x forward matmul FLOPs per token
    assert mfu(1e6, fpt, 989.4e12) == pytest.approx(1e6 * fpt / 989.4e12)
    assert mfu(1_000_000, 111.7e6, 989.4e12) == pytest.approx(0.1129, abs=1e-4)


def test_peak_memory_is_reported_in_bytes():
    before = peak_memory_bytes("cpu")
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    assert peak_memory_bytes("cpu") >= max(before, 64 * 2**20)
    del big
