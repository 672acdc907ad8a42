"""Pure decision logic: triggers, schedules, gates, naming, history, conditions.

No I/O, no kopf, no clock reads (time is a parameter), so the operator and the local
runner share one copy of every decision and it is unit-tested as plain functions.
"""
