"""Sharding layouts and tensor-parallel gradients, checked against the unsharded model in-process.

``head_ranges`` is plain arithmetic. The gradient test starts two gloo ranks on a tiny
Qwen3 with one KV head, so at tp=2 the KV head is replicated on both ranks, and LoRA
adapters sit on every linear layer. Each rank compares the combined and gathered
gradients, the clipped global norm and one AdamW step with the unsharded model.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from torch.multiprocessing.spawn import start_processes

from galley.engine.errors import ModelError
from galley.engine.tp.sharding import head_ranges
from galley.models.tiny import TinyShape, make_tiny

pytestmark = pytest.mark.slow


def test_head_ranges_split_query_and_kv_heads():
    queries, kv, groups = head_ranges(heads=8, kv_heads=4, tp=2)
    assert queries == ((0, 4), (4, 8))
    assert kv == ((0, 2), (2, 4))
    assert groups == [2, 2]


def test_head_ranges_replicate_kv_heads():
    queries, kv, groups = head_ranges(heads=4, kv_heads=2, tp=4)
    assert queries == ((0, 1), (1, 2), (2, 3), (3, 4))
    assert kv == ((0, 1), (0, 1), (1, 2), (1, 2))
    assert groups == [1, 1, 1, 1]


def test_head_ranges_reject_uneven_kv_groups():
    # 12 heads in groups of 4 (3 KV heads): at tp=2 rank 0 has query heads 0-5, which use
    # KV head 0 four times and KV head 1 twice.
    with pytest.raises(ModelError, match="unevenly"):
        head_ranges(heads=12, kv_heads=3, tp=2)


def test_head_ranges_reject_tp_not_dividing_heads():
    with pytest.raises(ModelError, match="tp=3 does not divide the 4 attention heads"):
        head_ranges(heads=4, kv_heads=2, tp=3)


# -- gradients on two gloo ranks ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _load(folder: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    module = AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation="sdpa"
    )
    torch.manual_seed(0)
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    module = get_peft_model(module, config)
    with torch.no_grad():  # a fresh LoRA B is zero; give it values so A gets gradients too
        for index, (name, parameter) in enumerate(module.named_parameters()):
            if "lora_B" in name:
                parameter.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(index))
    return module


def _compare_rank(rank: int, folder: str, port: int) -> None:
    import os

    import torch.distributed as dist

    from galley.engine.tp.optimizer import TensorParallelAdamW
    from galley.engine.tp.sharding import shard_module
    from galley.engine.training.optimizer import MasterWeightsAdamW

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        reference, sharded = _load(Path(folder)), _load(Path(folder))
        layouts = shard_module(sharded, rank, 2)
        ids = torch.tensor([[3, 17, 254, 1000, 9, 42, 7]])

        for module in (reference, sharded):
            module.train()
            module(ids, labels=ids).loss.backward()

        reference_parameters = [(n, p) for n, p in reference.named_parameters() if p.requires_grad]
        sharded_parameters = [(n, p) for n, p in sharded.named_parameters() if p.requires_grad]
        reference_optimizer = MasterWeightsAdamW(reference_parameters)
        sharded_optimizer = TensorParallelAdamW(sharded_parameters, layouts)
        for optimizer in (reference_optimizer, sharded_optimizer):
            optimizer.gather_gradients(1.0)

        expected = dict(reference_parameters)
        for name, parameter in sharded_parameters:
            layout = layouts.layout_named(name)
            assert parameter.grad is not None, name
            full_grad = layout.gather(parameter.grad, rank)
            torch.testing.assert_close(full_grad, expected[name].grad, atol=1e-5, rtol=1e-4, msg=name)

        reference_norm = reference_optimizer.clip_gradients(0.5)
        sharded_norm = sharded_optimizer.clip_gradients(0.5)
        assert sharded_norm == pytest.approx(reference_norm, rel=1e-5)
        assert reference_norm > 0.5  # clipping happened in both

        for optimizer in (reference_optimizer, sharded_optimizer):
            optimizer.step(1e-2, 0.01)
        # AdamW's first step is about lr * sign(grad), so a gradient element near zero turns
        # float rounding into up to 1e-5 of difference; 1e-4 is 1% of lr.
        for name, parameter in sharded_parameters:
            full = layouts.layout_named(name).gather(parameter.detach(), rank)
            torch.testing.assert_close(full, expected[name].detach(), atol=1e-4, rtol=1e-4, msg=name)

        # The optimizer file is unsharded: the same moments as the tp=1 optimizer's.
        reference_state = reference_optimizer.state_dict()["optimizer"]["state"]
        sharded_state = sharded_optimizer.state_dict()["optimizer"]["state"]
        for index, values in reference_state.items():
            torch.testing.assert_close(
                sharded_state[index]["exp_avg"], values["exp_avg"], atol=1e-6, rtol=1e-4
            )
        # Loading the unsharded tp=1 state keeps this rank's slice of each moment.
        sharded_optimizer.load_state_dict(reference_optimizer.state_dict(), "tp=1 state")
        loaded = sharded_optimizer.optimizer.state_dict()["state"]
        layouts_in_order = sharded_optimizer._layouts_in_group_order()
        for index, values in reference_state.items():
            expected_slice = layouts_in_order[index].local_slice(values["exp_avg_sq"], rank)
            torch.testing.assert_close(loaded[index]["exp_avg_sq"], expected_slice)
    finally:
        dist.destroy_process_group()


def test_tp2_gradients_and_step_match_unsharded(tmp_path):
    folder = make_tiny(
        "qwen3", tmp_path / "qwen3-one-kv-head", shape=TinyShape(num_key_value_heads=1), seed=3
    )
    start_processes(_compare_rank, args=(str(folder), _free_port()), nprocs=2, start_method="spawn")
