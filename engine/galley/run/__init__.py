"""The recipe runner, ``python -m galley.run``; see ``galley.run.main``."""
