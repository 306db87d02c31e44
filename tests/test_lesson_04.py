"""lessons/04-merging.md quotes tables and numbers the package computes; keep them in step.

Recomputing them trains the lesson's two adapters (on one thread, so the numbers repeat).
"""

from pathlib import Path

import pytest

from peftlab.lessons import lesson04_merging as lesson
from peftlab.tables import fact_differences, find_table, table_differences

LESSON = Path(__file__).resolve().parents[1] / "lessons" / "04-merging.md"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def text() -> str:
    return LESSON.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return lesson.lesson_04_results(tmp_path_factory.mktemp("lesson04"))


def test_lesson_tables_are_current(text, results):
    """Exact tables must appear as computed; the route table's bf16/NF4 figures within the
    tolerance that holds across CPUs (lesson.ROUTE_TOLERANCE)."""
    stale = {}
    for name, table in lesson.lesson_04_tables(results).items():
        tolerance = lesson.LESSON_04_TOLERANCE.get(name)
        if tolerance is None:
            off = [] if table in text else [f"the {name} table is not in the lesson as computed"]
        else:
            off = table_differences(table, find_table(text, table.splitlines()[0]), tolerance)
        if off:
            stale[name] = "\n".join(off) + "\n" + table
    assert not stale, "stale lesson tables; paste:\n\n" + "\n\n".join(stale.values())


def test_lesson_numbers_are_current(text, results):
    stale = {k: v for k, v in lesson.lesson_04_facts(results).items() if v not in text}
    assert not stale, f"numbers missing from the lesson: {stale}"
    off = [d for fact in lesson.lesson_04_route_facts(results)
           for d in fact_differences(text, *fact)]  # fmt: skip
    assert not off, f"route figures the prose quotes are off: {off}"


def test_what_the_lesson_concludes_still_holds(results):
    check = results["check"]
    assert check.adapter_vs_base > 1 and check.merged_vs_adapter < 1e-4
    assert check.merged_params == check.base_params and check.peft_modules_left == 0
    routes = {r.route: r for r in results["routes"]}
    assert routes["b"].mean_logit_error < min(routes["a"].mean_logit_error,
                                              routes["c"].mean_logit_error)  # fmt: skip
    assert routes["b"].agreement_unmerged > max(routes["a"].agreement_unmerged,
                                                routes["c"].agreement_unmerged)  # fmt: skip
    assert routes["-"].agreement < 1  # quantizing the base alone changes some replies
    assert all(abs(r.score - routes["-"].score) <= 0.1 for r in routes.values())
    mixes = {(m["type"], m["weights"]): m for m in results["mixes"]}
    cat = [mixes["cat", w] for w in lesson.LESSON_WEIGHTS]  # polite weight falling
    assert [m["greeting"] for m in cat] == sorted((m["greeting"] for m in cat), reverse=True)
    assert cat[0]["words"] > cat[-1]["words"]
    assert mixes["linear", (0.7, 0.3)]["greeting"] < cat[0]["greeting"]
    assert mixes["ties", (0.5, 0.5)]["score"] < mixes["cat", (0.5, 0.5)]["score"]
    summaries = results["summaries"]
    assert summaries["polite"]["score"] > summaries["base"]["score"]
    assert summaries["terse"]["words"] < summaries["polite"]["words"]
    sizes = results["storage"]
    assert sizes["base_plus_adapters_bytes"] < sizes["merged_models_bytes"]


def test_lesson_has_the_required_sections(text):
    for heading in ("## Interview answer", "## TL;DR", "**Analogy.**", "## 3. Merging into a"):
        assert heading in text
    assert "{" + "{" not in text  # every table placeholder was filled
