"""A picklable reference to a function that is imported in the process that calls it.

It lives apart from the dispatcher, so that unpickling it in a worker imports only this
module: the dispatcher's asyncio (and with it ssl, logging and more, about 4 MB of
resident memory per worker) stays in the parent.
"""

from __future__ import annotations

import importlib
from typing import Any


class InWorker:
    """Calls ``module.name`` by name, importing ``module`` where it is called.

    The parent sends it instead of the function itself, so it never imports the
    parsing module (and selectolax): that memory is only spent in the workers.
    """

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*args)


PARSE_PAGES = InWorker("examples.crawler.parse", "parse_pages")
