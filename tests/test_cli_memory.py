"""`peftlab memory`: the table, --json, --compare, and one-line errors with exit code 2."""

import json

import pytest

from peftlab import cli, memory, presets


@pytest.fixture(autouse=True)
def only_memory_command(monkeypatch):
    """Build the parser from this command alone, so other commands' state cannot break it."""
    monkeypatch.setattr(cli, "COMMANDS", {"memory": "memory"})


def run_json(capsys, *args: str) -> dict:
    assert cli.main(["memory", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_every_term_in_bytes_and_the_total(capsys):
    out = run_json(capsys, "--model", "llama-2-7b", "--method", "full")
    expected = memory.estimate("llama-2-7b").to_dict()
    assert out["bytes"] == expected
    assert out["bytes"]["total"] == sum(v for k, v in expected.items() if k != "total")
    assert out["params"] == out["trainable_params"] == 6_738_415_616
    assert out["fits"] == {gpu: False for gpu in presets.GPUS}


def test_json_passes_every_option_through(capsys, tmp_path):
    memory.preset("mistral-7b").save_pretrained(tmp_path)
    args = ["--model", str(tmp_path / "config.json"), "--method", "qlora", "--rank", "16"]
    args += ["--targets", "all-linear", "--precision", "bf16", "--optimizer", "adamw8bit"]
    args += ["--batch-size", "4", "--seq-len", "1024", "--gradient-checkpointing"]
    args += ["--no-double-quant", "--optimizer-precision", "fp32", "--attn-implementation"]
    args += ["eager", "--no-prepare-kbit"]
    out = run_json(capsys, *args)
    expected = memory.estimate(
        "mistral-7b",
        method="qlora",
        r=16,
        target_modules="all-linear",
        precision="bf16",
        optimizer="adamw8bit",
        batch_size=4,
        seq_len=1024,
        gradient_checkpointing=True,
        double_quant=False,
        optimizer_precision="fp32",
        attn_implementation="eager",
        prepare_kbit=False,
    )
    assert out["bytes"] == expected.to_dict()
    assert out["trainable_params"] == memory.lora_params("mistral-7b", 16, "all-linear")


def test_targets_list_and_hf_accounting(capsys):
    out = run_json(capsys, "--method", "lora", "--targets", "q_proj, k_proj,v_proj")
    assert out["trainable_params"] == memory.lora_params(
        "llama-2-7b", 8, ["q_proj", "k_proj", "v_proj"]
    )
    out = run_json(capsys, "--accounting", "hf", "--seq-len", "1")
    per_param = (out["bytes"]["total"] - out["bytes"]["activations"]) / out["params"]
    assert per_param == 18


def test_qlora_paper_recipe_and_paged_floor(capsys):
    args = ["--model", "llama-65b", "--method", "qlora", "--rank", "64", "--targets"]
    args += ["all-linear", "--precision", "bf16", "--optimizer", "paged_adamw"]
    args += ["--optimizer-precision", "fp32", "--no-prepare-kbit"]
    out = run_json(capsys, *args)
    assert out["gradient_checkpointing"] is None  # qlora's default: on
    assert out["bytes"]["total"] < 48 * 2**30
    assert out["pageable"] == out["bytes"]["optimizer_states"] > 0
    assert out["gpu_floor"] == out["bytes"]["total"] - out["pageable"]
    assert cli.main(["memory", *args]) == 0
    text = capsys.readouterr().out
    assert "GPU floor GB (paged evicted)" in text and f"{out['gpu_floor'] / 1e9:.3f}" in text
    assert "T4 16 GB: no bf16, use fp16 compute" in text
    out = run_json(capsys, "--method", "qlora", "--no-gradient-checkpointing")
    expected = memory.estimate("llama-2-7b", method="qlora", gradient_checkpointing=False)
    assert out["bytes"] == expected.to_dict()


def test_table_shows_gb_gib_and_fit(capsys):
    assert cli.main(["memory", "--model", "llama-2-7b", "--method", "qlora"]) == 0
    text = capsys.readouterr().out
    total = memory.estimate("llama-2-7b", method="qlora").total
    assert f"{total / 1e9:.3f}" in text and f"{total / 2**30:.3f}" in text
    fit_lines = [line for line in text.splitlines() if line.startswith("24 GB consumer")]
    assert fit_lines and fit_lines[0].split()[-1] == "fits"
    assert "H100 80 GB" in text


def test_compare_puts_three_methods_side_by_side(capsys):
    assert cli.main(["memory", "--compare", "--model", "llama-2-13b"]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("term"))
    assert header.split() == ["term", "full", "GB", "lora", "GB", "qlora", "GB"]
    out = run_json(capsys, "--compare", "--model", "llama-2-13b")
    totals = [out["methods"][m]["bytes"]["total"] for m in memory.METHODS]
    assert totals == sorted(totals, reverse=True)  # full > LoRA > QLoRA
    consumer = [out["methods"][m]["fits"]["24 GB consumer (RTX 3090/4090)"] for m in memory.METHODS]
    assert consumer == [False, False, True]


def test_dpo_reference_options_cost_one_frozen_copy_or_nothing(capsys):
    """Lesson 12's calculator: a separate reference holds the frozen base again; the adapter
    switched off holds nothing more than SFT does."""
    lora = ["--method", "lora", "--precision", "bf16"]
    sft = run_json(capsys, *lora)["bytes"]
    off = run_json(capsys, *lora, "--reference", "adapter-off")["bytes"]
    separate = run_json(capsys, *lora, "--reference", "separate")
    assert off == sft
    assert separate["reference"] == "separate"
    extra = separate["bytes"]["total"] - off["total"]
    assert extra == off["frozen_weights"] == memory.count_params("llama-2-7b") * 2  # bf16
    assert cli.main(["memory", *lora, "--reference", "separate"]) == 0
    assert "DPO with a separate frozen reference model" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--method", "lora", "--rank", "0"], "r=0"),
        (["--method", "lora", "--rank", "-3"], "r=-3"),
        (["--method", "lora", "--rank", "5000"], "r=5000"),
        (["--method", "prefix"], "full, lora, qlora"),
        (["--precision", "fp8"], "mixed, bf16, fp32"),
        (["--optimizer", "lion"], "adamw, adamw8bit, paged_adamw, paged_adamw8bit, sgd"),
        (["--optimizer-precision", "fp8"], "optimizer_precision='fp8'"),
        (["--attn-implementation", "flash"], "sdpa, eager"),
        (["--batch-size", "0"], "batch_size=0"),
        (["--seq-len", "-1"], "seq_len=-1"),
        (["--model", "gpt-5"], "llama-2-7b"),
        (["--method", "lora", "--targets", "query"], "q_proj"),
        (["--method", "lora", "--targets", ","], "--targets"),
        (["--batch-size", "two"], "invalid int value"),
        (["--reference", "copy"], "none, separate, adapter-off"),
        (["--reference", "adapter-off"], "no adapter to switch off"),
        (["--model", "VIT_DIR"], "not a causal language model"),
        (["--model", "VIT_DIR", "--method", "lora"], "not a causal language model"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, args, needle):
    from transformers import ViTConfig

    ViTConfig().save_pretrained(tmp_path)
    args = [str(tmp_path) if a == "VIT_DIR" else a for a in args]
    try:
        code = cli.main(["memory", *args])
    except SystemExit as exc:  # argparse rejects non-integers before run() is called
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert needle in captured.err


def test_the_course_models_have_their_cli_names(capsys):
    """`--model smollm2` and `--model embedded` mean what they mean in `peftlab demo`."""
    from peftlab import cli, memory

    assert memory.count_params(memory.preset("smollm2")) == 134_515_008
    assert memory.count_params(memory.preset("embedded")) == memory.count_params(
        memory.preset("peftlab-base")
    )
    assert cli.main(["memory", "--model", "smollm2", "--method", "lora", "--json"]) == 0
    assert "total" in capsys.readouterr().out
