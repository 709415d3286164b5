"""Device and precision choice: CUDA when present, bf16 autocast where the hardware has it."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

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


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU features that make bf16 matmuls faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    bf16: bool

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "auto") -> Runtime:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
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
