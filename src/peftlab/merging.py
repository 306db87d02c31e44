"""Merging LoRA adapters into their base model, and serving several adapters on one base.

Merging folds each adapter into its layer, W' = W + (alpha/r) B A, so the model is a plain
transformers model again: no extra matmuls, no peft at inference. Keeping adapters separate
lets one base serve many behaviours (switch, disable, mix). These helpers run both ways on top
of peft. Training and loading the adapters: `peftlab.adapters`; merging into a 4-bit base:
`peftlab.merging_4bit`; disk and latency: `peftlab.measure`.
"""

import copy
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from peftlab.adapters import peft_lora_layers
from peftlab.atomic import atomic_dir
from peftlab.generate import MAX_NEW_TOKENS, chat_prompts, generate
from peftlab.quiet import muted
from peftlab.rubric import CRITERIA, mean_score, score_reply

COMBINATIONS = ("linear", "cat", "ties")


# --- merge and unmerge ------------------------------------------------------------------------
def param_count(model: torch.nn.Module) -> int:
    """Parameters of the model, shared (tied) tensors counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def is_merged(model: torch.nn.Module) -> bool:
    """Whether any adapter is currently folded into its base weights."""
    return any(layer.merged for layer in peft_lora_layers(model).values())


def merge(model: PeftModel) -> PeftModel:
    """Fold the active adapter into the base weights in place (undo with `unmerge`).

    Merging twice would add (alpha/r) B A twice, so a second call is refused.
    """
    if not peft_lora_layers(model):
        raise ValueError("the model has no LoRA layers: load an adapter (adapters.load) first")
    if is_merged(model):
        raise ValueError(
            "the adapter is already merged; merging again would add it twice: call unmerge first"
        )
    model.merge_adapter()
    return model


def unmerge(model: PeftModel) -> PeftModel:
    """Take the merged adapter back out of the base weights (W' - dW), in place."""
    if not is_merged(model):
        raise ValueError("the adapter is not merged, so there is nothing to unmerge")
    model.unmerge_adapter()
    return model


def merged_copy(model: PeftModel) -> torch.nn.Module:
    """A plain transformers model with the active adapter folded in; `model` is left as it was."""
    if is_merged(model):
        raise ValueError("the adapter is already merged in place: call unmerge before merged_copy")
    with muted():
        return copy.deepcopy(model).merge_and_unload()


def delta_weight(model: PeftModel, layer: str, adapter: str | None = None) -> torch.Tensor:
    """dW = (alpha/r) B A of one adapted layer, as peft computes it for merging."""
    layers = peft_lora_layers(model)
    matches = [n for n in layers if n == layer or n.endswith(f".{layer}")]
    if len(matches) != 1:
        raise ValueError(
            f"layer={layer!r} matches {len(matches)} adapted layers; give a full name such as "
            f"{next(iter(layers), 'model.layers.0.self_attn.q_proj')!r}"
        )
    module = layers[matches[0]]
    return module.get_delta_weight(adapter or model.active_adapter)


@torch.no_grad()
def logits(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The model's next-token logits for a tokenized batch, in float32."""
    return model(**batch).logits.float()


def prompt_batch(tokenizer, complaints: Sequence[str]) -> dict[str, torch.Tensor]:
    """The chat prompts of complaints, tokenized and left-padded as `generate` sees them (long
    complaints cut as `generate` cuts them for a context of the tokenizer's model_max_length)."""
    prompts = chat_prompts(tokenizer, complaints, tokenizer.model_max_length - MAX_NEW_TOKENS)
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def logit_error(
    out: torch.Tensor, ref: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> dict[str, float]:
    """Largest and mean absolute logit difference, over real (not padding) positions."""
    diff = (out.float() - ref.float()).abs()
    if attention_mask is not None:
        diff = diff[attention_mask.bool()]
    return {"max": diff.max().item(), "mean": diff.mean().item()}


# fp32 rounding noise: merging reorders sums, so logits and weights move by a few ulps. How many
# depends on the CPU's kernels (instruction set, threads), so tables state the bound they stay
# under, not the digits of the noise.
LOGIT_NOISE = 1e-4
WEIGHT_NOISE = 1e-6


def below(value: float, bound: float) -> str:
    """`< bound` for a value under it (rounding noise), else the value itself (a real gap)."""
    return f"< {bound:.0e}".replace("e-0", "e-") if value < bound else f"{value:.2g}"


@dataclass
class MergeCheck:
    """How merging changed a model: logit gaps, parameter counts and what is left of peft."""

    adapter_vs_base: float
    merged_vs_adapter: float
    merged_in_place_vs_adapter: float
    unmerged_weights_vs_base: float
    base_params: int
    adapter_params: int
    merged_params: int
    peft_modules_left: int

    def rows(self) -> list[tuple[str, str]]:
        """(what, value) rows for a table."""
        return [
            ("max |logits| change from the adapter", f"{self.adapter_vs_base:.3g}"),
            ("max |merged - adapter| logits", below(self.merged_vs_adapter, LOGIT_NOISE)),
            (
                "max |merged in place - adapter| logits",
                below(self.merged_in_place_vs_adapter, LOGIT_NOISE),
            ),
            ("max |unmerged - base| weight", below(self.unmerged_weights_vs_base, WEIGHT_NOISE)),
            ("parameters: base", f"{self.base_params:,}"),
            ("parameters: base + adapter", f"{self.adapter_params:,}"),
            ("parameters: merged", f"{self.merged_params:,}"),
            ("peft modules left after merge_and_unload", str(self.peft_modules_left)),
        ]


def check_merge(model: PeftModel, batch: Mapping[str, torch.Tensor]) -> MergeCheck:
    """Compare base, adapter, merged (copy and in place) and unmerged models on one batch."""
    if is_merged(model):
        raise ValueError("the adapter is already merged in place: call unmerge before check_merge")
    before = {n: p.detach().clone() for n, p in model.get_base_model().named_parameters()
              if "lora_" not in n}  # fmt: skip
    with model.disable_adapter():
        base_logits = logits(model, batch)
    adapter_logits = logits(model, batch)
    merged = merged_copy(model)
    merged_logits = logits(merged, batch)
    merge(model)
    in_place_logits = logits(model, batch)
    unmerge(model)
    after = dict(model.get_base_model().named_parameters())
    drift = max((after[n] - w).abs().max().item() for n, w in before.items())
    with model.disable_adapter():
        base_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    return MergeCheck(
        adapter_vs_base=(adapter_logits - base_logits).abs().max().item(),
        merged_vs_adapter=(merged_logits - adapter_logits).abs().max().item(),
        merged_in_place_vs_adapter=(in_place_logits - adapter_logits).abs().max().item(),
        unmerged_weights_vs_base=drift,
        base_params=base_params,
        adapter_params=param_count(model),
        merged_params=param_count(merged),
        peft_modules_left=len(peft_lora_layers(merged)),
    )


def save_merged(model: PeftModel, tokenizer, folder: str | os.PathLike) -> Path:
    """Merge a copy of the model and save it, with its tokenizer, as a plain transformers folder."""
    merged = merged_copy(model)
    folder = Path(folder)
    with muted(), atomic_dir(folder) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return folder


def load_merged(folder: str | os.PathLike, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from a merged folder, with plain transformers: no peft needed."""
    with muted():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    return model, tokenizer


# --- several adapters on one base --------------------------------------------------------------
def replies_per_adapter(
    model: PeftModel,
    tokenizer,
    complaints: Sequence[str],
    adapters: Sequence[str] | None = None,
    *,
    include_base: bool = True,
    max_new_tokens: int = 48,
) -> dict[str, list[str]]:
    """Replies from the base (adapters disabled) and from each adapter in turn (set_adapter)."""
    names = list(adapters) if adapters is not None else list(model.peft_config)
    _check_names(model, names)
    out = {}
    if include_base:
        with model.disable_adapter():
            out["base"] = generate(model, tokenizer, complaints, max_new_tokens=max_new_tokens)
    active = model.active_adapter
    for name in names:
        model.set_adapter(name)
        out[name] = generate(model, tokenizer, complaints, max_new_tokens=max_new_tokens)
    model.set_adapter(active)
    return out


def _check_names(model: PeftModel, names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in model.peft_config]
    if unknown:
        raise ValueError(
            f"adapters {unknown} are not loaded; loaded: {', '.join(model.peft_config)}"
        )


def combine(
    model: PeftModel,
    adapters: Sequence[str],
    weights: Sequence[float],
    combination_type: str = "linear",
    *,
    name: str | None = None,
    density: float = 0.5,
) -> str:
    """Add a new adapter mixing `adapters` with `weights` (peft's add_weighted_adapter); its name.

    linear: weighted sum of A's and of B's (same rank needed); cat: stacks them, so the update
    is exactly the weighted sum of the updates (rank adds up); ties: keeps the `density`
    largest entries per adapter and resolves sign conflicts before summing.
    """
    if combination_type not in COMBINATIONS:
        raise ValueError(
            f"combination_type={combination_type!r}: choose one of {', '.join(COMBINATIONS)}"
        )
    adapters, weights = list(adapters), list(weights)
    if len(adapters) < 1 or len(weights) != len(adapters):
        raise ValueError(
            f"weights={weights} for adapters={adapters}: give exactly one weight per adapter"
        )
    _check_names(model, adapters)
    if not 0 < density <= 1:
        raise ValueError(f"density={density}: the kept fraction must be in (0, 1]")
    name = name or f"{combination_type}_" + "_".join(  # peft names may not contain dots
        f"{a}{w:g}".replace(".", "p").replace("-", "m")
        for a, w in zip(adapters, weights, strict=True)
    )
    if name in model.peft_config:
        raise ValueError(f"name={name!r} is already an adapter; choose another name")
    extra = {"density": density} if combination_type == "ties" else {}
    with muted():
        model.add_weighted_adapter(adapters, weights, name, combination_type, **extra)
    return name


def reply_summary(replies: Sequence[str], complaints: Sequence[str]) -> dict[str, float]:
    """Mean rubric score, each criterion's pass rate, and mean reply length in words."""
    marks = [score_reply(r, c) for r, c in zip(replies, complaints, strict=True)]
    summary = {"score": mean_score(replies, complaints)}
    summary.update({c: statistics.fmean(float(m[c]) for m in marks) for c in CRITERIA})
    summary["words"] = statistics.fmean(len(r.split()) for r in replies)
    return summary


def mixing_rows(
    model: PeftModel,
    tokenizer,
    complaints: Sequence[str],
    adapters: Sequence[str],
    weightings: Sequence[Sequence[float]],
    combination_types: Sequence[str] = COMBINATIONS,
    *,
    max_new_tokens: int = 48,
) -> list[dict]:
    """Rubric summary of every (combination type, weights) mix; each mix is removed after use."""
    rows = []
    active = model.active_adapter
    for kind in combination_types:
        for weights in weightings:
            mix = combine(model, adapters, weights, kind)
            model.set_adapter(mix)
            replies = generate(model, tokenizer, complaints, max_new_tokens=max_new_tokens)
            rows.append({"type": kind, "weights": tuple(weights),
                         **reply_summary(replies, complaints)})  # fmt: skip
            model.set_adapter(active)
            model.delete_adapter(mix)
    return rows
