"""Training: input pipeline, augmentation, optimisers, one tracked run (``run_training``)."""
