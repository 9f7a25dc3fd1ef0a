"""How devices of one profile talk to each other: the scale-up links inside a node (NVLink
through NVSwitch, Infinity Fabric's full mesh, PCIe) and the scale-out network between nodes.

Plain data, as the rest of a profile: ``planning/collectives.py`` turns it into the time of an
all-reduce, all-gather, reduce-scatter or all-to-all.  Bandwidths are per direction (a link
rated "900 GB/s bidirectional" is 450 here), as collective algorithms move data one way per
step."""
from __future__ import annotations

import dataclasses

# switch: every device reaches every other at its full link bandwidth (NVSwitch);
# mesh: one direct link per peer, so a group uses only the links to its members (MI300X's xGMI);
# ring: links to two neighbours only (what a ring algorithm maps onto; others take hops);
# pcie: devices behind a PCIe switch, at their slot's bandwidth;
# host: processes on one machine over loopback, whose copies (the sender's and the receiver's)
#   share ``links`` cores: ``link_gbps`` is one message's rate with a core on each side
TOPOLOGIES = ("switch", "mesh", "ring", "pcie", "host")


@dataclasses.dataclass(frozen=True)
class Interconnect:
    topology: str                  # one of TOPOLOGIES
    link_gbps: float               # one link, one direction, GB/s
    links: int                     # per device (host: processes copying at once, its cores)
    domain: int                    # devices one scale-up domain joins (a node: 8 GPUs on a baseboard)
    latency_us: float              # per message on a scale-up link (the α of an α-β model)
    call_us: float                 # one collective call's fixed cost beyond its messages (a GPU's
                                   # kernel launch; gloo's hand-off to its worker thread)
    nic_gbps: float | None = None  # scale-out: the network bandwidth per device, one direction
    nic_latency_us: float | None = None  # per message across the network

    def scale_up_gbps(self, world: int) -> float:
        """Bandwidth one device sends at, in one direction, while ``world`` devices of one
        domain exchange data at once."""
        peers = max(world - 1, 1)
        if self.topology == "mesh":     # only the links to the group's members carry its data
            return self.link_gbps * min(peers, self.links)
        if self.topology == "host":     # every process sends and receives at once: two copies each share the cores
            return self.link_gbps * min(1.0, self.links / (2 * world))
        return self.link_gbps * self.links

    def step_latency_us(self, world: int) -> float:
        """One message step's latency among ``world`` devices: on a host with more processes
        than cores, a message waits for its receiver to be scheduled."""
        if self.topology == "host":
            return self.latency_us * max(1.0, world / self.links)
        return self.latency_us

    @property
    def scale_out(self) -> bool:
        return self.nic_gbps is not None
