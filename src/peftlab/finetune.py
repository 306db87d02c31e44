"""LoRA and QLoRA fine-tuning with peft and transformers' Trainer.

The code is what you would run on a 7B model: a peft `LoraConfig`, the Hugging Face `Trainer`
(so `accelerate launch` spreads it over several GPUs), loss on the reply tokens only, and an
adapter saved in peft's format. Only the model is small.
"""

import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from peftlab.atomic import atomic_dir
from peftlab.quiet import known_warnings
from peftlab.support_data import Example
from peftlab.tuning import IGNORE_INDEX, pad_batch, tokenize_example

TRAIN_METHODS = ("lora", "qlora")  # what train_lora trains; memory.METHODS adds "full"


@dataclass
class TrainResult:
    """What a fine-tune produced: the adapted model, where its adapter lives, and its losses."""

    model: PeftModel
    adapter_dir: Path | None
    trainable_params: int
    total_params: int
    train_seconds: float
    losses: list[tuple[int, float]] = field(default_factory=list)


def reply_loss(
    model, inputs: dict[str, torch.Tensor], num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """The causal-LM loss on the kept labels, with the output layer applied only where a label
    is kept: the body's hidden states are sliced before `lm_head`, so a vocabulary of 49,152
    costs its matmul on the reply tokens alone. Equal to `model(**inputs).loss` (the mean
    cross-entropy over shifted labels that are not IGNORE_INDEX), a peft model or a bare causal
    LM; with `num_items_in_batch` (the kept labels of every micro-batch of a gradient-accumulated
    step, as Trainer counts them) the sum divided by it, as transformers' own loss does."""
    causal_lm = model.get_base_model() if isinstance(model, PeftModel) else model
    labels = inputs["labels"]
    body = causal_lm.get_decoder()
    hidden = body(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
    targets = labels[:, 1:]
    kept = targets != IGNORE_INDEX
    if not kept.any():
        raise ValueError("no label is kept in this batch: every reply was cut or masked")
    logits = causal_lm.get_output_embeddings()(hidden.last_hidden_state[:, :-1][kept])
    if num_items_in_batch is None:
        return torch.nn.functional.cross_entropy(logits.float(), targets[kept])
    total = torch.nn.functional.cross_entropy(logits.float(), targets[kept], reduction="sum")
    return total / num_items_in_batch


class _ReplyLossTrainer(Trainer):
    """Trainer whose loss is `reply_loss` (logits on kept labels only). Accelerate puts its
    autocast on the model's own `forward`, which `reply_loss` goes around (it calls the body and
    the output layer), so the autocast is entered here. With gradient accumulation the loss is
    normalized by the step's kept labels when Trainer counts them (as transformers' loss is),
    and Trainer is told so (`loss_is_scaled_for_ga`); otherwise Trainer divides the batch mean
    by the accumulation steps."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("reply_logits_only computes no full logits to return")
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        with self.accelerator.autocast():
            return reply_loss(model, inputs, num_items_in_batch)


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively, with AVX512-BF16 or AMX instructions, and torch
    uses its AVX-512 kernels: there bf16 autocast speeds a step up. Elsewhere bf16 is emulated
    and no faster than fp32: an AVX2 CPU, an AVX-512 CPU without AVX512-BF16 (Skylake to Ice
    Lake Xeons; oneDNN's own bf16 check accepts those), or a CPU emulated with
    ATEN_CPU_CAPABILITY=avx2."""
    uses_avx512 = torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "AVX2")
    has_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return uses_avx512 and bool(has_bf16)


def resolve_device(device: str = "auto") -> str:
    """ "cpu", "cuda", or "auto" (CUDA where there is a GPU, the CPU otherwise)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={device!r}: choose auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda': torch sees no CUDA GPU here; use --device cpu or auto")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """ "fp32", "bf16", or "auto" (bf16 autocast where the device has it natively, fp32
    elsewhere): the precision a step computes in, with the weights kept in fp32."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision={precision!r}: choose auto, fp32 or bf16")
    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if native_bf16() else "fp32"


