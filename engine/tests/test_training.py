"""Trainer: which weights change, frozen clones, non-finite gradients, save and reload,
optimizer resume, falling losses, master weights and argument errors."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training_support import (
    HIDDEN_SIZE,
    chat,
    gradients,
    load_model,
    make_trainer,
    parameter_copy,
    reference_values,
    rendered,
    weighted_positions,
)

from galley.engine.errors import InvalidRequest
from galley.engine.modeling import load_model as load_spawn_model
from galley.engine.spec import LoadSpec
from galley.engine.training import NonFiniteGradientError, TrainableModel, Trainer, run_training_op

FACTS = [
    chat("What is the capital of Freedonia?", "Fredville."),
    chat("Name the capital city of Freedonia.", "Fredville."),
    chat("Freedonia's capital?", "Fredville."),
]


def train_steps(trainer: Trainer, steps: int, lr: float = 1e-2) -> list[float]:
    losses = []
    for _ in range(steps):
        for thread in FACTS:
            trainer.train_language_modelling(thread)
        stats = trainer.optim_step(lr=lr, wd=0.0, max_grad_norm=1.0)
        losses.append(stats["loss"])
    return losses


def is_lora(name: str) -> bool:
    return ".lora_" in name


# ---------------------------------------------------------------------------------------
# Which parameters train


def test_lora_training_changes_only_adapter(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir, lora=True, scoring=True)
    module = trainer.model.module
    head = trainer.model.scalar_head
    assert head is not None
    before = parameter_copy(module)
    head_before = head.weight.detach().clone()
    trainable = set(trainer.optimizer.names)
    assert trainable == {n for n in before if is_lora(n)} | {"value_head.weight", "value_head.bias"}

    train_steps(trainer, 2)
    trainer.train_mse(FACTS[0], 1.0)
    trainer.optim_step(lr=1e-2, wd=0.0, max_grad_norm=1.0)

    after = dict(module.named_parameters())
    for name, value in before.items():
        if is_lora(name):
            continue
        assert torch.equal(after[name], value), f"base weight {name} changed"
    changed = [
        name for name, value in before.items() if is_lora(name) and not torch.equal(after[name], value)
    ]
    assert any(".lora_A." in name for name in changed)
    assert any(".lora_B." in name for name in changed)
    assert not torch.equal(head.weight, head_before)


def test_full_training_changes_base_weights(tiny_qwen3_dir: Path):
    trainer = make_trainer(tiny_qwen3_dir)
    before = parameter_copy(trainer.model.module)
    train_steps(trainer, 1)
    after = dict(trainer.model.module.named_parameters())
    changed = {name for name, value in before.items() if not torch.equal(after[name], value)}
    assert "lm_head.weight" in changed
    assert "model.layers.0.self_attn.q_proj.weight" in changed
    assert "model.layers.1.mlp.down_proj.weight" in changed


def test_loss_falls_over_steps(tiny_model_dir: Path):
    trainer = make_trainer(tiny_model_dir, lora=True)
    losses = train_steps(trainer, 6, lr=3e-2)
    assert losses[-1] < losses[0] * 0.7, losses


def test_value_head_fits_targets(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir, lora=True, scoring=True)
    samples = [(chat("Can you help me?", "Of course."), 1.0), (chat("Can you help me?", "Go away."), -1.0)]

    def squared_error() -> float:
        scores = trainer.scorer.score_last_token([thread for thread, _ in samples])
        return sum((score - target) ** 2 for score, (_, target) in zip(scores, samples, strict=True))

    error_before = squared_error()
    for _ in range(15):
        for thread, target in samples:
            trainer.train_mse(thread, target)
        trainer.optim_step(lr=1e-2, wd=0.0, max_grad_norm=1.0)
    assert squared_error() < error_before * 0.25


# ---------------------------------------------------------------------------------------
# Frozen clones


def test_frozen_clone_stays_fixed_full(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir)
    frozen = trainer.clone_frozen()
    policy_before = trainer.scorer.logprobs(FACTS)
    frozen_before = frozen.logprobs(FACTS)
    assert frozen_before == policy_before
    assert frozen.snapshot_bytes == sum(p.numel() * 4 for p in trainer.model.module.parameters())

    train_steps(trainer, 2)

    assert frozen.logprobs(FACTS) == frozen_before
    assert trainer.scorer.logprobs(FACTS) != policy_before


def test_frozen_clone_of_fresh_adapter_copies_nothing(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir, lora=True)
    frozen = trainer.clone_frozen()
    assert frozen.disables_adapter
    assert frozen.snapshot_bytes == 0
    frozen_before = frozen.logprobs(FACTS)

    train_steps(trainer, 2)

    assert frozen.logprobs(FACTS) == frozen_before
    assert trainer.scorer.logprobs(FACTS) != frozen_before


def test_frozen_clone_of_trained_adapter_copies_adapter(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir, lora=True, scoring=True)
    train_steps(trainer, 1)
    frozen = trainer.clone_frozen()
    assert not frozen.disables_adapter
    adapter_bytes = sum(p.numel() * 4 for n, p in trainer.model.module.named_parameters() if is_lora(n))
    assert frozen.snapshot_bytes == adapter_bytes + (HIDDEN_SIZE + 1) * 4
    logprobs_before = frozen.logprobs(FACTS)
    scores_before = frozen.score_last_token(FACTS)
    assert logprobs_before == trainer.scorer.logprobs(FACTS)

    train_steps(trainer, 2)
    trainer.train_mse(FACTS[0], 3.0)
    trainer.optim_step(lr=1e-2, wd=0.0, max_grad_norm=1.0)

    assert frozen.logprobs(FACTS) == logprobs_before
    assert frozen.score_last_token(FACTS) == scores_before
    assert trainer.scorer.logprobs(FACTS) != logprobs_before


# ---------------------------------------------------------------------------------------
# Non-finite gradients


def overflowing_ppo(trainer: Trainer) -> None:
    """A PPO sample whose ratio exp(new - old) overflows: old logprobs of -1000 nats, A < 0."""
    count = len(weighted_positions(rendered(trainer, FACTS[0]).weights))
    trainer.train_ppo(FACTS[0], [-1000.0] * count, -1.0, 0.2)


def test_nan_gradient_raises_with_loss_and_step(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir)
    train_steps(trainer, 1)
    before = parameter_copy(trainer.model.module)
    trainer.train_language_modelling(FACTS[1])
    overflowing_ppo(trainer)

    with pytest.raises(NonFiniteGradientError) as raised:
        trainer.optim_step(lr=1e-2, wd=0.0, max_grad_norm=1.0)
    message = str(raised.value)
    assert "optim step 2" in message
    assert "train_ppo (1 samples, 1 with a non-finite loss)" in message
    assert "train_language_modelling (1 samples)" in message
    assert "skip_nan_gradients=True" in message

    after = dict(trainer.model.module.named_parameters())
    assert all(torch.equal(after[name], value) for name, value in before.items())
    assert trainer.get_optim_step() == {"step": 1}
    # The failed step's samples are gone: the next step trains only what comes after.
    trainer.train_language_modelling(FACTS[2])
    stats = trainer.optim_step(lr=1e-2, wd=0.0, max_grad_norm=1.0)
    assert stats["step"] == 2
    assert stats["samples"] == 1
    assert math.isfinite(stats["grad_norm"])


def test_nan_gradient_skipped_with_flag(tiny_llama_dir: Path, caplog: pytest.LogCaptureFixture):
    trainer = make_trainer(tiny_llama_dir)
    before = parameter_copy(trainer.model.module)
    overflowing_ppo(trainer)

    with caplog.at_level(logging.WARNING, logger="galley.engine.training"):
        stats = trainer.optim_step(lr=1e-2, wd=0.0, max_grad_norm=1.0, skip_nan_gradients=True)

    assert stats["skipped"] is True
    assert stats["skip_reason"] == "non-finite gradient"
    assert stats["grad_norm"] is None
    assert stats["step"] == 0
    assert any("update skipped" in record.getMessage() for record in caplog.records)
    after = dict(trainer.model.module.named_parameters())
    assert all(torch.equal(after[name], value) for name, value in before.items())
    json.dumps(stats, allow_nan=False)  # results cross the wire as strict JSON


def test_optim_step_without_samples_is_skipped(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir)
    stats = trainer.optim_step(lr=1e-2, wd=0.0, max_grad_norm=1.0)
    assert stats["skipped"] is True
    assert stats["samples"] == 0
    assert stats["step"] == 0


# ---------------------------------------------------------------------------------------
# Save and reload


def spawn_spec(folder: Path, *, base: Path | None = None, scoring: bool = False) -> LoadSpec:
    return LoadSpec(
        spawn_id="test",
        name="reloaded",
        kind="train",
        model_key="saved",
        model_path=str(folder),
        base_path=str(base) if base else None,
        scoring=scoring,
        kv_cache_len=512,
        tokens_to_generate=8,
        max_batch_size=512,
    )


def reload(folder: Path, base: Path | None = None) -> Trainer:
    loaded = load_spawn_model(spawn_spec(folder, base=base))
    model = TrainableModel(loaded.module, loaded.tokenizer, loaded.value_head)
    return Trainer(model, max_batch_size=512)


def test_save_and_reload_full_model(tiny_qwen3_dir: Path, tmp_path: Path):
    trainer = make_trainer(tiny_qwen3_dir, scoring=True)
    train_steps(trainer, 2)
    trainer.train_mse(FACTS[0], 2.0)
    trainer.optim_step(lr=1e-2, wd=0.0, max_grad_norm=1.0)

    metadata = trainer.save(tmp_path / "saved", "tuned", inference_only=True)

    assert metadata == {"kind": "full", "scoring": True, "base_key": None, "optim_step": 3, "optimizer": None}
    assert json.loads((tmp_path / "saved" / "galley.json").read_text()) == metadata
    for name in ("config.json", "model.safetensors", "tokenizer.json", "value_head.safetensors"):
        assert (tmp_path / "saved" / name).is_file(), name
    assert not (tmp_path / "saved" / "optimizer.pt").exists()
    head = load_file(str(tmp_path / "saved" / "value_head.safetensors"))
    assert head["weight"].shape == (1, HIDDEN_SIZE)
    assert head["bias"].shape == (1,)

    reloaded = reload(tmp_path / "saved")
    assert reloaded.scorer.logprobs_per_token(FACTS) == trainer.scorer.logprobs_per_token(FACTS)
    assert reloaded.scorer.score(FACTS) == trainer.scorer.score(FACTS)


def test_save_and_reload_adapter(tiny_llama_dir: Path, tmp_path: Path):
    trainer = make_trainer(tiny_llama_dir, lora=True, scoring=True)
    train_steps(trainer, 2)

    metadata = trainer.save(tmp_path / "adapter", "freedonia-adapter", inference_only=True)

    assert metadata["kind"] == "adapter"
    assert metadata["base_key"] == "tiny-base"
    assert metadata["scoring"] is True
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()

    reloaded = reload(tmp_path / "adapter", base=tiny_llama_dir)
    assert reloaded.scorer.logprobs_per_token(FACTS) == trainer.scorer.logprobs_per_token(FACTS)
    assert reloaded.scorer.score_last_token(FACTS) == trainer.scorer.score_last_token(FACTS)


def test_save_rejects_non_empty_folder(tiny_llama_dir: Path, tmp_path: Path):
    trainer = make_trainer(tiny_llama_dir, lora=True)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="is not empty"):
        trainer.save(tmp_path / "taken", "again")


def test_optimizer_state_resumes(tiny_llama_dir: Path, tmp_path: Path):
    trainer = make_trainer(tiny_llama_dir, lora=True)
    train_steps(trainer, 2)
    metadata = trainer.save(tmp_path / "checkpoint", "checkpoint", inference_only=False)
    assert metadata["optimizer"] == "optimizer.pt"
    assert (tmp_path / "checkpoint" / "optimizer.pt").is_file()

    resumed = reload(tmp_path / "checkpoint", base=tiny_llama_dir)
    resumed.load_optimizer_state(tmp_path / "checkpoint")
    assert resumed.get_optim_step() == {"step": 2}

    # One more step on both gives the same weights only if the AdamW moments were restored.
    train_steps(trainer, 1)
    train_steps(resumed, 1)
    original = dict(trainer.model.module.named_parameters())
    for name, value in resumed.model.module.named_parameters():
        if is_lora(name):
            assert torch.allclose(value, original[name], rtol=1e-5, atol=1e-7), name


def test_optimizer_state_missing_is_explained(tiny_llama_dir: Path, tmp_path: Path):
    trainer = make_trainer(tiny_llama_dir, lora=True)
    trainer.save(tmp_path / "inference", "inference", inference_only=True)
    with pytest.raises(InvalidRequest, match="saved with inference_only=True"):
        trainer.load_optimizer_state(tmp_path / "inference")


def test_optimizer_state_mismatch_rejected(tiny_llama_dir: Path, tmp_path: Path):
    adapter = make_trainer(tiny_llama_dir, lora=True)
    adapter.save(tmp_path / "adapter", "adapter", inference_only=False)
    full = make_trainer(tiny_llama_dir)
    with pytest.raises(InvalidRequest, match="was saved for other trainable parameters"):
        full.load_optimizer_state(tmp_path / "adapter")


# ---------------------------------------------------------------------------------------
# Low-precision weights


def test_bfloat16_weights_train_through_float32_masters(tiny_llama_dir: Path):
    trainer = Trainer(load_model(tiny_llama_dir, dtype=torch.bfloat16), max_batch_size=512)
    entries = {entry.name: entry for entry in trainer.optimizer.parameters}
    q_proj = entries["model.layers.0.self_attn.q_proj.weight"]
    assert q_proj.has_master_copy
    assert q_proj.master.dtype == torch.float32
    before = q_proj.master.clone()

    stats = train_steps(trainer, 1, lr=1e-4)

    assert math.isfinite(stats[0])
    # An update of ~1e-4 is below bfloat16's resolution for most weights, but not the master's.
    assert not torch.equal(q_proj.master, before)
    assert torch.equal(q_proj.parameter, q_proj.master.to(torch.bfloat16))


# ---------------------------------------------------------------------------------------
# Scoring helpers


def test_scorer_batches_like_single_calls(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir, scoring=True)
    scorer = trainer.scorer
    batched = scorer.logprobs_per_token(FACTS)
    for thread, packed in zip(FACTS, batched, strict=True):
        assert packed == pytest.approx(scorer.logprobs_per_token([thread])[0], abs=1e-5)
    sums = scorer.logprobs(FACTS)
    for total, per_token in zip(sums, batched, strict=True):
        assert total == pytest.approx(sum(per_token), rel=1e-6)

    thread = rendered(trainer, FACTS[0])
    with torch.no_grad():
        values = reference_values(trainer, thread.ids)
    expected = [float(values[t]) for t in weighted_positions(thread.weights)]
    assert scorer.score([FACTS[0]])[0] == pytest.approx(expected, abs=1e-5)
    assert scorer.score_last_token([FACTS[0]])[0] == pytest.approx(float(values[-1]), abs=1e-5)


def test_score_needs_value_head(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir)
    with pytest.raises(InvalidRequest, match=r"into_scoring_model\(\)"):
        trainer.scorer.score_last_token(FACTS)
    with pytest.raises(InvalidRequest, match="train_mse trains a value head"):
        trainer.train_mse(FACTS[0], 1.0)


# ---------------------------------------------------------------------------------------
# Op arguments


def test_run_training_op_validates_arguments(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir)
    result = run_training_op(trainer, "train_language_modelling", {"thread": FACTS[0]})
    assert result["dropped"] is False
    assert result["tokens"] > 0

    with pytest.raises(InvalidRequest, match=r"train_dpo: invalid arguments: beta: .*greater than 0"):
        run_training_op(trainer, "train_dpo", {"pos": FACTS[0], "neg": FACTS[1], "ref_logprobs_pos": 0.0,
                                               "ref_logprobs_neg": 0.0, "beta": 0})  # fmt: skip
    with pytest.raises(InvalidRequest, match="optim_step: invalid arguments: lr: Field required"):
        run_training_op(trainer, "optim_step", {"wd": 0.0})
    with pytest.raises(
        InvalidRequest, match="train_mse: invalid arguments: target: Input should be a finite number"
    ):
        run_training_op(trainer, "train_mse", {"thread": FACTS[0], "target": float("nan")})
    with pytest.raises(InvalidRequest, match="'train_gspo' is not a training op"):
        run_training_op(trainer, "train_gspo", {})

    assert run_training_op(trainer, "set_optim_step", {"step": 7}) == {"step": 7}
    assert run_training_op(trainer, "get_optim_step", {}) == {"step": 7}
    stats = run_training_op(trainer, "optim_step", {"lr": 1e-3, "wd": 0.0, "max_grad_norm": 1.0})
    assert stats["step"] == 8
    assert stats["samples"] == 1


def test_per_token_argument_lengths_checked(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir)
    count = len(weighted_positions(rendered(trainer, FACTS[0]).weights))
    with pytest.raises(
        InvalidRequest, match=f"trajectory_logprobs has 2 values but the thread has {count} weighted"
    ):
        trainer.train_ppo(FACTS[0], [-1.0, -1.0], 1.0, 0.2)
    with pytest.raises(InvalidRequest, match=r"advantages\[1\] is nan"):
        trainer.train_ppo(FACTS[0], [-1.0] * count, [1.0, float("nan")] + [0.0] * (count - 2), 0.2)


def test_unweighted_thread_rejected(tiny_llama_dir: Path):
    trainer = make_trainer(tiny_llama_dir)
    prompt_only = {"kind": "string", "turns": [["user", "Hello?"]]}
    with pytest.raises(InvalidRequest, match="thread has no weighted tokens"):
        trainer.train_language_modelling(prompt_only)


def engine_trainer(folder: Path, *, scoring: bool) -> Trainer:
    """A trainer on a new LoRA adapter with the engine's defaults, loaded as a worker loads it."""
    spec = spawn_spec(folder).model_copy(update={"new_adapter": True, "scoring": scoring})
    loaded = load_spawn_model(spec)
    return Trainer(TrainableModel(loaded.module, loaded.tokenizer, loaded.value_head), max_batch_size=512)


