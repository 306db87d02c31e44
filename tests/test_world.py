"""The world's grammar: what customers write about and how they write it."""

import random

from peftlab import support_data, world
from peftlab.rubric import score_reply


def test_dressed_complaints_vary_in_every_way_the_wild_ones_do():
    rng = random.Random(0)
    texts = [world.dress(world.core(rng).says, rng) for _ in range(2000)]
    assert len(set(texts)) > 1900
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) <= 4 and max(lengths) >= 25
    assert sum(t[0].islower() for t in texts) > 200  # lowercase
    assert sum("?" in t for t in texts) > 200  # questions
    assert sum(any(c.isdigit() for c in t) for t in texts) > 100  # order numbers
    keys = {world.core(rng).issue.key for _ in range(2000)}
    assert keys >= {"login", "charged-twice", "crash", "auto-renewed", "no-show", "code-fails",
                    "invoice", "delivery-late", "refund-missing", "broken", "odd"}  # fmt: skip


def test_made_up_words_are_in_no_list():
    rng = random.Random(1)
    made_up = {world.pseudo_word(rng) for _ in range(500)}
    assert len(made_up) > 300  # a model cannot learn them as a list
    listed = {w for name in world.GOODS + support_data.ALL_NOUNS for w in name.split()}
    assert len(made_up & (listed | set(world.EVERYDAY))) < 5


def test_salads_open_with_any_word_and_score_nothing_on_their_own():
    rng = random.Random(2)
    cores = [world.core(rng) for _ in range(3000)]
    openers = {c.says.split()[0].lower() for c in cores}
    assert len(openers) > 400  # not only "my", "the", "I": any word can open a message
    assert len(set(world.COMMON)) == len(world.COMMON) > 2000
    assert not set(world.COMMON) & set(support_data.HELDOUT_NOUNS)
    for word in world.COMMON:  # an echoed salad never passes for an apology, greeting or time
        assert score_reply(word, "my order is late")["score"] == 0.0, word
        assert score_reply(f"we {word} it", "my order is late")["score"] == 0.0, word


def test_edited_frames_change_a_word_of_the_frame_never_the_subject():
    rng = random.Random(5)
    frames = [f for issue in world.ISSUES for f in issue.frames]
    pairs = [(f, world.edited(f, rng)) for f in frames for _ in range(20)]
    assert sum(new != f for f, new in pairs) > 0.97 * len(pairs)
    for frame, new in pairs:
        assert new.count("{s}") == frame.count("{s}"), new
        assert 0 <= len(new.split()) - len(frame.split()) <= 2, new
    # about EDIT_SHARE of the cores told in an issue's frame are edited ones
    cores = [c for c in (world.core(rng) for _ in range(4000)) if c.issue is not world.ODD]
    told = {f.format(s=c.subject) for c in cores for f in c.issue.frames}
    share = sum(c.says not in told for c in cores) / len(cores)
    assert abs(share - world.EDIT_SHARE) < 0.05, share


def test_data_is_the_same_for_the_same_seed():
    a, b = random.Random(7), random.Random(7)
    assert [world.dress(world.core(a).says, a) for _ in range(50)] == [
        world.dress(world.core(b).says, b) for _ in range(50)
    ]
