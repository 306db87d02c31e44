"""The one call every notebook starts with: `from peftlab.notebook import setup; setup()`.

It prints the versions the notebook's numbers were computed with (so a learner can compare with
the committed outputs), silences the library noise `peftlab.quiet` knows to be harmless, and
shows figures inline. What a lesson seeds, and with what, stays in the notebook, where it shows.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence

from peftlab import quiet

LIBRARIES = ("peftlab", "torch", "transformers", "peft", "bitsandbytes")


def versions(libraries: Sequence[str] = LIBRARIES) -> str:
    """One line per library, `name version`, and the device the notebook runs on."""
    import torch

    lines = [f"{name:13s} {importlib.metadata.version(name)}" for name in libraries]
    device = "cpu (CUDA available)" if torch.cuda.is_available() else "cpu"
    return "\n".join([*lines, f"{'device':13s} {device}"])


def setup(libraries: Sequence[str] = LIBRARIES) -> None:
    """Print the library versions, silence known library noise, show figures inline."""
    quiet.silence()
    try:
        from IPython import get_ipython
    except ImportError:  # a plain Python script: nothing to draw inline
        shell = None
    else:
        shell = get_ipython()
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")
    print(versions(libraries))
