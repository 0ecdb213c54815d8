"""``python -m kws_research.export run_id=<id>|best [key=value ...]``

Converts a run's Keras model to Core ML, verifies the saved file against Keras
on the test split (on any OS, through the NumPy reference runtime), compares it
with the data set's baseline and logs everything on the run. Prints the
comparison table; the last stdout line is a JSON object of the metrics and the
artifact paths. Exits non-zero when verification fails.
"""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from kws_research.cli import hydra_stage, print_json_line


def main_export(cfg: DictConfig) -> dict:
    # loaded here, not at import: --help, a bad override and a wrong run id answer before TensorFlow loads
    from kws_research.exporting.options import evaluation_of, preflight

    cfg.evaluation = evaluation_of(list(HydraConfig.get().overrides.task), cfg.evaluation)
    options = OmegaConf.to_container(cfg, resolve=True)
    checked = preflight(options)
    # the run exists: now TensorFlow and the model's code
    from kws_research.exporting.registry import registered_line
    from kws_research.exporting.stage import export_run

    result = export_run(options, checked)
    print(result.pop("comparison"))
    for check in result.pop("checks"):
        print(
            f"{check['format']:>13} {check['precision']}: max |diff| {check['max_abs_diff']:.2e} "
            f"(tolerance {check['tolerance']:.0e}), agreement {100 * check['agreement']:.2f}%, "
            f"Core ML test accuracy {100 * check['coreml_accuracy']:.2f}% on {check['clips']} clips"
        )
    if registered := registered_line(result):
        print(registered)
    print_json_line(result)
    return result


main = hydra_stage("export", main_export)

if __name__ == "__main__":
    main()
