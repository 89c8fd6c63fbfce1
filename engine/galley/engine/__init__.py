"""Galley's engine: the WebSocket RPC server, its sessions and spawns, and the worker processes.

``python -m galley.engine`` starts the server (see ``server.py``); each spawn rank runs
``python -m galley.engine.worker``. The server process imports no torch: models live only
in workers.
"""
