"""Merging LoRA adapters into their base model, and serving several adapters on one base.

Merging folds each adapter into its layer, W' = W + (alpha/r) B A, so the model is a plain
transformers model again: no extra matmuls, no peft at inference. Keeping adapters separate
lets one base serve many behaviours (switch, disable, mix). These helpers run both ways on top
of peft, and measure what merging into a 4-bit base costs.
"""

import contextlib
import copy
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from peftlab import base_model, finetune, support_data
from peftlab.atomic import atomic_dir
from peftlab.compare import default_targets, generate
from peftlab.rubric import CRITERIA, score_reply
from peftlab.seed import seed_everything

COMBINATIONS = ("linear", "cat", "ties")
ROUTES = {
    "a": "merge into the 4-bit weights",
    "b": "dequantize, merge in bf16, keep bf16",
    "c": "dequantize, merge in bf16, requantize to 4-bit",
}
UNMERGED = "4-bit base + adapter, not merged"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence transformers' loading bars and peft's known transformers-5 FutureWarning."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


# --- adapters to merge: two behaviours on one base -------------------------------------------
BEHAVIOURS = {"polite": support_data.finetune_set, "terse": support_data.terse_finetune_set}


def train_adapters(
    runs_dir: str | os.PathLike,
    *,
    name: str | None = None,
    behaviours: Sequence[str] = tuple(BEHAVIOURS),
    steps: int = 100,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Path]:
    """Fine-tune one LoRA adapter per behaviour on a fresh copy of the base; {behaviour: folder}."""
    unknown = [b for b in behaviours if b not in BEHAVIOURS]
    if unknown or not behaviours:
        raise ValueError(f"behaviours={list(behaviours)}: choose from {', '.join(BEHAVIOURS)}")
    folders = {}
    for behaviour in behaviours:
        seed_everything(seed)
        with quiet():
            model, tokenizer = base_model.load(name)
            result = finetune.train_lora(
                model, tokenizer, BEHAVIOURS[behaviour](seed=seed), steps=steps, seed=seed,
                target_modules=default_targets(name), run_name=behaviour, runs_dir=runs_dir,
                progress=progress,
            )  # fmt: skip
        folders[behaviour] = result.adapter_dir
    return folders


# --- merge and unmerge ------------------------------------------------------------------------
def lora_layers(model: torch.nn.Module) -> dict[str, BaseTunerLayer]:
    """peft's adapter layers in `model`, by module name (empty for a plain model)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)}


def param_count(model: torch.nn.Module) -> int:
    """Parameters of the model, shared (tied) tensors counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def is_merged(model: torch.nn.Module) -> bool:
    """Whether any adapter is currently folded into its base weights."""
    return any(layer.merged for layer in lora_layers(model).values())


def merge(model: PeftModel) -> PeftModel:
    """Fold the active adapter into the base weights in place (undo with `unmerge`).

    Merging twice would add (alpha/r) B A twice, so a second call is refused.
    """
    if not lora_layers(model):
        raise ValueError("the model has no LoRA layers: load an adapter (load_adapter) first")
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
    with quiet():
        return copy.deepcopy(model).merge_and_unload()


def delta_weight(model: PeftModel, layer: str, adapter: str | None = None) -> torch.Tensor:
    """dW = (alpha/r) B A of one adapted layer, as peft computes it for merging."""
    layers = lora_layers(model)
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
    """The chat prompts of complaints, tokenized and left-padded as `generate` sees them."""
    prompts = [
        tokenizer.apply_chat_template(
            support_data.chat_messages(c), tokenize=False, add_generation_prompt=True
        )
        for c in complaints
    ]
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
        peft_modules_left=len(lora_layers(merged)),
    )


def save_merged(model: PeftModel, tokenizer, folder: str | os.PathLike) -> Path:
    """Merge a copy of the model and save it, with its tokenizer, as a plain transformers folder."""
    merged = merged_copy(model)
    folder = Path(folder)
    with quiet(), atomic_dir(folder) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return folder


