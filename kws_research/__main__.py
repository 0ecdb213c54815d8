"""``kws <stage> [key=value ...]`` (and ``python -m kws_research <stage> ...``): one
command for every stage; ``kws --help`` lists them. ``python -m kws_research.<stage>``
keeps working: each stage module is the same program."""

from __future__ import annotations

import importlib
import sys

# stage -> what it does (each is kws_research/<stage>.py over conf/<stage>.yaml, sweeps/ for sweep)
STAGES = {
    "prepare": "generate or download a data set and decode it into the cache",
    "train": "one training run, tracked in MLflow",
    "sweep": "an Optuna study over training runs (sweeps/<name>.yaml), then export of the best",
    "export": "a run to Core ML, verified against Keras, compared with the baseline, registered",
    "evaluate": "the streaming evaluation of a finished run: calibrated detector, FA/h, misses",
    "mine": "hard-negative mining: the windows a run's detector fires on where no command is said",
}


def usage() -> str:
    width = max(map(len, STAGES))
    lines = ["usage: kws <stage> [key=value ...]   (kws <stage> --help for its options)", "", "stages:"]
    lines += [f"  {name:<{width}}  {what}" for name, what in STAGES.items()]
    lines += ["", "e.g. kws train trainer=quick model=ds_cnn; kws sweep sweep=quick; kws export run_id=best"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # a mistake, not a request for help: the usage goes with the error to stderr
        print(f"error: kws: no stage given; stages: {', '.join(STAGES)}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    if argv[0] in ("-h", "--help", "help"):
        print(usage())
        raise SystemExit(0)
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"error: kws: no stage {stage!r}; stages: {', '.join(STAGES)} (kws --help)", file=sys.stderr)
        raise SystemExit(2)
    sys.argv = [f"kws {stage}", *rest]  # Hydra reads the overrides from sys.argv
    importlib.import_module(f"kws_research.{stage}").main()  # the stage loads TensorFlow only if it needs it


if __name__ == "__main__":
    main()
