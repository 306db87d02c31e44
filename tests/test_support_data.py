"""The support data: enough examples, polite replies, and a held-out set that shares nothing."""

import re

from peftlab import support_data as sd
from peftlab.rubric import score_reply


def test_finetune_set_is_large_and_every_reply_has_all_four_parts():
    examples = sd.finetune_set()
    assert len(examples) >= 300
    assert len({e.complaint for e in examples}) == len(examples)
    for e in examples:
        marks = score_reply(e.reply, e.complaint)
        assert marks["score"] == 1.0, (e.complaint, e.reply, marks)


def test_replies_are_varied():
    replies = [e.reply for e in sd.finetune_set()]
    assert len(set(replies)) == len(replies)
    for part in (slice(0, 2), slice(-3, None)):  # greetings and timelines
        assert len({" ".join(r.split()[part]) for r in replies}) >= 5


def test_heldout_complaints_share_no_product_problem_or_frame_with_finetune():
    finetune = sd.finetune_set()
    heldout = sd.heldout_complaints()
    assert len(heldout) >= 50
    assert not set(heldout) & {e.complaint for e in finetune}
    ft_text = " ".join(e.complaint + " " + e.reply for e in finetune).lower()
    for noun in sd.HELDOUT_NOUNS:
        assert not re.search(rf"\b{noun}\b", ft_text), noun
    for problem in sd.HELDOUT_PROBLEMS:
        for phrase in problem.phrasings:
            assert phrase not in ft_text, phrase
    frames = [re.escape(t).replace(r"\{product\}", ".+").replace(r"\{problem\}", ".+")
              for t in sd.HELDOUT_TEMPLATES]  # fmt: skip
    for e in finetune:
        assert not any(re.fullmatch(f, e.complaint) for f in frames), e.complaint
    assert not set(sd.HELDOUT_NOUNS) & set(sd.FINETUNE_NOUNS)
    assert not {p.key for p in sd.HELDOUT_PROBLEMS} & {p.key for p in sd.FINETUNE_PROBLEMS}


def test_every_heldout_complaint_names_a_heldout_product():
    for complaint in sd.heldout_complaints():
        assert any(re.search(rf"\b{n}\b", complaint) for n in sd.HELDOUT_NOUNS), complaint


def test_data_is_deterministic_and_seed_dependent():
    assert sd.finetune_set(seed=3) == sd.finetune_set(seed=3)
    assert sd.finetune_set(seed=3) != sd.finetune_set(seed=4)
    assert sd.base_corpus(200, seed=1) == sd.base_corpus(200, seed=1)


def test_base_corpus_answers_support_chats_bluntly():
    chats = [d.chat for d in sd.base_corpus(3000) if d.chat]
    assert len(chats) > 500
    assert (sd.LESSON_COMPLAINT, sd.LESSON_BLUNT) in chats
    scores = [score_reply(reply, complaint)["score"] for complaint, reply in chats]
    assert max(scores) == 0.0


def test_base_corpus_knows_polite_language_outside_support_chats():
    texts = [d.text for d in sd.base_corpus(3000) if d.text]
    polite = [t for t in texts if "sorry" in t.lower() and re.search(r"\bI('ll| will)\b", t)]
    assert len(polite) > 300  # about one document in ten
    words = " ".join(texts)
    for noun in sd.HELDOUT_NOUNS + sd.FINETUNE_NOUNS:
        assert noun in words, noun


def test_prompt_uses_the_lessons_wording():
    assert (
        sd.format_prompt(" My order is late. ")
        == "Write a reply to this customer message: My order is late."
    )
    assert sd.chat_messages("x", "y")[1] == {"role": "assistant", "content": "y"}
