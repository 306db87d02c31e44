"""`peftlab.notebook.setup`: the first cell of every notebook."""

import json
import logging
import warnings

import pytest

from peftlab import notebook, paths


def test_setup_prints_the_versions_and_silences_only_known_noise(capsys, monkeypatch):
    # Our own filters, whatever the shell set (PYTHONWARNINGS=ignore would hide every warning):
    # all show until setup() silences the known noise. The original list returns after the test.
    monkeypatch.setattr(warnings, "filters", [])
    warnings.simplefilter("always")
    logger = logging.getLogger("bitsandbytes")
    monkeypatch.setattr(logger, "level", logger.level)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    try:
        notebook.setup(("peftlab", "torch"))
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["peftlab", "torch", "device"]
    assert logger.level == logging.ERROR
    with warnings.catch_warnings(record=True) as caught:  # keeps setup()'s filters
        warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]


NOTEBOOKS = sorted((paths.course_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_notebook_opens_with_its_title_then_setup(path):
    """The first cell names the lesson ("# NN · ..."); the first code cell is `setup()`, its
    output (versions, device) ignored by nbval; the kernel is the project's."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    first = notebook["cells"][0]
    assert first["cell_type"] == "markdown"
    assert "".join(first["source"]).startswith(f"# {path.name[:2]} · "), path.name
    code = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    source = "".join(code["source"])
    assert "from peftlab.notebook import setup" in source and "\nsetup(" in source, source
    assert "nbval-ignore-output" in code["metadata"].get("tags", [])
    assert notebook["metadata"]["kernelspec"]["name"] == "peftlab"
