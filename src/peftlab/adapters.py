"""peft adapters on a base model: training the lessons' two behaviours, and loading adapters
safely (every layer's shape checked against the base before anything is loaded).

`peftlab.lora` is LoRA written out by hand; this module is the same job done with peft, the
way you would on a 7B model.
"""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import safe_open

from peftlab import base_model, finetune, support_data
from peftlab.compare import demo_targets
from peftlab.lora import PEFT_KEY_PREFIX, WEIGHTS_NAME
from peftlab.quiet import muted
from peftlab.seed import seed_everything

# --- adapters to merge: two behaviours on one base -------------------------------------------
BEHAVIOURS = {"polite": support_data.finetune_set, "terse": support_data.terse_finetune_set}


def train_adapters(
    runs_dir: str | os.PathLike,
    *,
    model_name: str | None = None,
    behaviours: Sequence[str] = tuple(BEHAVIOURS),
    method: str = "lora",
    steps: int = 100,
    seed: int = 0,
    progress: bool = False,
    compute_dtype: torch.dtype = torch.bfloat16,
) -> dict[str, Path]:
    """Fine-tune one LoRA adapter per behaviour on a fresh copy of the base; {behaviour: folder}.

    `method="qlora"` trains on the base quantized to NF4 (`base_model.nf4_config`, the rest of
    the model in bf16) with every linear layer adapted, as notebook 03 does. `compute_dtype` is
    the dtype its 4-bit layers compute in: bf16 as in the QLoRA paper, or fp32, where a CPU's
    bf16 kernels would make the adapter differ from one instruction set to another.
    """
    unknown = [b for b in behaviours if b not in BEHAVIOURS]
    if unknown or not behaviours:
        raise ValueError(f"behaviours={list(behaviours)}: choose from {', '.join(BEHAVIOURS)}")
    if method not in finetune.TRAIN_METHODS:
        raise ValueError(f"method={method!r}: choose one of {', '.join(finetune.TRAIN_METHODS)}")
    if compute_dtype not in (torch.bfloat16, torch.float32):
        raise ValueError(f"compute_dtype={compute_dtype}: choose torch.bfloat16 or torch.float32")
    folders = {}
    for behaviour in behaviours:
        seed_everything(seed)
        with muted():
            if method == "qlora":
                config = base_model.nf4_config()
                config.bnb_4bit_compute_dtype = compute_dtype
                model, tokenizer = base_model.load(
                    model_name, quantization_config=config, dtype=torch.bfloat16
                )
                # bitsandbytes repacks 4-bit weights for its CPU kernel on an eval-mode forward,
                # and training on that layout goes wrong: train mode keeps the standard one
                model.train()
            else:
                model, tokenizer = base_model.load(model_name)
            result = finetune.train_lora(
                model, tokenizer, BEHAVIOURS[behaviour](seed=seed), method=method, steps=steps,
                seed=seed, target_modules=demo_targets(model_name, method), run_name=behaviour,
                runs_dir=runs_dir, progress=progress,
            )  # fmt: skip
        folders[behaviour] = result.adapter_dir
    return folders


# --- loading adapters safely -------------------------------------------------------------------
def peft_lora_layers(model: torch.nn.Module) -> dict[str, BaseTunerLayer]:
    """peft's adapter layers in `model`, by module name (empty for a plain model); for the
    LoRALinear layers of `peftlab.lora`, see `lora.lora_layers`."""
    return {n: m for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)}


def _layer_shape(module: torch.nn.Module) -> tuple[int, int]:
    if isinstance(module, BaseTunerLayer):
        module = module.get_base_layer()
    return int(module.out_features), int(module.in_features)


def check_adapter_fits(model: torch.nn.Module, adapter_dir: str | os.PathLike) -> None:
    """Raise ValueError naming the first layer whose shape differs from what the adapter expects.

    Reads the adapter file only; the model is not touched, so a mismatch leaves it as it was.
    """
    path = Path(adapter_dir) / WEIGHTS_NAME
    if not path.is_file():
        raise ValueError(f"{adapter_dir}: no {WEIGHTS_NAME}; give a folder saved by peft")
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    modules = dict(base.named_modules())
    with safe_open(path, framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    layers = {k.removeprefix(PEFT_KEY_PREFIX).split(".lora_A.")[0]: k for k in shapes
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


def load(
    model: torch.nn.Module, adapter_dir: str | os.PathLike, adapter_name: str = "default"
) -> PeftModel:
    """Load a peft adapter onto `model` (a base model or a PeftModel) with peft, after checking
    shapes; `lora.load_adapter` is the hand-written loader for `peftlab.lora` models."""
    check_adapter_fits(model, adapter_dir)
    with muted():
        if isinstance(model, PeftModel):
            if adapter_name in model.peft_config:
                raise ValueError(f"adapter_name={adapter_name!r} is taken; choose another name")
            model.load_adapter(str(adapter_dir), adapter_name=adapter_name)
            return model
        return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=adapter_name)


def load_many(model: torch.nn.Module, adapters: Mapping[str, str | os.PathLike]) -> PeftModel:
    """One base with several named adapters; every adapter is checked before any is loaded."""
    if not adapters:
        raise ValueError("adapters is empty: give {name: adapter folder}")
    for folder in adapters.values():
        check_adapter_fits(model, folder)
    for name, folder in adapters.items():
        model = load(model, folder, name)
    first = next(iter(adapters))
    model.set_adapter(first)
    return model
