"""The guild: what DIO learns and how we know it learned.

Owns skills (YAML in configs/skills/), problem generators, exact scorers, eval sets, progression
rules (skill levels; hero levels, XP and ATK/DEF are computed by `arena.reporting`, which the guild
calls to announce a hero level-up), achievements and the quest planner. Must not train models or
serve HTTP beyond the skill-server contract.
"""
