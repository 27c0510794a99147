"""Reports: figures (PNG), plain-language readings, and one self-contained HTML page."""
