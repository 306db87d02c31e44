"""The before/after playground of the customer-support lesson (notebook 05).

Type a complaint, press "Reply", and read the base model's and the tuned model's answers with
their rubric marks; switch between greedy decoding and sampling (temperature, top-p) and set the
reply length. Bad input (an empty or over-long complaint, a setting `generate` refuses) is shown
as a message inside the widget, never as a traceback.
"""

from __future__ import annotations

import html
import warnings

import ipywidgets as widgets

from peftlab import support_data
from peftlab.generate import MAX_NEW_TOKENS, generate
from peftlab.rubric import CRITERIA, score_reply
from peftlab.seed import seed_everything

MAX_COMPLAINT_CHARS = 300
MAX_NEW_TOKENS_LIMIT = 128
PASS_COLOR, FAIL_COLOR, NOTE_COLOR = "#1a7f37", "#cf222e", "#9a6700"


def check_complaint(complaint: str) -> str:
    """The complaint, stripped; ValueError naming the fix if it is empty or too long."""
    text = complaint.strip()
    if not text:
        raise ValueError("the complaint is empty: type what the customer wrote, e.g. "
                         f"{support_data.LESSON_COMPLAINT!r}")  # fmt: skip
    if len(text) > MAX_COMPLAINT_CHARS:
        raise ValueError(
            f"the complaint has {len(text)} characters: keep it under {MAX_COMPLAINT_CHARS} "
            "(one or two sentences, as a customer would write)"
        )
    return text


def reply_html(side: str, reply: str, complaint: str) -> str:
    """One side's reply with a tick or cross per rubric criterion and its score."""
    marks = score_reply(reply, complaint)
    badges = " ".join(
        f"<span style='color:{PASS_COLOR if marks[c] else FAIL_COLOR}'>"
        f"{'&#10003;' if marks[c] else '&#10007;'} {c}</span>"
        for c in CRITERIA
    )
    return (
        f"<div style='margin:6px 0'><b>{side}</b> (score {marks['score']:.2f})"
        f"<blockquote style='margin:4px 0 4px 12px'>{html.escape(reply) or '<i>(empty)</i>'}"
        f"</blockquote>{badges}</div>"
    )


def message_html(text: str, color: str = FAIL_COLOR) -> str:
    return f"<p style='color:{color}'>{html.escape(text)}</p>"


class Playground:
    """Before/after replies to a typed complaint; `.widget` is what the notebook displays.

    `base_model` must be a model without the adapter (load a second copy: `get_peft_model`
    changes the model it wraps in place).
    """

    def __init__(
        self,
        base_model,
        tuned_model,
        tokenizer,
        complaint: str = support_data.LESSON_COMPLAINT,
    ) -> None:
        self.models = {"before": base_model, "after": tuned_model}
        self.tokenizer = tokenizer
        wide = widgets.Layout(width="100%")
        self.complaint = widgets.Textarea(
            value=complaint, placeholder="What did the customer write?", layout=wide
        )
        self.decoding = widgets.ToggleButtons(options=["greedy", "sampling"], value="greedy",
                                              description="decoding")  # fmt: skip
        self.temperature = widgets.FloatSlider(value=0.7, min=0.1, max=2.0, step=0.05,
                                               description="temperature")  # fmt: skip
        self.top_p = widgets.FloatSlider(value=0.9, min=0.05, max=1.0, step=0.05,
                                         description="top_p")  # fmt: skip
        self.max_new_tokens = widgets.IntSlider(value=MAX_NEW_TOKENS, min=1,
                                                max=MAX_NEW_TOKENS_LIMIT,
                                                description="max tokens")  # fmt: skip
        self.seed = widgets.IntText(value=0, description="seed")
        self.button = widgets.Button(description="Reply", icon="paper-plane",
                                     button_style="primary")  # fmt: skip
        self.output = widgets.HTML()
        self.button.on_click(lambda _b: self.reply())
        self.decoding.observe(lambda _c: self._enable_sampling(), names="value")
        self._enable_sampling()
        self.widget = widgets.VBox([
            self.complaint,
            widgets.HBox([self.decoding, self.max_new_tokens]),
            widgets.HBox([self.temperature, self.top_p, self.seed]),
            self.button,
            self.output,
        ])  # fmt: skip

    def _enable_sampling(self) -> None:
        greedy = self.decoding.value == "greedy"
        for control in (self.temperature, self.top_p, self.seed):
            control.disabled = greedy

    def generation_kwargs(self) -> dict:
        """What goes to `generate` for the current settings."""
        kwargs: dict = {"max_new_tokens": int(self.max_new_tokens.value)}
        if self.decoding.value == "sampling":
            kwargs.update(do_sample=True, temperature=float(self.temperature.value),
                          top_p=float(self.top_p.value))  # fmt: skip
        return kwargs

    def replies(self, complaint: str) -> tuple[dict[str, str], list[str]]:
        """Before and after replies (each side seeded alike) and any warnings raised."""
        out = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            for side, model in self.models.items():
                seed_everything(int(self.seed.value))
                out[side] = generate(
                    model, self.tokenizer, [complaint], **self.generation_kwargs()
                )[0]
        notes = list(dict.fromkeys(str(w.message) for w in caught if w.category is UserWarning))
        return out, notes

    def reply(self) -> None:
        """Answer the typed complaint with both models and show the replies and marks."""
        try:
            complaint = check_complaint(self.complaint.value)
            replies, notes = self.replies(complaint)
        except ValueError as exc:
            self.output.value = message_html(str(exc))
            return
        settings = ", ".join(f"{k}={v}" for k, v in self.generation_kwargs().items())
        self.output.value = (
            "".join(message_html(note, NOTE_COLOR) for note in notes)
            + f"<div style='color:#57606a'>{html.escape(settings)}</div>"
            + "".join(reply_html(side, replies[side], complaint) for side in self.models)
        )


def playground(base_model, tuned_model, tokenizer) -> Playground:
    """Build the before/after playground; display `.widget`, or call `.reply()` to drive it."""
    return Playground(base_model, tuned_model, tokenizer)
