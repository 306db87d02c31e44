"""What lesson 04 concludes from its results still holds (its prose: tests/test_lesson_prose.py).

Its results train the lesson's two adapters (on one thread, so the numbers repeat); they are
cached, so notebook 04 under nbval reuses this run.
"""

import pytest

from peftlab.lessons import lesson04_merging as lesson

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results():
    return lesson.results()


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
