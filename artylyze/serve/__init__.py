"""``artylyze serve``: an HTTP service and a web page over a model bundle and an index.

Modules, one job each: ``options`` (every default once), ``errors`` (what a request is
refused with, and its status), ``uploads`` (size limit, content sniffing, multipart or raw
bodies), ``limits`` (bounded concurrency, deadlines), ``batching`` (concurrent requests
into one inference call), ``files`` (a work's file under the collection root, never
outside it), ``catalog`` (filter, sort and page the indexed works), ``service`` (the verbs:
tag, similar, influence, works), ``app`` (the FastAPI routes), ``middleware`` (access log,
security headers), ``server`` (uvicorn). ``static/`` holds the page (plain HTML + JS).

FastAPI and uvicorn come with the ``[serve]`` extra and are imported only here, so no other
command pays for them.
"""
