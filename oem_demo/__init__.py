"""Synthetic demo data in the on-disk layouts of the real sources (not part of the runtime library)."""
