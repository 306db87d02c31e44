"""Library noise that says nothing about the lesson, silenced in one place.

Which warnings are known and harmless, and how to mute them for a block of code or for the whole
process (notebooks and benchmarks), is written here once. Nothing here imports transformers at
module level, so `import peftlab` stays cheap.
"""

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def muted() -> Iterator[None]:
    """Silence transformers' loading bars and peft's known transformers-5 FutureWarning."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
