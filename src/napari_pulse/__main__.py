"""``python -m napari_pulse ...``: the ``napari-pulse`` command."""

from .cli import main

raise SystemExit(main())
