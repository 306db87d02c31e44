"""The fine-tune entry point under `accelerate launch` with two processes (DDP over gloo).

Launched as a user would launch it, the same command as one process: each process must train on
its own half of every global batch, the losses must match the one-process run with the same
global batch, and only the main process may write the adapter, which peft must load.

accelerate's `--cpu` launcher starts a single process unless it is given an MPI hostfile
(`--mpirun_hostfile`), so the two processes are started by its torchrun launcher
(`--multi_gpu`), which on a machine without GPUs gives a CPU process group over gloo.
"""

import pytest

from peftlab import ddp

# Both runs add the same per-example gradients in float32; only the order of the sums differs
# (an all-reduce of two halves versus one batch), so the losses agree to float32 rounding.
# Measured difference: 2e-7; a wrong sharding or a batch not averaged over processes moves the
# loss in its second or third decimal.
LOSS_TOLERANCE = ddp.LOSS_TOLERANCE
ARGS = ["--steps", "6", "--global-batch-size", "8", "--examples", "48"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    one = tmp_path_factory.mktemp("one-process")
    two = tmp_path_factory.mktemp("two-processes")
    return {"one": (one, ddp.run(one, 1, ARGS)), "two": (two, ddp.run(two, 2, ARGS))}


def test_the_launch_command_is_accelerates():
    cmd = ddp.launch_command("out", 2, ["--steps", "3"], port=1234)
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[-6:] == ["-m", "peftlab.ddp", "--out", "out", "--steps", "3"]
    assert ddp.launch_command("out", 1)[1:] == ["-m", "peftlab.ddp", "--out", "out"]
    with pytest.raises(ValueError, match="at least one"):
        ddp.launch_command("out", 0)


@pytest.mark.slow
def test_two_processes_train_on_different_halves_of_each_global_batch(runs):
    (_, [single]), (_, ranks) = runs["one"], runs["two"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == 2 and r["per_process_batch"] == 4 for r in ranks)
    assert single["world_size"] == 1 and single["per_process_batch"] == 8
    steps = len(single["batches"])
    assert steps == 6 and all(len(r["batches"]) == steps for r in ranks)
    for step in range(steps):
        a, b = ranks[0]["batches"][step], ranks[1]["batches"][step]
        assert -1 not in a + b, "a process trained on something that is not a training example"
        assert len(a) == len(b) == 4 and not set(a) & set(b)
        assert sorted(a + b) == sorted(single["batches"][step])
    # one epoch: every example seen once, by exactly one process
    seen = [i for r in ranks for batch in r["batches"] for i in batch]
    assert sorted(seen) == list(range(48))


@pytest.mark.slow
def test_losses_match_one_process_with_the_same_global_batch(runs):
    (_, [single]), (_, ranks) = runs["one"], runs["two"]
    assert [s for s, _ in single["losses"]] == [1, 2, 3, 4, 5, 6]
    for rank in ranks:
        assert [s for s, _ in rank["losses"]] == [s for s, _ in single["losses"]]
        for (_, got), (_, want) in zip(rank["losses"], single["losses"], strict=True):
            assert got == pytest.approx(want, rel=LOSS_TOLERANCE)
    first, last = single["losses"][0][1], single["losses"][-1][1]
    assert last < first  # it trained


@pytest.mark.slow
def test_only_the_main_process_writes_the_adapter_and_peft_loads_it(runs):
    from peft import PeftModel

    from peftlab import base_model

    out, ranks = runs["two"]
    assert [r["wrote_adapter"] for r in ranks] == [True, False]
    names = {p.name for p in out.iterdir()}
    assert {"adapter", "ranks"} <= names  # (and the Trainer's own output folder, .trainer)
    assert not [n for n in names if ".tmp" in n or n.startswith("tmp")], names  # no stray writes
    model, _ = base_model.load()
    peft_model = PeftModel.from_pretrained(model, str(out / ddp.ADAPTER_DIR))
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in peft_model.named_parameters())


def test_a_global_batch_must_split_evenly_over_the_processes():
    assert ddp.per_process_batch(8, 2) == 4
    with pytest.raises(ValueError, match="multiple of 3"):
        ddp.per_process_batch(8, 3)
    with pytest.raises(ValueError, match="positive"):
        ddp.per_process_batch(0, 1)


def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys):
    assert ddp.main(["--out", str(tmp_path), "--examples", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "examples=0" in err
    assert ddp.main(["--out", str(tmp_path), "--global-batch-size", "-1"]) == 2
    assert not any(tmp_path.iterdir())
