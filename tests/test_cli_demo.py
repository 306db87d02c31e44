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
     (["--method", "dora"], "--method dora"), (["--prompts", "/no/such/file.txt"], "no such file")],
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
