"""The package's version, in a module of its own: any part of clipunlearn reads it from here without
importing the package root (which imports every part)."""

__version__ = "0.1.0"
