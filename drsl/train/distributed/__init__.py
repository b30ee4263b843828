"""Data-parallel training glue: the torchrun context, references gathered with gradient, the loss.

``torchrun --nproc_per_node=W -m drsl train ...`` starts ``W`` processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment. Each draws its own PK batch of distinct
identities (``PKSampler(..., rank=ctx.rank, world_size=ctx.world_size)``), embeds it, and
computes the loss with its batch as ``embeddings`` (the anchors) and the other processes'
batches, gathered *with gradient*, as ``ref_embeddings`` (spec, "Beyond the batch: reference
items"). :class:`torch.nn.parallel.DistributedDataParallel` then averages the parameter
gradients over the processes. :func:`data_parallel_loss` scales the per-process loss so that
this average equals the one-process gradient of the concatenated batch (the derivation is in
:meth:`GatheredBatch.scale`).

Without a process group (a plain ``python`` run) every function here is the one-process
identity: no references, scale 1, ``is_main`` true. The CUDA path needs no change: the backend
is ``nccl`` on CUDA and ``gloo`` on the CPU, the device comes from ``LOCAL_RANK``, tensors stay
on the device of the input.

Reference: spec ``docs/drsl-loss-spec.md`` ("Beyond the batch", properties 1 and 2); PyTorch,
"Getting Started with Distributed Data Parallel" and ``torchrun`` (Elastic Launch) docs;
pytorch-metric-learning's ``DistributedLossWrapper`` (the same gather-as-references idea).
"""

from drsl.train.distributed.context import (
    DEFAULT_TIMEOUT_S,
    DistributedContext,
    all_gather_object,
    barrier,
    broadcast_object,
    current_context,
    distributed,
    init_distributed,
    reduce_mean,
    reduce_means,
    sync_buffers,
    teardown,
    unwrap_model,
    wrap_model,
)
from drsl.train.distributed.gather import (
    NORMALISERS,
    GatheredBatch,
    data_parallel_loss,
    gather_batch,
    gather_references,
)
from drsl.train.distributed.launch import free_port, launch, main, toy_run

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "NORMALISERS",
    "DistributedContext",
    "GatheredBatch",
    "init_distributed",
    "teardown",
    "distributed",
    "current_context",
    "wrap_model",
    "unwrap_model",
    "barrier",
    "broadcast_object",
    "all_gather_object",
    "reduce_mean",
    "reduce_means",
    "sync_buffers",
    "gather_batch",
    "gather_references",
    "data_parallel_loss",
    "free_port",
    "launch",
    "toy_run",
    "main",
]
