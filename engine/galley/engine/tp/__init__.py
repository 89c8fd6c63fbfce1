"""Tensor parallelism: a spawn with ``.tp(n)`` runs as n workers, each holding one shard of every layer.

How a tp=n spawn runs:

- The engine starts n workers, one per device, with a fresh rendezvous port on 127.0.0.1
  (``manager.py``). Each joins the spawn's own process group, gloo on the CPU and NCCL on
  CUDA (``modeling.init_distributed``), loads the whole model on the CPU, keeps its shard
  (``sharding.py``) and moves that to its device.
- The engine sends every op to every rank in the same order and returns rank 0's reply
  (``spawns.Spawn.call``). A worker of a tp>1 spawn runs each request to the end before it
  reads the next one, so all ranks run the same collectives in the same order.
- Generation stays in lockstep: all ranks see the same gathered logits, and sampled
  requests share one seed (``generation.py``).
- Training combines each parameter's gradient across ranks by its layout and clips by the
  global gradient norm (``optimizer.py``).
- ``save`` gathers an unsharded checkpoint, which rank 0 writes (``checkpoint.py``).

Why an own Megatron-style sharding with plain tensors, rather than transformers'
``from_pretrained(tp_plan="auto")`` or ``torch.distributed.tensor.parallel``: both make the
parameters DTensors. Checked with transformers 5.23 and torch 2.15 on CPU with gloo,
``tp_plan="auto"`` matched the unsharded model in logits, greedy generation and one
backward pass for Llama and Qwen3, but:

- the norm weights stay plain tensors beside DTensor projections, and
  ``torch.nn.utils.get_total_norm`` (the trainer's gradient clipping) rejects the mix;
- peft's LoRA layers around its DTensor linears fail in the forward pass (shape mismatch
  in the o_proj LoRA), so adapters cannot train or even load;
- k_proj and v_proj are split by output columns, so when tp exceeds the KV heads a rank
  would hold part of a head.

Here every parameter is a plain tensor holding this rank's slice, the collectives are two
autograd functions at each attention and MLP block, and LoRA factors are split along with
their base layer. The cost: each rank loads the whole checkpoint on the CPU before keeping
its shard (see the NOTE in ``modeling.load_model``).
"""

from galley.engine.tp.checkpoint import save_unsharded
from galley.engine.tp.generation import LockstepGenerator
from galley.engine.tp.optimizer import TensorParallelAdamW, use_tensor_parallel_optimizer
from galley.engine.tp.sharding import ShardedModel, shard_module

__all__ = [
    "LockstepGenerator",
    "ShardedModel",
    "TensorParallelAdamW",
    "save_unsharded",
    "shard_module",
    "use_tensor_parallel_optimizer",
]
