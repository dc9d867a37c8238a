"""Tools for the repository: the documentation's generated parts (not part of the package)."""
