"""``python -m kws_research.mine run_id=<id>|best [minutes=30] [folder=<long recordings>] [stream.*=...]``

Hard-negative mining: the windows on which the run's calibrated detector fires
where no command is said (a negatives-only stream of the training split, or the
training-split files of a folder of long recordings) are saved as clips in
``<cache_dir>/hard_negatives/<run id>`` and logged on the run; the next run takes
them with ``dataset.unknown_sources.hard_negatives=<share> dataset.hard_negatives=<run id>``.
The last stdout line is a JSON object of the counts.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from kws_research.cli import hydra_stage, print_json_line


def mine_stage(cfg: DictConfig) -> dict:
    # loaded here, not at import: --help, a bad override and a wrong run id answer before TensorFlow loads
    from kws_research.tracking import store
    from kws_research.tracking.lookup import existing_run_id

    client = store.client_for(cfg.tracking)
    run_id = existing_run_id(client, cfg.run_id, cfg.get("sweep"))
    # the run exists: now TensorFlow and the model's code
    from kws_research.streaming.runs import mine_run

    result = mine_run(client, run_id, OmegaConf.to_container(cfg, resolve=True))
    print(
        f"run {run_id}: {result['mined_windows']:.0f} false accepts in {60 * result['mining_hours']:.1f} min of "
        f"{result['mined_from']} ({result['mining_fa_per_hour']:.1f} FA/h) saved to {result['folder']}; train on them "
        f"with dataset.unknown_sources.hard_negatives=<share> dataset.hard_negatives={run_id}"
    )
    print_json_line(result)
    return result


main = hydra_stage("mine", mine_stage)

if __name__ == "__main__":
    main()
