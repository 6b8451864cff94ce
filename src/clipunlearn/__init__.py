"""clipunlearn: make a CLIP model forget a class without its training data, and prove it."""
__version__ = "0.1.0"
