"""The arena: where quests become training.

Owns quest intake (watch, validate, queue), the trainer loop, battle control (pause, resume, stop,
skip) and the hero model factory. Reports progress only through the event log (vault.events).
Must not serve web pages or reach into the Tavern.
"""
