"""Test-wide settings: offline, deterministic, quiet."""

import os
import re

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


def worker_group(item) -> str:
    """The pytest-xdist group an item runs in (`make test` runs `--dist loadgroup`): one per lesson,
    holding its tests, its prose check and its notebook, so that one worker computes the lesson's
    results once and the others never wait for them; otherwise one per file, as `loadfile` does."""
    name = item.path.name
    if found := re.match(r"test_lesson_(\d\d)", name):
        return f"lesson{found[1]}"
    if name == "test_lesson_prose.py" and (found := re.search(r"\[lesson(\d\d)_", item.name)):
        return f"lesson{found[1]}"
    if item.path.suffix == ".ipynb" and (found := re.match(r"(\d\d)_", name)):
        return f"lesson{found[1]}"
    return name


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Every lesson test pins numbers the lesson teaches: mark them for `make test-isa`."""
    for item in items:
        if item.path.name.startswith("test_lesson_"):
            item.add_marker(pytest.mark.pins)
        item.add_marker(pytest.mark.xdist_group(worker_group(item)))


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models run faster on one thread than on two cores fighting over OpenMP.
    `make test-isa` sets PEFTLAB_TEST_THREADS=2 to check that pinned numbers survive two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("PEFTLAB_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(threads)
