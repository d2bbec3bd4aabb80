"""Backends: each subpackage provides `connector(config, logger)` for one implementation."""
