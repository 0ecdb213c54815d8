"""A worker process of a parallel sweep: ``python -m kws_research.sweeping.worker <spec.json>``."""

from __future__ import annotations

import json
import logging
import sys

from omegaconf import OmegaConf

from kws_research.processes import install_interrupt_handlers, quiet_native_logs
from kws_research.sweeping.definition import SweepDefinition


def main(path: str) -> None:
    quiet_native_logs()
    install_interrupt_handlers()
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(name)s: %(message)s", stream=sys.stderr)
    # TensorFlow loads with these: after its log level is set above.
    from kws_research.sweeping.context import open_context
    from kws_research.sweeping.runner import work

    spec = json.loads(open(path).read())
    definition = SweepDefinition(spec["name"], OmegaConf.create(spec["config"]), spec["run_overrides"])
    try:
        work(open_context(definition), spec["parent_run_id"], spec["deadline"])
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main(sys.argv[1])
