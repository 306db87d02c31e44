"""peftlab.quiet: the known warnings are ignored, and nothing else is."""

import logging
import warnings

import pytest
from transformers.utils import logging as hf_logging

from peftlab import quiet

KNOWN = "`is_gradient_checkpointing` is deprecated and will be removed in v6."


def test_known_warnings_ignores_exactly_the_known_ones():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet.known_warnings():
            warnings.warn(KNOWN, FutureWarning, stacklevel=1)
            warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
            warnings.warn(KNOWN, UserWarning, stacklevel=1)  # same text, another category
    assert [(str(w.message), w.category) for w in caught] == [
        ("something else is deprecated", FutureWarning),
        (KNOWN, UserWarning),
    ]
    with pytest.warns(FutureWarning):  # the filter ends with the block
        warnings.warn(KNOWN, FutureWarning, stacklevel=1)


def test_muted_turns_progress_bars_off_and_back_on():
    hf_logging.enable_progress_bar()
    with quiet.muted():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()


def test_silence_is_process_wide():
    logger = logging.getLogger(quiet.BITSANDBYTES_LOGGER)
    level, bars = logger.level, hf_logging.is_progress_bar_enabled()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet.silence()
            warnings.warn(KNOWN, FutureWarning, stacklevel=1)
        assert caught == []
        assert logger.level == logging.ERROR and not hf_logging.is_progress_bar_enabled()
    finally:
        logger.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()
