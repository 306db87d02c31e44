"""`peftlab demo`: bad input gets one line on stderr and exit code 2, before any model work."""

import pytest

from peftlab import cli
from peftlab.commands.demo import read_prompts


def run_cli(capsys, *argv):
    code = cli.main(["demo", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, message",
    [(["--steps", "0"], "--steps 0"), (["--steps", "-3"], "--steps -3"),
     (["--method", "dora"], "--method dora"), (["--prompts", "/no/such/file.txt"], "no such file"),
     (["--device", "tpu"], "--device tpu"), (["--all", "--prompts", "x.txt"], "--all")],
)  # fmt: skip
def test_bad_arguments_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert message in err


def test_empty_prompts_file(capsys, tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("\n  \n\n")
    code, _, err = run_cli(capsys, "--prompts", str(path))
    assert code == 2 and "no complaints" in err


def test_binary_prompts_file(capsys, tmp_path):
    path = tmp_path / "p.bin"
    path.write_bytes(b"\x89PNG\x00\x01\x02")
    code, _, err = run_cli(capsys, "--prompts", str(path))
    assert code == 2 and "binary" in err


def test_non_utf8_prompts_file(capsys, tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes("caf\xe9 late".encode("latin-1"))
    code, _, err = run_cli(capsys, "--prompts", str(path))
    assert code == 2 and "UTF-8" in err


def test_empty_lines_are_skipped_with_a_warning(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("My order is late.\n\n   \nThe red kettle leaks.\n")
    with pytest.warns(UserWarning, match="skipped 2 empty line"):
        assert read_prompts(path) == ["My order is late.", "The red kettle leaks."]


# pytest shows DeprecationWarnings, which a plain `peftlab demo` run ignores; torch's, raised when
# the demo first imports bitsandbytes, would add lines to stderr only when this test runs alone.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:torch")
def test_missing_model_offline(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run_cli(capsys, "--model", "nobody/no-such-model", "--steps", "1")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "PEFT_LAB_MODEL" in err and "HF_HUB_OFFLINE" in err


def test_the_methods_the_cli_offers_are_the_ones_finetune_trains():
    from peftlab import finetune
    from peftlab.commands import demo

    assert demo.TRAIN_METHODS == finetune.TRAIN_METHODS


def test_the_table_reports_the_wild_set_beside_the_heldout_one():
    """Rendered from a made-up result (no model): the worst wild replies, and both sets'
    measures, before -> after, with faithfulness marked apart from the rubric."""
    from peftlab.commands.demo import N_WORST, render_table
    from peftlab.compare import Comparison, measures, score_rows

    polite = "Hi! I'm sorry your order is late. I will check it today."
    sofa = "Hi! I'm sorry that your blue sofa arrived cracked. I will send a new one today."
    blunt = "Your order is late because of delays."
    held = score_rows(["My order is late."] * 2, [blunt] * 2, [polite] * 2)
    wild_complaints = [f"My screen number {i} arrived cracked." for i in range(N_WORST + 2)]
    wild = score_rows(wild_complaints, [blunt] * len(wild_complaints),
                      [sofa] * N_WORST + [polite, polite])  # fmt: skip
    result = Comparison("peftlab-base", "lora", 10, 100, 1.0, held, {"before": 0.0, "after": 1.0},
                        sets={"wild": {"examples": wild, "summary": measures(wild)}})  # fmt: skip
    text = render_table(result)
    assert f"in the wild: the {N_WORST} worst replies after fine-tuning, of 7" in text
    assert text.count("names what the complaint does not: blue, sofa") == N_WORST
    line = next(x for x in text.splitlines() if x.startswith("faithful"))
    # held-out: "late" was asked; wild: the sofa, and "late", were not
    assert line.split()[-6:] == ["100%", "->", "100%", "0%", "->", "0%"]
    line = next(x for x in text.splitlines() if x.startswith("mean rubric score"))
    s = measures(wild)
    assert line.split()[-3:] == [f"{s['before']:.2f}", "->", f"{s['after']:.2f}"]
    assert "-faith" in text and "+faith" in text


def test_the_table_without_further_sets_has_one_column():
    from peftlab.commands.demo import render_table
    from peftlab.compare import Comparison, score_rows

    rows = score_rows(
        ["My order is late."], ["Late."], ["Hi! Sorry it is late. I will ship today."]
    )
    text = render_table(Comparison("m", "lora", 1, 10, 1.0, rows, {"before": 0.0, "after": 1.0}))
    assert "complaints (1)" in text and "in the wild" not in text


def test_without_the_real_model_the_demo_says_so_in_one_line_and_runs_the_toy(
    tmp_path, monkeypatch, capsys
):
    import argparse

    from peftlab.commands.demo import default_model_name

    monkeypatch.setenv("PEFTLAB_MODELS", str(tmp_path))  # an empty cache: nothing fetched
    monkeypatch.delenv("PEFT_LAB_MODEL", raising=False)
    assert default_model_name(argparse.Namespace(model=None)) == "embedded"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not fetched" in err[0] and "peftlab models fetch smollm2" in err[0]
    # a model named on the command line: no fallback
    assert default_model_name(argparse.Namespace(model="smollm2")) == "smollm2"
    monkeypatch.setenv("PEFT_LAB_MODEL", "embedded")
    assert default_model_name(argparse.Namespace(model=None)) == "embedded"
    assert capsys.readouterr().err == ""
