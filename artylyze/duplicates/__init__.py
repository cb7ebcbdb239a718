"""Duplicates: the same artwork held more than once (same bytes, or another scan of it).

``candidates`` finds pairs by a chunked FAISS range search on the embeddings, ``verify`` tells
the same work from another work of the same artist (local features aligned, then compared),
``groups`` joins pairs into groups and picks a keeper, ``collapse`` shows a group once in
search results.
"""
