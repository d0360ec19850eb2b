"""hybrid's adapters: one module per third-party system, each implementing a core protocol.

``adapters`` is also the name of an unrelated distribution on PyPI; code that needs ours
checks :data:`HYBRID_ADAPTERS` before trusting what ``import adapters`` found.
"""

HYBRID_ADAPTERS = True  # marker: this is hybrid's adapters package
