"""``python -m qi.base.streaming.cli``: the same as the ``qi-stream`` console script."""

from qi.base.streaming.cli import main

if __name__ == "__main__":
    main()
