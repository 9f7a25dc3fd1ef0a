"""The time of a collective among N devices of one profile: an α-β model (a latency per
message step, bytes over the bandwidth a device sends at, and a collective call's fixed cost)
of the algorithms collective libraries run, on the profile's topology
(``device_models/interconnect.py``).  A point-to-point ``send`` is one message: its latency
includes its call.

Within one scale-up domain: ring (every topology), a double binary tree for all-reduce (where
any device reaches any other: not on a physical ring), and on a full mesh the direct
algorithm (each device sends to every peer at once over its own link); the cheapest one is
taken, as NCCL and RCCL pick by message size.  Beyond one domain the collective is
hierarchical: within each domain, across domains over every device's NIC, within again.
Reductions add data as it arrives: a GPU's copy kernels overlap that with the transfer,
while processes on one host add with the same cores that copy, so there it comes on top.

Sizes are per device, as nccl-tests report them: an all-reduce's buffer, an all-gather's
output, a reduce-scatter's input, what an all-to-all sends; ``Collective.bus_gbps`` is their
bus bandwidth (the algorithm bandwidth times 2(N-1)/N for all-reduce, (N-1)/N for the
others), comparable with published nccl-tests/rccl-tests figures."""
from __future__ import annotations

import dataclasses
import math

from ..device_models.interconnect import Interconnect
from ..errors import PlanError

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send")
_REDUCES = ("all_reduce", "reduce_scatter")


@dataclasses.dataclass(frozen=True)
class Collective:
    kind: str
    nbytes: int
    world: int
    seconds: float
    algorithm: str                 # "ring", "tree", "direct", "pairwise", "p2p"; "hierarchical …" across domains

    @property
    def bus_gbps(self) -> float:
        """nccl-tests' bus bandwidth: what each device's link carried, in GB/s."""
        if self.seconds == 0:
            return 0.0
        factor = 2 * (self.world - 1) / self.world if self.kind == "all_reduce" else (
            1.0 if self.kind == "send" else (self.world - 1) / self.world)
        return self.nbytes * factor / self.seconds / 1e9


def collective(kind: str, nbytes: int, world: int, link: Interconnect, reduce_gbps: float) -> Collective:
    """``kind`` (``KINDS``) of ``nbytes`` per device among ``world`` devices joined by ``link``;
    ``reduce_gbps``: the memory bandwidth one device adds received data at (its DRAM's)."""
    if kind not in KINDS:
        raise PlanError(f"unknown collective {kind!r}; collectives are {', '.join(KINDS)}")
    if world < 1 or nbytes < 0:
        raise PlanError(f"a collective needs world >= 1 and bytes >= 0, got world={world}, bytes={nbytes}")
    if kind == "send" and world != 2:
        raise PlanError("send is between 2 devices (world=2)")
    if world == 1:
        return Collective(kind, nbytes, 1, 0.0, "none")
    call = 0.0 if kind == "send" else link.call_us * 1e-6
    if world <= link.domain:
        seconds, algorithm = _within(kind, nbytes, world, link, reduce_gbps)
        return Collective(kind, nbytes, world, call + seconds, algorithm)
    if not link.scale_out:
        raise PlanError(f"{world} devices exceed one scale-up domain ({link.domain}) and the profile states no "
                        "scale-out network: add interconnect.nic_gbps and nic_latency_us to its profile, or plan "
                        f"at most {link.domain} devices")
    seconds, algorithm = _across(kind, nbytes, world, link, reduce_gbps)
    return Collective(kind, nbytes, world, call + seconds, f"hierarchical {algorithm}")


def _within(kind: str, nbytes: float, n: int, link: Interconnect, reduce_gbps: float) -> tuple:
    """(seconds, algorithm) of the cheapest algorithm inside one domain."""
    alpha, bandwidth = link.step_latency_us(n) * 1e-6, link.scale_up_gbps(n) * 1e9
    share = (n - 1) / n * nbytes
    if kind == "send":
        if link.topology == "host":    # one message: a core on each side
            pair = link.link_gbps * 1e9
        else:
            pair = link.link_gbps * (1 if link.topology == "mesh" else link.links) * 1e9
        return alpha + nbytes / pair, "p2p"
    if kind == "all_reduce":
        options = {"ring": 2 * (n - 1) * alpha + 2 * share / bandwidth}
        if link.topology != "ring":
            options["tree"] = 2 * math.ceil(math.log2(n)) * alpha + 2 * nbytes / bandwidth
    elif kind in ("all_gather", "reduce_scatter"):
        options = {"ring": (n - 1) * alpha + share / bandwidth}
    else:  # all_to_all: pairwise exchange; on a ring, data crosses ~n/4 links on average
        hops = max(1.0, n / 4) if link.topology == "ring" else 1.0
        options = {"pairwise": (n - 1) * alpha + share * hops / bandwidth}
    if link.topology == "mesh" and kind != "all_reduce":  # every peer at once, each over its own link
        options["direct"] = alpha + share / bandwidth
    algorithm = min(options, key=options.get)
    return options[algorithm] + _reduction(kind, nbytes, n, link, reduce_gbps, options[algorithm]), algorithm


def _reduction(kind: str, nbytes: float, n: int, link: Interconnect, reduce_gbps: float, transfer: float) -> float:
    """The adds of a reducing collective beyond its transfer: (n-1)/n of the data read twice and
    written once; overlapped with the copies on a device, after them on a host's cores."""
    if kind not in _REDUCES:
        return 0.0
    adds = (n - 1) / n * nbytes * (2 if kind == "all_reduce" else 1) * 3 / (reduce_gbps * 1e9)
    return adds if link.topology == "host" else max(0.0, adds - transfer)


def _across(kind: str, nbytes: float, n: int, link: Interconnect, reduce_gbps: float) -> tuple:
    """Hierarchical: ``local`` devices per domain, ``nodes`` domains; every device talks over its
    own NIC to its counterparts in the other domains (rail-aligned)."""
    local, nodes = link.domain, math.ceil(n / link.domain)
    network = dataclasses.replace(link, topology="switch", link_gbps=link.nic_gbps, links=1, domain=nodes,
                                  latency_us=link.nic_latency_us)
    if kind == "all_reduce":
        down, _ = _within("reduce_scatter", nbytes, local, link, reduce_gbps)
        middle, algorithm = _within("all_reduce", nbytes / local, nodes, network, reduce_gbps)
        up, _ = _within("all_gather", nbytes, local, link, reduce_gbps)
        return down + middle + up, algorithm
    if kind in ("all_gather", "reduce_scatter"):
        middle, algorithm = _within(kind, nbytes / local, nodes, network, reduce_gbps)
        inner, _ = _within(kind, nbytes, local, link, reduce_gbps)
        return middle + inner, algorithm
    # all_to_all: what stays in the domain over the scale-up links, the rest over the NICs, at once
    inside = (local - 1) / n * nbytes / (link.scale_up_gbps(local) * 1e9)
    outside = (n - local) / n * nbytes / (link.nic_gbps * 1e9)
    latency = (local - 1) * link.step_latency_us(local) * 1e-6 + (n - local) * link.nic_latency_us * 1e-6
    return latency + max(inside, outside), "pairwise"
