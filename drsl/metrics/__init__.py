"""Retrieval metrics for person re-ID: CMC, mAP and mINP under the Market-1501 protocol.

The one home for evaluation metrics in drsl. Everything works on a query x gallery distance
matrix (smaller = more similar) and the identities (pids) and cameras (camids) of both sides.

- :mod:`drsl.metrics.protocol`: the protocol itself, the role of every gallery item for a
  query (the one implementation; the geometry statistics and the plots use it too);
- :mod:`drsl.metrics.rank`: :func:`evaluate_rank`, :func:`evaluate_embeddings`,
  :func:`average_precision` (both AP conventions, :data:`AP_MODES`);
- :mod:`drsl.metrics.rerank`: :func:`rerank_distances`, k-reciprocal re-ranking (Zhong et
  al., CVPR 2017), memory-bounded;
- :mod:`drsl.metrics.reference`: :func:`~drsl.metrics.reference.evaluate_market`, the same
  metrics as a short per-query loop to read, and
  :func:`~drsl.metrics.reference.rerank_loop`, re-ranking as the paper's per-item loop;
- :mod:`drsl.metrics.queries`: a few queries' ranked lists and the choice of queries to show
  (for the ranking plots; re-exported by :mod:`drsl.geometry`).

**Protocol** (Zheng et al., ICCV 2015). For each query:

1. drop gallery items with the query's identity *and* camera: the same person seen by the same
   camera is a near duplicate from the same tracklet;
2. drop junk items (pid ``-1``): bad detections that count neither way;
3. keep distractors (pid ``0`` in Market-1501) as negatives: they are hard background;
4. skip the query if no valid match is left (it contributes nothing, not a zero).

Ties in distance are broken stably: equal distances keep the gallery order, exactly as
``np.argsort(..., kind="stable")`` would order them.

**Compared with torchreid.** torchreid's ``eval_market1501`` computes the same non-interpolated
AP and CMC, but it drops only step 1 itself: junk is dropped by its dataset loader, which never
reads the junk images of Market-1501. On a distance matrix that still holds junk columns it
would count them as negatives. And its ``np.argsort`` is not stable, so tied distances may fall
in another order there (tie-free matrices give the same numbers).

Reference: Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015 (Market
protocol and its AP code); Ye et al., "Deep Learning for Person Re-identification: A Survey and
Outlook", TPAMI 2021 (mINP); torchreid ``eval_market1501`` (non-interpolated AP, CMC).
"""

from drsl.metrics.protocol import ROLES, gallery_roles, pair_masks, role_codes
from drsl.metrics.rank import (
    AP_MODES,
    RankResult,
    average_precision,
    evaluate_embeddings,
    evaluate_rank,
)
from drsl.metrics.rerank import rerank_distances

__all__ = [
    "AP_MODES",
    "ROLES",
    "RankResult",
    "average_precision",
    "evaluate_rank",
    "evaluate_embeddings",
    "gallery_roles",
    "role_codes",
    "pair_masks",
    "rerank_distances",
]
