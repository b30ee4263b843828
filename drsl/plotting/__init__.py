"""Figures for the course. Every function takes ``ax=None`` (or ``axes=None``) and returns the
matplotlib Figure; none saves a file or prints. This is a leaf: nothing in drsl imports it.

Submodules, one per area: :mod:`.losses` (ranked lists, loss terms, step functions),
:mod:`.gradients` (finite-difference curves, identity update vs smooth gradient, balance),
:mod:`.data` (identities across cameras, batch ratios), :mod:`.geometry` (t-SNE, distance and
angle distributions), :mod:`.rank_in_rank` (per-query Spearman views), :mod:`.ranking`
(ranking grids), :mod:`.explore` (the explorer's static grid), :mod:`.train` (learning
curves, sweep results, result heatmaps), :mod:`.imbalance` (the imbalance experiment),
:mod:`.endpoints` (a pre-registered experiment's endpoints).
Colours and the one seaborn theme of the course: :mod:`._style` (every drawing submodule
applies it on import).

``from drsl.plotting import plot_pk_ratio`` imports only the submodule that holds the name
(lazily, PEP 562), so a notebook does not pay for scipy or scikit-learn it does not use.
``tests/test_package.py`` keeps the table below equal to each submodule's ``__all__``.
"""

from __future__ import annotations

from drsl._lazy import lazy_exports

from ._style import NEG_COLOR, POS_COLOR, set_course_theme

_EXPORTS: dict[str, tuple[str, ...]] = {
    "losses": ("plot_anchor_list", "plot_loss_terms", "plot_step_functions"),
    "gradients": (
        "plot_step_sweep", "plot_line_profile", "plot_update_comparison", "plot_update_row",
        "plot_balance",
    ),
    "data": (
        "plot_identities_across_cameras", "plot_dataset_statistics", "plot_pk_ratio",
        "plot_protocol_example",
    ),
    "geometry": (
        "plot_tsne", "plot_pair_histograms", "plot_pair_histograms_by_model", "plot_pair_ecdf",
    ),
    "rank_in_rank": ("plot_rank_in_rank", "plot_spearman_by_model"),
    "ranking": ("plot_ranking",),
    "explore": (
        "plot_ranked_list", "plot_loss_values", "plot_gradient_share", "plot_batch_panel",
        "plot_ratio_curves", "plot_toy_embedding", "plot_toy_loss", "plot_explorer_grid",
        "plot_toy_grid",
    ),
    "imbalance": ("plot_imbalance", "plot_val_curves", "plot_paired_differences"),
    "endpoints": ("plot_endpoints",),
    "train": (
        "plot_learning_curves", "plot_result_heatmap", "plot_sensitivity", "plot_sweep",
        "sweep_table",
    ),
}  # fmt: skip
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["POS_COLOR", "NEG_COLOR", "set_course_theme", *_WHERE]


__getattr__, __dir__ = lazy_exports(
    __name__,
    {**{m: f".{m}" for m in _EXPORTS}, **{n: f".{m}" for n, m in _WHERE.items()}},
    globals(),
)
