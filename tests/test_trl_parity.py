"""TRL's SFTTrainer and our Trainer set-up see the same tokens and masks and lose the same."""

import pytest
from transformers import TrainerCallback

from peftlab import base_model, chat_records, finetune, own_data, tuning
from peftlab.seed import seed_everything

RECORDS = chat_records.read_jsonl("examples/support.jsonl")[:8]


class _Losses(TrainerCallback):
    def __init__(self):
        self.losses = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append((state.global_step, float(logs["loss"])))


def trl_trainer(tmp_path, steps=3):
    seed_everything(0)  # the same LoRA A initialisation on both sides
    model, tokenizer = base_model.load()
    trainer = own_data.sft_trainer(
        model, tokenizer, RECORDS, output_dir=tmp_path, target_modules="all-linear",
        steps=steps, batch_size=len(RECORDS),
    )  # fmt: skip
    return trainer, tokenizer


def test_trl_tokenizes_and_masks_as_we_do(tmp_path):
    trainer, tokenizer = trl_trainer(tmp_path)
    ours = chat_records.encode(tokenizer, RECORDS, 256)
    rows = list(trainer.train_dataset)
    assert len(rows) == len(ours)
    for row, feature in zip(rows, ours, strict=True):
        assert row["input_ids"] == feature["input_ids"]  # the same chat template, same tokens
        assert row["labels"] == feature["labels"]  # the same -100s: prompt masked, reply kept


def test_trl_rows_put_the_last_reply_in_the_completion():
    chat = chat_records.Record(
        (
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": "d"},
        )
    )
    (row,) = own_data.trl_rows([chat])
    assert [m["content"] for m in row["prompt"]] == ["a", "b", "c"]
    assert row["completion"] == [{"role": "assistant", "content": "d"}]


@pytest.mark.slow
def test_first_steps_lose_the_same(tmp_path):
    trainer, tokenizer = trl_trainer(tmp_path / "trl")
    recorder = _Losses()
    trainer.add_callback(recorder)
    trainer.train()

    seed_everything(0)
    model, tokenizer = base_model.load()
    wrapped = finetune.build_peft_model(model, r=8, alpha=16, target_modules="all-linear")
    features = chat_records.encode(tokenizer, RECORDS, 256)
    ours, _ = finetune.trainer_fit(
        wrapped, features, lambda f: tuning.pad_batch(f, tokenizer.pad_token_id),
        steps=3, batch_size=len(RECORDS), learning_rate=3e-3, seed=0,
    )  # fmt: skip
    assert [s for s, _ in recorder.losses] == [s for s, _ in ours] == [1, 2, 3]
    # step 1 is the same batch through the same initial weights; step 3 follows an update
    for (_, theirs), (_, mine) in zip(recorder.losses, ours, strict=True):
        assert theirs == pytest.approx(mine, rel=1e-4)
    assert ours[2][1] < ours[0][1]
