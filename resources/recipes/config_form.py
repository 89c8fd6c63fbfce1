"""Declare the recipe's inputs with InputConfig so the workbench shows them as a form.

Each field of `Config` becomes a form field above the Run button: `AdaptiveModel` is a
picker over the model registry, and the `Field` constraints (ge, le, description) are
checked before the run starts, every problem listed at once. Change the prompt or the
number of replies in the form and run again. Runs on a CPU in a few seconds.
"""

import asyncio
from typing import Annotated

from pydantic import Field

from adaptive_harmony import StringThread
from adaptive_harmony.runtime import AdaptiveModel, InputConfig, RecipeContext, recipe_main


class Config(InputConfig):
    model: Annotated[AdaptiveModel, Field(description="Registry model to generate with")] = AdaptiveModel(
        "galley-tiny-qwen3"
    )
    prompt: Annotated[str, Field(min_length=1, description="User message sent to the model")] = (
        "Write a haiku about GPUs."
    )
    replies: Annotated[int, Field(ge=1, le=8, description="Replies to generate, concurrently")] = 3
    temperature: Annotated[float, Field(ge=0.0, le=2.0, description="Temperature, 0 for greedy")] = 0.7
    tokens_to_generate: Annotated[int, Field(ge=1, le=256, description="Maximum new tokens per reply")] = 16


@recipe_main
async def main(config: Config, ctx: RecipeContext):
    model = await ctx.client.model(
        config.model.path,
        kv_cache_len=1024,
        tokens_to_generate=config.tokens_to_generate,
    ).spawn_inference("form")

    ctx.job.register_stages(["generate"])
    thread = StringThread([("user", config.prompt)])
    sampler = model.temperature(config.temperature)
    finished = 0

    async def generate_one() -> StringThread:
        nonlocal finished
        reply = await sampler.generate(thread)
        finished += 1
        ctx.job.report_progress("generate", tot_num_samples=config.replies, processed_num_samples=finished)
        return reply

    # The engine batches concurrent calls on one spawn, so the replies decode together.
    replies = await asyncio.gather(*(generate_one() for _ in range(config.replies)))
    for index, reply in enumerate(replies):
        print(f"reply {index + 1}: {reply.last_content()}")
