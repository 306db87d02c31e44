"""FSDP units and LoRA's frozen and trainable weights, on the pinned torch (lesson 09, section 3
and section 8; configs/fsdp-qlora.yaml).

One process, gloo, on the CPU: FSDP1 (`FullyShardedDataParallel`) flattens each unit into one
`FlatParameter` and, with `use_orig_params=False`, refuses a unit that mixes frozen and trainable
tensors; peft's `fsdp_auto_wrap_policy` (which transformers' Trainer installs for a peft model)
gives every LoRA layer a unit of its own, so the same setting trains; `use_orig_params=True`
accepts the mixed unit with a gradient as large as the whole unit; FSDP2 (`fully_shard`) shards
per parameter and gives gradients to the trainable ones only.
"""

import pytest
import torch
import torch.distributed as dist
from peft import LoraConfig, get_peft_model
from peft.utils.other import fsdp_auto_wrap_policy
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from peftlab import base_model
from peftlab.quiet import muted

CPU = torch.device("cpu")
TOKENS = torch.tensor([[5, 17, 42, 8, 99, 3, 61, 12], [7, 7, 30, 2, 55, 81, 4, 19]])


@pytest.fixture(scope="module", autouse=True)
def one_process_group(tmp_path_factory):
    """A gloo group of one process; a file store, so no port is taken."""
    store = tmp_path_factory.mktemp("fsdp") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _lora_model():
    torch.manual_seed(0)
    with muted():
        model, _ = base_model.load()
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    return get_peft_model(model, config)


def _units(wrapped) -> list[FSDP]:
    return [m for m in wrapped.modules() if isinstance(m, FSDP)]


def _train_step(wrapped) -> float:
    out = wrapped(input_ids=TOKENS, labels=TOKENS)
    out.loss.backward()
    return out.loss.item()


def test_a_unit_of_frozen_and_trainable_weights_fails_without_orig_params():
    model = _lora_model()
    mixed = {p.requires_grad for p in model.parameters()}
    assert mixed == {True, False}  # one unit around the whole model mixes both
    with pytest.raises(ValueError, match="uniform `requires_grad` when `use_orig_params=False`"):
        FSDP(model, use_orig_params=False, device_id=CPU)


def test_peft_wrap_policy_gives_lora_layers_their_own_units():
    model = _lora_model()
    reference = model(input_ids=TOKENS, labels=TOKENS).loss.item()
    adapters = ("lora_A.default", "lora_B.default")
    lora_layers = [m for n, m in model.named_modules() if n.endswith(adapters)]
    wrapped = FSDP(model, use_orig_params=False, auto_wrap_policy=fsdp_auto_wrap_policy(model),
                   device_id=CPU)  # fmt: skip
    units = _units(wrapped)
    trainable_units = [u for u in units if any(f.requires_grad for f in u.params)]
    # each LoRA layer is a unit of its own; every other unit (decoder layers, the root) frozen
    assert sorted(id(u.module) for u in trainable_units) == sorted(map(id, lora_layers))
    assert len(units) > len(lora_layers) > 0
    loss = _train_step(wrapped)
    assert loss == pytest.approx(reference, rel=1e-5)
    trainable = [f for u in trainable_units for f in u.params]
    assert all(f.grad is not None for f in trainable)
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(f.numel() for f in trainable) == n_lora  # gradients for the adapter only


def test_orig_params_accepts_the_mixed_unit_at_the_cost_of_its_whole_gradient():
    model = _lora_model()
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    wrapped = FSDP(model, use_orig_params=True, device_id=CPU)
    [unit] = _units(wrapped)
    [flat] = unit.params
    assert flat.requires_grad and flat.numel() == n_all
    _train_step(wrapped)
    assert flat.grad is not None and flat.grad.numel() == n_all > 100 * n_lora


def test_fsdp2_shards_per_parameter_and_grads_only_the_trainable_ones():
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    model = _lora_model()
    reference = model(input_ids=TOKENS, labels=TOKENS).loss.item()
    mesh = init_device_mesh("cpu", (1,))
    for layer in model.base_model.model.model.layers:  # a decoder layer: frozen and LoRA mixed
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    assert all(isinstance(p, DTensor) for p in model.parameters())
    loss = _train_step(model)
    assert loss == pytest.approx(reference, rel=1e-5)
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert with_grad == trainable and all("lora_" in n for n in trainable)
