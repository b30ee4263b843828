"""Data-parallel training glue: the torchrun context, references gathered with gradient, the loss.

``torchrun --nproc_per_node=W -m drsl train ...`` starts ``W`` processes. Each draws its own PK
batch of distinct identities, embeds it, and computes the loss with its batch as
``embeddings`` (the anchors) and the other processes' batches, gathered *with gradient*, as
``ref_embeddings`` (spec, "Beyond the batch: reference items").
:class:`torch.nn.parallel.DistributedDataParallel` then averages the parameter gradients;
:func:`data_parallel_loss` scales the per-process loss so that this average equals the
one-process gradient of the concatenated batch (derivation: :meth:`GatheredBatch.scale`).
Without a process group every function here is the one-process identity.

Reference: spec ``docs/drsl-loss-spec.md`` ("Beyond the batch", properties 1 and 2);
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
    main_first,
    reduce_means,
    sync_buffers,
    unwrap_model,
    wrap_model,
)
from drsl.train.distributed.gather import (
    NORMALISERS,
    GatheredBatch,
    data_parallel_loss,
    gather_batch,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "NORMALISERS",
    "DistributedContext",
    "GatheredBatch",
    "distributed",
    "current_context",
    "main_first",
    "wrap_model",
    "unwrap_model",
    "barrier",
    "broadcast_object",
    "all_gather_object",
    "reduce_means",
    "sync_buffers",
    "gather_batch",
    "data_parallel_loss",
]
