"""`peftlab train`: bad input gets one line naming the file and line, exit 2, nothing written;
good input writes an adapter that peft loads and `peftlab demo --adapter` compares."""

import json
from pathlib import Path

import pytest

from peftlab import cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PAIR = {
    "prompt": "Customer says: 'My lamp is broken.' Write a reply.",
    "completion": "Hi! I'm sorry your lamp is broken. I will send a new one today.",
}


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path, *lines):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    "lines, extra, message",
    [
        ([json.dumps(PAIR), '{"prompt": "x", '], [], "data.jsonl:2: malformed JSON"),
        ([json.dumps({"text": "hello"})], [], "data.jsonl:1: neither format"),
        (
            [json.dumps({"messages": [{"role": "customer", "content": "hi"}]})],
            [],
            "data.jsonl:1: unknown role 'customer'",
        ),
        ([], [], "data.jsonl:1: the file is empty"),
        (
            [json.dumps(PAIR), json.dumps(PAIR), json.dumps({"prompt": "Hi", "completion": ""})],
            [],
            "data.jsonl:3: empty completion",
        ),
        ([json.dumps(PAIR)], ["--val-fraction", "0"], "--val-fraction 0.0: must be in (0, 0.5]"),
        ([json.dumps(PAIR)], ["--val-fraction", "0.6"], "--val-fraction 0.6"),
        ([json.dumps(PAIR)], ["--method", "dora"], "--method dora"),
        ([json.dumps(PAIR)], ["--steps", "0"], "--steps 0"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(capsys, tmp_path, lines, extra, message):
    data = write(tmp_path, *lines)
    out_dir = tmp_path / "adapter"
    code, out, err = run_cli(capsys, "train", "--data", str(data), "--out", str(out_dir), *extra)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl"]  # no adapter, no temp


def test_missing_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path / "nope.jsonl"))
    assert code == 2 and "nope.jsonl: no such file" in err


def test_steps_and_epochs_exclude_each_other(capsys, tmp_path):
    data = write(tmp_path, json.dumps(PAIR))
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--data", str(data), "--steps", "3", "--epochs", "1"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_methods_the_cli_offers_are_the_ones_finetune_trains():
    from peftlab import finetune
    from peftlab.commands import train

    assert train.TRAIN_METHODS == finetune.TRAIN_METHODS


@pytest.mark.slow
def test_tiny_file_warns_and_long_examples_are_cut_once(capsys, tmp_path):
    long = {"prompt": "My parcel is late. " * 80, "completion": "Sorry! It ships today."}
    data = write(tmp_path, json.dumps(PAIR), json.dumps(long), json.dumps(long))
    out_dir = tmp_path / "adapter"
    code, out, err = run_cli(
        capsys, "train", "--data", str(data), "--out", str(out_dir), "--steps", "60", "--json"
    )
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, err
    assert "60 steps over 3 training record(s)" in warnings[0]
    assert "2 of 3 examples are longer than the model's context (256 tokens)" in warnings[1]
    assert json.loads(out)["metrics"]["steps"] == 60


@pytest.mark.slow
def test_train_then_demo_with_the_adapter(capsys, tmp_path, monkeypatch):
    from peft import PeftModel

    from peftlab import base_model

    monkeypatch.chdir(tmp_path)  # the default --out is runs/train/<data name>
    code, out, err = run_cli(
        capsys, "train", "--data", str(EXAMPLES / "support.jsonl"), "--val-fraction", "0.2",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    adapter = tmp_path / "runs" / "train" / "support"
    assert Path(report["adapter"]) == Path("runs/train/support")
    names = {p.name for p in adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= names
    assert {"train_config.json", "metrics.json"} <= names
    metrics = json.loads((adapter / "metrics.json").read_text())
    assert (metrics["train_records"], metrics["val_records"]) == (16, 4)
    assert metrics["val_loss"] < metrics["val_loss_before"]  # the held-out replies got likelier
    assert json.loads((adapter / "train_config.json").read_text())["method"] == "lora"

    model, _ = base_model.load()
    loaded = PeftModel.from_pretrained(model, str(adapter))
    assert loaded.peft_config["default"].r == 8

    prompts = tmp_path / "p.txt"
    prompts.write_text("My order is late.\nThe blue kettle leaks.\n")
    code, out, err = run_cli(
        capsys, "demo", "--adapter", str(adapter), "--prompts", str(prompts), "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert [row["complaint"] for row in result["examples"]] == [
        "My order is late.",
        "The blue kettle leaks.",
    ]
    assert result["summary"]["after"] > result["summary"]["before"]  # the adapter is in use
    assert result["trainable_params"] == metrics["trainable_params"]


def test_demo_adapter_bad_input(capsys, tmp_path):
    code, out, err = run_cli(capsys, "demo", "--adapter", str(tmp_path))
    assert code == 2 and out == "" and "no adapter_config.json" in err
    (tmp_path / "adapter_config.json").write_text("{}")
    code, _, err = run_cli(capsys, "demo", "--adapter", str(tmp_path), "--steps", "3")
    assert code == 2 and "nothing is trained with --adapter" in err
