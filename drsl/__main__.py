"""``python -m drsl``: the command line (see :mod:`drsl.cli`)."""

from drsl.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
