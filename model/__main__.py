"""`python -m model photo.jpg [...]`: name every face in each photo."""

from .cli import main

raise SystemExit(main())
