"""Test-wide settings: offline, deterministic, quiet."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if os.environ.get("PEFTLAB_NO_AVX512BF16"):
    # bitsandbytes asks the CPU itself whether to use its packed AVX512-BF16 4-bit kernel, and
    # no instruction-set variable reaches that question: `make test-isa` answers no here, as an
    # AVX2 CPU would (read when each Linear4bit is built).
    import bitsandbytes.nn.modules

    bitsandbytes.nn.modules.has_avx512bf16 = lambda: False


def pytest_collection_modifyitems(items):
    """Every lesson test pins numbers the lesson teaches: mark them for `make test-isa`."""
    for item in items:
        if item.path.name.startswith("test_lesson_"):
            item.add_marker(pytest.mark.pins)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models run faster on one thread than on two cores fighting over OpenMP.
    `make test-isa` sets PEFTLAB_TEST_THREADS=2 to check that pinned numbers survive two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("PEFTLAB_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(threads)
