"""The recipe SDK: client, model builders, spawned models, threads, config types and run events.

It imports no torch or transformers. Recipes use it through ``galley`` (or ``adaptive_harmony``)
and ``galley.runtime``.
"""
