"""The export stage: best run -> Core ML -> verified -> compared with the baseline -> logged."""
