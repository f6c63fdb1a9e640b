"""`python -m model photo.jpg [...]`: name every face in each photo."""

from .cli import main

# Guarded: processes started by `spawn` import this module under another name.
if __name__ == "__main__":
    raise SystemExit(main())
