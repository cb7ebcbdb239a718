"""Run the app with uvicorn: one process, or ``workers`` processes that each load their own
service from the options in the environment (uvicorn starts workers from an import string).

Settings that make it safe to expose: loopback by default, a cap on open connections
(503 beyond), short keep-alive, no ``Server`` header, uvicorn's own access log off (it
would print query strings) in favour of :mod:`artylyze.serve.middleware`'s JSON lines.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from dataclasses import replace
from typing import Any

from artylyze.serve.middleware import ACCESS_LOGGER
from artylyze.serve.options import ENV_VAR, ServeOptions

log = logging.getLogger("artylyze.serve")
KEEP_ALIVE_S = 5
GRACEFUL_S = 10


def configure_logging() -> None:
    """Access lines as bare JSON on stderr; everything else as ``LEVEL name: message``."""
    plain = logging.StreamHandler(sys.stderr)
    plain.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    bare = logging.StreamHandler(sys.stderr)
    bare.setFormatter(logging.Formatter("%(message)s"))
    for name, handler in (("artylyze.serve", plain), ("uvicorn", plain), (ACCESS_LOGGER, bare)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def one_search_thread() -> None:
    """FAISS searches one query at a time here, and OpenMP threads that spin at a barrier
    for a 1 ms search cost more than they give (30x slower on a busy 2-core machine): the
    parallelism of a server comes from concurrent requests."""
    import faiss

    faiss.omp_set_num_threads(1)


def app_from_env() -> Any:
    """The factory each worker process calls (``--workers N``)."""
    from artylyze.serve.app import create_app
    from artylyze.serve.service import Service

    configure_logging()
    one_search_thread()
    service = Service.open(ServeOptions.from_env())
    service.warm_up()
    return create_app(service)


def uvicorn_settings(options: ServeOptions) -> dict[str, Any]:
    return {"host": options.host, "port": options.port, "root_path": options.root_path,
            "limit_concurrency": options.max_connections, "timeout_keep_alive": KEEP_ALIVE_S,
            "timeout_graceful_shutdown": GRACEFUL_S, "access_log": False, "log_config": None,
            "server_header": False, "proxy_headers": True}


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(options: ServeOptions) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM); the service loads before the port opens, so
    a bad index or bundle fails here and not on the first request."""
    import uvicorn

    options.check()
    configure_logging()
    one_search_thread()
    if options.review and options.review_token is None:
        from artylyze.serve.review import read_token

        options = replace(options, review_token=read_token(options.review_token_file))
        if options.review_token_file is None:
            log.warning("reviewing is on; review token (paste it into the review page): %s",
                        options.review_token)
    if not is_loopback(options.host):
        log.warning("listening on %s, not loopback: put a reverse proxy with TLS in front "
                    "(see the README)", options.host)
    settings = uvicorn_settings(options)
    if options.workers > 1:
        os.environ[ENV_VAR] = options.to_env()
        uvicorn.run("artylyze.serve.server:app_from_env", factory=True,
                    workers=options.workers, **settings)
        return
    from artylyze.serve.app import create_app
    from artylyze.serve.service import Service

    service = Service.open(options)
    service.warm_up()
    log.info("serving %s: %d works; page at http://%s:%d%s/, API docs at /docs",
             service.manifest.model_id, service.catalog.count, options.host, options.port,
             options.root_path)
    uvicorn.run(create_app(service), **settings)
