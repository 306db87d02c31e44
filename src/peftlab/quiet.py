"""Library noise that says nothing about the lesson, silenced in one place.

Which warnings are known and harmless is written here once, with the reason. `known_warnings()`
ignores them for a block of code (what library code uses); `silence()` ignores them for the whole
process and also quiets bitsandbytes' logger and transformers' progress bars (what notebooks and
benchmarks call once at the start). Nothing here imports transformers at module level, so
`import peftlab` stays cheap.
"""

import contextlib
import logging
import warnings
from collections.abc import Iterator

# (message regex, category) of warnings that are known, harmless, and nothing we can change.
KNOWN_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # peft 0.21.2 reads `is_gradient_checkpointing`, which transformers 5.24 deprecates.
    ("`is_gradient_checkpointing` is deprecated", FutureWarning),
    # peft 0.21.2's prefix tuning hands the model `past_key_values`, which transformers 5.24
    # deprecates in favour of `cache` (lesson 07 trains prefix tuning).
    ("`past_key_values` is deprecated", FutureWarning),
    # ... and in generation peft passes the prefix as `past_key_values` beside generate's own
    # `cache`; transformers 5.24 says it keeps `cache` (whether the prefix still reaches the
    # attention in generation is checked by tests/test_peft_family.py's prefix test).
    ("Both `past_key_values` and `cache` are set", FutureWarning),
)
BITSANDBYTES_LOGGER = "bitsandbytes"
# On CPUs with AVX-512 BF16, importing bitsandbytes tries to fetch an optional kernel from the hub
# and logs a warning when it can't (always, offline); its built-in CPU kernels work without it.
KERNEL_FETCH_LOGGER = "bitsandbytes.backends.cpu.ops"


def _ignore_known() -> None:
    for message, category in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


@contextlib.contextmanager
def known_warnings() -> Iterator[None]:
    """Ignore exactly the KNOWN_WARNINGS inside the block; every other warning still shows."""
    with warnings.catch_warnings():
        _ignore_known()
        yield


@contextlib.contextmanager
def muted() -> Iterator[None]:
    """`known_warnings()`, and transformers' progress bars off, inside the block (loading and
    saving models from library code without bars); both are restored afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with known_warnings():
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def mute_kernel_fetch_log() -> None:
    """Keep bitsandbytes' failed optional-kernel fetch (see KERNEL_FETCH_LOGGER) out of the output;
    `import peftlab` calls this, before anything imports bitsandbytes."""
    logging.getLogger(KERNEL_FETCH_LOGGER).setLevel(logging.ERROR)


def silence() -> None:
    """For a whole notebook or script: ignore the KNOWN_WARNINGS, show only errors from
    bitsandbytes' logger, and turn transformers' progress bars off."""
    from transformers.utils import logging as hf_logging

    _ignore_known()
    logging.getLogger(BITSANDBYTES_LOGGER).setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
