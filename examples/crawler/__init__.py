"""hybrid's example crawler: fetching on the event loop, parsing in worker processes.

Run ``python -m examples.crawler --demo`` to crawl a local synthetic site (no network
needed), or ``python -m examples.crawler https://example.org/ --db out.sqlite``; see
``--help`` for every option. The same command resumes a crawl that was stopped or killed.

Modules: ``cli`` (options), ``app`` (one run), ``crawl`` (the fetch tasks), ``dispatch``
(parse batches to the workers), ``inworker`` (what the workers unpickle to call the
parser), ``parse`` (worker side), ``frontier`` (SQLite frontier), ``distributed`` (Redis
frontier), ``memory`` (malloc settings), ``robots``, ``urls``, ``progress``, ``export``
and ``site`` (the synthetic site shared with the tests and the benchmark).
"""
