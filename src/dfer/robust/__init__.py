"""RDFER-style robust learning (Liu et al., *Robust Dynamic Facial Expression Recognition*).

See docs/rdfer.md for what the abstract states and what was designed here.
"""
