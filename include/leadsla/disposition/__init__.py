"""Disposition: leads worked without an answer counted, recycled (or recommended for it), and
brought back on their re-engagement date."""
