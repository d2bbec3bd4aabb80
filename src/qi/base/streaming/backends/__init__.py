"""Backends: each subpackage provides `backend(config, logger)` for one implementation."""
