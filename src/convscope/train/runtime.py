"""Where a run executes: device, threads, and torchrun's process group.

Threads (unless --threads or OMP_NUM_THREADS say otherwise): the CPU cores
this process may use (`os.sched_getaffinity`), divided among the DDP ranks
on this machine, and no more than the cores that are idle now (cores minus
the 1-minute load average, at least 1). Measured here on 2 shared cores:
LeNet-5 trained at ~2,800 img/s with 1 thread but 230-1,250 img/s with 2
threads while other jobs ran, because OpenMP threads wait on each other
whenever one of them is descheduled. On an idle machine every core is used.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    threads: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def amp(self) -> bool:
        """bf16 autocast on CUDA (no loss scaling needed, unlike fp16)."""
        return self.device.type == "cuda"


def choose_threads(world: int = 1) -> int:
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    per_rank = max(1, cores // max(1, local))
    try:
        idle = int(cores - os.getloadavg()[0] + 0.5) // max(1, local)
    except OSError:  # pragma: no cover - no load average on this platform
        idle = per_rank
    return max(1, min(per_rank, idle))


def setup(device: str | None = None, threads: int | None = None) -> Runtime:
    """Join torchrun's process group when launched by it (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
        dev = torch.device("cuda", local_rank if world > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    n = threads or choose_threads(world)
    torch.set_num_threads(n)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world)
    return Runtime(device=dev, rank=rank, world=world, threads=n)


def all_sum(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    if rt.world > 1:
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return t


def barrier(rt: Runtime) -> None:
    if rt.world > 1:
        torch.distributed.barrier()


def teardown(rt: Runtime) -> None:
    if rt.world > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
