"""Applications built on core; each is a thin composition of core plus its own I/O. No app imports another."""
