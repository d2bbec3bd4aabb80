"""Reliability and security: faults on real connections, hostile input, secrets, leaks."""
