"""The sentinels: the realm's guards.

Owns config validation at the gate, the guardian that supervises services, single-instance locks,
and health and disk checks. Must not hold feature logic.
"""
