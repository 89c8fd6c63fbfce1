"""Show how a chat thread becomes tokens and back through the model's chat template.

`tokenize_thread` renders each turn with the tokenizer's chat template and returns the token
ids per turn, and `detokenize_thread` turns them back into text. `serialize_thread` returns
the flat ids with one training weight per token, where assistant turns are weighted. Read
the console to see which tokens a training loss would count. Runs on a CPU in a few seconds.
"""

from adaptive_harmony import StringThread
from adaptive_harmony.runtime import RecipeContext, recipe_main


@recipe_main
async def main(ctx: RecipeContext):
    model = await ctx.client.model(
        "model_registry://galley-tiny-qwen3",
        kv_cache_len=1024,
        tokens_to_generate=16,
    ).spawn_inference("template")

    thread = StringThread(
        [
            ("system", "You answer in one word."),
            ("user", "What colour is the sky?"),
            ("assistant", "Blue."),
        ]
    )

    tokenized = await model.tokenize_thread(thread)
    for turn in tokenized.get_turns():
        print(f"{turn.role:>9}: {len(turn.content)} tokens {turn.content}")

    restored = await model.detokenize_thread(tokenized)
    print("round trip equals the original:", restored.get_turns() == thread.get_turns())

    ids, _image_tokens, weights = await model.serialize_thread(thread)
    trained = [token for token, weight in zip(ids, weights) if weight > 0]
    print(f"{len(ids)} tokens in the rendered thread, {len(trained)} carry a training weight")
    print("weighted text:", repr(await model.detokenize(trained)))
