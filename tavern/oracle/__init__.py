"""The Oracle: an OpenAI-compatible inference server over every checkpoint the vault knows.

`realm oracle [--port 8765]` runs it in its own process (never the trainer's): `protocol.py` owns the
OpenAI wire format (requests, responses, SSE chunks, errors), `ids.py` turns model ids (`dio@champion`,
`dio@step-1200`, a canonical checkpoint name, an alias, `dio@base`) into a local checkpoint folder through
the vault, `manager.py` keeps up to `oracle.max_loaded` checkpoints in memory (LRU, keep_alive, weight
swaps into a built model), `engine.py` batches concurrent requests into `generate` calls, `app.py` is
the Flask app and `server.py` runs it under gunicorn. Loading and generation themselves are
`arena/inference.py`'s, shared with the guild's evals.
"""