def test_engine_adapter_halves_loss(tiny_llama_dir: Path):
    """The adapter example recipe's numbers: 30 steps at lr 3e-3 at least halve the loss."""
    trainer = engine_trainer(tiny_llama_dir, scoring=False)
    names = trainer.optimizer.names
    assert names
    assert all(is_lora(name) for name in names)

    losses = train_steps(trainer, 30, lr=3e-3)

    assert losses[-1] < losses[0] * 0.5, losses


def test_engine_reward_head_fits_targets(tiny_qwen3_dir: Path):
    """The reward-model example recipe's numbers: 40 steps at lr 1e-2 cut the squared error by 4."""
    trainer = engine_trainer(tiny_qwen3_dir, scoring=True)
    assert all(is_lora(name) or name.startswith("value_head.") for name in trainer.optimizer.names)
    samples = [
        (chat("Can you help me?", "Of course, happy to help."), 1.0),
        (chat("Can you help me?", "No. Go away."), -1.0),
        (chat("Where is the station?", "It is two streets north, thank you for asking."), 1.0),
        (chat("Where is the station?", "Figure it out yourself."), -1.0),
    ]
    threads = [thread for thread, _ in samples]

    def squared_error() -> float:
        scores = trainer.scorer.score_last_token(threads)
        return sum((score - target) ** 2 for score, (_, target) in zip(scores, samples, strict=True))

    error_before = squared_error()
    for _ in range(40):
        for thread, target in samples:
            trainer.train_mse(thread, target)
        trainer.optim_step(lr=1e-2, wd=0.0, max_grad_norm=1.0)

    assert squared_error() < error_before * 0.25


def test_step_gradient_is_sample_mean(tiny_llama_dir: Path):
    """optim_step divides the summed gradients by the number of samples before measuring the norm."""
    trainer = make_trainer(tiny_llama_dir)
    for thread in FACTS:
        trainer.train_language_modelling(thread)
    summed = gradients(trainer)
    expected_norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in summed.values()]))) / len(
        FACTS
    )

    stats = trainer.optim_step(lr=0.0, wd=0.0, max_grad_norm=None)

    assert stats["samples"] == len(FACTS)
    assert stats["grad_norm"] == pytest.approx(expected_norm, rel=1e-5)
