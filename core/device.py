"""Pick where models run: CUDA with bf16 autocast when a GPU is present, else the CPU.

On the CPU, PyTorch's default thread count can oversubscribe small shared machines; the
default here is one thread per available core (``TEXTML_NUM_THREADS`` overrides it).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceInfo:
    """The chosen device and how to run on it."""

    device: torch.device
    bf16: bool
    num_threads: int

    @property
    def name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return f"cpu ({self.num_threads} threads)"

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA; a no-op on the CPU (bf16 matmuls are slow on most CPUs)."""
        if self.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def pick_device(preferred: str | None = None, bf16: bool | None = None) -> DeviceInfo:
    """Choose ``preferred`` ("cpu", "cuda", "cuda:1") or the best available device.

    Under ``torchrun``/``accelerate launch`` each process uses the GPU named by LOCAL_RANK.
    """
    if preferred:
        device = torch.device(preferred)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {preferred!r} requested but CUDA is not available; use 'cpu'")
    elif torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    else:
        device = torch.device("cpu")
    threads = int(os.environ.get("TEXTML_NUM_THREADS", 0)) or len(os.sched_getaffinity(0))
    if device.type == "cpu":
        torch.set_num_threads(threads)
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported() if bf16 is None else bf16
    return DeviceInfo(device=device, bf16=bool(use_bf16 and device.type == "cuda"), num_threads=threads)
