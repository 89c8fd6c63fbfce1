"""Spawn the embedded tiny model for inference and print one generated reply.

This is the smallest complete recipe: connect through the run's context, place a model on a
device with `spawn_inference`, send it a chat thread and print what it returns. The default
model `galley-tiny-qwen3` has random weights, so its reply is gibberish; the point is the
round trip. Runs on a CPU in a few seconds.
"""

from adaptive_harmony import StringThread
from adaptive_harmony.runtime import RecipeContext, recipe_main


@recipe_main
async def main(ctx: RecipeContext):
    # A small KV cache and a short reply keep the spawn cheap on any machine.
    model = await ctx.client.model(
        "model_registry://galley-tiny-qwen3",
        kv_cache_len=1024,
        tokens_to_generate=16,
    ).spawn_inference("hello")

    thread = StringThread([("user", "Say hello to Galley.")])
    # Temperature 0 decodes greedily, so the same model gives the same reply on every run.
    reply = await model.temperature(0.0).generate(thread)

    print("prompt:", thread.last_content())
    print("generated:", reply.last_content())
