"""The products app's migrations, then one that changes `version`'s type and one that fails:
a `migrate` that stops after a type change has committed (tests/products/test_triggers.py)."""

from pathlib import Path

import products.migrations

# The app's own migrations are found here too: the loader lists and imports this package's.
__path__ = [*products.migrations.__path__, str(Path(__file__).parent)]
