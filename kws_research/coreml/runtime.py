"""The reference runtime: run a saved Core ML model (.mlpackage or .mlmodel) on any OS."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

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
