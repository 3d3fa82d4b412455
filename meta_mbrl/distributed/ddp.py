"""Data-parallel meta-training with ``torch.distributed``: the meta-batch's tasks split across ranks.

How a step runs on ``W`` ranks (see :func:`~meta_mbrl.training.loop.meta_train` with ``dist=``):

1. every rank draws the **same** meta-batch of ``T`` tasks from its own copy of the run's seeded
   sampler (one generator, seeded from the run's seed, advanced identically everywhere), and keeps
   its slice of ``T / W`` tasks (:func:`shard`);
2. each rank computes ``learner.meta_loss`` on its slice and calls ``backward``;
3. the gradients, the loss and the logged values are **averaged** over the ranks by two flat
   ``all_reduce`` calls (:func:`all_reduce_mean`). Every built-in learner's meta-loss is a mean over the
   tasks of the batch (MAML and its variants, CaDM, PEARL, ALPaCA, multitask: ``per_task.mean()``;
   Reptile's gradient is linear in the mean of the adapted parameters), so the mean of the ``W``
   slice gradients *is* the single-process gradient of the mean loss over all ``T`` tasks;
4. every rank clips the same global gradient norm and takes the same Adam step, so the parameters
   stay identical without being broadcast again.

``W`` processes thus reproduce the single-process run up to floating-point summation order
(measured: max abs parameter difference ~1e-8 after 5 steps; ``tests/test_distributed.py`` checks
< 1e-6 for MAML's second-order meta-gradient and for CaDM). Learners that draw random numbers
inside ``meta_loss`` (PEARL's posterior sample, the bootstrap of an ``ensemble``) train correctly but
do not reproduce the single-process draws, because each rank draws for its own slice.

Why ``all_reduce`` on the gradients rather than :class:`~torch.nn.parallel.DistributedDataParallel`:
DDP hooks its gradient reduction into the wrapped module's ``forward``, but a meta-learner's work is
``meta_loss`` over functional parameter dicts (``torch.func.functional_call``, parameters expanded
per task, inner gradients built inside the graph); DDP would need a ``forward`` shim,
``find_unused_parameters`` for learners whose heads are unused in some configurations, and its
bucketed, overlapped reduction buys nothing at these model sizes. An ``all_reduce`` of a flat
buffer after ``backward`` works for any learner with a mean-over-tasks ``meta_loss``, keeps the
reduction order fixed, and a second small one carries the loss and the logged values (float64).

Rank 0 alone takes the run-directory lock, reads a checkpoint to resume from (and sends its state to the
others) and writes checkpoints and logs; the other ranks touch no file. A failure of rank 0 before training (a locked run dir, an
unreadable checkpoint) is broadcast (:func:`agree`) so every rank stops with the same message
instead of hanging; under ``torchrun``, a rank that dies later brings the others down too.

Launch from the command line with ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``)::

    torchrun --nproc-per-node 2 -m meta_mbrl.cli train --distributed --preset quick --run-dir runs/ddp

Example:
    >>> import torch
    >>> from meta_mbrl.types import TaskBatch, Transitions
    >>> ctx = DistContext(rank=1, world_size=2, backend="gloo")
    >>> tr = Transitions(torch.arange(4.).view(4, 1, 1), torch.zeros(4, 1, 1), torch.zeros(4, 1), torch.zeros(4, 1, 1))
    >>> shard(TaskBatch(tr, tr), ctx).support.obs.flatten().tolist()  # rank 1 of 2 keeps tasks 2 and 3
    [2.0, 3.0]
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from meta_mbrl.errors import DistributedError
from meta_mbrl.types import TaskBatch

__all__ = ["DistContext", "init_distributed", "shutdown", "backend_for", "check_divisible", "shard",
           "all_reduce_mean", "agree", "broadcast_object", "ENV_VARS"]

#: the environment variables ``torchrun`` sets and :func:`init_distributed` needs
ENV_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Which rank this process is, among how many, over which backend.

    Args:
        rank: this process's rank in ``[0, world_size)``; rank 0 writes checkpoints and logs.
        world_size: number of processes ``W``.
        backend: ``"gloo"`` (CPU) or ``"nccl"`` (CUDA).
        local_rank: the rank on this machine (picks the GPU).

    Example:
        >>> DistContext(rank=0, world_size=2, backend="gloo").is_main
        True
    """

    rank: int
    world_size: int
    backend: str
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes files."""
        return self.rank == 0


def backend_for(device: str | torch.device) -> str:
    """The process-group backend for ``device``: ``"nccl"`` for CUDA, ``"gloo"`` otherwise.

    Example:
        >>> backend_for("cpu"), backend_for("cuda:0")
        ('gloo', 'nccl')
    """
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{name}: expected an integer in the environment, got {value!r}") from None


def init_distributed(device: str | torch.device = "cpu", backend: str | None = None,
                     timeout_s: float = 1800.0) -> DistContext:
    """Joins the process group described by ``torchrun``'s environment variables.

    Args:
        device: where this rank trains; ``"cuda"`` without an index becomes ``cuda:LOCAL_RANK``.
        backend: ``"gloo"`` or ``"nccl"`` (None: :func:`backend_for` ``device``).
        timeout_s: how long a collective waits for the other ranks before failing (also bounds the
            wait of ranks 1.. while rank 0 collects the training data).

    Returns:
        The rank's :class:`DistContext` (the existing group's, if one is initialized already).

    Raises:
        DistributedError: an environment variable of :data:`ENV_VARS` is missing or not an integer, or
            ``backend`` is unknown or unavailable.

    Example:
        >>> import os
        >>> os.environ.pop("RANK", None) and None
        >>> init_distributed()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        meta_mbrl.errors.DistributedError: distributed: the environment variables RANK, ... are not set; ...
    """
    if tdist.is_available() and tdist.is_initialized():
        return DistContext(tdist.get_rank(), tdist.get_world_size(), tdist.get_backend(),
                           int(os.environ.get("LOCAL_RANK", 0)))
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise DistributedError(
            f"distributed: the environment variables {', '.join(missing)} are not set; launch with torchrun, e.g. "
            "`torchrun --nproc-per-node 2 -m meta_mbrl.cli train --distributed ...`"
        )
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0
    backend = backend or backend_for(device)
    if backend not in ("gloo", "nccl"):
        raise DistributedError(f"backend: expected 'gloo' or 'nccl', got {backend!r}")
    if not tdist.is_available() or (backend == "nccl" and not tdist.is_nccl_available()) or (
            backend == "gloo" and not tdist.is_gloo_available()):
        raise DistributedError(f"backend: {backend!r} is not available in this torch build; use "
                               f"{'gloo' if backend == 'nccl' else 'nccl'} or another device")
    if backend == "nccl":
        torch.cuda.set_device(local)
    tdist.init_process_group(backend, rank=rank, world_size=world, timeout=_dt.timedelta(seconds=timeout_s))
    return DistContext(rank, world, backend, local)


def shutdown() -> None:
    """Leaves the process group, if one is initialized (safe to call twice)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def rank_device(device: str | torch.device, ctx: DistContext) -> torch.device:
    """``device``, with ``cuda`` (no index) resolved to this rank's GPU.

    Example:
        >>> rank_device("cuda", DistContext(1, 2, "nccl", local_rank=1))
        device(type='cuda', index=1)
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", ctx.local_rank)
    return device


def check_divisible(tasks_per_batch: int, world_size: int) -> int:
    """Tasks per rank, ``T / W``; raises unless ``W`` divides ``T``.

    Example:
        >>> check_divisible(10, 2)
        5
        >>> check_divisible(10, 3)
        Traceback (most recent call last):
        ...
        ValueError: tasks_per_batch: expected a multiple of the number of processes (3), got 10; use e.g. --tasks-per-batch 9 or 12
    """
    if tasks_per_batch % world_size:
        lo, hi = (tasks_per_batch // world_size) * world_size, -(-tasks_per_batch // world_size) * world_size
        alt = f"{lo} or {hi}" if lo else f"{hi}"
        raise ValueError(f"tasks_per_batch: expected a multiple of the number of processes ({world_size}), "
                         f"got {tasks_per_batch}; use e.g. --tasks-per-batch {alt}")
    return tasks_per_batch // world_size


def shard(batch: TaskBatch, ctx: DistContext) -> TaskBatch:
    """This rank's contiguous slice of the meta-batch's tasks: tasks ``[r T/W, (r+1) T/W)``.

    Shapes:
        batch: support ``(T, M)``, query ``(T, K)`` -> support ``(T/W, M)``, query ``(T/W, K)``.
    """
    per = check_divisible(batch.support.obs.shape[0], ctx.world_size)
    sl = slice(ctx.rank * per, (ctx.rank + 1) * per)
    return TaskBatch(batch.support.index(sl), batch.query.index(sl))


def all_reduce_mean(params: list[torch.Tensor], loss: torch.Tensor, info: dict[str, float],
                    ctx: DistContext) -> tuple[torch.Tensor, dict[str, float]]:
    """Averages the gradients of ``params`` (in place), the loss and ``info`` over the ranks in one all_reduce.

    Parameters whose ``grad`` is None are left out (every rank runs the same code on the same shapes,
    so they are None on every rank, and Adam skips them as it does in one process).

    Returns:
        ``(loss, info)`` averaged over the ranks: the loss and logs of the whole meta-batch.
    """
    grads = [p.grad for p in params if p.grad is not None]
    keys = sorted(info)
    device = loss.device
    scalars = torch.cat([loss.detach().reshape(1).to(torch.float64),
                         torch.tensor([float(info[k]) for k in keys], dtype=torch.float64, device=device)])
    flat = torch.cat([g.reshape(-1) for g in grads]) if grads else loss.new_zeros(0)
    # the scalars travel in float64 beside the gradients (whose dtype they must share in one buffer): two messages
    tdist.all_reduce(flat, op=tdist.ReduceOp.SUM)
    tdist.all_reduce(scalars, op=tdist.ReduceOp.SUM)
    flat.div_(ctx.world_size)
    scalars.div_(ctx.world_size)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n
    values = scalars.tolist()
    return torch.tensor(values[0], dtype=loss.dtype, device=device), dict(zip(keys, values[1:]))


def agree(ctx: DistContext, error: BaseException | None) -> None:
    """Makes every rank share rank 0's outcome of a step only it performs (taking the lock, loading).

    Rank 0 passes the exception it caught (or None) and re-raises it; every other rank raises a
    :class:`~meta_mbrl.errors.DistributedError` carrying its message, instead of waiting for a rank
    that will never arrive.
    """
    msg = [None if error is None else f"{type(error).__name__}: {' '.join(str(error).split())}"]
    tdist.broadcast_object_list(msg, src=0)
    if ctx.is_main:
        if error is not None:
            raise error
    elif msg[0] is not None:
        raise DistributedError(f"distributed: rank 0 failed, so rank {ctx.rank} stops too: {msg[0]}")


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's ``obj`` (any picklable object; tensors travel on the CPU), returned on every rank."""
    box = [obj if ctx.is_main else None]
    tdist.broadcast_object_list(box, src=0)
    return box[0]
