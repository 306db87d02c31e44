"""The training loss drawn as it arrives: an `on_loss(step, loss)` callback (notebook 05)."""

from __future__ import annotations

from matplotlib.figure import Figure

from peftlab.lessons.lesson05_support_demo import AFTER_COLOR, SMALL


class LossCurve:
    """An `on_loss(step, loss)` callback that records the training loss and can draw it.

    With `live=True` (in Jupyter) it redraws one displayed figure as the losses arrive; otherwise
    it only records, and `figure()` draws the final curve.
    """

    def __init__(self, live: bool = False, title: str = "LoRA fine-tune: training loss") -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.title = title
        self.live = live
        self._handle = None

    def __call__(self, step: int, loss: float) -> None:
        self.steps.append(int(step))
        self.losses.append(float(loss))
        if self.live:
            from IPython.display import display

            fig = self.figure()
            if self._handle is None:
                self._handle = display(fig, display_id=True)
            else:
                self._handle.update(fig)

    def figure(self) -> Figure:
        """The loss against the optimizer step, so far."""
        fig = Figure(figsize=SMALL, layout="constrained")
        ax = fig.add_subplot()
        ax.plot(self.steps, self.losses, marker="o", markersize=3, color=AFTER_COLOR)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss on reply tokens")
        ax.set_title(self.title)
        ax.grid(alpha=0.3)
        return fig
