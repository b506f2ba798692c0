"""The example notebook runs end to end (so it cannot rot)."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    # write outputs under tmp_path instead of the repository's runs/
    nb.cells[1].source = nb.cells[1].source.replace('out="runs/notebook"', f'out={str(tmp_path / "nb")!r}')
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the LR finder drew itself
    assert (tmp_path / "nb" / "classifier" / "model.safetensors").exists()
    assert os.path.isdir(tmp_path / "nb" / "pretrain")
