"""Names of a package that load their module on first use (PEP 562 ``__getattr__``).

One helper for every ``__init__`` that re-exports from heavy submodules, so that e.g.
``from drsl.train import TrainConfig`` or ``drsl.data.synth``'s command-line parser does not
import torch, NumPy or PIL. (Scientific Python's ``lazy_loader`` does the same with a stub
file; these ten lines need no dependency.)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, where: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose name ``n`` lives in ``where[n]``.

    Args:
        package (str): the package's ``__name__``.
        where (Mapping[str, str]): exported name -> module, absolute (``"drsl.train.loop"``) or
            relative to ``package`` (``".loop"``). A name equal to its module's last part
            exports the submodule itself.
        namespace (dict): the package's ``globals()``; a loaded name is cached there.

    Returns:
        tuple: ``(__getattr__, __dir__)`` to assign in the package.

    Example:
        >>> ns = {}
        >>> getattr_, dir_ = lazy_exports("json", {"dumps": "json"}, ns)
        >>> getattr_("dumps")([1]), "dumps" in ns
        ('[1]', True)
    """

    def __getattr__(name: str) -> Any:
        target = where.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(target, package)
        value = module if module.__name__.rsplit(".", 1)[-1] == name else getattr(module, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
