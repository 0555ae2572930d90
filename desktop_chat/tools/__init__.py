"""Developer tools (screenshots, self-checks)."""
