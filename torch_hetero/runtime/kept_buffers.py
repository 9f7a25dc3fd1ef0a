"""The intermediate buffers a compiled host graph keeps from one call to the next.

Why: a call frees its buffers at the end, glibc gives the top of its heap back to the OS
(its trim threshold), and the next call's first write to each page faults — about 1,100 faults
per ResNet call, a quarter of its time (measured; eager ATen frees and reallocates in step and
faults little).  Kept per thread, so two threads calling one graph never share a buffer; a
call that finds its thread's set taken (a reentrant call) allocates its own.  Only buffers that
die inside the call are kept (``codegen.wrapper``): outputs, and what they view, are new."""
from __future__ import annotations

import threading

import torch


class KeptBuffers:
    def __init__(self, specs: list):
        self._specs = specs          # (size, stride, dtype) per kept buffer
        self._local = threading.local()

    def take(self) -> list:
        kept = getattr(self._local, "buffers", None)
        self._local.buffers = None
        if kept is None:
            kept = [torch.empty_strided(size, stride, dtype=dtype) for size, stride, dtype in self._specs]
        return kept

    def give(self, kept: list) -> None:
        self._local.buffers = kept
