"""``python -m surefoot.sandbox``."""

from ._cli import main

raise SystemExit(main())
