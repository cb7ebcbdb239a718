"""The fetcher's promises to a museum's server, checked against a loopback server: the
per-host limit, the User-Agent, retries that give up, redirect bounds, long Retry-After."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from iiif_support import EXAMPLES, Faults, PlainServer

from artylyze.iiif.fetch import USER_AGENT, Fetcher, FetchError, FetchOptions

IMAGE = next(iter(sorted(EXAMPLES.glob("*.jpg")))).read_bytes()


@pytest.fixture()
def server(tmp_path: Path):
    s = PlainServer(tmp_path, Faults(IMAGE, IMAGE))
    yield s
    s.close()


def test_at_most_max_per_host_requests_at_once_and_an_identifying_agent(server) -> None:
    with Fetcher(FetchOptions(max_per_host=2)) as f, ThreadPoolExecutor(12) as pool:
        sizes = list(pool.map(lambda i: len(f.get(f"{server.url}/fault/count-{i}.jpg").content),
                              range(12)))
    assert sizes == [len(IMAGE)] * 12
    assert server.faults.most_inflight == 2
    assert server.faults.agents == {USER_AGENT} and USER_AGENT.startswith("ArtyLyze/")


def test_5xx_is_retried_then_given_up_with_the_status(server) -> None:
    with Fetcher(FetchOptions(retries=2, backoff=0.05)) as f, pytest.raises(FetchError) as e:
        f.get(f"{server.url}/fault/down.jpg")
    assert e.value.kind == "http" and "HTTP 503" in str(e.value) and "3 tries" in str(e.value)
    assert server.faults.hits["/fault/down.jpg"] == 3


def test_a_retry_after_longer_than_max_wait_gives_up_at_once(server) -> None:
    with Fetcher(FetchOptions(max_wait=5)) as f, pytest.raises(FetchError) as e:
        f.get(f"{server.url}/fault/later.jpg")
    assert "Retry-After 3600 s" in str(e.value)
    assert server.faults.hits["/fault/later.jpg"] == 1


def test_redirects_are_followed_up_to_the_limit(server) -> None:
    with Fetcher(FetchOptions(max_redirects=3)) as f:
        assert f.get(f"{server.url}/fault/chain-3.jpg").content == IMAGE
        with pytest.raises(FetchError) as e:
            f.get(f"{server.url}/fault/chain-4.jpg")
    assert e.value.kind == "redirect" and "more than 3 redirects" in str(e.value)


def test_a_body_over_max_bytes_is_refused(server) -> None:
    with Fetcher(FetchOptions(max_bytes=len(IMAGE) - 1)) as f, pytest.raises(FetchError) as e:
        f.get(f"{server.url}/fault/big.jpg")
    assert e.value.kind == "too_large"
