"""configs/*.yaml: the accelerate config files for real clusters, read by accelerate's own code.

Each file goes through what `accelerate launch --config_file FILE` does before it starts
anything: `load_config_from_file` (unknown top-level keys fail), the launch command's checks
(`_validate_launch_command`), and the environment the launcher hands the training processes.
Every key under `fsdp_config` / `deepspeed_config` must be a flag `accelerate launch` knows
(the launcher copies unknown ones without a word). DeepSpeed itself is not installed here, so
its configs are checked as far as accelerate reads them without it: the launcher's environment,
and the DeepSpeed JSON config that accelerate's `DeepSpeedPlugin` builds from it.
"""

import os
from pathlib import Path
from unittest import mock

import pytest
import torch
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from peftlab import ddp

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPECTED = {
    "ddp-multi-gpu.yaml": DistributedType.MULTI_GPU,
    "fsdp-qlora.yaml": DistributedType.FSDP,
    "deepspeed-zero2.yaml": DistributedType.DEEPSPEED,
    "deepspeed-zero3.yaml": DistributedType.DEEPSPEED,
}
PREFIX = {"fsdp_config": "fsdp_", "deepspeed_config": ""}


def _launch(path: Path):
    """What `accelerate launch --config_file path train.py` makes of the file, and its env."""
    parser = launch_command_parser()
    args, defaults, mp_from_config = _validate_launch_command(
        parser.parse_args(["--config_file", str(path), "train.py"])
    )
    if args.use_deepspeed:  # as launch_command does before calling the DeepSpeed launcher
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return parser, args, defaults, env


def test_the_folder_holds_the_four_configs():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_reads_each_config(name):
    config = load_config_from_file(str(CONFIGS / name))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == EXPECTED[name]
    assert config.num_processes >= 2 and not config.use_cpu
    parser, args, defaults, _ = _launch(CONFIGS / name)
    known = {action.dest for action in parser._actions}
    for section, prefix in PREFIX.items():
        for key in getattr(defaults, section):
            flag = key if key.startswith(prefix) else prefix + key
            assert flag in known, f"{name}: {section}.{key} is no accelerate launch flag"
    assert args.num_processes == config.num_processes


def test_ddp_config_runs_one_process_per_gpu_with_bf16():
    _, args, _, env = _launch(CONFIGS / "ddp-multi-gpu.yaml")
    assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"


def test_fsdp_qlora_config_shards_everything_as_the_guides_say():
    _, args, _, env = _launch(CONFIGS / "fsdp-qlora.yaml")
    assert args.use_fsdp and args.num_processes == 2
    assert env["ACCELERATE_USE_FSDP"] == "true"
    assert env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"  # ZeRO-3's split
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    # flat parameters, so LoRA layers need units of their own (tests/test_fsdp_units.py)
    assert env["FSDP_USE_ORIG_PARAMS"] == "false"
    # only rank 0 reads the checkpoint, so the others must receive it
    assert env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"
    assert env["FSDP_SYNC_MODULE_STATES"] == "true"
    assert env["FSDP_OFFLOAD_PARAMS"] == "true"
    assert env["ACCELERATE_MIXED_PRECISION"] == "no"  # compute dtype is the 4-bit config's


@pytest.mark.parametrize(
    ("name", "stage"), [("deepspeed-zero2.yaml", 2), ("deepspeed-zero3.yaml", 3)]
)
def test_deepspeed_configs_become_the_zero_stage_asked_for(name, stage):
    _, args, _, env = _launch(CONFIGS / name)
    assert args.use_deepspeed and env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
    keep = {k: v for k, v in env.items() if k.startswith("ACCELERATE_")}
    with mock.patch.dict(os.environ, keep):
        plugin = DeepSpeedPlugin()  # the DeepSpeed JSON accelerate would hand to deepspeed
    zero = plugin.deepspeed_config["zero_optimization"]
    assert zero["stage"] == stage
    assert zero["offload_optimizer"]["device"] == "none"
    if stage == 3:
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True
        assert env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == "true"


def test_zero3_config_spans_two_machines():
    config = load_config_from_file(str(CONFIGS / "deepspeed-zero3.yaml"))
    assert config.num_machines == 2 and config.num_processes == 16
    assert config.main_process_ip and config.main_process_port


def test_fsdp_qlora_loads_4bit_weights_stored_as_bf16():
    """With bnb_4bit_quant_storage=bfloat16 every parameter of the 4-bit model is bf16, so FSDP
    can flatten quantized and plain weights together; the default storage is uint8."""
    import bitsandbytes as bnb

    from peftlab import base_model
    from peftlab.quiet import muted

    config = ddp.fsdp_qlora_config()
    assert config.bnb_4bit_quant_storage == torch.bfloat16
    assert config.bnb_4bit_quant_type == "nf4" and config.load_in_4bit
    with muted():
        model, _ = base_model.load(quantization_config=config, dtype=torch.bfloat16)
        plain, _ = base_model.load(
            quantization_config=base_model.nf4_config(), dtype=torch.bfloat16
        )
    four_bit = [m.weight for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit and {p.dtype for p in model.parameters()} == {torch.bfloat16}
    default = [m.weight for m in plain.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert {w.dtype for w in default} == {torch.uint8}
    # the same bytes either way: two 4-bit values per uint8, four per bf16 element
    assert sum(w.numel() * w.element_size() for w in four_bit) == sum(
        w.numel() * w.element_size() for w in default
    )
