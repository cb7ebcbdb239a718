"""ArtyLyze: style, genre, artist, nationality and period for digitized artworks."""

__version__ = "0.1.0"
