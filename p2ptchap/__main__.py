"""``python -m p2ptchap``: the same as the ``p2ptchap`` command."""

from p2ptchap.ui.cli import main

raise SystemExit(main())
