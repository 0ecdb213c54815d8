"""The harness deletes and overwrites only what it created: user files planted in every
folder it writes to survive every stage byte for byte, and a user file where a stage
would write is refused in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.data import tiny_overrides
from helpers.stages import TINY_STREAMS, run_stage
from helpers.sweeps import write_sweep
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from kws_research.config import compose
from kws_research.data.dataset import prepare
from kws_research.errors import KwsError

pytestmark = pytest.mark.slow

PLANTED = {
    "root/notes.txt": b"my notes about the recordings\n",
    "root/yes/README.md": b"recorded in the kitchen\n",
    "root/.hidden/settings.json": b"{}",
    "cache/mine.txt": b"cache folder of mine",
    "cache/prepared/keep.npy": b"not the harness's",
    "cache/streams/keep.txt": b"mine",
    "cache/hard_negatives/keep.txt": b"mine",
    "out/report.md": b"my own report",
    "out/model-v0.mlmodel": b"an older model of mine",
    "mlartifacts/keep.txt": b"mine",
}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in PLANTED if (folder / name).is_file()}


def test_every_stage_leaves_planted_user_files_byte_for_byte(tone_root, tmp_path):
    """Every stage through its Python API (one TensorFlow import); the CLI's one-line
    refusal once at the end."""
    from kws_research.exporting.stage import export_run
    from kws_research.streaming.runs import evaluate_run, mine_run
    from kws_research.sweeping.coordinator import run_sweep
    from kws_research.sweeping.definition import load
    from kws_research.train import train

    root = shutil.copytree(tone_root, tmp_path / "root")
    for name, content in PLANTED.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    base = [o.replace(str(tone_root), str(root)) for o in tiny_overrides(tone_root, tmp_path, "trainer.epochs=1")]
    tracking = [o for o in base if o.startswith("tracking.")]
    cfg = compose("train", [*base, "stream_eval=true", *TINY_STREAMS])
    prepare(OmegaConf.to_container(cfg.dataset, resolve=True))
    run_id = train(cfg).run_id
    client = MlflowClient(cfg.tracking.uri)
    evaluate_run(client, run_id, OmegaConf.to_container(cfg.stream, resolve=True))
    mine_cfg = OmegaConf.to_container(compose("mine", [*tracking, *TINY_STREAMS, "minutes=0.5"]), resolve=True)
    mined = mine_run(client, run_id, mine_cfg)
    assert Path(mined["folder"]).parent == tmp_path / "cache" / "hard_negatives"
    assert mine_run(client, run_id, mine_cfg)["folder"] == mined["folder"]  # its own earlier folder is replaced
    export = [f"run_id={run_id}", *tracking, *TINY_STREAMS, "baseline=skip", "format=neuralnetwork"]
    export_cfg = OmegaConf.to_container(compose("export", [*export, f"output_dir={tmp_path / 'out'}"]), resolve=True)
    exported = export_run(export_cfg)
    export_run(export_cfg)  # replaces its own files
    sweep = write_sweep(tmp_path, n_trials=1, sampler={"name": "random"}, params={"model": "choice(seed_cnn1d)"})
    run_sweep(load([f"sweep={sweep}", *[o for o in base if not o.startswith("model=")]]))
    assert _snapshot(tmp_path) == PLANTED
    model_file = Path(exported["files"][0])
    assert model_file.parent == tmp_path / "out" and model_file.exists()

    # A file of the user's exactly where a stage would write: refused in one line, untouched.
    shutil.rmtree(model_file) if model_file.is_dir() else model_file.unlink()
    model_file.write_bytes(b"the user's own model")
    refused = run_stage("export", *export, f"output_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "was not created by kws-research" in errors[0] and "output_dir" in errors[0]
    assert model_file.read_bytes() == b"the user's own model"
    user_output = tmp_path / "my_windows"
    (user_output / "clip.wav").parent.mkdir()
    (user_output / "clip.wav").write_bytes(b"mine")
    with pytest.raises(KwsError, match=r"^output: .*my_windows exists and was not created by kws-research"):
        mine_run(client, run_id, {**mine_cfg, "output": str(user_output)})
    assert (user_output / "clip.wav").read_bytes() == b"mine"


def test_a_folder_is_replaced_whole_and_a_killed_swap_is_cleaned_up(tmp_path):
    """mine, the cache, the generator and downloads replace their earlier folder by renames:
    the old one aside, the new one in, the old one deleted; never half deleted. What a killed
    process set aside carries the mark and is removed by the next run; a user's folder is
    never swapped."""
    import subprocess
    import sys

    from kws_research import ownership
    from kws_research.processes import remove_dead_temporaries

    target = ownership.new_folder(tmp_path / "mined", "mined")
    (target / "old.wav").write_bytes(b"old")
    new = ownership.new_folder(tmp_path / ".mined.123.tmp", "mined")
    (new / "new.wav").write_bytes(b"new")
    ownership.replace(new, target, "output", "hint")
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == ["new.wav"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mined"]  # nothing set aside is left

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    aside = ownership.new_folder(tmp_path / f".mined.old.{dead.stdout.strip()}.tmp", "mined")
    (aside / "old.wav").write_bytes(b"old")
    assert remove_dead_temporaries(tmp_path) == [aside] and not aside.exists()

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("mine")
    other = ownership.new_folder(tmp_path / ".theirs.1.tmp", "mined")
    with pytest.raises(KwsError, match="was not created by kws-research"):
        ownership.replace(other, theirs, "output", "hint")
    assert (theirs / "keep.txt").read_text() == "mine" and other.is_dir()
