"""ONNX export (drsl export, drsl.train.export): onnxruntime gives the PyTorch embeddings and
the same mAP on a test split, for any batch size; bad checkpoints and paths fail in one line."""

from __future__ import annotations

import pytest
import torch

from drsl.cli import main
from drsl.config import repo_root
from drsl.data.images import load_data
from drsl.metrics import evaluate_embeddings
from drsl.train.checkpoint import load_model
from drsl.train.evaluation import embed, evaluate

pytest.importorskip("onnxruntime")
from drsl.train.export import export_onnx, onnx_embed  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
SHIPPED = repo_root() / "data" / "checkpoints" / "ce_drsl.pt"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_onnx(SHIPPED, tmp_path_factory.mktemp("onnx") / "ce_drsl.onnx")


def test_onnx_embeddings_and_map_equal_pytorchs_on_the_test_split(exported):
    res = load_model(SHIPPED)
    data = load_data(height=res.config.height, width=res.config.width, fast=True)
    ids = [t.numpy() for t in (data.query.pids, data.gallery.pids)]
    cams = [t.numpy() for t in (data.query.camids, data.gallery.camids)]
    q_onnx = onnx_embed(exported, data.query.images)
    g_onnx = onnx_embed(exported, data.gallery.images)
    q_torch = embed(res.model, data.query.images)
    g_torch = embed(res.model, data.gallery.images)
    gap = max(float((q_onnx - q_torch).abs().max()), float((g_onnx - g_torch).abs().max()))
    assert gap <= 1e-5, gap
    onnx_map = evaluate_embeddings(q_onnx, g_onnx, ids[0], ids[1], cams[0], cams[1]).mAP
    assert onnx_map == pytest.approx(evaluate(res.model, data)["mAP"], abs=1e-9)


def test_the_exported_batch_size_is_free(exported):
    images = torch.randint(0, 256, (7, 3, 64, 32), dtype=torch.uint8)
    whole = onnx_embed(exported, images)
    one_by_one = onnx_embed(exported, images, batch_size=1)
    torch.testing.assert_close(whole, one_by_one, rtol=0, atol=1e-5)
    assert whole.shape == (7, load_model(SHIPPED).model.embedding_dim)


def test_cli_export_writes_and_checks_the_file(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(SHIPPED), "--onnx", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "onnxruntime vs PyTorch" in text
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary left behind


@pytest.mark.parametrize(
    "case, match",
    [
        ("garbage checkpoint", "not a readable checkpoint"),
        ("missing checkpoint", "checkpoint not found"),
        ("no folder", "does not exist; create it"),
        ("not .onnx", "must end in .onnx"),
        ("a folder", "is a folder; pass a file name"),
    ],
)
def test_cli_export_errors_are_one_line(tmp_path, capsys, case, match):
    ckpt, out = SHIPPED, tmp_path / "m.onnx"
    if case == "garbage checkpoint":
        ckpt = tmp_path / "bad.pt"
        ckpt.write_bytes(b"garbage")
    elif case == "missing checkpoint":
        ckpt = tmp_path / "none.pt"
    elif case == "no folder":
        out = tmp_path / "nowhere" / "m.onnx"
    elif case == "not .onnx":
        out = tmp_path / "m.pt"
    else:
        out = tmp_path / "dir.onnx"
        out.mkdir()
    assert main(["export", str(ckpt), "--onnx", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and "Traceback" not in err
