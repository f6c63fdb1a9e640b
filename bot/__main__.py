"""`python -m bot`: run the chat bot."""

from .app import main

raise SystemExit(main())
