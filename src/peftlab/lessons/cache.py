"""Compute a lesson's expensive results once: the notebook and the lesson test share them.

`cached(name, compute, **params)` returns `compute(**params)`, kept on disk under a key made of
everything that could change the result: the package's source and assets, the library versions,
the settings that choose the CPU kernels, and `params`. Change any of them and the results are
computed afresh; nothing is ever reused across a code change. `PEFTLAB_NO_CACHE=1` turns the
cache off. The files live in the checkout's `runs/cache/` (`make clean` removes them), or in the
user's cache folder when the package runs without a checkout.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from peftlab import paths

T = TypeVar("T")
LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "tokenizers")
# Settings that choose floating-point kernels (see the README's "Numbers on your CPU").
KERNEL_SETTINGS = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "PEFTLAB_NO_AVX512BF16",
    "PEFT_LAB_MODEL",
)


@functools.cache
def _code_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(paths.PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(paths.PACKAGE)).encode())
            digest.update(path.read_bytes())
    for library in LIBRARIES:
        digest.update(f"{library}=={importlib.metadata.version(library)}".encode())
    return digest.hexdigest()


def key(label: str, /, **params: Any) -> str:
    settings = {k: os.environ.get(k) for k in KERNEL_SETTINGS}
    text = repr((label, _code_digest(), sorted(settings.items()), sorted(params.items())))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def folder() -> Path:
    try:
        return paths.course_root() / "runs" / "cache"
    except FileNotFoundError:
        import platformdirs

        return Path(platformdirs.user_cache_dir("peftlab"))


def cached(label: str, compute: Callable[..., T], /, *, files: bool = False, **params: Any) -> T:
    """`compute(**params)`, from disk when this code on this machine computed it before.

    With `files=True`, `compute` also gets `scratch=`, a folder that lives as long as the cached
    result, for the files the result points to (trained adapters, a merged model).
    """
    path = folder() / f"{label}-{key(label, **params)}.pkl"
    if files:
        scratch = path.with_suffix("")
        params = params | {"scratch": scratch}
    if path.is_file() and not os.environ.get("PEFTLAB_NO_CACHE"):
        with path.open("rb") as f:
            return pickle.load(f)
    if files:
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
    result = compute(**params)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, delete=False) as f:
        pickle.dump(result, f)
    os.replace(f.name, path)
    return result
