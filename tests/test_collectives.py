"""The collective cost model (planning/collectives.py) on the profiles' links: it grows with
the bytes, never beats the bandwidth the algorithm needs, orders the interconnects as physics
does (NVLink over PCIe, NVLink 4 over NVLink 3), goes hierarchical beyond one node, and refuses
what it cannot price.  The model against gloo here and published figures:
benchmarks/collectives.py."""
import dataclasses

import pytest

from torch_hetero.device_models import get_profile
from torch_hetero.device_models.interconnect import Interconnect
from torch_hetero.errors import PlanError
from torch_hetero.planning.collectives import KINDS, collective

LINKED = ["a100", "h100", "h200", "mi300x", "mtia-v1", "mtia-v2", "rivos-sim"]
SIZES = [0, 8, 1 << 10, 1 << 16, 1 << 20, 1 << 24, 1 << 30]
GROUPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")


def time_of(device, kind, nbytes, world):
    profile = get_profile(device)
    return collective(kind, nbytes, world, profile.interconnect, profile.dram_gbps)


@pytest.mark.parametrize("device", LINKED)
@pytest.mark.parametrize("kind", GROUPS)
def test_time_grows_with_the_bytes_and_starts_at_the_call(device, kind):
    profile = get_profile(device)
    for world in (2, 4, profile.interconnect.domain):
        times = [time_of(device, kind, size, world).seconds for size in SIZES]
        assert times == sorted(times), (world, times)
        assert times[0] >= profile.interconnect.call_us * 1e-6


@pytest.mark.parametrize("device", LINKED)
def test_no_algorithm_beats_the_bandwidth_it_must_move(device):
    """A device must send (n-1)/n of the data (twice for all-reduce) over its links: no
    prediction may be cheaper per byte than its links at full rate allow."""
    link = get_profile(device).interconnect
    size = 1 << 30
    for world in range(2, link.domain + 1):
        best = link.link_gbps * link.links * 1e9
        for kind, factor in (("all_reduce", 2), ("all_gather", 1), ("reduce_scatter", 1), ("all_to_all", 1)):
            floor = factor * (world - 1) / world * size / best
            assert time_of(device, kind, size, world).seconds >= floor
        assert time_of(device, "all_reduce", size, world).bus_gbps <= link.scale_up_gbps(world) + 1e-9


def test_interconnects_are_ordered_as_their_links():
    for kind in GROUPS:
        for size in (1 << 20, 1 << 28):
            h100, a100 = time_of("h100", kind, size, 8).seconds, time_of("a100", kind, size, 8).seconds
            mtia = time_of("mtia-v2", kind, size, 8).seconds
            assert h100 < a100 < mtia, (kind, size)
    # a large all-reduce runs near its links' rate: NVLink 4 (450 GB/s a direction) ~14x PCIe Gen5 x8
    ratio = time_of("mtia-v2", "all_reduce", 1 << 30, 8).seconds / time_of("h100", "all_reduce", 1 << 30, 8).seconds
    assert 12 < ratio < 15


def test_a_full_mesh_uses_only_the_links_to_the_groups_members():
    """MI300X: 2 GPUs share one xGMI link, 8 use all 7 of each GPU's."""
    two, eight = time_of("mi300x", "all_reduce", 1 << 30, 2), time_of("mi300x", "all_reduce", 1 << 30, 8)
    assert two.bus_gbps == pytest.approx(64, rel=0.01)
    assert eight.bus_gbps == pytest.approx(7 * 64, rel=0.01)


def test_small_messages_take_the_tree_large_ones_the_ring():
    assert time_of("h100", "all_reduce", 8, 8).algorithm == "tree"
    assert time_of("h100", "all_reduce", 1 << 30, 8).algorithm == "ring"
    assert time_of("mi300x", "all_gather", 1 << 20, 8).algorithm == "direct"


def test_beyond_one_node_the_network_sets_the_pace():
    within, across = time_of("h100", "all_reduce", 1 << 30, 8), time_of("h100", "all_reduce", 1 << 30, 16)
    assert across.algorithm.startswith("hierarchical")
    assert across.bus_gbps < within.bus_gbps
    faster_nic = dataclasses.replace(get_profile("h100").interconnect, nic_gbps=100)
    assert collective("all_reduce", 1 << 30, 16, faster_nic, 3350).seconds < across.seconds


def test_one_device_costs_nothing():
    for kind in GROUPS:
        assert time_of("h100", kind, 1 << 20, 1).seconds == 0


@pytest.mark.parametrize("args,message", [
    (("all_reduce", 1 << 20, 0), "world >= 1"),
    (("all_reduce", -1, 2), "bytes >= 0"),
    (("broadcast", 1 << 20, 2), "unknown collective 'broadcast'; collectives are all_reduce"),
    (("send", 1 << 20, 4), "send is between 2 devices"),
])
def test_bad_requests_are_refused(args, message):
    with pytest.raises(PlanError, match=message):
        time_of("h100", *args)


def test_more_devices_than_a_domain_without_a_network_is_refused_with_the_fix():
    with pytest.raises(PlanError, match=r"25 devices exceed one scale-up domain \(24\) and the profile states no "
                                        r"scale-out network: add interconnect.nic_gbps"):
        time_of("mtia-v2", "all_reduce", 1 << 20, 25)


def test_a_collective_call_costs_a_kernel_launch_unless_stated():
    for device in LINKED:
        profile = get_profile(device)
        assert profile.interconnect.call_us == profile.launch_overhead_us


def test_the_host_topology_shares_its_cores_and_waits_for_scheduling():
    host = Interconnect("host", link_gbps=2.0, links=2, domain=64, latency_us=50.0, call_us=10.0)
    assert host.scale_up_gbps(2) == 1.0      # each process sends and receives: 4 copies on 2 cores
    assert host.scale_up_gbps(4) == 0.5
    assert host.step_latency_us(4) == 100.0
    send = collective("send", 1 << 20, 2, host, 10.0)
    assert send.seconds == pytest.approx(50e-6 + (1 << 20) / 2e9)   # a message: a core on each side, no call
    assert KINDS[-1] == "send"
