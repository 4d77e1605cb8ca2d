"""``python -m surefoot.sandbox``."""

from surefoot.sandbox._cli import main

raise SystemExit(main())
