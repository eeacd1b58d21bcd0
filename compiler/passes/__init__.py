"""Graph passes: each a function over a Graph, run by the pass manager."""
