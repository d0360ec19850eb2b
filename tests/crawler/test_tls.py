"""A TLS failure (a certificate the client does not trust) is that URL's outcome, never a crash."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from adapters.aiohttp import AiohttpFetcher, FetchOptions
from examples.crawler.frontier import DONE, FAILED
from examples.crawler.site import RunningSite, SyntheticSite

from .support import run_crawler, states


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A fresh self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the TLS tests need the openssl command to make a certificate")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@asynccontextmanager
async def serve_tls(site: SyntheticSite, folder: Path) -> AsyncIterator[str]:
    """Serve ``site`` over HTTPS on 127.0.0.1 with an untrusted certificate."""
    cert, key = self_signed_certificate(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(site.app(), access_log=None, handle_signals=False)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_an_untrusted_certificate_is_a_tls_failure_not_retried(tmp_path: Path) -> None:
    site = SyntheticSite(pages=3)
    options = FetchOptions(retries=3, backoff_base_s=0.01, autothrottle=False)
    async with serve_tls(site, tmp_path) as base, AiohttpFetcher(options) as fetcher:
        result = await fetcher.fetch(f"{base}/p/0")
    assert result.status == 0
    assert result.error is not None
    assert result.error.startswith("tls: "), result.error
    assert "certificate" in result.error.lower()
    assert result.attempts == 1  # a bad certificate does not get better by retrying
    assert not site.served  # no request went through the failed handshake


async def test_the_crawl_records_the_tls_failure_and_goes_on(tmp_path: Path) -> None:
    plain = SyntheticSite(pages=30, links=4, page_bytes=2048)
    secure = SyntheticSite(pages=3)
    db = tmp_path / "tls.sqlite"
    async with serve_tls(secure, tmp_path) as secure_base, RunningSite(plain) as running:
        code, out, err = await run_crawler(
            f"{secure_base}/p/0", f"{running.url}/p/0",
            "--db", str(db), "--workers", "1", "--retries", "2", "--timeout", "5",
        )  # fmt: skip
    assert code == 0, err
    urls = states(db)
    state, status, reason = urls[f"{secure_base}/p/0"]
    assert (state, status) == (FAILED, 0)
    assert reason is not None
    assert reason.startswith("tls: "), reason
    assert not secure.served
    # The other seed's site was crawled in full, as if nothing had happened.
    assert {f"{running.url}{path}" for path in plain.page_paths()} <= set(urls)
    assert all(urls[f"{running.url}{path}"][0] == DONE for path in plain.page_paths())
    assert "failed 1" in out
