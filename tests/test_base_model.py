"""The embedded base model: plain Hugging Face files, a real (tiny) Llama, fluent and blunt."""

import re
from collections import Counter

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from peftlab import base_model, support_data
from peftlab.generate import generate
from peftlab.rubric import mean_score

PATH = base_model.EMBEDDED_PATH
PROMPTS = support_data.heldout_complaints()[:19] + [support_data.LESSON_COMPLAINT]


@pytest.fixture(scope="module")
def plain():
    """Loaded the way any learner loads a model: no peftlab code involved."""
    return AutoModelForCausalLM.from_pretrained(PATH), AutoTokenizer.from_pretrained(PATH)


@pytest.fixture(scope="module")
def replies(plain):
    model, tokenizer = plain
    tokenizer.padding_side = "left"
    return generate(model, tokenizer, PROMPTS)


def test_files_are_hugging_face_format_and_small():
    names = {p.name for p in PATH.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert sum(p.stat().st_size for p in PATH.iterdir()) <= 15 * 2**20


def test_it_is_a_small_llama(plain):
    model, _ = plain
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.model_type == "llama"
    assert 1_000_000 < model.num_parameters() < 10_000_000


def test_chat_template_renders_chatml(plain):
    _, tokenizer = plain
    text = tokenizer.apply_chat_template(
        support_data.chat_messages("My order is late."), tokenize=False, add_generation_prompt=True
    )
    assert text == (
        "<|im_start|>user\nWrite a reply to this customer message: My order is late.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer.apply_chat_template(support_data.chat_messages("x"), tokenize=True)["input_ids"]
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") in ids


def test_greedy_replies_end_with_eos_within_the_limit(plain):
    model, tokenizer = plain
    batch = tokenizer.apply_chat_template(
        [support_data.chat_messages(p) for p in PROMPTS], add_generation_prompt=True,
        padding=True, return_tensors="pt", return_dict=True,
    )  # fmt: skip
    out = model.generate(**batch, max_new_tokens=64, do_sample=False)
    new = out[:, batch["input_ids"].shape[1] :]
    for row in new:
        assert (row == tokenizer.eos_token_id).any(), tokenizer.decode(row)


def test_greedy_replies_are_fluent(replies):
    vocabulary = set(re.findall(r"[a-z']+", " ".join(
        (d.text or " ".join(d.chat)) for d in support_data.base_corpus(3000)
    ).lower()))  # fmt: skip
    for reply in replies:
        words = re.findall(r"[a-z']+", reply.lower())
        assert 3 <= len(words) <= 60, reply
        trigrams = Counter(zip(words, words[1:], words[2:], strict=False))
        assert max(trigrams.values()) <= 2, f"repetition loop: {reply}"
        known = sum(w in vocabulary for w in words) / len(words)
        assert known >= 0.9, f"not words of its world: {reply}"


def test_base_model_answers_bluntly(replies):
    assert mean_score(replies, PROMPTS) <= 0.30, list(zip(PROMPTS, replies, strict=True))


@pytest.mark.pins
def test_heldout_perplexity_is_low(plain):
    model, tokenizer = plain
    texts = base_model.corpus_texts(support_data.base_corpus(400, seed=123))
    blocks = base_model._blocks(tokenizer, texts, 128)
    assert base_model.perplexity(model, blocks) < 8.0


def _tiny_build(out, seed):
    return base_model.build_embedded(
        out, seed=seed, steps=3, n_docs=300, vocab_size=320, hidden=64, layers=1, seq_len=32,
        batch_size=4, log=lambda _: None,
    )  # fmt: skip


@pytest.mark.pins
def test_build_is_reproducible(tmp_path):
    threads = torch.get_num_threads()
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        _tiny_build(tmp_path / name, seed)
    assert torch.get_num_threads() == threads  # the build's two threads end with it
    read = lambda name, f: (tmp_path / name / f).read_bytes()  # noqa: E731
    assert read("a", "model.safetensors") == read("b", "model.safetensors")
    assert read("a", "tokenizer.json") == read("b", "tokenizer.json")
    assert read("a", "model.safetensors") != read("c", "model.safetensors")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    assert torch.isfinite(next(model.parameters())).all()


@pytest.mark.pins
def test_the_recipe_gives_the_shipped_tokenizer_and_config_on_any_cpu(tmp_path):
    """What `make base-model` reproduces everywhere: the corpus, the tokenizer and the config
    involve no floating point. (The weights match only on the same kind of CPU: see build.)"""
    train, held_out, tokenizer = base_model.corpus_and_tokenizer()
    config = base_model.model_config(tokenizer)
    base_model.save_tokenizer(tokenizer, config, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (tmp_path / name).read_bytes() == (PATH / name).read_bytes(), name
    saved_by_the_model = {"architectures": ["LlamaForCausalLM"], "dtype": "float32"}
    shipped = AutoConfig.from_pretrained(PATH).to_dict() | {"_name_or_path": ""}
    assert config.to_dict() | saved_by_the_model == shipped
    assert len(tokenizer) == shipped["vocab_size"] == 2048  # the tokenizer's cap, reached
    assert len(train) + len(held_out) == 150_000 and len(held_out) == 3_000


def test_missing_model_offline_names_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="PEFT_LAB_MODEL.*HF_HUB_OFFLINE|HF_HUB_OFFLINE.*PEFT_LAB"):
        base_model.load("no-such-org/no-such-model")


def test_env_var_names_the_model(monkeypatch):
    monkeypatch.setenv("PEFT_LAB_MODEL", "/some/folder")
    assert base_model.resolve() == "/some/folder"
    assert base_model.resolve("other") == "other"
    monkeypatch.delenv("PEFT_LAB_MODEL")
    assert base_model.resolve() == str(PATH)


def test_memory_preset_counts_the_shipped_model(plain):
    from peftlab import memory

    model, _ = plain
    assert memory.count_params("peftlab-base") == model.num_parameters()
    assert (
        memory.lora_params("peftlab-base", 8, "all-linear")
        == 116_736
        == 4 * 8 * (4 * (192 + 192) + 2 * (192 + 512) + (512 + 192))
    )
