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


def worker_group(nodeid: str) -> str:
    """The pytest-xdist group a test runs in: one per lesson, holding its tests, its prose check
    and its notebook, so that one worker computes the lesson's results once and the other never
    waits for them; otherwise one per file, as `--dist loadfile` does."""
    name = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    if found := re.match(r"test_lesson_(\d\d)", name):
        return f"lesson{found[1]}"
    if name == "test_lesson_prose.py" and (found := re.search(r"\[lesson(\d\d)_", nodeid)):
        return f"lesson{found[1]}"
    if name.endswith(".ipynb") and (found := re.match(r"(\d\d)_", name)):
        return f"lesson{found[1]}"
    return name


# The groups that take longest with cold caches (`make test --durations`, 2 cores), slowest
# first: they start first, so that no long lesson is left to run alone at the end.
SLOWEST_FIRST = ("lesson11", "lesson07", "lesson02", "lesson03", "lesson08", "lesson05",
                 "lesson12", "lesson04", "test_real_model.py", "test_demo_end_to_end.py",
                 "lesson09", "test_models.py")  # fmt: skip


def pytest_xdist_make_scheduler(config, log):
    """`make test`'s `--dist loadgroup`, grouped by `worker_group`: xdist's own loadgroup reads
    `xdist_group` marks by rewriting node ids, which pytest 9 no longer allows (each test would
    go its own way). Groups are handed out in collection order (`SLOWEST_FIRST`, then the rest),
    each run whole by one worker."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # xdist would put the groups with most tests first

    class LessonGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return LessonGroups(config, log)


def pytest_collection_modifyitems(items):
    """Every lesson test pins numbers the lesson teaches: mark them for `make test-isa`. Lesson 11
    is the exception: the real model computes in bf16 where the CPU has it natively and in fp32
    elsewhere, so another instruction set runs another recipe; its prose holds its figures
    within their tolerances on the machine that runs `make test`. A test marked `unpinned` says
    why it is left out too. The slowest groups go first (a stable sort: each group's tests keep
    their order)."""
    rank = {group: i for i, group in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(worker_group(item.nodeid), len(rank)))
    for item in items:
        real_model = item.path.name.startswith("test_lesson_11") or "lesson11" in item.nodeid
        unpinned = item.get_closest_marker("unpinned") is not None
        if item.path.name.startswith("test_lesson_") and not real_model and not unpinned:
            item.add_marker(pytest.mark.pins)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models run faster on one thread than on two cores fighting over OpenMP.
    `make test-isa` sets PEFTLAB_TEST_THREADS=2 to check that pinned numbers survive two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("PEFTLAB_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(threads)