def autocast(precision: str, device: str = "cpu"):
    """The context a forward pass runs in: bf16 autocast for "bf16", nothing for "fp32"."""
    return torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")


def _device_arguments(precision: str, device: str) -> dict[str, bool]:
    """TrainingArguments for the device and bf16 autocast (Trainer asks for use_cpu with bf16 on
    a CPU, and picks a GPU by itself otherwise)."""
    arguments: dict[str, bool] = {"use_cpu": True} if device == "cpu" else {}
    if precision == "bf16":
        arguments["bf16"] = True
    return arguments


class _LossRecorder(TrainerCallback):
    def __init__(self, on_loss: Callable[[int, float], None] | None):
        self.losses: list[tuple[int, float]] = []
        self.on_loss = on_loss

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append((state.global_step, float(logs["loss"])))
            if self.on_loss:
                self.on_loss(state.global_step, float(logs["loss"]))


class _QuietProgress(ProgressCallback):
    """Trainer's progress bar with the loss beside it, without printing every log dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{float(logs['loss']):.3f}")


def lora_config(
    r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules=None
) -> LoraConfig:
    """peft's LoraConfig; target_modules=None means peft's default for the architecture."""
    if r <= 0:
        raise ValueError(f"r={r}: LoRA rank must be a positive integer")
    if alpha <= 0:
        raise ValueError(f"alpha={alpha}: lora_alpha must be positive")
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )


def build_peft_model(
    model,
    *,
    method: str = "lora",
    r: int = 8,
    alpha: int = 16,
    target_modules=None,
    gradient_checkpointing: bool | None = None,
) -> PeftModel:
    """The model `train_lora` trains: `model` wrapped with LoRA, prepared for 4 bits for QLoRA.

    QLoRA goes through peft's `prepare_model_for_kbit_training`, as peft users run it: the base
    is frozen, every non-quantized 16-bit parameter (embeddings, norms, output head) is cast to
    fp32, and gradient checkpointing is on (`gradient_checkpointing=None` means on for QLoRA,
    off for LoRA). `peftlab.memory.estimate` counts the same recipe.
    """
    if method not in TRAIN_METHODS:
        raise ValueError(f"method={method!r}: choose one of {', '.join(TRAIN_METHODS)}")
    if gradient_checkpointing is None:
        gradient_checkpointing = method == "qlora"
    if gradient_checkpointing:
        model.config.use_cache = False  # no KV cache while training (transformers would say so)
    with known_warnings(), warnings.catch_warnings():
        # peft 0.21.2 enables checkpointing by a name transformers 5.24 deprecates
        warnings.filterwarnings("ignore", "`gradient_checkpointing_enable` is deprecated")
        if method == "qlora":
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},  # torch's advice
            )
        elif gradient_checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
        return get_peft_model(model, lora_config(r, alpha, target_modules=target_modules))


def trainer_settings(
    steps: int, batch_size: int, learning_rate: float, seed: int, progress: bool = False
) -> dict[str, object]:
    """The course's Trainer settings (keyword arguments of `TrainingArguments` and TRL's
    `SFTConfig`): cosine schedule with 10% warm-up, no weight decay, about 20 loss logs, no
    checkpoints or trackers, seeded data order, data loaded in the main process."""
    return dict(
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(steps // 10, 1),
        weight_decay=0.0,
        logging_steps=max(steps // 20, 1),
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
    )


def trainer_fit(
    model,
    dataset: Sequence[dict],
    collate: Callable[[list], dict],
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    output_dir: str | os.PathLike | None = None,
    progress: bool = False,
    on_loss: Callable[[int, float], None] | None = None,
    trainer_class: type[Trainer] = Trainer,
    **arguments,
) -> tuple[list[tuple[int, float]], float]:
    """Train `model` on `dataset` (tokenized rows, batched by `collate`) with transformers'
    Trainer and the course's settings (`trainer_settings`; `arguments` adds TrainingArguments,
    e.g. the device's). Checkpoints would go to `output_dir` (none are saved; None: a temporary
    folder, removed after). Logs no dicts, shows a progress bar with the loss when `progress`,
    and leaves the model in eval mode. Returns (logged (step, loss) pairs, seconds)."""
    scratch = None
    if output_dir is None:
        output_dir = scratch = tempfile.mkdtemp(prefix="peftlab-trainer-")
    recorder = _LossRecorder(on_loss)
    try:
        args = TrainingArguments(
            output_dir=str(output_dir),
            **trainer_settings(steps, batch_size, learning_rate, seed, progress),
            remove_unused_columns=False,
            **arguments,
        )
        trainer = trainer_class(
            model=model, args=args, train_dataset=list(dataset), data_collator=collate,
            callbacks=[recorder],
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # it would print log dicts into --json output
        trainer.remove_callback(ProgressCallback)
        if progress:
            trainer.add_callback(_QuietProgress())
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    model.eval()
    return recorder.losses, seconds


def train_lora(
    model,
    tokenizer,
    examples: Sequence[Example],
    *,
    method: str = "lora",
    r: int = 8,
    alpha: int = 16,
    target_modules=None,
    steps: int = 150,
    batch_size: int = 16,
    learning_rate: float = 3e-3,
    seed: int = 0,
    run_name: str | None = "demo",
    runs_dir: str | os.PathLike = "runs",
    progress: bool = True,
    on_loss: Callable[[int, float], None] | None = None,
    gradient_checkpointing: bool | None = None,
    reply_logits_only: bool = False,
    precision: str = "fp32",
    device: str = "auto",
) -> TrainResult:
    """Fine-tune `model` with LoRA (or QLoRA on a 4-bit model) and save the adapter.

    The adapter is written to `runs_dir/run_name/adapter` through a temporary folder that is
    renamed only when complete; `run_name=None` skips saving. The model is built by
    `build_peft_model` (for QLoRA: `prepare_model_for_kbit_training`, gradient checkpointing on).

    Two levers for a real model's vocabulary and a CPU: `reply_logits_only` computes the output
    layer only where a label is kept (`reply_loss`; the same loss, a fraction of the output
    layer's work), and `precision` ("fp32", "bf16" autocast, or "auto": bf16 where the hardware
    has it natively, `resolve_precision`). The defaults are the course's toy runs'.
    """
    if method not in TRAIN_METHODS:
        raise ValueError(f"method={method!r}: choose one of {', '.join(TRAIN_METHODS)}")
    if steps <= 0:
        raise ValueError(f"steps={steps}: the number of training steps must be positive")
    if not examples:
        raise ValueError("no training examples: pass at least one complaint/reply pair")
    place = resolve_device(device)
    wrapped = build_peft_model(
        model, method=method, r=r, alpha=alpha, target_modules=target_modules,
        gradient_checkpointing=gradient_checkpointing,
    )  # fmt: skip
    trainable, total = wrapped.get_nb_trainable_parameters()
    dataset = [tokenize_example(tokenizer, ex) for ex in examples]
    losses, seconds = trainer_fit(
        wrapped, dataset, lambda feats: pad_batch(feats, tokenizer.pad_token_id),
        steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
        output_dir=Path(runs_dir) / ".trainer", progress=progress, on_loss=on_loss,
        trainer_class=_ReplyLossTrainer if reply_logits_only else Trainer,
        **_device_arguments(resolve_precision(precision, place), place),
    )  # fmt: skip
    adapter_dir = None
    if run_name is not None:
        adapter_dir = Path(runs_dir) / run_name / "adapter"
        with atomic_dir(adapter_dir) as tmp:
            wrapped.save_pretrained(tmp)
    return TrainResult(wrapped, adapter_dir, trainable, total, seconds, losses)
