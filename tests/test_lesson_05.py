"""What lesson 05 concludes from its results still holds (its prose: tests/test_lesson_prose.py).

Its results fine-tune the embedded model and run the rank x steps sweep; they are cached, so
notebook 05's sweep under nbval reuses this run. Notebook 05's checked cells print the same
tables, and nbval fails if they change.
"""

import json

import pytest

from peftlab import paths
from peftlab.lessons import lesson05_support_demo as lesson
from peftlab.rubric import CRITERIA

NOTEBOOK = paths.notebooks_dir() / lesson.NOTEBOOK
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results():
    return lesson.results()


def checked_outputs() -> list[str]:
    """Printed text of every notebook cell whose output nbval checks."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    outputs = []
    for cell in cells:
        if "nbval-check-output" in cell.get("metadata", {}).get("tags", []):
            text = "".join(
                "".join(o.get("text", "")) for o in cell["outputs"] if o["output_type"] == "stream"
            )
            outputs.append(text.strip())
    return outputs


def test_the_notebook_prints_what_the_lesson_quotes(results):
    """Notebook 05's checked cells (nbval compares them on every run) print the lesson's tables."""
    quotes = lesson.quotes(results)
    names = ("data", "example", "criteria", "wild data", "sets", "wild worst", "sweep", "memory")
    tables = {quotes[name].strip() for name in names}
    outputs = checked_outputs()
    assert len(outputs) == len(names) and all(outputs), "notebook 05 must be committed executed"
    assert set(outputs) == tables


def test_every_criterion_improves(results):
    by_criterion = lesson.rubric_by_criterion(results["rows"])
    for criterion in CRITERIA:  # the lesson says every criterion improved
        assert by_criterion["after"][criterion] > by_criterion["before"][criterion], criterion


def test_sweep_says_what_the_lesson_claims(results):
    points = {(p.r, p.steps): (p.final_loss, p.score) for p in results["sweep"]}
    ranks, steps = sorted({r for r, _ in points}), sorted({s for _, s in points})
    for r in ranks:  # the loss falls with more steps, for every rank
        assert points[r, steps[-1]][0] < points[r, steps[0]][0]
    for s in steps:  # and is lower with the larger rank
        assert points[ranks[-1], s][0] < points[ranks[0], s][0]
    # after the longest run the larger rank scores and the smaller one has not yet
    assert points[ranks[-1], steps[-1]][1] > points[ranks[0], steps[-1]][1]


def test_in_the_wild_the_form_holds_and_the_content_falls_short(results):
    """Section 6: on complaints written the way customers write, the tuned model keeps the form
    (greeting, action, timeline as on the held-out set); the rebuilt world (an echo rule, runs of
    words that only copying can echo, familiar phrases with a word changed, the message's first
    word tokenized as in the echo) makes every reply distinct and most name the customer's own
    problem, though fewer than on the held-out set, and about one in ten still names something
    the customer never mentioned."""
    from peftlab import compare

    held, wild = compare.measures(results["rows"]), compare.measures(results["wild_rows"])
    by_criterion = lesson.rubric_by_criterion(results["wild_rows"])["after"]
    assert min(by_criterion[c] for c in ("greeting", "action", "timeline")) >= 0.9
    assert wild["before"] <= 0.30
    assert wild["after"] < held["after"]
    # most replies name the customer's own problem, fewer than on the held-out set; earlier
    # worlds' figures are in docs/embedded-model.md, this one's in the lesson's regions
    assert 0.5 < wild["acknowledges_after"] < held["acknowledges_after"]
    assert wild["distinct_after"] >= 0.9
    assert 0.5 < wild["faithful_after"] < held["faithful_after"]  # some invent, more than held-out
    facts = results["wild"]
    assert facts["complaints"] >= 80
    assert facts["shared_corpus"] == facts["shared_finetune"] == facts["sentences_in_corpus"] == 0
