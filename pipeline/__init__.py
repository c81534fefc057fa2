"""OpenEarthMap-style land-cover release builder."""
__version__ = "0.1.0"
