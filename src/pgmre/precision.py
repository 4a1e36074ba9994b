"""Numeric precision of training and inference: ``train.precision: auto | fp32 | bf16``.

bf16 pays only where the CPU multiplies bf16 in hardware: Intel AMX (``amx_bf16``) or AVX512-BF16
(``avx512_bf16``), measured at ~944 against ~85 GFLOP/s for a 2048^2 matmul on a Sapphire Rapids
class core pair. Elsewhere (an AVX2-only EPYC, say) oneDNN emulates it and bf16 is *slower* than
fp32, so ``auto`` picks bf16 only on CPUs that report one of those flags. CUDA keeps accelerate's
mixed precision (``train.mixed_precision``); ``fp32`` turns autocast off everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import torch

Precision = Literal["fp32", "bf16"]

#: CPU flags (as /proc/cpuinfo spells them) that mean bf16 matrix arithmetic in hardware.
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The ``flags`` of the first processor in a /proc/cpuinfo text (empty when it has none)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


@functools.cache
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """This machine's CPU flags; empty where /proc/cpuinfo does not exist (macOS, Windows)."""
    try:
        return parse_cpu_flags(Path(path).read_text(errors="replace"))
    except OSError:
        return frozenset()


def cpu_has_bf16_units(flags: Iterable[str] | None = None) -> bool:
    """True when the CPU multiplies bf16 in hardware (AMX or AVX512-BF16)."""
    return bool(BF16_CPU_FLAGS & frozenset(cpu_flags() if flags is None else flags))


def cpu_model_name(path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name, for run records and benchmarks."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor() or platform.machine()


def resolve_precision(setting: str, device: torch.device | str = "cpu") -> Precision:
    """``auto`` -> ``bf16`` on a CPU with bf16 units, else ``fp32``; on CUDA the autocast of this
    module stays off (``fp32`` here) because accelerate's mixed precision handles it."""
    if setting not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {setting!r}")
    if torch.device(device).type != "cpu":
        return "fp32"
    if setting == "auto":
        return "bf16" if cpu_has_bf16_units() else "fp32"
    return setting  # type: ignore[return-value]


def accelerate_mixed_precision(setting: str, mixed_precision: str) -> str:
    """What accelerate gets on CUDA: ``fp32`` forces ``no``, ``bf16`` forces ``bf16``, ``auto`` keeps
    ``train.mixed_precision``."""
    if setting == "fp32":
        return "no"
    if setting == "bf16":
        return "bf16"
    return mixed_precision


@contextlib.contextmanager
def autocast(precision: Precision, device: torch.device | str = "cpu") -> Iterator[None]:
    """bf16 autocast on the CPU when ``precision`` is ``bf16``; a no-op otherwise."""
    if precision == "bf16" and torch.device(device).type == "cpu":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    else:
        yield
