"""`python -m bot`: run the chat bot."""

from .app import main

# Guarded: processes started by `spawn` import this module under another name.
if __name__ == "__main__":
    raise SystemExit(main())
