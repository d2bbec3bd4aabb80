"""The ``qi-stream`` command line: kcat-style produce, consume and topic commands over qi-base.

Run ``qi-stream --help``. The commands are a thin layer over the public API
(``qi.base.streaming`` and ``qi.base.streaming.devbroker``); they need the
``cli`` extra (click and rich).
"""

from qi.base.streaming.cli._app import cli, main, run

__all__ = ["cli", "main", "run"]
