"""Device and precision choice: CUDA when present, bf16 autocast where the hardware has it."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import InvalidInputError
from .report import RuntimeInfo


def cpu_name() -> str:
    """The CPU's model name, as /proc/cpuinfo (else the platform) gives it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def cpu_bf16_units() -> list[str]:
    """Which of AVX512-BF16 and AMX-BF16 the CPU has: the features that make bf16 matmuls faster
    than fp32 (AMX tiles ~3x faster again than AVX512-BF16)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return sorted(flags & {"avx512_bf16", "amx_bf16"})


def cpu_has_bf16() -> bool:
    return bool(cpu_bf16_units())


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    bf16: bool

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "auto") -> Runtime:
        """The device and precision to run on.

        Raises:
            InvalidInputError: ``device_unavailable``: ``cuda`` asked for where there is none.
        """
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise InvalidInputError(
                "options.device is cuda but this machine has no usable CUDA device (or torch was "
                "built without CUDA); use device auto or cpu",
                code="device_unavailable",
                param="options.device",
            )
        dev = torch.device(device)
        if precision == "auto":
            bf16 = torch.cuda.is_bf16_supported() if dev.type == "cuda" else cpu_has_bf16()
        else:
            bf16 = precision == "bf16"
        return cls(dev, bf16)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            yield

    def describe(self) -> RuntimeInfo:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None
        return {
            "device": self.device.type,
            "precision": "bf16" if self.bf16 else "fp32",
            "device_name": name or cpu_name(),
        }
