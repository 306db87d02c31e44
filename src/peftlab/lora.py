"""LoRA from scratch (Hu et al. 2021, arXiv 2106.09685): h = W0 x + (alpha / r) * B A x.

W0 stays frozen; only the small matrices A (r x in) and B (out x r) are trained. The names below
(`base_layer`, `lora_A`, `lora_B`) are peft's, so an adapter's state dict maps onto peft's
on-disk keys by one prefix, and adapters move between this file and peft in both directions.
"""

import json
import math
import os
import re
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from peftlab.atomic import atomic_dir

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_KEY_PREFIX = "base_model.model."
ALL_LINEAR = "all-linear"

Targets = str | list[str] | tuple[str, ...] | set[str]


def _features(base: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of an nn.Linear, or of GPT-2's Conv1D (weight is in x out)."""
    if isinstance(base, Conv1D):
        return base.nx, base.nf
    return base.in_features, base.out_features


def check_hyperparameters(
    r: int, alpha: float, dropout: float, in_features: int, out_features: int
) -> None:
    """Raise ValueError naming the bad value and the fix, before any layer is built."""
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise ValueError(f"r={r!r}: LoRA rank must be a positive integer, e.g. r=8")
    if r > min(in_features, out_features):
        raise ValueError(
            f"r={r}: rank exceeds min(in_features={in_features}, out_features={out_features})"
            f" = {min(in_features, out_features)}; a low-rank update needs r at most that"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha > 0:
        raise ValueError(f"alpha={alpha!r}: LoRA alpha must be a positive number, e.g. alpha=2*r")
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ValueError(f"dropout={dropout!r}: LoRA dropout must be in [0, 1), e.g. 0.05")


class LoRALinear(nn.Module):
    """A frozen linear layer plus a low-rank update: h = base(x) + (alpha/r) B A dropout(x)."""

    def __init__(
        self,
        base: nn.Module,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        use_rslora: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(base, LoRALinear):
            raise ValueError(
                "base is already a LoRALinear: LoRA cannot be added twice to one layer"
            )
        if not isinstance(base, nn.Linear | Conv1D):
            raise ValueError(
                f"base={type(base).__name__}: LoRALinear wraps nn.Linear or GPT-2's Conv1D only"
            )
        self.in_features, self.out_features = _features(base)
        check_hyperparameters(r, alpha, dropout, self.in_features, self.out_features)
        self.r = r
        self.set_scale(alpha, use_rslora)
        self.fan_in_fan_out = isinstance(base, Conv1D)
        self.merged = False

        self.base_layer = base.requires_grad_(False)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # Built in peft's order (A, B, then A's Kaiming init) so one seed gives peft's A exactly.
        self.lora_A = nn.Linear(self.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, self.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)  # B = 0, so training starts exactly at the base model
        weight = base.weight  # A and B follow the base's device; on a 16-bit base they stay fp32
        adapter_dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else None
        self.lora_A.to(weight.device, adapter_dtype)
        self.lora_B.to(weight.device, adapter_dtype)

    def set_scale(self, alpha: float, use_rslora: bool = False) -> None:
        """Set alpha; the update is scaled by alpha / r, or alpha / sqrt(r) with rsLoRA."""
        self.alpha, self.use_rslora = alpha, use_rslora
        self.scaling = alpha / math.sqrt(self.r) if use_rslora else alpha / self.r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)  # W0 x
        if self.merged:
            return h  # W0 already holds W0 + (alpha/r) B A
        x = x.to(self.lora_A.weight.dtype)
        return h + (self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling).to(h.dtype)

    def delta_weight(self) -> torch.Tensor:
        """dW = (alpha/r) * B A, in the base weight's layout (transposed for Conv1D)."""
        delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling
        return delta.T if self.fan_in_fan_out else delta

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (W0 <- W0 + dW): inference then costs no extra."""
        if self.merged:
            raise RuntimeError("this LoRA layer is already merged; call unmerge() first")
        weight = self.base_layer.weight
        merged = weight + self.delta_weight().to(weight.dtype)
        if not torch.isfinite(merged).all():
            raise ValueError(
                "merging would put NaN or inf in the base weight; the adapter is broken"
            )
        weight.copy_(merged)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of the base weight (W0 <- W - dW), exact up to fp rounding."""
        if not self.merged:
            raise RuntimeError("this LoRA layer is not merged; nothing to unmerge")
        weight = self.base_layer.weight
        weight.sub_(self.delta_weight().to(weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}, merged={self.merged}"


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every LoRALinear in `model`, by module name (peft's layers: adapters.peft_lora_layers)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def linear_layer_names(model: nn.Module) -> list[str]:
    """The distinct last names of the model's linear layers (q_proj, c_attn, lm_head, ...)."""
    names = {
        name.rsplit(".", 1)[-1]
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear | Conv1D | LoRALinear) and ".lora_" not in name
    }
    return sorted(names)


def _output_layer_name(model: nn.Module) -> str | None:
    get_output = getattr(model, "get_output_embeddings", None)
    head = get_output() if get_output else None
    return next((n for n, m in model.named_modules() if m is head), None) if head else None


def is_all_linear(target_modules: Targets) -> bool:
    """Whether `target_modules` is peft's "all-linear" shorthand (in any case)."""
    return isinstance(target_modules, str) and target_modules.lower() == ALL_LINEAR


def target_matches(name: str, target_modules: Targets) -> bool:
    r"""Whether `target_modules` selects the module whose full name is `name`, by peft's rule.

    Full names are paths such as "model.layers.0.self_attn.q_proj".
    - A list (or tuple, set) names modules: an entry matches a full name, or its end after a dot.
      ["q_proj"] selects every layer's q_proj; ["layers.0.self_attn.q_proj"] only layer 0's.
    - A string is a regular expression that must match the whole full name:
      r".*\.(q|v)_proj" selects every q_proj and v_proj, r"model\.layers\.0\..*_proj" the
      projections of layer 0. So the string "q_proj" matches nothing in a Llama; to name
      layers, pass a list: ["q_proj"].
    - "all-linear" (`is_all_linear`) is not a pattern: it means every linear layer but the output
      head, and `find_targets` and `memory.lora_params` expand it before matching any name.
    peftlab.lora (`find_targets`) and peftlab.memory (`lora_params`) both select through here.
    """
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return name in target_modules or any(name.endswith(f".{t}") for t in target_modules)


def no_match_hint(target_modules: Targets) -> str:
    """What to say when `target_modules` matched nothing: for a string, how it was read."""
    if not isinstance(target_modules, str):
        return ""
    example = [target_modules] if re.fullmatch(r"[\w.]+", target_modules) else ["q_proj"]
    return (
        f"; a string is a regular expression for the whole module name (peft's rule), "
        f"to name layers pass a list such as {example!r}"
    )


def find_targets(model: nn.Module, target_modules: Targets) -> list[str]:
    """Names of the modules `target_modules` selects (see `target_matches` for the rule),
    checked; the model is not changed."""
    if is_all_linear(target_modules):
        head = _output_layer_name(model)
        names = [
            n
            for n, m in model.named_modules()
            if isinstance(m, nn.Linear | Conv1D | LoRALinear) and ".lora_" not in n and n != head
        ]
        names = [n for n in names if not any(n.startswith(f"{p}.") for p in names)]
    else:
        if not isinstance(target_modules, str | list | tuple | set) or not target_modules:
            raise ValueError(
                f"target_modules={target_modules!r}: give a list of layer names such as"
                ' ["q_proj", "v_proj"], a regular expression, or "all-linear"'
            )
        names = [n for n, _ in model.named_modules() if n and target_matches(n, target_modules)]
    if not names:
        raise ValueError(
            f"target_modules={target_modules!r} matches no module of this model; "
            f"its linear layers are: {', '.join(linear_layer_names(model))}"
            f"{no_match_hint(target_modules)}"
        )
    modules = dict(model.named_modules())
    for name in names:
        module = modules[name]
        if isinstance(module, LoRALinear):
            raise ValueError(
                f"{name} already has LoRA (r={module.r}); LoRA cannot be added twice to one layer: "
                "merge_lora(model) first, or target other modules"
            )
        if not isinstance(module, nn.Linear | Conv1D):
            raise ValueError(
                f"target_modules={target_modules!r} selects {name}, a {type(module).__name__}; "
                f"LoRA wraps linear layers only: {', '.join(linear_layer_names(model))}"
            )
    return names


def add_lora(
    model: nn.Module,
    target_modules: Targets,
    r: int,
    alpha: float,
    dropout: float = 0.0,
    use_rslora: bool = False,
) -> nn.Module:
    """Wrap the selected linear layers in LoRALinear and freeze everything else; returns `model`.

    All checks run before anything changes, so a bad argument leaves the model as it was.
    """
    names = find_targets(model, target_modules)
    modules = dict(model.named_modules())
    for name in names:
        check_hyperparameters(r, alpha, dropout, *_features(modules[name]))
    model.requires_grad_(False)
    for name in names:
        model.set_submodule(name, LoRALinear(modules[name], r, alpha, dropout, use_rslora))
    return model


def merge_lora(model: nn.Module, unload: bool = True) -> nn.Module:
    """Fold every adapter into its base weight. With `unload` (the default) each LoRALinear is
    replaced by its plain base layer, as peft's merge_and_unload does; with unload=False the
    LoRA layers stay (merged) so that unmerge_lora can take the update back out."""
    for name, layer in lora_layers(model).items():
        if not layer.merged:
            layer.merge()
        if unload:
            model.set_submodule(name, layer.base_layer)
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Take every merged adapter back out of its base weight; returns `model`."""
    for layer in lora_layers(model).values():
        if layer.merged:
            layer.unmerge()
    return model


def lora_param_count(model: nn.Module, target_modules: Targets, r: int) -> int:
    """Parameters add_lora(model, target_modules, r, ...) would train, r * (in + out) per
    selected layer, counted without changing the model (works on the meta device)."""
    modules = dict(model.named_modules())
    return sum(r * sum(_features(modules[n])) for n in find_targets(model, target_modules))


def count_trainable(model: nn.Module) -> int:
    """Number of parameters that receive gradients (with LoRA: r * (in + out) per adapted layer)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def trainable_share(trainable: int, total: int) -> float:
    """Trainable parameters as a share of all of the adapted model's parameters, the adapters
    included: peft's definition (`print_trainable_parameters`), the one the course prints."""
    if trainable < 0 or total <= 0 or trainable > total:
        raise ValueError(
            f"trainable={trainable}, total={total}: need 0 <= trainable <= total and total > 0 "
            "(total counts every parameter of the adapted model, adapters included)"
        )
    return trainable / total


def share_text(trainable: int, total: int) -> str:
    """`trainable_share` as a percentage to three significant digits ("5.45%", "0.0622%")."""
    share = 100 * trainable_share(trainable, total)
    return f"{share:#.3g}".rstrip(".") + "%" if share else "0%"


def _task_type(model: nn.Module) -> str | None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return (
        "CAUSAL_LM" if type(model).__name__ in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() else None
    )


def _saved_target_modules(model: nn.Module, names: list[str]) -> list[str]:
    """Short names (["q_proj", "v_proj"]) if they select exactly these layers, else full names."""
    short = sorted({n.rsplit(".", 1)[-1] for n in names})
    selected = {
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear | Conv1D | LoRALinear) and target_matches(n, short)
    }
    return short if selected == set(names) else sorted(names)


def adapter_config(model: nn.Module, base_model_name_or_path: str | None = None) -> dict:
    """The adapter_config.json that peft would write for the LoRA layers of `model`."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("model has no LoRA layers: call add_lora(model, target_modules, r, alpha)")
    settings = Counter(
        (m.r, m.alpha, m.use_rslora, getattr(m.lora_dropout, "p", 0.0)) for m in layers.values()
    )
    if len(settings) > 1:
        raise ValueError(
            f"LoRA layers differ in (r, alpha, use_rslora, dropout): {sorted(settings)}; "
            "one adapter_config.json holds one setting, so use one add_lora call per adapter"
        )
    (r, alpha, use_rslora, dropout), _ = settings.most_common(1)[0]
    if base_model_name_or_path is None:
        base_model_name_or_path = (
            getattr(getattr(model, "config", None), "name_or_path", "") or None
        )
    return {
        "peft_type": "LORA",
        "task_type": _task_type(model),
        "base_model_name_or_path": base_model_name_or_path,
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "use_rslora": use_rslora,
        "target_modules": _saved_target_modules(model, list(layers)),
        "fan_in_fan_out": any(m.fan_in_fan_out for m in layers.values()),
        "bias": "none",
        "lora_bias": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """LoRA weights under peft's saved key names: base_model.model.<module>.lora_A.weight."""
    return {
        f"{PEFT_KEY_PREFIX}{name}.{part}.weight": getattr(layer, part).weight.detach().cpu()
        for name, layer in lora_layers(model).items()
        for part in ("lora_A", "lora_B")
    }


def save_adapter(
    model: nn.Module, path: str | os.PathLike, base_model_name_or_path: str | None = None
) -> Path:
    """Write the adapter in peft's format (adapter_config.json, adapter_model.safetensors).

    The folder appears complete or not at all; peft's PeftModel.from_pretrained reads it.
    """
    config = adapter_config(model, base_model_name_or_path)
    tensors = {k: v.contiguous() for k, v in adapter_state_dict(model).items()}
    with atomic_dir(path) as tmp:
        save_file(tensors, tmp / WEIGHTS_NAME, metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return Path(path)


def _read_adapter(path: Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """The config and the weights grouped by module name: {name: {"lora_A": A, "lora_B": B}}."""
    for file in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / file).is_file():
            raise FileNotFoundError(
                f"{path / file} is missing: give a folder written by "
                "save_adapter or peft's save_pretrained"
            )
    config = json.loads((path / CONFIG_NAME).read_text())
    unsupported = {
        "peft_type": config.get("peft_type") != "LORA",
        "use_dora": bool(config.get("use_dora")),
        "bias": config.get("bias", "none") != "none",
        "lora_bias": bool(config.get("lora_bias")),
        "modules_to_save": bool(config.get("modules_to_save")),
        "alpha_pattern": bool(config.get("alpha_pattern")),
    }
    bad = [f"{k}={config.get(k)!r}" for k, is_bad in unsupported.items() if is_bad]
    if bad:
        raise ValueError(
            f"{path}: {', '.join(bad)}: peftlab.lora loads plain LoRA adapters only; "
            "load this one with peft's PeftModel.from_pretrained"
        )
    weights: dict[str, dict[str, torch.Tensor]] = {}
    pattern = re.compile(rf"{re.escape(PEFT_KEY_PREFIX)}(.+)\.(lora_A|lora_B)\.weight")
    for key, tensor in load_file(path / WEIGHTS_NAME).items():
        match = pattern.fullmatch(key)
        if not match:
            raise ValueError(
                f"{key}: not a LoRA weight key; expected {PEFT_KEY_PREFIX}<module>.lora_A.weight"
            )
        weights.setdefault(match.group(1), {})[match.group(2)] = tensor
    for name, pair in weights.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise ValueError(f"{path}: layer {name} has {sorted(pair)} but needs lora_A and lora_B")
    return config, weights


def load_adapter(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Add the adapter saved at `path` (by save_adapter or by peft) to `model`; returns `model`.
    (`adapters.load` loads an adapter with peft instead, into a PeftModel.)

    Every layer and shape is checked first, so an adapter that does not fit leaves the model
    unchanged. Layers without LoRA get a new LoRALinear; existing ones receive the weights.
    """
    path = Path(path)
    config, weights = _read_adapter(path)
    alpha, dropout = config["lora_alpha"], config.get("lora_dropout", 0.0)
    use_rslora = bool(config.get("use_rslora", False))
    modules = dict(model.named_modules())
    for name, pair in weights.items():
        module = modules.get(name)
        base = module.base_layer if isinstance(module, LoRALinear) else module
        if not isinstance(base, nn.Linear | Conv1D):
            found = "no such module" if module is None else f"a {type(module).__name__}"
            raise ValueError(
                f"adapter layer {name}: the model has {found} there; load the adapter into the "
                f"base model it was trained on ({config.get('base_model_name_or_path')})"
            )
        if isinstance(module, LoRALinear) and module.merged:
            raise ValueError(f"{name} is merged: call unmerge_lora(model) before loading weights")
        in_features, out_features = _features(base)
        r = pair["lora_A"].shape[0]
        r_model = module.r if isinstance(module, LoRALinear) else r
        needed = {"lora_A": (r_model, in_features), "lora_B": (out_features, r_model)}
        for part, shape in needed.items():
            if tuple(pair[part].shape) != shape:
                raise ValueError(
                    f"adapter layer {name}: {part} has shape {tuple(pair[part].shape)} but this "
                    f"model needs {shape}; load the adapter into the base model it was trained on"
                )
        check_hyperparameters(r, alpha, dropout, in_features, out_features)

    model.requires_grad_(False)
    for name, pair in weights.items():
        layer = modules[name]
        if not isinstance(layer, LoRALinear):
            layer = LoRALinear(layer, pair["lora_A"].shape[0], alpha, dropout, use_rslora)
            model.set_submodule(name, layer)
        layer.set_scale(alpha, use_rslora)
        with torch.no_grad():
            layer.lora_A.weight.copy_(pair["lora_A"])
            layer.lora_B.weight.copy_(pair["lora_B"])
        layer.lora_A.requires_grad_(True)
        layer.lora_B.requires_grad_(True)
    return model
