"""Data-parallel training across processes: torchrun's environment, DDP wrapping, sharded loaders.

Launch with ``torchrun --nproc_per_node=N script.py`` (or ``python -m torch.distributed.run``): it sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, which :func:`init_distributed` reads. Without
them (or with WORLD_SIZE=1) everything here is a no-op and training runs in one process.
"""

from __future__ import annotations

import numbers
import os
import warnings
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler

BACKENDS = ("auto", "gloo", "nccl")  # "auto" = nccl when CUDA is available, else gloo


@dataclass(frozen=True)
class DistInfo:
    rank: int  # global process index, 0 .. world_size-1
    world_size: int  # number of processes
    local_rank: int  # process index on this machine (picks the GPU)
    is_main: bool  # rank 0: the process that logs, prints and saves

    @property
    def enabled(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1


SINGLE = DistInfo(rank=0, world_size=1, local_rank=0, is_main=True)  # one process, nothing to sync


def env_world_size() -> int:
    """WORLD_SIZE from the environment (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def env_rank() -> int:
    """RANK from the environment (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    """True on rank 0 (and outside distributed runs)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_rank() == 0


def resolve_backend(backend: str = "auto") -> str:
    """``"auto"`` -> nccl with CUDA, gloo without; other names are checked and returned."""
    if backend not in BACKENDS:
        raise ValueError(f"distributed backend '{backend}' is not one of {', '.join(BACKENDS)} (trainer.backend)")
    if backend == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend 'nccl' needs CUDA GPUs; use trainer.backend=gloo (or trainer=ddp_cpu) on CPU")
    return backend


def init_distributed(backend: str = "auto") -> DistInfo:
    """Join the process group that torchrun set up (env:// rendezvous); return this process's place in it.

    With WORLD_SIZE unset or 1 no group is created and :data:`SINGLE` is returned. Calling it again
    after the group exists just reports it.
    """
    world_size = env_world_size()
    if world_size <= 1:
        return SINGLE
    rank = env_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise RuntimeError(
                f"WORLD_SIZE={world_size} but {', '.join(missing)} is not set: launch with "
                "`torchrun --nproc_per_node=N ...` (it sets them)"
            )
        name = resolve_backend(backend)
        if name == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=name, init_method="env://", rank=rank, world_size=world_size)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                    is_main=dist.get_rank() == 0)


def wrap_ddp(model: torch.nn.Module, info: DistInfo, find_unused_parameters: bool = False) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel when ``info`` spans several processes, else unchanged.

    The model must already be on its device (``cuda:<local_rank>`` or cpu).
    """
    if not info.enabled:
        return model
    device = next(model.parameters()).device
    ids = [device.index if device.index is not None else info.local_rank] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DDP wrapper (or the module itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def distributed_loader(loader: DataLoader, info: DistInfo, shuffle: bool | None = None, seed: int = 0) -> DataLoader:
    """A copy of ``loader`` whose sampler gives each rank its own 1/world_size share of the data.

    ``shuffle`` defaults to whether ``loader`` shuffles. Loaders that already use a DistributedSampler,
    single-process runs, and iterable datasets are returned unchanged; a loader with a custom batch
    sampler is returned unchanged with a warning (every rank then sees all batches).
    """
    if not info.enabled or isinstance(loader.sampler, DistributedSampler):
        return loader
    if isinstance(loader.dataset, torch.utils.data.IterableDataset):
        return loader
    if loader.batch_sampler is not None and type(loader.batch_sampler) is not BatchSampler:
        warnings.warn(
            f"{type(loader.batch_sampler).__name__} cannot be sharded automatically: every rank sees all "
            "batches. Give the loader a DistributedSampler yourself to split the data.",
            stacklevel=2,
        )
        return loader
    if shuffle is None:
        shuffle = isinstance(loader.sampler, RandomSampler)
    drop_last = loader.batch_sampler.drop_last if loader.batch_sampler is not None else loader.drop_last
    sampler = DistributedSampler(
        loader.dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell a DistributedSampler which epoch it is (a different shuffle each epoch, the same on every rank)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def all_reduce_mean(metrics: Mapping[str, float], info: DistInfo, device: torch.device | str = "cpu") -> dict[str, float]:
    """Each numeric metric averaged over all ranks (every rank must pass the same keys).

    Non-numeric values are dropped. ``device`` must suit the backend (cuda for nccl).
    """
    numeric = {k: x for k, x in ((k, as_float(v)) for k, v in metrics.items()) if x is not None}
    if not info.enabled or not numeric:
        return numeric
    keys = sorted(numeric)
    t = torch.tensor([numeric[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


def as_float(value) -> float | None:
    """``value`` as a float when it is a number (python, numpy or a one-element tensor), else None."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().item()) if value.numel() == 1 else None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return None


def barrier(info: DistInfo) -> None:
    """Wait until every rank gets here (no-op in one process)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (call once at the end of a distributed script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
