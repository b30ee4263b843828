"""DRSL, the Differentiable Retrieval-Sort Loss ("rank-in-rank"), its baselines, an XBM memory.

Every loss takes a mini-batch ``embeddings`` (``B x D``) and identity ``labels`` (``B``), and
optionally reference items ``ref_embeddings`` (``R x D``) and ``ref_labels`` (``R``): the anchors
are the batch rows, each anchor retrieves among the other batch rows and all the references
(a cross-batch memory, or the other processes' batches in data-parallel training), and with
``R = 0`` the loss is the batch-only one exactly. Each returns a 0-d tensor.

**Precision.** Every loss (and :func:`drsl_terms`, :func:`identity_update`,
:func:`gradient_mass`, :func:`retrieval_scores`, :func:`angle_targets`) computes in float32,
or in float64 for float64 inputs, and turns autocast off inside itself, so it may be called
inside a :func:`torch.autocast` region and gives the value it gives outside one, bit for bit
(autocast would otherwise run its matrix products in bfloat16/float16). float16 and bfloat16
inputs (embeddings, references, angle embeddings) are upcast exactly, and the loss is returned
in **float32**, not in the input's dtype: a bfloat16 loss value would keep 8 significant bits
(a loss of 0.7 reads 0.69921875), too few to log or compare; autograd casts the gradient back,
so the half-precision inputs receive it in their own dtype. Call ``backward()`` outside the
autocast region, as PyTorch recommends.

Submodules, one idea each:

- :mod:`.drsl`: DRSL (smooth and identity gradient modes, its terms, its identity update);
- :mod:`.baselines`: batch-hard triplet, Smooth-AP, contrastive, label-smoothed cross-entropy;
- :mod:`.reference`: :func:`~drsl.losses.reference.drsl_loss_dense`, the readable dense version;
- :mod:`.pairwise`: multi-similarity and circle (pair-weighting losses on cosine similarity);
- :mod:`.names`: one record per loss (name, function, form, normaliser, label), torch-free;
- :mod:`.registry`: :data:`LOSSES`, :func:`get_loss`, :func:`gradient_mass`;
- :mod:`.memory`: :class:`CrossBatchMemory` (XBM);
- ``_kernel`` (private): the blocked ``B x P x (B + R)`` step sums behind DRSL and Smooth-AP.

Reference: spec ``docs/drsl-loss-spec.md`` (the project's reading of "Rank-in-Rank Loss for
Person Re-identification", ACM TOMM, doi:10.1145/3532866); RS Loss (Oksuz et al., ICCV 2021);
AP-Loss (Chen et al., CVPR 2019); Smooth-AP (Brown et al., ECCV 2020); XBM (Wang et al.,
CVPR 2020).

Names load on first use (``import drsl.losses.names`` does not import torch).
"""

from __future__ import annotations

from drsl._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_DELTA": ".drsl_options",
    "SMOOTHINGS": ".drsl_options",
    "step_function": "._kernel",
    "ContrastiveLoss": ".baselines",
    "CrossEntropyLabelSmooth": ".baselines",
    "SmoothAPLoss": ".baselines",
    "TripletLoss": ".baselines",
    "batch_hard_triplet_loss": ".baselines",
    "contrastive_loss": ".baselines",
    "cross_entropy_label_smooth": ".baselines",
    "smooth_ap_loss": ".baselines",
    "GRADIENTS": ".drsl_options",
    "DRSLoss": ".drsl",
    "DRSLTerms": ".drsl",
    "IdentityUpdate": ".drsl",
    "angle_targets": ".drsl",
    "drsl_from_scores": ".drsl",
    "drsl_loss": ".drsl",
    "drsl_terms": ".drsl",
    "identity_update": ".drsl",
    "retrieval_scores": ".drsl",
    "MultiSimilarityLoss": ".pairwise",
    "CircleLoss": ".pairwise",
    "multi_similarity_loss": ".pairwise",
    "circle_loss": ".pairwise",
    "CrossBatchMemory": ".memory",
    "drsl_loss_dense": ".reference",
    "LOSSES": ".registry",
    "get_loss": ".registry",
    "gradient_mass": ".registry",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
