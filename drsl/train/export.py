"""A trained model outside Python: ONNX export of the embedding network, and its runtime.

:func:`export_onnx` writes the network of a checkpoint in eval mode as an ONNX graph that
takes what :class:`drsl.data.images.ImageSet` holds, ``B x 3 x H x W`` **uint8** images at the
checkpoint's size (any batch size ``B``), and returns the ``B x D`` post-BN embeddings that
``drsl eval`` ranks with: the evaluation transform (to float in [0, 1], ImageNet
normalisation) is part of the graph. :func:`onnx_embed` runs such a file with onnxruntime.
``drsl export CHECKPOINT --onnx OUT.onnx`` is the command line.

The tests check the runtime's embeddings against PyTorch's on a test split (within 1e-5) and
that they give the same mAP.

Reference: ONNX (https://onnx.ai), ``torch.onnx.export`` (TorchScript-based exporter, opset
17); ONNX Runtime (https://onnxruntime.ai).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from drsl.data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["ImagesToEmbeddings", "export_onnx", "onnx_embed"]

OPSET = 17


class ImagesToEmbeddings(nn.Module):
    """uint8 images -> the evaluation transform -> the model in eval mode -> embeddings.

    Args:
        model (nn.Module): a :class:`drsl.models.ReIDNet` (put in eval mode here).

    Example:
        >>> from drsl.models import ReIDNet
        >>> net = ImagesToEmbeddings(ReIDNet(3, base_width=2))
        >>> tuple(net(torch.zeros(2, 3, 16, 8, dtype=torch.uint8)).shape)
        (2, 16)
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        """Args: images (Tensor): ``B x 3 x H x W`` uint8. Returns: ``B x D`` float32."""
        x = images.to(torch.float32) / 255.0
        return self.model((x - self.mean) / self.std)


def _check_out(out: Path, checkpoint: Path) -> None:
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"--onnx {out}: the output file must end in .onnx")
    if out.is_dir():
        raise IsADirectoryError(f"--onnx {out} is a folder; pass a file name such as model.onnx")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--onnx {out}: folder {out.parent} does not exist; create it")
    if out.resolve() == checkpoint.resolve():
        raise ValueError(f"--onnx {out} is the checkpoint itself; pass another file name")


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Export a checkpoint's embedding network to ONNX (dynamic batch, eval mode).

    Args:
        checkpoint (str | PathLike): a ``model.pt`` or ``last.pt`` written by ``drsl train``
            (read as data: ``weights_only=True``).
        out (str | PathLike): the ``.onnx`` file to write (replaced atomically).

    Returns:
        pathlib.Path: ``out``. Its graph: input ``images`` (``B x 3 x H x W`` uint8, H and W
        the checkpoint's), output ``embeddings`` (``B x D`` float32).

    Raises:
        FileNotFoundError, ValueError (``CheckpointError``): a missing or unusable checkpoint,
        a bad output path (each one line, naming the file).
    """
    import warnings

    from drsl.fsutil import atomic_write
    from drsl.train.checkpoint import load_model

    checkpoint, out = Path(checkpoint), Path(out)
    _check_out(out, checkpoint)
    res = load_model(checkpoint, device="cpu")
    net = ImagesToEmbeddings(res.model).eval()
    example = torch.zeros(2, 3, res.config.height, res.config.width, dtype=torch.uint8)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on its own future
            torch.onnx.export(
                net,
                (example,),
                str(tmp),
                input_names=["images"],
                output_names=["embeddings"],
                dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )

    atomic_write(out, write)
    return out


def onnx_embed(path: str | os.PathLike, images: Tensor, *, batch_size: int = 256) -> Tensor:
    """Embeddings of uint8 images by an exported model, run with onnxruntime on the CPU.

    Args:
        path (str | PathLike): a file written by :func:`export_onnx`.
        images (Tensor): ``N x 3 x H x W`` uint8 at the exported size.
        batch_size (int): images per run.

    Returns:
        Tensor: ``N x D`` float32 embeddings.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    out = [
        torch.from_numpy(
            session.run(["embeddings"], {"images": images[s : s + batch_size].numpy()})[0]
        )
        for s in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(out)
