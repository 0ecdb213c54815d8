"""What a training run returns and how a caller takes part in it (no TensorFlow here,
so the ``train`` entry module stays quick to import)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

FINAL_METRICS = (
    "best_val_accuracy",
    "test_accuracy",
    "test_loss",
    "params",
    "macs",
    "macs_per_hop",
    "train_seconds",
    "epochs_run",
)


@dataclass
class TrainResult:
    """What a run returns to its caller (the CLI prints it, the sweep optimises it)."""

    run_id: str
    metrics: dict[str, float]
    stopped: str | None = None  # set when training was cut short on purpose (pruned, over budget)
    intermediate: list[float] = field(default_factory=list)


@dataclass
class RunHooks:
    """How a caller (the sweep) takes part in a run without the run knowing about it.

    ``on_start(run_id)`` learns the MLflow run id as soon as the run exists;
    ``check_model(model, sizes)`` returns a reason to skip training (e.g. over a size
    budget); ``callbacks`` join Keras ``fit``; a callback whose ``stop_reason`` is set
    after ``fit`` marks the run as stopped on purpose (e.g. pruned).
    """

    on_start: Callable[[str], None] | None = None
    check_model: Callable[[object, dict], str | None] | None = None
    callbacks: list = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None
