"""Invariants over recorded histories: a recorder, a checker, and the drivers that feed them.

Drivers run consumer groups through random schedules (members joining, leaving,
crashing, slow and failing handlers, seeks, new topics, connection cuts) while a
recorder logs what happened; the checker then states what must always hold.
See ``_checker`` for the invariants.
"""
