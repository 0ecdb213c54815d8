"""Streaming evaluation: what the app does on continuous audio.

Streams (:mod:`.streams`) built from a split, every window scored by the model
(:mod:`.scoring`), the app's detector (:mod:`.detector`), detections matched to
the ground truth (:mod:`.matching`), the detector calibrated on validation
streams for a target false-accept rate (:mod:`.calibration`), all of it for one
run in :mod:`.evaluation`.
"""
