"""Tests of behaviour that only one backend has (its error table, its own hooks)."""
