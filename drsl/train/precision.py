"""Mixed precision (``--amp``): autocast for the model, float32 for the losses, a grad scaler.

The model's forward pass runs under :func:`torch.autocast` (bfloat16 on the CPU; bfloat16 on
CUDA where the GPU supports it, else float16 with a :class:`torch.amp.GradScaler`); the weights
stay float32. The losses then run **outside** autocast on float32 copies of the outputs. The
losses of ``drsl.losses`` would also be safe inside (they turn autocast off and compute, and
return, float32 for half-precision inputs); the explicit cast keeps the identity term (CE on
the logits), the gathered references and the cross-batch memory in float32 too. So::

    prec = resolve_precision(config.amp, device)
    scaler = prec.grad_scaler()                 # a no-op unless float16 on CUDA
    with prec.autocast():
        out = model(x)
    loss, parts = criterion(to_float32(out), y)  # float32, outside autocast
    optimizer.zero_grad(set_to_none=True)
    backward_step(loss, optimizer, scaler)      # scale, backward, step, update

Reference: PyTorch "Automatic Mixed Precision package - torch.amp" and the AMP examples
(``torch.autocast``, ``GradScaler``); Micikevicius et al., "Mixed Precision Training",
ICLR 2018 (loss scaling); Kalamkar et al., "A Study of BFLOAT16 for Deep Learning
Training", arXiv:1905.12322 (bfloat16 needs no loss scaling).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from drsl.train.config import AMP_CHOICES

__all__ = [
    "AMP_CHOICES",
    "Precision",
    "resolve_precision",
    "to_float32",
    "backward_step",
]

# AMP_CHOICES, the values of ``--amp``, is declared in drsl.train.config (no torch import there):
# ``off``; ``auto`` (bf16 on the CPU, bf16 or fp16 on CUDA); ``bf16``; ``fp16`` (CUDA only,
# with a grad scaler). ``True``/``False`` mean ``auto``/``off``.
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_HALF = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Precision:
    """The mixed-precision setting of a run: where autocast runs and in which dtype.

    Attributes:
        device_type (str): ``"cpu"`` or ``"cuda"``.
        dtype (torch.dtype or None): the autocast dtype; ``None`` when AMP is off.

    Example:
        >>> p = resolve_precision("auto", "cpu")
        >>> p.name, p.enabled, p.needs_scaler
        ('bf16', True, False)
        >>> with p.autocast():
        ...     y = torch.nn.Linear(4, 2)(torch.randn(3, 4))
        >>> y.dtype
        torch.bfloat16
    """

    device_type: str = "cpu"
    dtype: torch.dtype | None = None

    @property
    def enabled(self) -> bool:
        """True when autocast is on."""
        return self.dtype is not None

    @property
    def name(self) -> str:
        """``"off"``, ``"bf16"`` or ``"fp16"`` (for logs and the saved config)."""
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    @property
    def needs_scaler(self) -> bool:
        """True for float16 on CUDA: small gradients underflow without loss scaling."""
        return self.dtype == torch.float16 and self.device_type == "cuda"

    def autocast(self) -> AbstractContextManager:
        """The autocast context for the model's forward pass (a no-op when AMP is off).

        Returns:
            ContextManager: ``torch.autocast(device_type, dtype, enabled)``.
        """
        if not self.enabled:
            return torch.autocast(self.device_type, enabled=False)
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A :class:`torch.amp.GradScaler`, enabled only where it is needed (fp16 on CUDA).

        A disabled scaler is a pass-through with the same interface (``scale(loss)`` returns
        ``loss``, ``step(opt)`` calls ``opt.step()``, ``state_dict()`` is ``{}``), so the
        training loop has one code path; its ``state_dict()`` belongs in the checkpoint.

        Returns:
            torch.amp.GradScaler: the scaler.

        Example:
            >>> s = resolve_precision("off", "cpu").grad_scaler()
            >>> s.is_enabled(), s.state_dict()
            (False, {})
        """
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)


