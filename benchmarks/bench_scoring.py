"""Stream scoring, window by window vs each frame once, and the streaming model's cost.

For each model (built from its YAML; speed does not depend on the weights): seconds of
audio scored per second of a long noise-and-tone stream, window by window with the
dense-DFT front end (the path before the FFT), window by window with the FFT, and as
a feature stream (what evaluation, export and ``mine`` use now), the steady speed of a
second call; the largest probability difference of the feature stream; MACs per clip
and per hop; and the streaming Core ML model in both formats on the reference runtime,
fed the stream hop by hop: its largest difference per hop and milliseconds per call.

    make bench-stream    (runs this first)
    python -m benchmarks.bench_scoring --models tc_resnet bc_resnet ds_cnn --minutes 10
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import report


def noise_and_tones(minutes: float, seed: int = 0) -> np.ndarray:
    """int16 audio: noise whose level moves, with a tone burst every second or so."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * 16000)
    t = np.arange(n) / 16000
    level = 0.02 * (1.5 + np.sin(2 * np.pi * t / 7.0))
    bursts = (np.sin(2 * np.pi * t / 1.3) > 0.6) * 0.3 * np.sin(2 * np.pi * 440 * t * (1 + 0.3 * np.sin(t)))
    return np.clip((rng.standard_normal(n) * level + bursts) * 32768, -32768, 32767).astype(np.int16)


def steady_speed(run, *args) -> tuple[float, np.ndarray]:
    """The second call's seconds of audio per second (the first one traces the graphs)."""
    run(*args)
    _, scores, speed = run(*args)
    return speed, scores


def twin(model):
    """The same model and weights, traced afresh (inside ``dense_dft()`` it takes that form)."""
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def streaming_check(model, labels: list[str], audio: np.ndarray, reference: np.ndarray, folder: Path) -> dict:
    """Both formats of the streaming model, hop by hop on the reference runtime."""
    from kws_research.contract import to_float
    from kws_research.coreml import runtime
    from kws_research.coreml.convert import convert_streaming
    from kws_research.models.streaming import streaming_model

    form = streaming_model(model, 1600)
    out = {}
    for fmt, precision in (("mlprogram", "fp16"), ("neuralnetwork", "fp32")):
        path = folder / f"streaming-{fmt}{'.mlpackage' if fmt == 'mlprogram' else '.mlmodel'}"
        convert_streaming(form, labels, fmt, precision).save(str(path))
        started = time.perf_counter()
        calls = runtime.run_stream(runtime.load(path), to_float(audio))
        per_call = 1000 * (time.perf_counter() - started) / max(1, len(calls))
        diff = np.abs(calls[9 : 9 + len(reference)] - reference[: len(calls) - 9]).max()
        out[f"{fmt}_max_diff_per_hop"] = float(diff)
        out[f"{fmt}_ms_per_call"] = round(per_call, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["tc_resnet", "bc_resnet", "ds_cnn"])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--verify-seconds", type=float, default=20.0, help="streaming Core ML check")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    from omegaconf import OmegaConf

    from kws_research.config import compose
    from kws_research.models import build_model, complexity
    from kws_research.models.frontend import dense_dft
    from kws_research.models.streaming import macs_per_hop
    from kws_research.streaming.scoring import FeatureScorer, keras_predict, keras_scorer, score

    audio = noise_and_tones(args.minutes)
    short = audio[: int(args.verify_seconds * 16000)]
    labels = ["silence", "unknown", "yes", "no", "up", "down", "left", "right", "stop"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            cfg = OmegaConf.to_container(compose("train", [f"model={name}"]), resolve=True)
            model = build_model(cfg["model"], len(labels))
            scorer = keras_scorer(model)
            assert isinstance(scorer, FeatureScorer), name
            speeds = {}
            for form, context in (("window_dense_dft", dense_dft), ("window_fft", contextlib.nullcontext)):
                with context():
                    predict = keras_predict(twin(model))
                    speeds[form], window_scores = steady_speed(score, predict, audio, 100, args.batch_size)
            speeds["feature_stream"], fast = steady_speed(scorer.stream, audio, 100, args.batch_size)
            counts = complexity(model)
            per_hop = macs_per_hop(model, 1600)
            _, reference, _ = scorer.stream(short, 100, args.batch_size)
            rows.append(
                {
                    "model": name,
                    "window_dense_dft_x": round(speeds["window_dense_dft"], 1),
                    "window_fft_x": round(speeds["window_fft"], 1),
                    "feature_stream_x": round(speeds["feature_stream"], 1),
                    "gain_vs_dense": round(speeds["feature_stream"] / speeds["window_dense_dft"], 2),
                    "gain_vs_fft": round(speeds["feature_stream"] / speeds["window_fft"], 2),
                    "max_diff": float(np.abs(fast - window_scores).max()),
                    "macs_per_clip": counts["macs"],
                    "macs_per_hop": per_hop,
                    "hop_share": round(per_hop / counts["macs"], 3),
                    **streaming_check(model, labels, short, reference, Path(tmp)),
                }
            )
            print(rows[-1], flush=True)
    report.write(
        "scoring",
        {"minutes": args.minutes, "hop_ms": 100, "batch_size": args.batch_size},
        rows,
        "Stream scoring: window by window vs each frame once; the streaming model per hop",
        f"Speeds are seconds of audio per second of scoring (x real time) on a {args.minutes:g}-minute stream, "
        "the second call of each path. max_diff: feature stream vs window by window (FFT). The streaming "
        f"Core ML models are fed {args.verify_seconds:g} s hop by hop on the NumPy reference runtime; "
        "max_diff_per_hop is against the Keras window model from the tenth call on.",
    )


if __name__ == "__main__":
    main()
