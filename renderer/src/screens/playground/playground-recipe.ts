// The recipe behind the Playground screen. Each message runs it once with the conversation
// as its config. The engine hands the kept inference spawn back to the next run while the
// model and its configuration are unchanged (within the keep-warm TTL), so only the first
// message pays for loading. The printed reply reports whether the spawn was reused.
// NOTE: each Playground message is a run and shows up in the run history. A chat that kept
// one engine session open would skip the runner's start-up, but the API has no call for it.

export const PLAYGROUND_RECIPE_PATH = ".galley/playground.py";
export const REPLY_MARKER = "GALLEY_PLAYGROUND_REPLY ";

export const PLAYGROUND_RECIPE = `"""Generate one assistant reply for the workbench's Playground screen.

The Playground writes this file and runs it once per message, with the conversation as its
config. Edits here are overwritten the next time the Playground sends a message.
"""

import json
from typing import Annotated

from pydantic import Field

from adaptive_harmony import StringThread
from adaptive_harmony.runtime import AdaptiveModel, InputConfig, RecipeContext, recipe_main


class Config(InputConfig):
    model: AdaptiveModel
    turns: Annotated[list[tuple[str, str]], Field(min_length=1)]
    temperature: Annotated[float, Field(ge=0.0)] = 0.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    max_gen_len: Annotated[int, Field(ge=1)] = 64


@recipe_main
async def main(config: Config, ctx: RecipeContext):
    # No kv_cache_len or tokens_to_generate here: the spawn takes the model's inference
    # configuration from the registry, the one the Registry screen edits.
    model = await ctx.client.model(config.model.path).spawn_inference("playground")
    sampler = model.temperature(config.temperature).top_p(config.top_p).max_gen_len(config.max_gen_len)
    reply = await sampler.generate(StringThread(list(config.turns)))
    info = model.info
    spawn = {"reused": info.reused, "kv_cache_len": info.kv_cache_len, "devices": info.devices} if info else None
    print("${REPLY_MARKER.trim()} " + json.dumps({"content": reply.last_content(), "spawn": spawn}))
`;

export interface PlaygroundReply {
  content: string;
  // The spawn that generated the reply, as the engine reported it. Null from an older recipe version.
  spawn: { reused: boolean; kv_cache_len: number; devices: string[] } | null;
}

/** Extracts the reply the playground recipe printed, or returns null if its output has none. */
export function findReply(stdout: string): PlaygroundReply | null {
  for (const line of stdout.split("\n")) {
    if (!line.startsWith(REPLY_MARKER)) continue;
    try {
      const parsed: unknown = JSON.parse(line.slice(REPLY_MARKER.length));
      if (typeof parsed !== "object" || parsed === null || !("content" in parsed) || typeof parsed.content !== "string") return null;
      const spawn = "spawn" in parsed && typeof parsed.spawn === "object" ? (parsed.spawn as PlaygroundReply["spawn"]) : null;
      return { content: parsed.content, spawn };
    } catch {
      return null;
    }
  }
  return null;
}
