"""Fine-tuning on your own data: JSONL in TRL's two formats, what the model sees, and training.

A data file has one JSON object per line, in either of the formats TRL and most tools read:

    {"prompt": "My order is late.", "completion": "Hi! Sorry about that..."}
    {"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}

Each record becomes a chat, the tokenizer's chat template turns it into text, and the labels
keep only the assistant's tokens (the reply and its end-of-turn token); everything else is
masked to -100, which the loss skips. `read_jsonl` checks a file line by line and names the line
of the first problem; `train` fine-tunes an adapter with peft and transformers' `Trainer`
(`finetune.build_peft_model`, the same recipe as the demo) and writes it, with its config and
metrics, in one atomic step.
"""

import json
import math
import os
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from peftlab.atomic import atomic_dir
from peftlab.finetune import (
    IGNORE_INDEX,
    TRAIN_METHODS,
    build_peft_model,
    pad_batch,
    trainer_settings,
)

ROLES = ("system", "user", "assistant")
CONFIG_FILE = "train_config.json"  # beside the adapter: how it was trained
METRICS_FILE = "metrics.json"  # beside the adapter: losses and timings
TRAIN_ON = ("reply", "all")
MAX_EPOCHS_BEFORE_WARNING = 50  # more passes than this over a small file memorises it


@dataclass(frozen=True)
class Record:
    """One training chat and the line of the file it came from."""

    messages: tuple[dict[str, str], ...]
    line: int = 0


def from_pair(prompt: str, completion: str, line: int = 0) -> Record:
    """A prompt/completion pair as a two-turn chat: the user's prompt, the assistant's reply."""
    return Record(
        ({"role": "user", "content": prompt}, {"role": "assistant", "content": completion}), line
    )


def _record(obj, where: str, line: int) -> Record:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: a {type(obj).__name__}, not a JSON object; {_FORMATS}")
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError(f'{where}: "messages" must be a non-empty list of {{role, content}}')
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                raise ValueError(f'{where}: messages[{i}] needs a "role" and a string "content"')
            if m.get("role") not in ROLES:
                raise ValueError(
                    f"{where}: unknown role {m.get('role')!r} in messages[{i}]; "
                    f"use one of {', '.join(ROLES)}"
                )
        replies = [m for m in messages if m["role"] == "assistant"]
        if not replies or not all(m["content"].strip() for m in replies):
            raise ValueError(
                f"{where}: empty completion: every record needs a non-empty assistant message "
                "(the reply the model learns)"
            )
        turns = tuple({"role": m["role"], "content": m["content"]} for m in messages)
        return Record(turns, line)
    if "prompt" in obj and "completion" in obj:
        prompt, completion = obj["prompt"], obj["completion"]
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise ValueError(f'{where}: "prompt" and "completion" must be strings')
        if not prompt.strip():
            raise ValueError(f"{where}: empty prompt; give the text the model answers")
        if not completion.strip():
            raise ValueError(f"{where}: empty completion; give the reply the model should learn")
        return from_pair(prompt, completion, line)
    raise ValueError(f"{where}: neither format (keys {sorted(obj)}); {_FORMATS}")


_FORMATS = (
    'write {"prompt": ..., "completion": ...} or {"messages": [{"role": ..., "content": ...}]}'
)


