"""Unit and property tests of the pure domain core (no I/O)."""
