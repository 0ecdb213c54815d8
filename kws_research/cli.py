"""What every stage's command line shares: Hydra, one-line errors, the JSON last line."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from kws_research.errors import KwsError

CONFIG_PATH = "../conf"  # relative to this package: the repository's conf/ folder
HYDRA_VERSION = "1.3"


def quiet_native_logs() -> None:
    """Silence TensorFlow's C++ banner before it loads (set only if the user did not)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def print_json_line(payload: dict) -> None:
    """The last stdout line of a stage: one compact JSON object scripts can parse."""
    sys.stdout.flush()
    print(json.dumps(payload, separators=(",", ":"), default=str), flush=True)


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def _interrupt(signum, frame) -> None:
    """SIGTERM ends a stage like Ctrl-C, so tracked runs end KILLED rather than RUNNING."""
    raise KeyboardInterrupt(f"signal {signum}")


def hydra_stage(config_name: str, run: Callable[[Any], Any]) -> Callable[[], None]:
    """A ``main()`` that composes ``conf/<config_name>.yaml`` with the command-line
    overrides and calls ``run(cfg)``; a :class:`KwsError` becomes one line and exit 2."""
    import hydra

    quiet_native_logs()

    def task(cfg) -> None:
        from hydra.core.hydra_config import HydraConfig

        from kws_research.config import apply_choices

        signal.signal(signal.SIGTERM, _interrupt)
        apply_choices(cfg, dict(HydraConfig.get().runtime.choices))
        try:
            return run(cfg)
        except KwsError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", code=130)

    task.__module__ = run.__module__
    task.__qualname__ = run.__qualname__
    return hydra.main(version_base=HYDRA_VERSION, config_path=CONFIG_PATH, config_name=config_name)(task)
