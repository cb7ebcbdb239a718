"""What people said about the machine's labels: the review store (events in SQLite), the
overlay that puts human labels over the model's in every output, and CSV import/export.

May import: :mod:`artylyze.store`, :mod:`artylyze.model` and the foundations.
"""

from artylyze.review.sqlite import SCHEMA_VERSION, ReviewError
from artylyze.review.store import ACTIONS, Event, HumanLabel, ReviewStore, review_path

__all__ = ["ACTIONS", "SCHEMA_VERSION", "Event", "HumanLabel", "ReviewError", "ReviewStore",
           "review_path"]
