"""ipywidgets front ends for the notebooks. Each builder returns an object whose `update()`
does the work, so tests can drive the controls without a browser."""

from dataclasses import dataclass, field
from typing import Any

from peftlab import memory, presets
from peftlab.lessons import lesson01_peft_basics as lesson01

RANK_CHOICES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SEQ_CHOICES = (128, 256, 512, 1024, 2048, 4096, 8192)


def calculator_models() -> list[str]:
    """Presets the calculator offers (the embedded model only once it is on disk)."""
    names = [name for name in presets.PRESETS if name != presets.EMBEDDED_PRESET]
    if presets.EMBEDDED_CONFIG.is_file():
        names.append(presets.EMBEDDED_PRESET)
    return names


def calculator_summary(values: dict[str, Any]) -> tuple[memory.Breakdown | None, str]:
    """Breakdown and an HTML summary (total, trainable share, which cards fit) for the controls."""
    try:
        b = memory.estimate(
            values["model"],
            method=values["method"],
            r=values["rank"],
            target_modules=values["targets"],
            precision=values["precision"],
            optimizer=values["optimizer"],
            batch_size=values["batch_size"],
            seq_len=values["seq_len"],
            gradient_checkpointing=values["gradient_checkpointing"],
            optimizer_precision=values.get("optimizer_precision"),
            attn_implementation=values.get("attn_implementation", "sdpa"),
        )
    except ValueError as exc:
        return None, f"<b>Cannot estimate:</b> {exc}"
    total = memory.count_params(values["model"])
    if values["method"] == "full":
        trainable = total
    else:
        trainable = memory.lora_params(values["model"], values["rank"], values["targets"])
    cards = "".join(
        f"<li>{gpu}: {'fits' if ok else 'does not fit'}"
        f"{' (no bf16: use fp16 compute)' if gpu in presets.NO_BF16 else ''}</li>"
        for gpu, ok in presets.fits(b.total).items()
    )
    paged = (
        f"; {b.gpu_floor / 1e9:,.2f} GB if the paged optimizer states move to CPU RAM"
        if b.pageable
        else ""
    )
    html = (
        f"<b>{b.total / 1e9:,.2f} GB</b> ({b.total / 2**30:,.2f} GiB) to train "
        f"{values['model']} with {values['method']}{paged}; trainable {trainable:,} of "
        f"{total:,} parameters ({100 * trainable / total:.3g}%)<ul>{cards}</ul>"
    )
    return b, html


@dataclass
class MemoryCalculator:
    """Controls, an HTML summary and a stacked bar, redrawn whenever a control changes."""

    controls: dict[str, Any]
    summary: Any
    figure: Any
    widget: Any
    breakdown: memory.Breakdown | None = field(default=None)

    def values(self) -> dict[str, Any]:
        values = {name: control.value for name, control in self.controls.items()}
        values["targets"] = "all-linear" if values.pop("all_linear") else None
        return values

    def update(self, _change: Any = None) -> None:
        from IPython.display import display

        self.breakdown, self.summary.value = calculator_summary(self.values())
        self.figure.clear_output(wait=True)
        if self.breakdown is not None:
            with self.figure:
                display(lesson01.breakdown_figure(self.breakdown, self.controls["method"].value))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def memory_calculator(model: str = "llama-2-7b") -> MemoryCalculator:
    """A training-memory calculator: model, method, rank, precision, optimizer, batch, length."""
    import ipywidgets as w

    controls = {
        "model": w.Dropdown(options=calculator_models(), value=model, description="model"),
        "method": w.ToggleButtons(options=memory.METHODS, value="qlora", description="method"),
        "rank": w.SelectionSlider(options=RANK_CHOICES, value=8, description="rank r"),
        "all_linear": w.Checkbox(value=False, description="LoRA on all linear layers"),
        "precision": w.Dropdown(options=memory.PRECISIONS, value="mixed", description="precision"),
        "optimizer": w.Dropdown(options=memory.OPTIMIZERS, value="adamw", description="optimizer"),
        "optimizer_precision": w.Dropdown(
            options=[("default", None), *((p, p) for p in memory.OPTIMIZER_PRECISIONS)],
            value=None,
            description="Adam states",
        ),
        "attn_implementation": w.ToggleButtons(
            options=presets.ATTN_IMPLEMENTATIONS, value="sdpa", description="attention"
        ),
        "batch_size": w.IntSlider(value=1, min=1, max=64, description="batch"),
        "seq_len": w.SelectionSlider(options=SEQ_CHOICES, value=512, description="seq length"),
        # on, as for QLoRA (the method it opens on) prepare_model_for_kbit_training does
        "gradient_checkpointing": w.Checkbox(value=True, description="gradient checkpointing"),
    }
    summary, figure = w.HTML(), w.Output()
    box = w.HBox([w.VBox(list(controls.values())), w.VBox([summary, figure])])
    calc = MemoryCalculator(controls=controls, summary=summary, figure=figure, widget=box)
    for control in controls.values():
        control.observe(calc.update, names="value")
    calc.update()
    return calc
