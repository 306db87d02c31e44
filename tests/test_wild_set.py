"""The "in the wild" set: complaints written the way customers write, kept apart from everything
that built the model, and the measures the demo reports on it (`compare.measures`, `worst`)."""

import inspect
import re

import pytest

from peftlab import base_model, compare, paths, rubric, support_data
from peftlab.commands.demo import read_prompts

WILD = support_data.wild_complaints()


def test_the_file_is_what_the_demo_reads_and_the_package_loads():
    path = paths.course_root() / support_data.WILD_FILE
    assert support_data.wild_path() == path
    assert read_prompts(path) == WILD  # what `peftlab demo --prompts FILE` reads
    assert len(WILD) >= 80
    assert len(set(WILD)) == len(WILD)


def test_it_varies_in_length_register_and_form():
    lengths = [len(c.split()) for c in WILD]
    assert min(lengths) >= 3 and max(lengths) <= 60
    assert sum(n <= 6 for n in lengths) >= 5 and sum(n >= 30 for n in lengths) >= 5
    assert sum("?" in c for c in WILD) >= 10  # questions
    assert sum(len(support_data.sentences(c)) > 1 for c in WILD) >= 20  # several sentences
    assert sum(bool(re.search(r"\d{4,}", c)) for c in WILD) >= 3  # an order number
    assert sum(c[0].islower() for c in WILD) >= 3  # lowercase, as typed on a phone
    assert sum(bool(re.match(r"(hi|hello|hey|dear|good (morning|afternoon))\b", c, re.I))
               for c in WILD) >= 8  # a greeting of its own  # fmt: skip
    assert sum(bool(re.search(r"\b[A-Z]{4,}\b", c)) for c in WILD) >= 2  # shouting


TOPICS = {
    "orders and deliveries": r"deliver|parcel|package|tracking|order",
    "damaged or wrong items": r"broke|cracked|smashed|wrong|missing|damaged|squashed|dead",
    "returns and refunds": r"refund|return",
    "billing and double charges": r"charged|payment|overcharged|bill\b|twice|fee",
    "accounts and passwords": r"account|password|log in|verification",
    "apps and websites": r"\bapp\b|website|page|checkout|portal|chatbot",
    "subscriptions": r"subscri",
    "appointments and technicians": r"appointment|technician|engineer|booked",
    "coupons": r"code|coupon|discount|voucher|gift card|points",
    "invoices": r"invoice",
}


@pytest.mark.parametrize("topic, pattern", TOPICS.items())
def test_it_covers_what_customers_write_about(topic, pattern):
    assert sum(bool(re.search(pattern, c, re.IGNORECASE)) for c in WILD) >= 3, topic


def test_most_of_it_is_outside_the_seed_worlds_word_lists():
    # the products the world knew when the set was written; the world has grown to cover what
    # customers write about since, which is the point of the set
    nouns = set(support_data.FINETUNE_NOUNS + support_data.HELDOUT_NOUNS + support_data.EXTRA_NOUNS)
    with_a_world_product = [c for c in WILD if nouns & set(support_data.words(c))]
    assert len(with_a_world_product) <= 0.1 * len(WILD)


@pytest.fixture(scope="module")
def corpus_texts():
    # the corpus the shipped model read
    build = inspect.signature(base_model.build_embedded).parameters
    corpus = support_data.base_corpus(n_docs=build["n_docs"].default, seed=build["seed"].default)
    return base_model.corpus_texts(corpus)  # as the model read them: chats in the chat template


def test_no_overlap_with_the_base_corpus(corpus_texts):
    assert support_data.shared_runs(WILD, corpus_texts, n=5) == {}
    seen = {s for text in corpus_texts for s in support_data.sentences(text)}
    assert [s for c in WILD for s in support_data.sentences(c) if s in seen] == []


def test_no_overlap_with_the_finetune_set_or_the_heldout_complaints():
    train = support_data.finetune_set()
    texts = [t for ex in train for t in (ex.complaint, ex.reply)]
    assert support_data.shared_runs(WILD, texts, n=5) == {}
    assert support_data.shared_runs(WILD, support_data.heldout_complaints(), n=5) == {}
    assert not set(WILD) & {ex.complaint for ex in train}


def test_the_overlap_check_can_fail(corpus_texts):
    planted = corpus_texts[7].split(".")[0][-80:]  # part of a corpus text, as a "complaint"
    hits = support_data.shared_runs([*WILD[:3], planted], corpus_texts, n=5)
    assert list(hits) == [planted]
    short = "My order is late."  # shorter than a run: the whole complaint counts
    assert support_data.shared_runs([short], ["Sorry, my order is late again."], n=5) == {
        short: {("my", "order", "is", "late")}
    }
    assert support_data.shared_runs(["my order is very late"], ["my order is late"], n=5) == {}
    with pytest.raises(ValueError, match="at least one word"):
        support_data.shared_runs(WILD, corpus_texts, n=0)


def test_words_keep_contractions_and_sentences_split():
    assert support_data.words("I can't log in, order #48213!") == [
        "i", "can't", "log", "in", "order", "48213"
    ]  # fmt: skip
    assert support_data.sentences("Hi. Where is it?!  ") == [("hi",), ("where", "is", "it")]


# --- what the demo reports on a set ---------------------------------------------------------
LATE_REPLY = "Hi! I'm sorry your order is late. I will check it today."
SOFA_REPLY = "Hi! I'm sorry that your blue sofa arrived cracked. I will send a new one today."


def test_measures_counts_each_side():
    complaints = ["My order is late.", "I was charged twice.", "My screen arrived cracked."]
    befores = ["Your order is late because of delays."] * 3
    afters = [LATE_REPLY, LATE_REPLY, SOFA_REPLY]
    m = compare.measures(compare.score_rows(complaints, befores, afters))
    assert m["before"] == 0.0 and m["distinct_before"] == pytest.approx(1 / 3)
    assert m["acknowledges_after"] == pytest.approx(2 / 3)  # "cracked" echoed: the sofa passes
    assert m["faithful_after"] == pytest.approx(1 / 3)  # only the first names nothing unasked
    assert m["distinct_after"] == pytest.approx(2 / 3)
    assert m["faithful_before"] == pytest.approx(1 / 3)  # "late" twice unasked
    assert m["after"] == pytest.approx(
        rubric.mean_score(afters, complaints)
    )  # the rubric's mean, unchanged
    with pytest.raises(ValueError, match="no rows"):
        compare.measures([])


def test_worst_puts_unfaithful_replies_first_then_low_scores():
    complaints = ["My order is late.", "My screen arrived cracked.", "My order is late."]
    rows = compare.score_rows(complaints, ["x"] * 3, [LATE_REPLY, SOFA_REPLY, "Ok."])
    assert [r["after"] for r in compare.worst(rows, 3)] == [SOFA_REPLY, "Ok.", LATE_REPLY]
    assert compare.worst(rows, 1)[0]["after_invented"] == ["blue", "sofa"]
    with pytest.raises(ValueError, match="side"):
        compare.worst(rows, 1, side="during")


def test_the_set_the_rebuild_was_tuned_on_is_another_one():
    """The world's design was chosen on `examples/tuning-complaints.txt` (written separately, in
    the same way), never on the wild set: the two share no run of five words."""
    tuning = read_prompts(paths.course_root() / "examples" / "tuning-complaints.txt")
    assert len(tuning) >= 80
    assert support_data.shared_runs(WILD, tuning, n=5) == {}
