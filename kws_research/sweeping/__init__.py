"""The sweep stage: an Optuna study over training runs, driven directly (not through
the Hydra Optuna sweeper plugin, which pins old Optuna and hides the trial)."""
