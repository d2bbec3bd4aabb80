"""``python -m qi.base.streaming.bench``: see ``--help``."""

from qi.base.streaming.bench._cli import main

raise SystemExit(main())
