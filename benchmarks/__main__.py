"""``python -m benchmarks``: see ``python -m benchmarks --help``."""

from benchmarks._cli import main

raise SystemExit(main())
