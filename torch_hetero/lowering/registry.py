"""The table of lowerings, keyed by ATen OpOverload."""
from __future__ import annotations

from typing import Callable

import torch

LOWERINGS: dict[torch._ops.OpOverload, Callable] = {}


def register_lowering(*packets):
    """Register ``fn`` for every overload of each given op packet (or single overload)."""
    def decorate(fn):
        for packet in packets:
            if isinstance(packet, torch._ops.OpOverloadPacket):
                for name in packet.overloads():
                    LOWERINGS[getattr(packet, name)] = fn
            else:
                LOWERINGS[packet] = fn
        return fn
    return decorate
