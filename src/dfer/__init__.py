"""dfer: dynamic facial expression recognition with soft labels.

Clips are always laid out as ``(B, T, C, H, W)`` once batched; see ``docs`` and the
README for the data flow from a corpus on disk to UAR/WAR.
"""

__version__ = "0.1.0"
