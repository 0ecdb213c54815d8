"""What every stage's command line shares: Hydra, one-line errors, the JSON last line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from kws_research.config import HYDRA_VERSION, apply_choices, check_overrides
from kws_research.errors import KwsError
from kws_research.paths import CONF_DIR
from kws_research.processes import install_interrupt_handlers, quiet_native_logs


def print_json_line(payload: dict) -> None:
    """The last stdout line of a stage: one compact JSON object scripts can parse."""
    sys.stdout.flush()
    print(json.dumps(payload, separators=(",", ":"), default=str), flush=True)


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def check_config_dir(argv: list[str]) -> None:
    """Hydra's ``--config-dir``/``-cd``: a folder that is not there is one line (Hydra printed
    three and exited 1)."""
    for index, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag not in ("--config-dir", "-cd"):
            continue
        folder = value if eq else (argv[index + 1] if index + 1 < len(argv) else "")
        if not folder or not os.path.isdir(os.path.expanduser(folder)):
            fail(f"--config-dir: {folder or '(no folder given)'} is not a folder; give a folder of extra configs")


def hydra_stage(config_name: str, run: Callable[[Any], Any]) -> Callable[[], None]:
    """A ``main()`` that composes ``conf/<config_name>.yaml`` with the command-line
    overrides and calls ``run(cfg)``; a bad override or a :class:`KwsError` becomes one
    ``error:`` line and exit 2."""
    import hydra

    quiet_native_logs()

    def task(cfg) -> None:
        from hydra.core.hydra_config import HydraConfig

        install_interrupt_handlers()
        apply_choices(cfg, dict(HydraConfig.get().runtime.choices))
        try:
            return run(cfg)
        except KwsError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", code=130)
        except OSError as exc:  # a file system refusing work nothing above turned into a KwsError
            if os.environ.get("KWS_DEBUG"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc} (KWS_DEBUG=1 shows the traceback)")

    task.__module__ = run.__module__
    task.__qualname__ = run.__qualname__
    hydra_main = hydra.main(version_base=HYDRA_VERSION, config_path=str(CONF_DIR), config_name=config_name)(task)

    def main() -> None:
        overrides = sys.argv[1:]
        check_config_dir(overrides)
        if not any(arg.startswith("-") for arg in overrides):  # Hydra's own flags go to Hydra as they are
            try:
                check_overrides(config_name, overrides)
            except KwsError as exc:
                fail(str(exc))
        hydra_main()

    return main