def load_merged(folder: str | os.PathLike, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from a merged folder, with plain transformers: no peft needed."""
    with quiet():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    return model, tokenizer


# --- loading adapters safely -------------------------------------------------------------------
def _layer_shape(module: torch.nn.Module) -> tuple[int, int]:
    if isinstance(module, BaseTunerLayer):
        module = module.get_base_layer()
    return int(module.out_features), int(module.in_features)


def check_adapter_fits(model: torch.nn.Module, adapter_dir: str | os.PathLike) -> None:
    """Raise ValueError naming the first layer whose shape differs from what the adapter expects.

    Reads the adapter file only; the model is not touched, so a mismatch leaves it as it was.
    """
    path = Path(adapter_dir) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise ValueError(f"{adapter_dir}: no {ADAPTER_WEIGHTS}; give a folder saved by peft")
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    modules = dict(base.named_modules())
    with safe_open(path, framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    layers = {k.removeprefix(_PEFT_PREFIX).split(".lora_A.")[0]: k for k in shapes
              if ".lora_A." in k}  # fmt: skip
    order = {name: i for i, name in enumerate(modules)}
    for name, key in sorted(layers.items(), key=lambda kv: order.get(kv[0], -1)):
        a_shape, b_shape = shapes[key], shapes[key.replace(".lora_A.", ".lora_B.")]
        if name not in modules:
            raise ValueError(
                f"{adapter_dir}: the adapter has layer {name}, which this model does not have; "
                "load the adapter on the base model it was trained on"
            )
        out_f, in_f = _layer_shape(modules[name])
        if (b_shape[0], a_shape[1]) != (out_f, in_f):
            raise ValueError(
                f"{adapter_dir} was trained for another base model: layer {name} is "
                f"{out_f}x{in_f} (out x in) here, but the adapter's update B A is "
                f"{b_shape[0]}x{a_shape[1]} (lora_B {b_shape[0]}x{b_shape[1]}, lora_A "
                f"{a_shape[0]}x{a_shape[1]}); load it on the base model it was trained on"
            )


def load_adapter(
    model: torch.nn.Module, adapter_dir: str | os.PathLike, adapter_name: str = "default"
) -> PeftModel:
    """Load a saved adapter onto `model` (a base model or a PeftModel), after checking shapes."""
    check_adapter_fits(model, adapter_dir)
    with quiet():
        if isinstance(model, PeftModel):
            if adapter_name in model.peft_config:
                raise ValueError(f"adapter_name={adapter_name!r} is taken; choose another name")
            model.load_adapter(str(adapter_dir), adapter_name=adapter_name)
            return model
        return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=adapter_name)


def load_adapters(model: torch.nn.Module, adapters: Mapping[str, str | os.PathLike]) -> PeftModel:
    """One base with several named adapters; every adapter is checked before any is loaded."""
    if not adapters:
        raise ValueError("adapters is empty: give {name: adapter folder}")
    for folder in adapters.values():
        check_adapter_fits(model, folder)
    for name, folder in adapters.items():
        model = load_adapter(model, folder, name)
    first = next(iter(adapters))
    model.set_adapter(first)
    return model


# --- merging into a 4-bit base -----------------------------------------------------------------
nf4_config = base_model.nf4_config


def restore_4bit_layout(model: torch.nn.Module) -> int:
    """Undo bitsandbytes' CPU repacking of 4-bit weights; returns how many layers it unpacked.

    On CPUs with AVX512-BF16, an eval-mode forward repacks each 4-bit weight for a faster
    kernel; dequantizing (which merging does) must first see the standard layout again. The
    block scales come back through bf16, so a weight may move by one bf16 step of its scale.
    """
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    from bitsandbytes.nn import Linear4bit

    count = 0
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if isinstance(module, Linear4bit) and getattr(state, "packing_format_for_cpu", False):
            module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                module.weight.data, state
            )
            count += 1
    return count


def load_4bit(name: str | None = None):
    """(model, tokenizer) with every linear layer in NF4, the rest in bf16."""
    with quiet():
        return base_model.load(name, quantization_config=nf4_config(), dtype=torch.bfloat16)


def dequantize_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """The 4-bit model with every NF4 layer replaced by the bf16 weight bitsandbytes
    dequantizes it to (a 4-bit code times its block scale, rounded to bf16)."""
    restore_4bit_layout(model)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "dequantized in ... and casted to bf16": that is the point
    try:
        with quiet():
            return model.dequantize(dtype=torch.bfloat16)
    finally:
        hf_logging.set_verbosity(level)


def exact_merge(adapter_dir: str | os.PathLike, name: str | None = None) -> torch.nn.Module:
    """The reference: the unquantized base in bf16 with the adapter merged into it."""
    model, _ = base_model.load(name, dtype=torch.bfloat16)
    return load_adapter(model, adapter_dir).merge_and_unload().eval()


def merge_route(
    route: str, adapter_dir: str | os.PathLike, name: str | None = None
) -> torch.nn.Module:
    """The merged model along one route (see ROUTES) from the 4-bit base and a saved adapter."""
    if route not in ROUTES:
        raise ValueError(f"route={route!r}: choose one of {', '.join(ROUTES)}")
    model, _ = load_4bit(name)
    if route == "a":
        restore_4bit_layout(model)
        peft_model = load_adapter(model, adapter_dir)
        with warnings.catch_warnings():  # peft warns of rounding: measuring it is the point
            warnings.filterwarnings("ignore", message="Merge lora module to 4-bit linear")
            return peft_model.merge_and_unload().eval()
    merged = load_adapter(dequantize_bf16(model), adapter_dir).merge_and_unload().eval()
    if route == "b":
        return merged
    with tempfile.TemporaryDirectory() as tmp, quiet():
        merged.save_pretrained(tmp)
        return AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=nf4_config(), device_map="cpu", dtype=torch.bfloat16
        ).eval()


def in_fp32(model: torch.nn.Module) -> torch.nn.Module:
    """The same stored weights, evaluated in fp32 arithmetic.

    4-bit layers become the bf16 weights that bitsandbytes' forward and backward compute with
    (`dequantize_bf16`; the layers route a requantizes dequantize to fp32, and their forward
    casts that to bf16 too), then everything is cast up to fp32, which is exact. So comparing two
    models this way measures how their stored weights differ, not the CPU's bf16 matmul
    rounding, which differs between instruction sets (AVX2, AVX-512, AMX). On AVX512-BF16 CPUs
    bitsandbytes' packed inference kernel also rounds the block scales to bf16; that kernel
    is left out too.
    """
    if getattr(model, "is_quantized", False):
        model = dequantize_bf16(model)
    return model.float().eval()


@dataclass
class RouteResult:
    """One way to a merged model, measured against the exact bf16 merge.

    Logits and greedy replies are computed in fp32 from each model's stored weights (`in_fp32`),
    so the numbers measure the route's rounding, not the CPU's bf16 kernels. `agreement`: share of
    greedy replies identical to the exact merge's; `agreement_unmerged`: identical to the
    unmerged 4-bit model's (the model QLoRA trains); `score`: mean rubric score;
    `footprint_bytes`: the route's model as it is stored in memory (4-bit or bf16).
    """

    route: str
    how: str
    max_logit_error: float
    mean_logit_error: float
    agreement: float
    agreement_unmerged: float
    score: float
    footprint_bytes: int


def route_experiment(
    adapter_dir: str | os.PathLike,
    complaints: Sequence[str],
    name: str | None = None,
    *,
    max_new_tokens: int = 48,
) -> list[RouteResult]:
    """Each route's logit error vs the exact bf16 merge, and how often its greedy reply matches.

    The first row is the 4-bit base with the adapter still separate: what QLoRA trains.
    """
    if not complaints:
        raise ValueError("no complaints: give at least one to compare replies on")
    _, tokenizer = base_model.load(name)
    batch = prompt_batch(tokenizer, complaints)

    def run(model) -> tuple[torch.Tensor, list[str]]:
        model = in_fp32(model)
        return logits(model, batch), generate(model, tokenizer, complaints,
                                              max_new_tokens=max_new_tokens)  # fmt: skip

    def same(replies: Sequence[str], other: Sequence[str]) -> float:
        return sum(a == b for a, b in zip(replies, other, strict=True)) / len(complaints)

    def unmerged() -> tuple[torch.nn.Module, int]:
        quantized, _ = load_4bit(name)
        footprint = load_adapter(quantized, adapter_dir).get_memory_footprint()
        del quantized  # one model in memory at a time
        # W x + (alpha/r) B A x with W the dequantized 4-bit weight: the sums QLoRA trains
        return load_adapter(in_fp32(load_4bit(name)[0]), adapter_dir), footprint

    def merged(route: str) -> tuple[torch.nn.Module, int]:
        model = merge_route(route, adapter_dir, name)
        return model, model.get_memory_footprint()

    ref_logits, ref_replies = run(exact_merge(adapter_dir, name))
    results, unmerged_replies = [], None
    for route, how in {"-": UNMERGED, **ROUTES}.items():  # one model in memory at a time
        model, footprint = unmerged() if route == "-" else merged(route)
        out_logits, replies = run(model)
        del model
        unmerged_replies = unmerged_replies or replies  # "-" comes first
        err = logit_error(out_logits, ref_logits, batch["attention_mask"])
        score = statistics.fmean(
            score_reply(r, c)["score"] for r, c in zip(replies, complaints, strict=True)
        )
        results.append(RouteResult(route, how, err["max"], err["mean"], same(replies, ref_replies),
                                   same(replies, unmerged_replies), score, footprint))  # fmt: skip
    return results


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
    with quiet():
        model.add_weighted_adapter(adapters, weights, name, combination_type, **extra)
    return name


def reply_summary(replies: Sequence[str], complaints: Sequence[str]) -> dict[str, float]:
    """Mean rubric score, each criterion's pass rate, and mean reply length in words."""
    marks = [score_reply(r, c) for r, c in zip(replies, complaints, strict=True)]
    summary = {"score": statistics.fmean(m["score"] for m in marks)}
    summary.update({c: statistics.fmean(float(m[c]) for m in marks) for c in CRITERIA})
    summary["words"] = statistics.fmean(len(r.split()) for r in replies)
    return summary


def mixing_table(
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


# --- disk and latency ------------------------------------------------------------------------
def weights_bytes(folder: str | os.PathLike) -> int:
    """Bytes of the weight files (*.safetensors) in a model or adapter folder."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


def storage(base_dir: str | os.PathLike, adapter_dirs: Sequence[str | os.PathLike],
            merged_dir: str | os.PathLike) -> dict[str, int]:  # fmt: skip
    """Weight bytes on disk: one base + N adapters versus N merged copies of the model."""
    n = len(adapter_dirs)
    base, merged = weights_bytes(base_dir), weights_bytes(merged_dir)
    adapters = sum(weights_bytes(d) for d in adapter_dirs)
    return {"adapters": n, "base_bytes": base, "adapter_bytes": adapters,
            "base_plus_adapters_bytes": base + adapters, "merged_model_bytes": merged,
            "merged_models_bytes": n * merged}  # fmt: skip


@torch.no_grad()
def latency_ms(
    model: torch.nn.Module, batch: Mapping[str, torch.Tensor], repeats: int = 20, warmup: int = 3
) -> float:
    """Median wall time of one forward pass over the batch, in milliseconds."""
    if repeats <= 0:
        raise ValueError(f"repeats={repeats}: time at least one forward pass")
    for _ in range(warmup):
        model(**batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(**batch)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def latency_table(
    models: Mapping[str, torch.nn.Module],
    batch: Mapping[str, torch.Tensor],
    repeats: int = 20,
    warmup: int = 2,
) -> dict[str, float]:
    """Median forward latency (ms) per model, timed round-robin so machine noise hits all alike."""
    if repeats <= 0:
        raise ValueError(f"repeats={repeats}: time at least one forward pass")
    samples: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for i in range(warmup + repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(**batch)
                if i >= warmup:
                    samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(ms) for name, ms in samples.items()}
