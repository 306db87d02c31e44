"""Lesson 10, fine-tuning on your own data (notebook 10, lessons/10-your-own-data.md).

What the model is trained on: one record of examples/support.jsonl through the chat template,
its tokens and labels; then three small runs on that file (`own_data.train_adapter`) that differ
only in the labels: the reply and its end-of-turn token (the default), the reply without the
end-of-turn token, and every token. Runs are cached (`lessons.cache`); the rest is computed at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from peftlab import base_model, chat_records, own_data, packing, paths, support_data, tuning
from peftlab.generate import context_length
from peftlab.lessons.cache import cached
from peftlab.rubric import mean_score
from peftlab.seed import one_thread, seed_everything
from peftlab.tables import markdown_table
from peftlab.tuning import IGNORE_INDEX

LESSON = "10-your-own-data.md"
NOTEBOOK = "10_your_own_data.ipynb"
TRAINS = True
# Losses and replies are computed on one thread; on another CPU's kernels a loss may move in its
# third decimal and a greedy reply may change (one of N_HELDOUT in a score or a count).
N_HELDOUT = 20
ONE_REPLY = 1 / N_HELDOUT + 0.01
TOLERANCE = {
    "runs": {"val loss": 0.01, "rubric": ONE_REPLY, "reply tokens": 3.0, "ended": 1.0},
}
DATA = "examples/support.jsonl"
STEPS = 40
VAL_FRACTION = 0.2
MAX_NEW_TOKENS = 64
RUNS = {  # name: (train_on, eos)
    "reply + end-of-turn (default)": ("reply", True),
    "reply, end-of-turn masked": ("reply", False),
    "every token": ("all", True),
}


def results(steps: int = STEPS, n_heldout: int = N_HELDOUT) -> dict:
    """Everything the lesson shows: the example's text, tokens and labels, the packed row, and
    the three runs (cached)."""
    model, tokenizer = base_model.load()
    recs = records()
    record = recs[0]
    feature = chat_records.tokenize_messages(tokenizer, record.messages)
    features = chat_records.encode(tokenizer, recs, context_length(model))
    padded, packed = packing.padded_and_packed_loss(model, features[:4], tokenizer.pad_token_id)
    return {
        "n_records": len(recs),
        "text": tokenizer.apply_chat_template(list(record.messages), tokenize=False),
        "prompt": tokenizer.apply_chat_template(
            list(record.messages[:1]), tokenize=False, add_generation_prompt=True
        ),
        "tokens": [tokenizer.convert_ids_to_tokens(i) for i in feature["input_ids"]],
        "input_ids": feature["input_ids"],
        "labels": feature["labels"],
        "eos": tokenizer.eos_token,
        "pack_lengths": [len(f["input_ids"]) for f in features[:4]],
        "pack_positions": packing.packed_batch(features[:4])["position_ids"][0].tolist(),
        "padded_loss": padded,
        "packed_loss": packed,
        "runs": cached("lesson10-runs", _runs, steps=steps, n_heldout=n_heldout),
        "steps": steps,
        "n_heldout": n_heldout,
    }


def quotes(results: dict) -> dict[str, str]:
    trained = sum(label != IGNORE_INDEX for label in results["labels"])
    runs = results["runs"]
    masked = runs["reply, end-of-turn masked"]
    default = runs["reply + end-of-turn (default)"]
    return {
        "n records": str(results["n_records"]),
        "token counts": f"{len(results['labels'])} tokens, {trained} of them trained",
        "runs": runs_table(results),
        "steps": str(results["steps"]),
        "n heldout": str(results["n_heldout"]),
        "no eos ended": f"{masked['ended']} of {results['n_heldout']}",
        "default ended": f"{default['ended']} of {results['n_heldout']}",
        "pack lengths": " + ".join(map(str, results["pack_lengths"]))
        + f" = {sum(results['pack_lengths'])}",
        "pack loss": f"{results['padded_loss']:.4f} padded, {results['packed_loss']:.4f} packed",
    }


def data_path() -> Path:
    return paths.course_root() / DATA


def records() -> list[chat_records.Record]:
    return chat_records.read_jsonl(data_path())


def _runs(steps: int, n_heldout: int) -> dict:
    recs = records()
    complaints = support_data.heldout_complaints(n_heldout)
    _, val_records = tuning.hold_out_fraction(recs, VAL_FRACTION, seed=0)
    rows = {}
    with one_thread():
        seed_everything(0)
        model, tokenizer = base_model.load()
        val = chat_records.encode(tokenizer, val_records, context_length(model))
        gen = own_data.reply_lengths(model, tokenizer, complaints, MAX_NEW_TOKENS)
        rows["base model, no fine-tune"] = _row(model, tokenizer, val, gen, complaints)
        for name, (train_on, eos) in RUNS.items():
            config = own_data.TrainConfig(
                data=DATA, model=None, steps=steps, val_fraction=VAL_FRACTION,
                train_on=train_on, eos=eos,
            )  # fmt: skip
            run = own_data.train_adapter(recs, config)
            gen = own_data.reply_lengths(run.model, tokenizer, complaints, MAX_NEW_TOKENS)
            rows[name] = _row(run.model, tokenizer, val, gen, complaints)
    return rows


def _row(model, tokenizer, val, gen, complaints) -> dict:
    return {
        "val_loss": tuning.mean_loss(model, val, tokenizer.pad_token_id, batch_size=16),
        "rubric": mean_score([g["reply"] for g in gen], complaints),
        "reply_tokens": sum(g["tokens"] for g in gen) / len(gen),
        "ended": sum(g["ended"] for g in gen),
        "example": gen[0]["reply"],
    }


def token_table(results: dict) -> str:
    """Each token of the example, its id and its label (-100: not trained)."""
    rows = []
    for token, i, label in zip(results["tokens"], results["input_ids"], results["labels"],
                               strict=True):  # fmt: skip
        shown = token.replace("\n", "\\n").replace("|", "\\|").replace("Ġ", "·")
        rows.append([f"`{shown}`", i, label, "" if label == IGNORE_INDEX else "trained"])
    return markdown_table(["token", "id", "label", ""], rows, ["---", "---:", "---:", "---"])


def packing_figure(results: dict) -> Figure:
    """Which token may attend to which in the packed row: causal within each example (the
    blocks), nothing across examples, read from where `position_ids` restart at 0."""
    segment = np.cumsum(np.asarray(results["pack_positions"]) == 0)
    n = len(segment)
    allowed = (segment[:, None] == segment[None, :]) & np.tri(n, dtype=bool)
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.add_subplot()
    ax.imshow(allowed, cmap="Blues", interpolation="nearest")
    ax.set_xlabel("key token (attended to)")
    ax.set_ylabel("query token")
    ax.set_title(f"{segment[-1]} examples packed in one row of {n} tokens", fontsize=10)
    fig.tight_layout()
    return fig


def runs_table(results: dict) -> str:
    n = results["n_heldout"]
    rows = [
        [name, f"{r['val_loss']:.3f}", f"{r['rubric']:.2f}", f"{r['reply_tokens']:.1f}",
         f"{r['ended']} of {n}"]
        for name, r in results["runs"].items()
    ]  # fmt: skip
    return markdown_table(
        ["labels", "val loss", "rubric", "reply tokens", "ended"],
        rows,
        ["---", "---:", "---:", "---:", "---:"],
    )
