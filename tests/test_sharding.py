"""Per-device memory under data parallelism: the ZeRO paper's Figure 1, and the edges."""

import dataclasses

import pytest

from peftlab import memory, sharding

ZERO_PSI = 7.5e9  # the paper's example model
ZERO_DEVICES = 64
# Figure 1 of Rajbhandari et al. (arXiv 1910.02054), GB per device, K = 12, model states only.
ZERO_FIGURE_1 = {"ddp": 120.0, "zero1": 31.4, "zero2": 16.6, "zero3": 1.9, "fsdp": 1.9}


def zero_example() -> memory.Breakdown:
    """memory.estimate's bytes per parameter for mixed-precision AdamW (ZeRO accounting),
    applied to the paper's 7.5B parameters, activations left out as the figure leaves them."""
    config = memory.preset("llama-2-7b")
    params = memory.count_params(config)
    full = memory.estimate(config, "full")
    per_param = {k: v / params for k, v in dataclasses.asdict(full).items() if k != "activations"}
    assert per_param["trainable_weights"] == 2 and per_param["gradients"] == 2
    assert per_param["optimizer_states"] + per_param["master_weights"] == 12  # K = 12
    terms = {k: round(v * ZERO_PSI) for k, v in per_param.items()}
    return memory.Breakdown(**terms, activations=0)


@pytest.mark.parametrize("strategy", sharding.STRATEGIES)
def test_zero_figure_1_per_device_within_2_percent(strategy):
    got = sharding.per_device(zero_example(), ZERO_DEVICES, strategy).total / 1e9
    assert got == pytest.approx(ZERO_FIGURE_1[strategy], rel=0.02)


def test_the_figure_numbers_are_exact_to_their_printed_digit():
    per = {s: sharding.per_device(zero_example(), ZERO_DEVICES, s).total / 1e9 for s in
           ("ddp", "zero1", "zero2", "zero3")}  # fmt: skip
    assert [round(v, 1) for v in per.values()] == [120.0, 31.4, 16.6, 1.9]


def test_one_device_or_ddp_changes_nothing():
    full = memory.estimate("llama-2-7b", "full", batch_size=2, seq_len=256)
    assert sharding.per_device(full) == full
    assert sharding.per_device(full, 8, "ddp") == full
    for s in sharding.STRATEGIES:
        assert sharding.per_device(full, 1, s) == full


def test_activations_are_never_divided_and_stages_only_shrink():
    full = memory.estimate("llama-2-7b", "full", batch_size=4, seq_len=512)
    totals = []
    for s in ("ddp", "zero1", "zero2", "zero3"):
        part = sharding.per_device(full, 8, s)
        assert part.activations == full.activations
        totals.append(part.total)
    assert totals == sorted(totals, reverse=True) and len(set(totals)) == 4
    assert sharding.per_device(full, 8, "fsdp") == sharding.per_device(full, 8, "zero3")


def test_qlora_4bit_weights_and_constants_shard_under_fsdp():
    q = memory.estimate("llama-2-70b", "qlora", target_modules=["q_proj", "v_proj"])
    half = sharding.per_device(q, 2, "fsdp")
    assert half.frozen_weights == -(-q.frozen_weights // 2)
    assert half.quantization_constants == -(-q.quantization_constants // 2)
    assert sharding.per_device(q, 2, "zero2").frozen_weights == q.frozen_weights


def test_min_devices():
    full = memory.estimate("llama-2-70b", "full", gradient_checkpointing=True)
    gb80 = 80 * 2**30
    assert sharding.min_devices(full, "ddp", gb80) is None
    n = sharding.min_devices(full, "zero3", gb80)
    assert sharding.per_device(full, n, "zero3").total <= gb80
    assert sharding.per_device(full, n - 1, "zero3").total > gb80
    assert sharding.model_states(full) == full.total - full.activations


@pytest.mark.parametrize(
    ("devices", "strategy", "message"),
    [(0, "ddp", "positive integer"), (2.0, "ddp", "positive integer"),
     (True, "ddp", "positive integer"), (2, "zero4", "choose one of ddp, zero1")],
)  # fmt: skip
def test_bad_input_says_what_to_do(devices, strategy, message):
    with pytest.raises(ValueError, match=message):
        sharding.per_device(memory.estimate("llama-2-7b"), devices, strategy)
    with pytest.raises(ValueError, match="bytes"):
        sharding.min_devices(memory.estimate("llama-2-7b"), "zero3", 0)


# --- memory.estimate and `peftlab memory` take devices and sharding -------------------------------
def test_estimate_gives_per_device_memory():
    kwargs = dict(batch_size=2, seq_len=256)
    one = memory.estimate("llama-2-70b", "full", **kwargs)
    assert memory.estimate("llama-2-70b", "full", devices=1, sharding="zero3", **kwargs) == one
    for strategy in sharding.STRATEGIES:
        got = memory.estimate("llama-2-70b", "full", devices=16, sharding=strategy, **kwargs)
        assert got == sharding.per_device(one, 16, strategy)
    q = memory.estimate("llama-2-70b", "qlora", optimizer="paged_adamw")
    half = memory.estimate("llama-2-70b", "qlora", optimizer="paged_adamw", devices=2,
                           sharding="fsdp")  # fmt: skip
    assert half.pageable == -(-q.pageable // 2) and half.total < q.total
    with pytest.raises(ValueError, match="choose one of ddp"):
        memory.estimate("llama-2-7b", devices=2, sharding="zero4")
    with pytest.raises(ValueError, match="positive integer"):
        memory.estimate("llama-2-7b", devices=0)


def test_cli_memory_per_device(capsys):
    import json

    from peftlab import cli

    args = ["memory", "--model", "llama-2-70b", "--json", "--gradient-checkpointing",
            "--seq-len", "2048"]  # fmt: skip
    assert cli.main([*args, "--devices", "16", "--sharding", "zero3"]) == 0
    per = json.loads(capsys.readouterr().out)
    want = memory.estimate("llama-2-70b", "full", seq_len=2048, gradient_checkpointing=True,
                           devices=16, sharding="zero3")  # fmt: skip
    assert per["bytes"] == want.to_dict()
    assert cli.main(args) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["bytes"]["total"] > 15 * per["bytes"]["total"]
    assert cli.main(["memory", "--devices", "8", "--sharding", "zero2"]) == 0
    assert "per device of 8, zero2" in capsys.readouterr().out
    assert cli.main(["memory", "--devices", "8", "--sharding", "zero9"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "zero9" in err and "fsdp" in err


def test_gathered_bytes_follow_torchs_backward_prefetch_documentation():
    """BACKWARD_PRE holds the current parameters, the next ones and the current gradient at its
    peak; BACKWARD_POST and no prefetch hold two units (torch's BackwardPrefetch docstring)."""
    from torch.distributed.fsdp import BackwardPrefetch

    doc = BackwardPrefetch.__doc__
    assert "holds the current set of parameters, next set of parameters, and current" in doc
    assert sharding.gathered_bytes(1000) == 3000
    assert sharding.gathered_bytes(1000, "BACKWARD_POST") == 2000
    assert sharding.gathered_bytes(1000, None) == 2000
    with pytest.raises(ValueError, match="choose one of BACKWARD_PRE"):
        sharding.gathered_bytes(1000, "EARLY")
    with pytest.raises(ValueError, match="bytes"):
        sharding.gathered_bytes(-1)
