"""Ownership: every lead reaches an owner (routing), and a lead nobody works is never silent."""
