"""Test helpers that live at the wire: fake API servers. Importable by tests and benchmarks."""
