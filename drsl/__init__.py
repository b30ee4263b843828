"""drsl: the Differentiable Retrieval-Sort Loss ("rank-in-rank loss") for person re-ID.

A small package behind a notebook course. Modules (lower never import higher):

- :mod:`drsl.config`     paths and the fast-mode switch
- :mod:`drsl.distances`  pairwise Euclidean distance, cosine and angle (the one home)
- :mod:`drsl.losses`     DRSL and the ranking / metric-learning baselines
- :mod:`drsl.gradcheck`  finite differences and gradient-field comparisons
- :mod:`drsl.data`       synthetic Market-format data, dataset loaders, PK sampler
- :mod:`drsl.metrics`    CMC, mAP and mINP under the Market-1501 protocol
- :mod:`drsl.models`, :mod:`drsl.train`  compact model, training loop, CLI
- :mod:`drsl.plotting`, :mod:`drsl.widgets`  figures and ipywidgets explorers (leaves)

Reference: "Rank-in-Rank Loss for Person Re-identification", ACM TOMM, doi:10.1145/3532866,
as read in ``docs/drsl-loss-spec.md`` (the project's contract).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
