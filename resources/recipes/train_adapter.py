"""Train a LoRA adapter on the tiny model for a few steps and log its loss as a metric.

The recipe spawns `galley-tiny-qwen3` for training with `.with_adapter()`, so only the
adapter weights get gradients, runs `train_language_modelling` on three short threads per
step and calls `optim_step`. The loss of each step is logged with `ctx.log_metric`, which
the Runs screen draws as a chart; the progress bar follows the steps. Runs on a CPU in
well under a minute.
"""

from adaptive_harmony import StringThread
from adaptive_harmony.runtime import RecipeContext, recipe_main

EXAMPLES = [
    ("Where does Galley run models?", "On local GPUs."),
    ("What does a recipe spawn?", "Models."),
    ("Which language are recipes written in?", "Python."),
]
STEPS = 20


@recipe_main
async def main(ctx: RecipeContext):
    policy = await (
        ctx.client.model("model_registry://galley-tiny-qwen3", kv_cache_len=1024, tokens_to_generate=16)
        .with_adapter()
        .spawn_train("policy", max_batch_size=256)
    )

    threads = [
        StringThread([("user", question), ("assistant", answer)]).with_weight_last_assistant_turn()
        for question, answer in EXAMPLES
    ]

    ctx.job.register_stages(["train"])
    for step in range(STEPS):
        for thread in threads:
            await policy.train_language_modelling(thread)
        stats = await policy.optim_step(lr=3e-3, wd=0.0, max_grad_norm=1.0)

        ctx.log_metric("loss", stats["loss"], step=step)
        print(f"step {step}: loss {stats['loss']:.4f}")
        ctx.job.report_progress("train", tot_num_samples=STEPS, processed_num_samples=step + 1)
