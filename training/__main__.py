"""`python -m training`: gather, clean, train, evaluate, export."""

from .cli import main

raise SystemExit(main())
