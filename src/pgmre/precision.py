"""Numeric precision of training and inference: ``train.precision: auto | fp32 | bf16``.

bf16 pays only where the CPU multiplies bf16 in hardware: Intel AMX (``amx_bf16``) or AVX512-BF16
(``avx512_bf16``), measured at ~944 against ~85 GFLOP/s for a 2048^2 matmul on a Sapphire Rapids
class core pair. Elsewhere (an AVX2-only EPYC, say) oneDNN emulates it and bf16 is *slower* than
fp32, so ``auto`` picks bf16 only on CPUs that report one of those flags. CUDA keeps accelerate's
mixed precision for training (``train.mixed_precision``; ``bf16`` forces bf16 there too); ``fp32`` turns
autocast off everywhere.
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
    """True when the CPU multiplies bf16 in hardware (AMX or AVX512-BF16).

    Without a /proc/cpuinfo (macOS, Windows) torch's own x86 probes answer, where this torch has them.
    """
    if flags is None:
        flags = cpu_flags()
        if not flags:
            return _torch_reports_bf16_units()
    return bool(BF16_CPU_FLAGS & frozenset(flags))


def _torch_reports_bf16_units() -> bool:
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private torch.cpu helpers
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def cpu_model_name(path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name, for run records and benchmarks."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor() or platform.machine()


def resolve_precision(setting: str, device: torch.device | str = "cpu") -> Precision:
    """``auto`` -> ``bf16`` on a CPU with bf16 units, else ``fp32``. On CUDA, ``auto`` is ``fp32`` here
    (training's mixed precision is accelerate's, ``train.mixed_precision``) and ``bf16`` is bf16
    autocast on the GPU."""
    if setting not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {setting!r}")
    if setting == "auto":
        return "bf16" if torch.device(device).type == "cpu" and cpu_has_bf16_units() else "fp32"
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
    """bf16 autocast on ``device`` (CPU or CUDA) when ``precision`` is ``bf16``; a no-op otherwise."""
    kind = torch.device(device).type
    if precision == "bf16" and kind in ("cpu", "cuda"):
        with torch.autocast(kind, dtype=torch.bfloat16):
            yield
    else:
        yield
