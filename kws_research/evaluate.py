"""``python -m kws_research.evaluate run_id=<id>|best [stream=long] [stream.key=value ...]``

The streaming evaluation of any finished run (the baseline's too): the detector
calibrated on validation streams for ``stream.target_fa_per_hour``, then false
accepts per hour, misses and latency on the test streams, a DET curve and the
temperature, all logged on the run. The last stdout line is a JSON object of the
metrics.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from kws_research.cli import hydra_stage, print_json_line


def evaluate_stage(cfg: DictConfig) -> dict:
    # loaded here, not at import: --help, a bad override and a wrong run id answer before TensorFlow loads
    from kws_research.tracking import store
    from kws_research.tracking.lookup import existing_run_id

    client = store.client_for(cfg.tracking)
    run_id = existing_run_id(client, cfg.run_id, cfg.get("sweep"))
    # the run exists: now TensorFlow and the model's code
    from kws_research.streaming.runs import evaluate_run

    metrics = evaluate_run(client, run_id, OmegaConf.to_container(cfg.stream, resolve=True), str(cfg.gate))
    print(
        f"run {run_id}: hit rate {100 * metrics['stream_hit_rate']:.1f}% on the mixed test stream, "
        f"{metrics['stream_fa_per_hour']:.2f} false accepts per hour on the negatives-only test stream "
        f"(detector threshold {metrics['detector_threshold']:.3f}, window {metrics['detector_window_ms']:.0f} ms, "
        f"temperature {metrics['temperature']:.2f})"
    )
    result = {"run_id": run_id, **metrics}
    print_json_line(result)
    return result


main = hydra_stage("evaluate", evaluate_stage)

if __name__ == "__main__":
    main()