def _amp_name(amp: bool | str | None) -> str:
    if amp is None or amp is False:
        return "off"
    if amp is True:
        return "auto"
    name = str(amp).strip().lower()
    if name not in AMP_CHOICES:
        raise ValueError(f"unknown amp setting {amp!r}; valid: {', '.join(AMP_CHOICES)}")
    return name


def resolve_precision(
    amp: bool | str | None,
    device: str | torch.device = "cpu",
    *,
    param_dtype: torch.dtype = torch.float32,
) -> Precision:
    """The :class:`Precision` that ``--amp`` asks for on ``device``.

    Args:
        amp (bool | str | None): one of :data:`AMP_CHOICES`, or a bool (``True`` = ``"auto"``).
        device (str | torch.device): where the model runs (``"cpu"`` or ``"cuda[:i]"``).
        param_dtype (torch.dtype): the weights' dtype; AMP needs float32 weights.

    Returns:
        Precision: the setting (``dtype=None`` when off).

    Raises:
        ValueError: unknown setting, a device other than CPU/CUDA, fp16 on the CPU, bf16 on a
            GPU without it, or AMP with non-float32 weights.

    Example:
        >>> resolve_precision(False, "cpu").name
        'off'
        >>> resolve_precision("fp16", "cpu")
        Traceback (most recent call last):
        ...
        ValueError: --amp fp16 needs CUDA (float16 autocast with a grad scaler); on the CPU use --amp bf16
    """  # noqa: E501
    name = _amp_name(amp)
    kind = torch.device(device).type
    if name == "off":
        return Precision(kind, None)
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"--amp supports CPU and CUDA devices, got {kind!r}; use --amp off")
    if param_dtype != torch.float32:
        raise ValueError(
            f"--amp needs float32 weights, got {param_dtype}; set dtype float32 or --amp off"
        )
    if name == "auto":
        name = "bf16" if kind == "cpu" or torch.cuda.is_bf16_supported() else "fp16"
    if name == "fp16" and kind == "cpu":
        raise ValueError(
            "--amp fp16 needs CUDA (float16 autocast with a grad scaler); on the CPU use --amp bf16"
        )
    if name == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU has no bfloat16 support; use --amp fp16 (or auto)")
    return Precision(kind, _DTYPES[name])


def to_float32(obj: Any) -> Any:
    """``obj`` with every float16/bfloat16 tensor cast to float32 (others unchanged).

    Walks tensors, named tuples (e.g. :class:`drsl.models.ReIDOutput`), tuples, lists and
    dicts. The cast is differentiable: gradients flow back in the original dtype.

    Args:
        obj (Any): a tensor or a container of tensors.

    Returns:
        Any: the same structure, half-precision tensors upcast.

    Example:
        >>> to_float32((torch.ones(2, dtype=torch.bfloat16), torch.ones(1, dtype=torch.float64)))
        (tensor([1., 1.]), tensor([1.], dtype=torch.float64))
    """
    if isinstance(obj, Tensor):
        return obj.float() if obj.dtype in _HALF else obj
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a NamedTuple
        return type(obj)(*(to_float32(v) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_float32(v) for v in obj)
    if isinstance(obj, Mapping):
        return {k: to_float32(v) for k, v in obj.items()}
    return obj


def backward_step(
    loss: Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> None:
    """``scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()``.

    With a disabled scaler this is ``loss.backward(); optimizer.step()``. With float16 the
    scaler skips the step when the gradients overflowed (and lowers the scale).

    Args:
        loss (Tensor): the 0-d float32 loss. optimizer (Optimizer): zeroed by the caller.
        scaler (torch.amp.GradScaler): from :meth:`Precision.grad_scaler`.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> opt = torch.optim.SGD([w], lr=0.5)
        >>> backward_step((w**2).sum(), opt, resolve_precision("off").grad_scaler())
        >>> w.data
        tensor([0.])
    """
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
