"""What lesson 10 concludes from its runs still holds (its prose: tests/test_lesson_prose.py)."""

import pytest

from peftlab.lessons import lesson10_own_data as lesson
from peftlab.tuning import IGNORE_INDEX

pytestmark = pytest.mark.slow  # results() trains three small adapters (then cached)


@pytest.fixture(scope="module")
def results():
    return lesson.results()


def test_the_example_trains_its_reply_and_end_of_turn_only(results):
    trained = [t for t, lab in zip(results["tokens"], results["labels"], strict=True)
               if lab != IGNORE_INDEX]  # fmt: skip
    assert results["eos"] in trained
    assert results["text"].startswith(results["prompt"])
    prompt_tokens = results["labels"].index(next(x for x in results["labels"] if x != -100))
    assert all(lab == IGNORE_INDEX for lab in results["labels"][:prompt_tokens])


def test_without_the_end_of_turn_label_replies_do_not_end_their_turn(results):
    runs = results["runs"]
    masked, default = runs["reply, end-of-turn masked"], runs["reply + end-of-turn (default)"]
    n = results["n_heldout"]
    assert masked["ended"] <= n // 4
    assert default["ended"] >= 3 * n // 4
    assert masked["reply_tokens"] > default["reply_tokens"]  # they run on past the reply


def test_fine_tunes_beat_the_base_model_on_the_rubric_and_val_loss(results):
    runs = results["runs"]
    base = runs["base model, no fine-tune"]
    for name in ("reply + end-of-turn (default)", "every token"):
        assert runs[name]["rubric"] > base["rubric"]
        assert runs[name]["val_loss"] < base["val_loss"]
    # every token: about the default's loss on the replies, passing no more often (lesson, 4)
    default, every = runs["reply + end-of-turn (default)"], runs["every token"]
    assert abs(every["val_loss"] - default["val_loss"]) < 0.05
    assert every["rubric"] <= default["rubric"]


def test_packed_row_keeps_the_padded_loss(results):
    assert results["packed_loss"] == pytest.approx(results["padded_loss"], rel=1e-5)
    assert results["pack_positions"].count(0) == 4
