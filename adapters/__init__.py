"""hybrid's adapters: one module per third-party system, each implementing a core protocol.

``adapters`` is also the name of an unrelated distribution on PyPI (AdapterHub's); code that
needs ours checks :data:`HYBRID_ADAPTERS` before trusting what ``import adapters`` found, and
each adapter module does so on import (``adapters._identity``), failing in one line that
names the conflict.
"""

HYBRID_ADAPTERS = True  # marker: this is hybrid's adapters package
