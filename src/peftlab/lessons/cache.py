"""Compute a lesson's expensive results once: the notebook and the lesson test share them.

`cached(label, compute, **params)` returns `compute(**params)`, kept on disk under a key made of
everything that changes the result: the source of every package module `compute`'s module can
reach through its imports (static imports, lazy ones inside functions, and module names written
in strings, as a worker process's code is; the lessons' registry, prose checks and this cache
aside, which compute nothing), the package's assets, the library versions, the
CPU's kernel choice and the settings that steer it, the model asked for, and `params`. Change
any of them and the results are computed afresh: nothing is reused across a code change that
can reach the computation. An edit to a module the lesson never imports (the quiz, the CLI)
keeps its results. The thread count is not in the key: the lessons' figures came out identical
at one and two threads (docs/measurements.md, "Numbers on your CPU"), and lessons 03 and 04 pin
one thread while they compute.

`PEFTLAB_NO_CACHE=1` computes afresh and leaves the cache as it was. The files live in the
checkout's `runs/cache/` (`make clean` removes them), or in the user's cache folder when the
package runs without a checkout. One process computes a result at a time (a file lock), so
JupyterLab and `make test` may ask for the same one together.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from peftlab import paths

T = TypeVar("T")
LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "tokenizers")
# Environment variables that change what a lesson computes: the kernels (docs/measurements.md,
# "Numbers on your CPU") and the model the notebooks load.
KEYED_ENVIRONMENT = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "PEFTLAB_NO_AVX512BF16",
    "PEFT_LAB_MODEL",
)


_NAMED_MODULE = re.compile(r"\bpeftlab(?:\.\w+)+")


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    base = paths.PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(name: str, path: Path) -> set[str]:
    """The package modules `path` (module `name`) names: imports anywhere in it, and strings."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.update(_NAMED_MODULE.findall(node.value))
    return {m for m in found if m == "peftlab" or m.startswith("peftlab.")}


# The lessons' own machinery: the registry, the prose checks and this cache store and compare
# results but compute none, so editing them recomputes nothing.
MACHINERY = ("peftlab.lessons", "peftlab.lessons.prose", "peftlab.lessons.cache")


@functools.cache
def _reachable(module: str) -> tuple[tuple[str, Path], ...]:
    """`module` and every package module it can reach, with each parent package's __init__
    (the lessons' machinery aside)."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or name in MACHINERY:
            continue
        path = _module_file(name)
        if path is None:  # a name imported from a module, not a module
            continue
        seen[name] = path
        todo.extend(_imports(name, path))
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
    return tuple(sorted(seen.items()))


@functools.cache
def _code_digest(module: str | None = None) -> str:
    """The code `module`'s results depend on (the whole package when `module` is None)."""
    import torch

    digest = hashlib.sha256()
    if module is not None and module.startswith("peftlab") and _module_file(module):
        files = [path for _, path in _reachable(module)]
        files += [p for p in sorted((paths.PACKAGE / "assets").rglob("*")) if p.is_file()]
    else:
        files = sorted(paths.PACKAGE.rglob("*"))
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(paths.PACKAGE)).encode())
            digest.update(path.read_bytes())
    for library in LIBRARIES:
        digest.update(f"{library}=={importlib.metadata.version(library)}".encode())
    digest.update(torch.backends.cpu.get_cpu_capability().encode())
    return digest.hexdigest()


def key(label: str, /, module: str | None = None, **params: Any) -> str:
    settings = {k: os.environ.get(k) for k in KEYED_ENVIRONMENT}
    code = _code_digest(module)
    text = repr((label, code, sorted(settings.items()), sorted(params.items())))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def environment() -> str:
    """A short name for the kernels this process computes with: the CPU's kernel choice and the
    settings that steer it (`make test` and `make test-isa` each keep their own results)."""
    import torch

    settings = sorted((k, os.environ.get(k)) for k in KEYED_ENVIRONMENT)
    text = repr((torch.backends.cpu.get_cpu_capability(), settings))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def folder() -> Path:
    try:
        return paths.course_root() / "runs" / "cache"
    except FileNotFoundError:
        import platformdirs

        return Path(platformdirs.user_cache_dir("peftlab"))


def _write(path: Path, result: Any) -> None:
    """Pickle atomically: a temporary file renamed into place, removed if pickling fails."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            pickle.dump(result, f)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _prune(label: str, keep: Path) -> None:
    """Remove the other results of `label` computed with the same kernels (and their folders):
    earlier code's, never read again. Another environment's results stay: `make test-isa` does
    not undo `make test`'s cache, nor the other way round."""
    for old in keep.parent.glob(f"{label}-{environment()}-*.pkl"):
        if old != keep:
            old.unlink(missing_ok=True)
            old.with_suffix(".lock").unlink(missing_ok=True)
            shutil.rmtree(old.with_suffix(""), ignore_errors=True)


def cached(
    label: str,
    compute: Callable[..., T],
    /,
    *,
    files: bool = False,
    live: Mapping[str, Any] | None = None,
    **params: Any,
) -> T:
    """`compute(**params)`, from disk when this code on this machine computed it before.

    With `files=True`, `compute` also gets `scratch=`, a folder that lives as long as the cached
    result, for the files the result points to (trained adapters, a merged model). `live` holds
    arguments that do not change the result (a progress callback): `compute` gets them when it
    runs, and they are left out of the key.
    """
    from filelock import FileLock

    params_and_live = params | dict(live or {})
    if os.environ.get("PEFTLAB_NO_CACHE"):
        if not files:
            return compute(**params_and_live)
        scratch = Path(tempfile.mkdtemp(prefix=f"peftlab-{label}-"))
        return compute(scratch=scratch, **params_and_live)
    module = getattr(compute, "__module__", None)
    path = folder() / f"{label}-{environment()}-{key(label, module=module, **params)}.pkl"
    scratch = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock"))):
        if path.is_file() and (not files or scratch.is_dir()):
            with path.open("rb") as f:
                return pickle.load(f)
        if files:
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            params_and_live["scratch"] = scratch
        result = compute(**params_and_live)
        _write(path, result)
        _prune(label, keep=path)
        return result
