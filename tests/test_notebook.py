"""`peftlab.notebook.setup`: the first cell of every notebook."""

import logging
import warnings

from peftlab import notebook


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
