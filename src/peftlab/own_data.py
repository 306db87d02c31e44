"""Fine-tuning on your own data: an adapter trained on your chats, and the same through TRL.

The chats come from `chat_records` (JSONL read, checked, templated and masked). `train_adapter`
holds a validation fraction back (`tuning.hold_out_fraction`), fine-tunes an adapter with peft
and transformers' `Trainer` (`finetune.build_peft_model` and `finetune.trainer_fit`, the same
recipe as the demo) and writes it, with its config and metrics, in one atomic step.
`sft_trainer` is the same fine-tune through TRL's `SFTTrainer`.
"""

import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from peftlab import tuning
from peftlab.atomic import atomic_dir
from peftlab.chat_records import TRAIN_ON, Record, encode
from peftlab.finetune import TRAIN_METHODS, build_peft_model, trainer_fit, trainer_settings
from peftlab.generate import context_length
from peftlab.packing import flattening_collator

CONFIG_FILE = "train_config.json"  # beside the adapter: how it was trained
METRICS_FILE = "metrics.json"  # beside the adapter: losses and timings
MAX_EPOCHS_BEFORE_WARNING = 50  # more passes than this over a small file memorises it


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


def train_adapter(
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
    train_records, val_records = tuning.hold_out_fraction(records, config.val_fraction, config.seed)
    steps = plan_steps(config, len(train_records))
    batch_size = min(config.batch_size, len(train_records))
    seed_everything(config.seed)
    quant = base_model.nf4_config() if config.method == "qlora" else None
    model, tokenizer = base_model.load(config.model, quantization_config=quant)
    pad = tokenizer.pad_token_id
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
        metrics["val_loss_before"] = tuning.mean_loss(wrapped, val_features, pad, batch_size=16)
    collate = flattening_collator() if config.packing else (lambda f: tuning.pad_batch(f, pad))
    losses, seconds = trainer_fit(
        wrapped, train_features, collate, steps=steps, batch_size=batch_size,
        learning_rate=config.learning_rate, seed=config.seed, progress=progress, on_loss=on_loss,
    )  # fmt: skip
    if val_features:
        metrics["val_loss"] = tuning.mean_loss(wrapped, val_features, pad, batch_size=16)
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
