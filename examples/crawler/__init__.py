"""hybrid's example crawler: ``python -m examples.crawler --demo`` (see ``--help``)."""
