"""Speech Commands data: layout, decoding, task, cache, download, synthetic generator.

Import :func:`kws_research.data.dataset.prepare` for the whole pipeline; the
submodules stay importable on their own (the generator's worker processes
import only :mod:`kws_research.data.espeak`).
"""
