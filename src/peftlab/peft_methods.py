"""The PEFT family's catalogue: each method as peft builds it, and the optimizer it trains with.

A `Method` names a peft config (or, for full fine-tuning, no config at all), the family it
belongs to, the middle of its learning-rate grid and whether peft can merge it into the base.
`apply_method` wraps a model for a method; `optimizer_for` is AdamW on what it trains (LoRA+
through peft's `create_loraplus_optimizer`). `peft_family` trains and measures them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from peftlab.quiet import known_warnings

TARGETS = "all-linear"  # the course's choice for the embedded model (compare.demo_targets)
RANK = 8
VIRTUAL_TOKENS = 8
VERA_RANK = 64  # VeRA trains only scaling vectors over frozen random matrices: it needs a wider r
LORAPLUS_RATIO = 16  # learning rate of B over A (the LoRA+ paper's default)


@dataclass(frozen=True)
class Method:
    """One member of the family: how peft builds it and what the lesson says about it."""

    name: str
    family: str  # "reparametrized" (a weight update), "additive" (new tokens), "scaling", "full"
    base_lr: float  # the middle of its learning-rate grid
    merges: bool  # whether peft can fold it into the base weights (merge_and_unload)
    config: Callable[[int], object] | None  # steps -> peft config; None for full fine-tuning
    loraplus: bool = False


def _lora(**extra) -> Callable[[int], object]:
    def build(steps: int):
        from peft import LoraConfig

        return LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS,
                          task_type="CAUSAL_LM", **extra)  # fmt: skip

    return build


def _adalora(steps: int):
    from peft import AdaLoraConfig

    # the three phases: warm-up at init_r, budget pruning down to target_r, a final phase
    return AdaLoraConfig(
        init_r=RANK + RANK // 2, target_r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS,
        total_step=steps, tinit=max(1, steps // 10), tfinal=max(1, steps // 5),
        deltaT=max(1, steps // 20), task_type="CAUSAL_LM",
    )  # fmt: skip


def _ia3(steps: int):
    from peft import IA3Config

    return IA3Config(task_type="CAUSAL_LM")  # peft's default for Llama: k, v and down_proj


def _prefix(steps: int):
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS)


def _prompt(steps: int):
    from peft import PromptTuningConfig

    return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS)


def _ptuning(steps: int):
    from peft import PromptEncoderConfig

    return PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS,
                               encoder_hidden_size=64)  # fmt: skip


def _loha(steps: int):
    from peft import LoHaConfig

    return LoHaConfig(r=RANK, alpha=2 * RANK, target_modules=TARGETS, task_type="CAUSAL_LM")


def _lokr(steps: int):
    from peft import LoKrConfig

    return LoKrConfig(r=RANK, alpha=2 * RANK, target_modules=TARGETS, task_type="CAUSAL_LM")


def _vera(steps: int):
    from peft import VeraConfig

    return VeraConfig(r=VERA_RANK, target_modules=TARGETS, task_type="CAUSAL_LM")


def _ln_tuning(steps: int):
    from peft import LNTuningConfig

    return LNTuningConfig(task_type="CAUSAL_LM")


def _oft(steps: int):
    from peft import OFTConfig

    return OFTConfig(r=0, oft_block_size=32, target_modules=TARGETS, task_type="CAUSAL_LM")


def _hra(steps: int):
    from peft import HRAConfig

    return HRAConfig(r=RANK, target_modules=TARGETS, task_type="CAUSAL_LM")


def _fourierft(steps: int):
    from peft import FourierFTConfig

    return FourierFTConfig(n_frequency=512, scaling=100.0, target_modules=TARGETS,
                           task_type="CAUSAL_LM")  # fmt: skip


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("LoRA", "reparametrized", 1e-2, True, _lora()),
        Method("rsLoRA", "reparametrized", 1e-2, True, _lora(use_rslora=True)),
        Method("DoRA", "reparametrized", 1e-2, True, _lora(use_dora=True)),
        Method("PiSSA", "reparametrized", 1e-2, True, _lora(init_lora_weights="pissa")),
        Method("LoRA+", "reparametrized", 1e-3, True, _lora(), loraplus=True),
        Method("AdaLoRA", "reparametrized", 3e-2, True, _adalora),
        Method("LoHa", "reparametrized", 3e-2, True, _loha),
        Method("LoKr", "reparametrized", 3e-2, True, _lokr),
        Method("VeRA", "reparametrized", 1e-1, True, _vera),
        Method("IA3", "scaling", 1e-1, True, _ia3),
        Method("prefix tuning", "additive", 1e-1, False, _prefix),
        Method("prompt tuning", "additive", 3e-1, False, _prompt),
        Method("full fine-tuning", "full", 3e-3, False, None),
        # more of what peft 0.21 ships, in the benchmark's full grid
        Method("P-tuning", "additive", 1e-1, False, _ptuning),
        Method("LN tuning", "scaling", 1e-1, True, _ln_tuning),
        Method("OFT", "reparametrized", 1e-2, True, _oft),
        Method("HRA", "reparametrized", 3e-3, True, _hra),
        Method("FourierFT", "reparametrized", 1e-2, True, _fourierft),
    )
}
CORE = tuple(list(METHODS)[:13])  # the methods the lesson must show
REFERENCE = "LoRA"


def check_methods(names: Sequence[str]) -> list[Method]:
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}: choose from {', '.join(METHODS)}")
    return [METHODS[n] for n in names]


def apply_method(method: Method, model, steps: int):
    """`model` wrapped for `method` (peft's get_peft_model), or itself for full fine-tuning."""
    if method.config is None:
        model.requires_grad_(True)
        return model
    from peft import get_peft_model

    with known_warnings(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. AdaLoRA/VeRA notes on init
        return get_peft_model(model, method.config(steps))


def optimizer_for(method: Method, model, lr: float) -> torch.optim.Optimizer:
    """AdamW on the trainable parameters; LoRA+ through peft's create_loraplus_optimizer."""
    if method.loraplus:
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(
            model, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=LORAPLUS_RATIO, weight_decay=0.0
        )
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                             weight_decay=0.0)  # fmt: skip
