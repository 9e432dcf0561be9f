"""``python -m alignment.nlp`` entry point."""

from .cli import main

raise SystemExit(main())
