"""Own data: reading JSONL in both formats, what the chat template makes of it, the masks."""

import json

import pytest

from peftlab import base_model, chat_records, own_data, support_data, tuning


@pytest.fixture(scope="module")
def tokenizer():
    return base_model.load()[1]


def write(tmp_path, *lines, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


PAIR = json.dumps({"prompt": "My order is late.", "completion": "Hi! Sorry, I will check."})
CHAT = json.dumps(
    {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}]}
)


def test_both_formats_read_to_chats(tmp_path):
    path = write(tmp_path, PAIR, "", CHAT)
    pair, chat = chat_records.read_jsonl(path)
    assert pair.messages == (
        {"role": "user", "content": "My order is late."},
        {"role": "assistant", "content": "Hi! Sorry, I will check."},
    )
    assert (pair.line, chat.line) == (1, 3)  # the blank line is skipped, line numbers kept
    assert chat.messages[1] == {"role": "assistant", "content": "Hi!"}


@pytest.mark.parametrize(
    "lines, message",
    [
        ([PAIR, "{not json"], ":2: malformed JSON"),
        ([PAIR, PAIR, json.dumps({"question": "a", "answer": "b"})], ":3: neither format"),
        ([json.dumps([1, 2])], ":1: a list, not a JSON object"),
        (
            [json.dumps({"messages": [{"role": "bot", "content": "x"}]})],
            ":1: unknown role 'bot' in messages[0]",
        ),
        ([PAIR, json.dumps({"prompt": "Help", "completion": "  "})], ":2: empty completion"),
        ([json.dumps({"messages": [{"role": "user", "content": "x"}]})], ":1: empty completion"),
        (["", "  "], ":1: the file is empty"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path, lines, message):
    path = write(tmp_path, *lines)
    with pytest.raises(ValueError) as info:
        chat_records.read_jsonl(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_shipped_examples_are_twenty_valid_records():
    for name in ("support.jsonl", "support-chat.jsonl"):
        records = chat_records.read_jsonl(f"examples/{name}")
        assert len(records) == 20


def test_a_pair_tokenizes_as_the_demo_does(tokenizer):
    example = support_data.finetune_set(seed=0)[0]
    record = chat_records.from_pair(support_data.format_prompt(example.complaint), example.reply)
    assert chat_records.tokenize_messages(tokenizer, record.messages) == tuning.tokenize_example(
        tokenizer, example
    )


def test_labels_keep_the_reply_and_its_end_of_turn_only(tokenizer):
    record = chat_records.from_pair("Where is my kettle?", "Hi! It ships today.")
    f = chat_records.tokenize_messages(tokenizer, record.messages)
    trained = [t for t, label in zip(f["input_ids"], f["labels"], strict=True) if label != -100]
    assert tokenizer.decode(trained) == "Hi! It ships today.<|im_end|>\n"
    prompt = tokenizer.apply_chat_template(
        [record.messages[0]], tokenize=False, add_generation_prompt=True
    )
    assert tokenizer.decode(f["input_ids"][: f["labels"].index(trained[0])]) == prompt


def test_without_eos_the_end_of_turn_is_masked(tokenizer):
    record = chat_records.from_pair("Where is my kettle?", "Hi! It ships today.")
    with_eos = chat_records.tokenize_messages(tokenizer, record.messages)
    without = chat_records.tokenize_messages(tokenizer, record.messages, eos=False)
    assert without["input_ids"] == with_eos["input_ids"]
    eos = tokenizer.eos_token_id
    assert eos in with_eos["labels"] and eos not in without["labels"]


def test_training_on_all_tokens_labels_everything(tokenizer):
    record = chat_records.from_pair("Where is my kettle?", "Hi! It ships today.")
    f = chat_records.tokenize_messages(tokenizer, record.messages, train_on="all")
    assert f["labels"] == f["input_ids"]
    with pytest.raises(ValueError, match="train_on"):
        chat_records.tokenize_messages(tokenizer, record.messages, train_on="prompt")


def test_every_assistant_turn_of_a_chat_is_trained(tokenizer):
    messages = [
        {"role": "user", "content": "My order is late."},
        {"role": "assistant", "content": "Sorry! Which order?"},
        {"role": "user", "content": "Number 12."},
        {"role": "assistant", "content": "It ships today."},
    ]
    f = chat_records.tokenize_messages(tokenizer, messages)
    assert tokenizer.decode(f["input_ids"]) == tokenizer.apply_chat_template(
        messages, tokenize=False
    )
    pairs = zip(f["input_ids"], f["labels"], strict=True)
    trained = tokenizer.decode([t for t, label in pairs if label != -100])
    assert trained == "Sorry! Which order?<|im_end|>\nIt ships today.<|im_end|>\n"


def test_long_examples_are_cut_with_one_warning(tokenizer):
    short = chat_records.from_pair("Hi", "Hello!")
    long = chat_records.from_pair("late " * 300, "Sorry!")
    with pytest.warns(UserWarning, match="2 of 3 examples are longer") as record:
        features = chat_records.encode(tokenizer, [long, short, long], 256)
    assert len(record) == 1
    assert [len(f["input_ids"]) for f in features][::2] == [256, 256]
    assert all(len(f["labels"]) == len(f["input_ids"]) for f in features)


def test_split_holds_out_a_seeded_share():
    records = [chat_records.from_pair(f"p{i}", f"c{i}", i) for i in range(20)]
    train, val = tuning.hold_out_fraction(records, 0.2, seed=0)
    assert (len(train), len(val)) == (16, 4)
    assert sorted(r.line for r in train + val) == list(range(20))
    assert tuning.hold_out_fraction(records, 0.2, seed=0) == (train, val)
    assert tuning.hold_out_fraction(records, None) == (records, [])
    for bad in (0, -0.1, 0.6):
        with pytest.raises(ValueError, match=r"\(0, 0.5\]"):
            tuning.hold_out_fraction(records, bad)
    with pytest.raises(ValueError, match="none to train on"):
        tuning.hold_out_fraction(records[:1], 0.5)


def test_many_steps_over_a_tiny_file_warn():
    config = own_data.TrainConfig(data="d.jsonl", model=None, steps=100)
    with pytest.warns(UserWarning, match="100 steps over 3 training record"):
        assert own_data.plan_steps(config, 3) == 100
    config = own_data.TrainConfig(data="d.jsonl", model=None, epochs=2, batch_size=8)
    assert own_data.plan_steps(config, 20) == 6  # 3 batches of at most 8 per pass


def test_bad_settings_are_refused():
    ok = dict(data="d.jsonl", model=None)
    for bad, match in [
        (dict(method="dora"), "--method dora"),
        (dict(r=0), "--r 0"),
        (dict(steps=5, epochs=1), "not both"),
        (dict(steps=0), "--steps 0"),
        (dict(learning_rate=0), "--lr 0"),
        (dict(val_fraction=0.7), "--val-fraction 0.7"),
    ]:
        with pytest.raises(ValueError, match=match):
            own_data.check_config(own_data.TrainConfig(**ok, **bad))
