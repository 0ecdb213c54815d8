"""The reference runtime: run a saved Core ML model (.mlpackage or .mlmodel) on any OS."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kws_research.contract import HOP_INPUT, NEXT_STATE_OUTPUT, PROBABILITIES_OUTPUT, STATE_INPUT
from kws_research.coreml.mil_runtime import MilProgram
from kws_research.coreml.nn_runtime import NeuralNetwork


def load(path: str | Path):
    """A runnable reference of the saved model (its spec and weights, nothing recompiled)."""
    import coremltools as ct

    mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
    kind = mlmodel.get_spec().WhichOneof("Type")
    return MilProgram(mlmodel) if kind == "mlProgram" else NeuralNetwork(mlmodel)


def predict(model, audio: np.ndarray, workers: int = 2) -> np.ndarray:
    """Probabilities ``[N, classes]`` for float32 clips ``[N, 16000]`` (one clip per call:
    the converted graph is specialised to a batch of one)."""
    clips = [audio[i : i + 1] for i in range(audio.shape[0])]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return np.stack(list(pool.map(model.run, clips)))


def run_stream(model, audio: np.ndarray) -> np.ndarray:
    """A streaming model called hop by hop on float32 ``audio``, its state fed back (zeros at
    the start), as the app calls it: the probabilities ``[hops, classes]`` of every call."""
    hop = int(np.prod(model.shapes[HOP_INPUT]))
    state = np.zeros(model.shapes[STATE_INPUT], np.float32)
    rows = []
    for start in range(0, audio.shape[0] - hop + 1, hop):
        out = model.run_all({HOP_INPUT: audio[None, start : start + hop], STATE_INPUT: state})
        rows.append(out[PROBABILITIES_OUTPUT].reshape(-1))
        state = out[NEXT_STATE_OUTPUT].reshape(1, -1)
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)
