"""The explorer in a real kernel: execute notebook 07 with a cell that moves a slider, then read
the widget state the kernel sent to the front end (as JupyterLab would receive it).

nbclient with ``store_widget_state=True`` records every widget model's state and binary buffers
from the kernel's comm messages into the notebook's metadata, so the test sees what a browser
would: the slider's new value and the new PNG bytes of the explorer's image.
"""

import base64
import hashlib
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "07_explore.ipynb"
STATE_KEY = "application/vnd.jupyter.widget-state+json"

MOVE_CELL = """\
import hashlib
_image = explorer.batch.image
_before = hashlib.sha256(_image.value).hexdigest()
explorer.batch.controls["P"].value = 12
explorer.toy.play.value = 3
assert explorer.batch.last_error is None and explorer.toy.last_error is None
print("BEFORE", _before)
print("AFTER", hashlib.sha256(_image.value).hexdigest())
print("IMAGE", _image.model_id)
print("SLIDER", explorer.batch.controls["P"].model_id)
print("FRAME", explorer.toy.controls["step"].model_id)
print("TAB", explorer.widget.model_id)
"""


@pytest.fixture(scope="module")
def executed():
    if not NOTEBOOK.is_file():
        pytest.fail(f"{NOTEBOOK} is missing: run jupytext --to ipynb notebooks/07_explore.py")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(MOVE_CELL))
    os.environ.setdefault("DRSL_FAST", "1")  # the kernel inherits it
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    ids = dict(line.split(" ", 1) for line in text.strip().splitlines())
    return nb, ids


def _model(nb, model_id):
    state = nb.metadata["widgets"][STATE_KEY]["state"]
    assert model_id in state, f"model {model_id} not in the stored widget state"
    return state[model_id]


def test_slider_value_reaches_the_widget_state(executed):
    nb, ids = executed
    slider = _model(nb, ids["SLIDER"])
    assert slider["model_name"] == "IntSliderModel"
    assert slider["state"]["value"] == 12
    assert "drsl-batch-P" in slider["state"]["_dom_classes"]


def test_new_image_reaches_the_widget_state(executed):
    nb, ids = executed
    assert ids["BEFORE"] != ids["AFTER"]
    image = _model(nb, ids["IMAGE"])
    assert image["model_name"] == "ImageModel"
    (buf,) = [b for b in image["buffers"] if b["path"] == ["value"]]
    png = base64.b64decode(buf["data"])
    assert png[:4] == b"\x89PNG"
    assert hashlib.sha256(png).hexdigest() == ids["AFTER"]


def test_play_moves_the_frame_through_the_kernel_link(executed):
    nb, ids = executed
    assert _model(nb, ids["FRAME"])["state"]["value"] == 3


def test_explorer_is_displayed_as_a_tab(executed):
    nb, ids = executed
    assert _model(nb, ids["TAB"])["model_name"] == "TabModel"
    views = [
        o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if o.output_type in ("display_data", "execute_result")
        and "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert views == [ids["TAB"]]
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert errors == []
