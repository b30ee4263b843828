"""The package's one image reader, and a scan that lists every unreadable image at once.

:func:`read_image` decodes a file fully (a truncated JPEG fails here, not half-way through
training) and turns whatever PIL raises into :class:`BadImageError`, one line naming the file
and the reason. :func:`scan_images` reads every file and lists the bad ones, so a loader can
report them all before training starts; :func:`bad_images_error` words that report.
Re-exported by :mod:`drsl.data.datasets`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

__all__ = ["BadImageError", "read_image", "scan_images", "bad_images_error", "iter_images"]


class BadImageError(ValueError):
    """An image file that cannot be decoded; the message is one line naming the file.

    Attributes:
        path (str): the file.
        reason (str): e.g. ``"truncated"``, ``"empty file"``, ``"missing"``.
    """

    def __init__(self, path, reason: str, message: str | None = None):
        self.path, self.reason = str(path), reason
        super().__init__(message or f"image {path} is unreadable ({reason})")


def _reason(path, err: BaseException) -> str:
    """A few words for what PIL (or the OS) said about ``path``."""
    from PIL import UnidentifiedImageError

    if os.path.islink(path) and not os.path.exists(path):  # broken or looping
        if isinstance(err, OSError) and err.errno == errno.ELOOP:
            return "a symlink loop"
        return f"a symlink to nothing ({os.readlink(path)})"
    if isinstance(err, FileNotFoundError):
        return "missing"
    if isinstance(err, IsADirectoryError):
        return "a folder, not a file"
    if isinstance(err, UnidentifiedImageError):
        try:
            empty = os.path.getsize(path) == 0
        except OSError:
            empty = False
        return "empty file" if empty else "not an image format PIL recognises"
    text = " ".join(str(err).split()) or type(err).__name__
    if "truncat" in text.lower():  # "Truncated File Read", "image file is truncated (...)"
        return "truncated"
    return text


def read_image(path: str | Path):
    """Read an image as an RGB PIL image, decoding all of it, or fail naming the file.

    Args:
        path (str or Path): the image file.

    Returns:
        PIL.Image.Image: the RGB image (fully loaded, file closed).

    Raises:
        BadImageError: the file is missing, empty, truncated or not an image (one line:
            ``"image <path> is unreadable (<reason>)"``).

    Example:
        >>> try:
        ...     read_image("no/such.jpg")
        ... except BadImageError as err:
        ...     print(err)
        image no/such.jpg is unreadable (missing)
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file raises here
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
        raise BadImageError(path, _reason(path, err)) from err


def scan_images(paths: Iterable[str | Path]) -> list[tuple[str, str]]:
    """Decode every image and list the unreadable ones.

    Args:
        paths (iterable of str or Path): image files.

    Returns:
        list[tuple[str, str]]: ``(path, reason)`` of each bad file, in input order; empty
        when all are readable.

    Example:
        >>> scan_images(["no/such.jpg"])
        [('no/such.jpg', 'missing')]
    """
    bad = []
    for path in paths:
        try:
            read_image(path)
        except BadImageError as err:
            bad.append((str(path), err.reason))
    return bad


def bad_images_error(bad: Sequence[tuple[str, str]], *, hint: str = "") -> BadImageError:
    """One :class:`BadImageError` for a list of bad images: the first, and how many others.

    Args:
        bad (sequence of (path, reason)): from :func:`scan_images` (non-empty).
        hint (str): how to list them all, e.g. ``"python -m drsl.data.datasets --check ROOT"``.

    Returns:
        BadImageError: e.g. ``image x.jpg is unreadable (truncated); 3 other images are bad
        too (python -m drsl.data.datasets --check data/x lists them)``.

    Example:
        >>> print(bad_images_error([("a.jpg", "truncated"), ("b.jpg", "empty file")]))
        image a.jpg is unreadable (truncated); 1 other image is bad too
    """
    if not bad:
        raise ValueError("bad_images_error needs at least one (path, reason)")
    path, reason = bad[0]
    message = f"image {path} is unreadable ({reason})"
    others = len(bad) - 1
    if others:
        noun = "image is" if others == 1 else "images are"
        message += f"; {others} other {noun} bad too"
        if hint:
            message += f" ({hint} lists them)"
    return BadImageError(path, reason, message)


def iter_images(paths: Sequence[str | Path], *, hint: str = "") -> Iterator:
    """Read images in order; at the first bad one, scan the rest and raise one error for all.

    Args:
        paths (sequence of str or Path): image files.
        hint (str): passed to :func:`bad_images_error`.

    Yields:
        PIL.Image.Image: each RGB image.

    Raises:
        BadImageError: the first unreadable file, with the count of the others.
    """
    for i, path in enumerate(paths):
        try:
            image = read_image(path)
        except BadImageError as err:
            rest = scan_images(paths[i + 1 :])
            raise bad_images_error([(str(path), err.reason), *rest], hint=hint) from None
        yield image
