"""The lesson cache's key: the code a computation can reach, and nothing it cannot."""

from __future__ import annotations

from peftlab.lessons import cache


def test_a_lesson_reaches_the_modules_it_imports_and_not_the_quiz_or_the_cli():
    reached = {name for name, _ in cache._reachable("peftlab.lessons.lesson07_peft_methods")}
    # what lesson 07 computes with, directly and through its imports
    assert {"peftlab.peft_family", "peftlab.base_model"} <= reached
    assert "peftlab" in reached  # parents run on import
    # the registry, the prose checks and the cache compute nothing: editing them keeps results
    assert not reached & set(cache.MACHINERY)
    # modules it never imports cannot change its results
    assert not any(
        n.startswith(("peftlab.quiz", "peftlab.commands", "peftlab.cli")) for n in reached
    )


def test_a_module_named_in_a_string_counts_as_reached(tmp_path, monkeypatch):
    package = tmp_path / "peftlab"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text('CODE = "from peftlab.b import run; run()"\n')
    (package / "b.py").write_text("from . import c\n")
    (package / "c.py").write_text("X = 1\n")
    (package / "d.py").write_text("Y = 2\n")
    monkeypatch.setattr(cache.paths, "PACKAGE", package)
    cache._reachable.cache_clear()
    try:
        reached = {name for name, _ in cache._reachable("peftlab.a")}
    finally:
        cache._reachable.cache_clear()
    assert reached == {"peftlab", "peftlab.a", "peftlab.b", "peftlab.c"}


def test_the_key_changes_with_the_module_and_the_params():
    a = cache.key("x", module="peftlab.lessons.lesson07_peft_methods", n=1)
    assert a == cache.key("x", module="peftlab.lessons.lesson07_peft_methods", n=1)
    assert a != cache.key("x", module="peftlab.lessons.lesson07_peft_methods", n=2)
    assert a != cache.key("x", module="peftlab.lessons.lesson01_peft_basics", n=1)
    assert a != cache.key("x", n=1)  # no module: the whole package


def _count_calls(calls: list, n: int) -> int:
    calls.append(n)
    return n


def test_results_of_other_kernels_are_kept_and_older_code_s_removed(tmp_path, monkeypatch):
    """`make test` then `make test-isa` then `make test`: each finds its own results again."""
    monkeypatch.setattr(cache, "folder", lambda: tmp_path)
    monkeypatch.delenv("PEFTLAB_NO_CACHE", raising=False)
    calls: list[int] = []

    def run(n: int, capability: str | None) -> int:
        if capability is None:
            monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
        else:
            monkeypatch.setenv("ATEN_CPU_CAPABILITY", capability)
        return cache.cached("probe", _count_calls, live={"calls": calls}, n=n)

    for capability in (None, "avx2", None, "avx2"):
        run(1, capability)
    assert calls == [1, 1]  # once per environment, then read back
    assert len(list(tmp_path.glob("probe-*.pkl"))) == 2
    run(2, None)  # new parameters (as new code would): the same environment's old result goes
    assert calls == [1, 1, 2]
    run(1, "avx2")  # the other environment's result is still there
    assert calls == [1, 1, 2]
    assert len(list(tmp_path.glob("probe-*.pkl"))) == 2
