"""The contract suite: one set of tests that every backend must pass unchanged."""