def read_jsonl(path: str | os.PathLike) -> list[Record]:
    """The records of a JSONL file; blank lines are skipped. A bad line raises ValueError
    naming the file and the line (malformed JSON, neither format, unknown role, empty reply)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file; give a JSONL file, one JSON object per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{where}: malformed JSON ({exc.msg} at column {exc.colno}); "
                "each line must be one JSON object"
            ) from exc
        records.append(_record(obj, where, number))
    if not records:
        raise ValueError(f"{path}:1: the file is empty; {_FORMATS}, one per line")
    return records


def tokenize_messages(
    tokenizer,
    messages: Sequence[dict[str, str]],
    *,
    train_on: str = "reply",
    eos: bool = True,
) -> dict[str, list[int]]:
    """Token ids of the chat as the chat template writes it, and labels.

    `train_on="reply"`: only the assistant turns are trained (their text and the template's
    end-of-turn after it); everything else is IGNORE_INDEX. `train_on="all"`: every token.
    `eos=False` masks the end-of-turn after each reply too: the mistake that leaves a model
    which never learns to stop. The text is cut where each turn starts, and each piece is
    tokenized on its own, so a label lines up with exactly the token it belongs to.
    """
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on={train_on!r}: choose one of {', '.join(TRAIN_ON)}")
    messages = list(messages)
    pieces: list[tuple[str, bool]] = []  # (text, trained)
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(
            messages[:i], tokenize=False, add_generation_prompt=True
        )
        after = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not before.startswith(done) or not after.startswith(before):
            raise ValueError("the chat template does not render each turn as a prefix of the next")
        pieces.append((before[len(done) :], False))
        reply = after[len(before) :]
        content = message["content"]
        if not eos and reply.startswith(content):
            pieces += [(content, True), (reply[len(content) :], False)]
        else:
            pieces.append((reply, True))
        done = after
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(done):
        raise ValueError("the chat template does not render each turn as a prefix of the next")
    pieces.append((full[len(done) :], False))
    input_ids: list[int] = []
    labels: list[int] = []
    for text, trained in pieces:
        if not text:
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids += ids
        labels += ids if (trained or train_on == "all") else [IGNORE_INDEX] * len(ids)
    return {"input_ids": input_ids, "labels": labels}


def context_length(model) -> int:
    """The longest sequence the model takes (its position embeddings)."""
    return int(getattr(model.config, "max_position_embeddings", 2048) or 2048)


def encode(
    tokenizer,
    records: Sequence[Record],
    max_length: int,
    *,
    train_on: str = "reply",
    eos: bool = True,
    what: str = "examples",
) -> list[dict[str, list[int]]]:
    """Every record tokenized (`tokenize_messages`); those longer than `max_length` tokens are
    cut to it, with one warning that counts them."""
    features = [
        tokenize_messages(tokenizer, r.messages, train_on=train_on, eos=eos) for r in records
    ]
    long = [f for f in features if len(f["input_ids"]) > max_length]
    if long:
        warnings.warn(
            f"{len(long)} of {len(features)} {what} are longer than the model's context "
            f"({max_length} tokens) and were truncated to it",
            stacklevel=2,
        )
    return [{k: v[:max_length] for k, v in f.items()} for f in features]


def split(
    records: Sequence[Record], val_fraction: float | None, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """(train, validation): a seeded shuffle, then `val_fraction` of the records held out."""
    records = list(records)
    if val_fraction is None:
        return records, []
    if not 0 < val_fraction <= 0.5:
        raise ValueError(
            f"--val-fraction {val_fraction}: must be in (0, 0.5], e.g. 0.1 holds out a tenth"
        )
    n_val = max(1, round(len(records) * val_fraction))
    if n_val >= len(records):
        raise ValueError(
            f"--val-fraction {val_fraction}: {len(records)} record(s) leave none to train on; "
            "add records or drop --val-fraction"
        )
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    val = sorted(order[:n_val])
    train = sorted(order[n_val:])
    return [records[i] for i in train], [records[i] for i in val]


@torch.no_grad()
def mean_loss(model, features: Sequence[dict[str, list[int]]], pad_token_id: int,
              batch_size: int = 16) -> float:  # fmt: skip
    """Cross-entropy per trained token over `features` (every token weighs the same)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(features), batch_size):
        batch = pad_batch(list(features[i : i + batch_size]), pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().flatten(0, 1), labels.flatten(),
            ignore_index=IGNORE_INDEX, reduction="sum",
        )  # fmt: skip
        total += float(losses)
        count += int((labels != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / max(count, 1)


@dataclass
class TrainConfig:
    """What `peftlab train` was asked for; written beside the adapter as train_config.json."""

    data: str
    model: str
    method: str = "lora"
    r: int = 8
    alpha: int = 16
    target_modules: str | list[str] | None = None
    steps: int | None = None
    epochs: float | None = None
    learning_rate: float = 3e-3
    batch_size: int = 16
    val_fraction: float | None = None
    seed: int = 0
    train_on: str = "reply"
    eos: bool = True  # False masks the end-of-turn token out of the labels (lesson 10's mistake)
    packing: bool = False


@dataclass
class TrainRun:
    """A finished `train`: the adapted model, where its adapter went, and its numbers."""

    model: object
    tokenizer: object
    out: Path | None
    config: TrainConfig
    metrics: dict = field(default_factory=dict)


def check_config(config: TrainConfig) -> None:
    """Bad settings raise ValueError before anything is loaded or written."""
    if config.method not in TRAIN_METHODS:
        raise ValueError(f"--method {config.method}: choose one of {', '.join(TRAIN_METHODS)}")
    if config.r <= 0:
        raise ValueError(f"--r {config.r}: the LoRA rank must be a positive integer")
    if config.alpha <= 0:
        raise ValueError(f"--alpha {config.alpha}: lora_alpha must be positive")
    if config.steps is not None and config.epochs is not None:
        raise ValueError("give --steps or --epochs, not both")
    if config.steps is not None and config.steps <= 0:
        raise ValueError(f"--steps {config.steps}: the number of training steps must be positive")
    if config.epochs is not None and not config.epochs > 0:
        raise ValueError(f"--epochs {config.epochs}: must be positive")
    if not config.learning_rate > 0:
        raise ValueError(f"--lr {config.learning_rate}: the learning rate must be positive")
    if config.batch_size <= 0:
        raise ValueError(f"batch_size={config.batch_size}: must be a positive integer")
    if config.val_fraction is not None and not 0 < config.val_fraction <= 0.5:
        raise ValueError(
            f"--val-fraction {config.val_fraction}: must be in (0, 0.5], e.g. 0.1 holds out a tenth"
        )
    if config.train_on not in TRAIN_ON:
        raise ValueError(f"train_on={config.train_on!r}: choose one of {', '.join(TRAIN_ON)}")


DEFAULT_STEPS = 40


def plan_steps(config: TrainConfig, n_train: int) -> int:
    """Optimizer steps for the run: --steps, else --epochs over the data, else DEFAULT_STEPS.
    Many more passes than MAX_EPOCHS_BEFORE_WARNING over the records warns: it memorises them."""
    batch = min(config.batch_size, n_train)
    per_epoch = math.ceil(n_train / batch)
    if config.epochs is not None:
        steps = max(1, math.ceil(config.epochs * per_epoch))
    else:
        steps = config.steps or DEFAULT_STEPS
    passes = steps * batch / n_train
    if passes > MAX_EPOCHS_BEFORE_WARNING:
        warnings.warn(
            f"{steps} steps over {n_train} training record(s) is {passes:.0f} passes over the "
            f"data; the adapter will memorise them (use fewer --steps or more records)",
            stacklevel=2,
        )
    return steps


def _trainer_callbacks(progress: bool, on_loss):
    from transformers import TrainerCallback
    from transformers.trainer_callback import ProgressCallback

    class Losses(TrainerCallback):
        def __init__(self):
            self.losses: list[tuple[int, float]] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append((state.global_step, float(logs["loss"])))
                if on_loss:
                    on_loss(state.global_step, float(logs["loss"]))

    class Bar(ProgressCallback):  # the progress bar with the loss beside it, no log dicts
        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{float(logs['loss']):.3f}")

    return Losses(), (Bar() if progress else None)


def fit(
    model,
    tokenizer,
    train_features: Sequence[dict[str, list[int]]],
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    packing: bool = False,
    progress: bool = False,
    on_loss: Callable[[int, float], None] | None = None,
) -> tuple[list[tuple[int, float]], float]:
    """Train a peft model with transformers' Trainer on tokenized features, the demo's
    schedule (cosine, 10% warm-up). `packing=True` puts each batch in one row with
    `DataCollatorWithFlattening` (no padding; `position_ids` restart at every example, which
    keeps examples from attending to each other). Returns (logged losses, seconds)."""
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from peftlab.packing import flattening_collator

    recorder, bar = _trainer_callbacks(progress, on_loss)
    scratch = tempfile.mkdtemp(prefix="peftlab-trainer-")
    try:
        args = TrainingArguments(
            output_dir=scratch,
            **trainer_settings(steps, batch_size, learning_rate, seed, progress),
            remove_unused_columns=False,
        )
        collate = (
            flattening_collator()
            if packing
            else (lambda feats: pad_batch(feats, tokenizer.pad_token_id))
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=list(train_features),
            data_collator=collate, callbacks=[recorder],
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        if bar is not None:
            trainer.add_callback(bar)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    model.eval()
    return recorder.losses, seconds


def train(
    records: Sequence[Record],
    config: TrainConfig,
    *,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    on_loss: Callable[[int, float], None] | None = None,
) -> TrainRun:
    """Fine-tune a LoRA (or QLoRA) adapter on `records` and, when `out` is given, write it there
    atomically with train_config.json and metrics.json beside it."""
    from peftlab import base_model
    from peftlab.compare import demo_targets
    from peftlab.seed import seed_everything

    check_config(config)
    if not records:
        raise ValueError("no records to train on")
    train_records, val_records = split(records, config.val_fraction, config.seed)
    steps = plan_steps(config, len(train_records))
    batch_size = min(config.batch_size, len(train_records))
    seed_everything(config.seed)
    quant = base_model.nf4_config() if config.method == "qlora" else None
    model, tokenizer = base_model.load(config.model, quantization_config=quant)
    if config.method == "qlora":
        model.train()  # bitsandbytes' CPU repacking on eval forwards; see compare.before_after
    max_length = context_length(model)
    train_features = encode(
        tokenizer, train_records, max_length, train_on=config.train_on, eos=config.eos
    )
    val_features = encode(tokenizer, val_records, max_length, what="validation examples")
    targets = config.target_modules
    if targets is None:
        targets = demo_targets(config.model, config.method)
    wrapped = build_peft_model(
        model, method=config.method, r=config.r, alpha=config.alpha, target_modules=targets
    )
    trainable, total = wrapped.get_nb_trainable_parameters()
    metrics: dict = {"train_records": len(train_records), "val_records": len(val_records),
                     "steps": steps, "batch_size": batch_size}  # fmt: skip
    if val_features:
        metrics["val_loss_before"] = mean_loss(wrapped, val_features, tokenizer.pad_token_id)
    losses, seconds = fit(
        wrapped, tokenizer, train_features, steps=steps, batch_size=batch_size,
        learning_rate=config.learning_rate, seed=config.seed, packing=config.packing,
        progress=progress, on_loss=on_loss,
    )  # fmt: skip
    if val_features:
        metrics["val_loss"] = mean_loss(wrapped, val_features, tokenizer.pad_token_id)
    metrics.update(
        trainable_params=trainable, total_params=total, train_seconds=round(seconds, 2),
        final_train_loss=losses[-1][1] if losses else None, losses=losses,
    )  # fmt: skip
    saved = dict(
        asdict(config), model=base_model.canonical_name(config.model), target_modules=targets
    )
    out_path = None
    if out is not None:
        out_path = Path(out)
        with atomic_dir(out_path) as tmp:
            wrapped.save_pretrained(tmp)
            (tmp / CONFIG_FILE).write_text(json.dumps(saved, indent=2) + "\n")
            (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return TrainRun(wrapped, tokenizer, out_path, TrainConfig(**saved), metrics)


def read_run(adapter_dir: str | os.PathLike) -> tuple[dict, dict]:
    """(train_config, metrics) written beside an adapter by `train`; empty dicts for an
    adapter trained elsewhere."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ValueError(
            f"--adapter {adapter_dir}: no adapter_config.json there; give the folder "
            "`peftlab train` wrote (its --out)"
        )

    def load(name: str) -> dict:
        path = adapter_dir / name
        return json.loads(path.read_text()) if path.is_file() else {}

    return load(CONFIG_FILE), load(METRICS_FILE)


def compare_adapter(
    adapter_dir: str | os.PathLike,
    complaints: Sequence[str] | None = None,
    *,
    model_name: str | None = None,
):
    """The demo's before/after table for an adapter already trained: the base model's replies,
    then the same model with the adapter loaded by peft, both scored with the rubric."""
    from peftlab import adapters, base_model
    from peftlab.compare import Comparison, default_complaints, score_rows
    from peftlab.generate import generate
    from peftlab.rubric import mean_score

    config, metrics = read_run(adapter_dir)
    model_name = model_name or config.get("model")
    method = config.get("method", "lora")
    complaints = list(complaints) if complaints is not None else default_complaints()
    quant = base_model.nf4_config() if method == "qlora" else None
    model, tokenizer = base_model.load(model_name, quantization_config=quant)
    if method == "qlora":
        model.train()
    befores = generate(model, tokenizer, complaints)
    tuned = adapters.load(model, adapter_dir)
    afters = generate(tuned, tokenizer, complaints)
    trainable, total = tuned.get_nb_trainable_parameters()
    return Comparison(
        model=base_model.canonical_name(model_name), method=method,
        trainable_params=metrics.get("trainable_params", trainable),
        total_params=metrics.get("total_params", total),
        train_seconds=metrics.get("train_seconds", 0.0),
        examples=score_rows(complaints, befores, afters),
        summary={"before": mean_score(befores, complaints),
                 "after": mean_score(afters, complaints)},
    )  # fmt: skip


def trl_rows(records: Sequence[Record]) -> list[dict]:
    """Records as TRL's conversational prompt/completion rows: the chat up to the last reply is
    the prompt, the last assistant message the completion (earlier replies are context only)."""
    rows = []
    for record in records:
        last = max(i for i, m in enumerate(record.messages) if m["role"] == "assistant")
        rows.append(
            {
                "prompt": [dict(m) for m in record.messages[:last]],
                "completion": [dict(record.messages[last])],
            }
        )
    return rows


def sft_trainer(
    model,
    tokenizer,
    records: Sequence[Record],
    *,
    output_dir: str | os.PathLike,
    r: int = 8,
    alpha: int = 16,
    target_modules=None,
    steps: int = DEFAULT_STEPS,
    batch_size: int = 16,
    learning_rate: float = 3e-3,
    seed: int = 0,
    max_length: int | None = None,
):
    """The same fine-tune through TRL's `SFTTrainer`: the same peft `LoraConfig`, schedule and
    loss on the reply only (`completion_only_loss=True` on prompt/completion rows). Call
    `.train()` on what it returns; TRL wraps the model with peft itself."""
    from datasets import Dataset
    from datasets.utils import logging as datasets_logging
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from peftlab.finetune import lora_config

    quiet = warnings.catch_warnings()
    quiet.__enter__()
    # trl 1.16 still spells it `gradient_checkpointing`, a name transformers 5.24 deprecates
    warnings.filterwarnings("ignore", r".*gradient_checkpointing.* is deprecated", FutureWarning)
    args = SFTConfig(
        output_dir=str(output_dir),
        **trainer_settings(steps, batch_size, learning_rate, seed),
        completion_only_loss=True,
        max_length=max_length or context_length(model),
        gradient_checkpointing=False,
        bf16=False,
    )
    bars = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()  # TRL's tokenizing passes, one bar each
    try:
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(trl_rows(records)),
            processing_class=tokenizer,
            peft_config=lora_config(r, alpha, target_modules=target_modules),
        )
        trainer.remove_callback(PrinterCallback)  # it prints every log dict
        return trainer
    finally:
        if bars:
            datasets_logging.enable_progress_bar()
        quiet.__exit__(None, None, None)


@torch.no_grad()
def reply_lengths(model, tokenizer, complaints: Sequence[str], max_new_tokens: int = 64):
    """Greedy replies to complaints; for each, the tokens generated until a stop token (any of
    the generation config's EOS ids) or `max_new_tokens`, and whether the reply ended its turn
    (the tokenizer's EOS, the chat template's end-of-turn)."""
    from peftlab.generate import chat_prompts

    prompts = chat_prompts(tokenizer, complaints, context_length(model) - max_new_tokens)
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    stops = model.generation_config.eos_token_id
    stops = {tokenizer.eos_token_id, *(stops if isinstance(stops, list) else [stops])} - {None}
    rows = []
    for new in out[:, batch["input_ids"].shape[1] :].tolist():
        n = next((i + 1 for i, t in enumerate(new) if t in stops), len(new))
        text = tokenizer.decode(new[:n], skip_special_tokens=True).strip()
        rows.append({"reply": text, "tokens": n, "ended": new[n - 1] == tokenizer.eos_token_id})
    return rows
