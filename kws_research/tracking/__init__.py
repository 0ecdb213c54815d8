"""MLflow tracking: store and experiment set-up, and the run contract of every stage."""
