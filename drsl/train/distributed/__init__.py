"""Data-parallel training glue: the torchrun context, references gathered with gradient, the loss.

``torchrun --nproc_per_node=W -m drsl train ...``: each process embeds its own PK batch and
computes the loss with the other processes' batches, gathered with gradient, as reference
items; :func:`data_parallel_loss` scales it so that DDP's gradient average equals the
one-process gradient of the concatenated batch. Without a process group: the identity.

Reference: spec ``docs/drsl-loss-spec.md`` ("Beyond the batch", properties 1 and 2);
pytorch-metric-learning's ``DistributedLossWrapper`` (the same gather-as-references idea).
"""

from drsl.train.distributed.context import (
    DistributedContext,
    all_gather_object,
    distributed,
    main_first,
    reduce_means,
    sync_buffers,
    wrap_model,
)
from drsl.train.distributed.gather import GatheredBatch, data_parallel_loss, gather_batch

__all__ = [
    "DistributedContext",
    "distributed",
    "main_first",
    "wrap_model",
    "sync_buffers",
    "all_gather_object",
    "reduce_means",
    "GatheredBatch",
    "gather_batch",
    "data_parallel_loss",
]
