"""Every trained model as an MLflow logged model (Keras flavour), loadable in one line.

``mlflow.pyfunc.load_model("models:/<model id>")`` works in any process where
kws-research is installed: the pyfunc loader is this module, which registers the
custom layers before Keras reads the file (Keras' safe mode imports no code by
itself). ``mlflow.keras.load_model(uri)`` needs ``import kws_research.models``
first, exactly like ``model/model.keras``.

The signature is the audio contract: float32 ``(-1, 16000)`` in, class
probabilities ``(-1, n_classes)`` out. This module is also the flavour module
handed to ``mlflow.models.Model.log``: it saves with MLflow's Keras flavour and
names itself as the pyfunc loader.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from kws_research.contract import CLIP_SAMPLES

ARTIFACT_NAME = "model"
MODEL_ID_TAG = "logged_model_id"
EXAMPLE_DECIMALS = 4  # a readable input example of one clip (about 130 kB of JSON)


def signature(num_classes: int):
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, CLIP_SAMPLES))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes))]),
    )


def requirements() -> list[str]:
    """Pinned to what trained it, so MLflow skips its (slow, model-loading) inference."""
    pins = []
    for name in ("kws-research", "keras", "tensorflow", "tensorflow-cpu", "numpy"):
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pins


def save_model(model, path: str, mlflow_model=None, validate_serving_input: bool = False, **kwargs) -> None:
    """MLflow's Keras flavour, with this module as the pyfunc loader (``Model.log`` passes
    ``validate_serving_input`` on; the tests load the logged model in a fresh process instead)."""
    import mlflow.keras
    from mlflow.models import Model
    from mlflow.pyfunc import FLAVOR_NAME as PYFUNC

    mlflow_model = mlflow_model if mlflow_model is not None else Model()
    os.makedirs(path, exist_ok=True)  # MLflow's Keras flavour writes the input example before creating it
    mlflow.keras.save_model(model, path, mlflow_model=mlflow_model, **kwargs)
    mlflow_model.flavors[PYFUNC]["loader_module"] = __name__
    mlflow_model.save(os.path.join(path, "MLmodel"))


def _load_pyfunc(path: str):
    """``mlflow.pyfunc.load_model``'s entry: register the layers, then MLflow's Keras loader."""
    from mlflow.keras.load import _load_pyfunc as keras_pyfunc

    import kws_research.models  # noqa: F401  (registers the custom layers for safe mode)

    return keras_pyfunc(path)


def log_keras_model(client, run_id: str, model, example: np.ndarray, tags: dict[str, str]) -> str:
    """Log ``model`` on the run as MLflow logged model ``model`` in the run's experiment;
    returns its model id."""
    import sys

    import mlflow
    from mlflow.models import Model

    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id, ARTIFACT_NAME, run_id, tags=tags, params=dict(run.data.params), model_type="keras"
    )
    mlflow.set_tracking_uri(client.tracking_uri)
    Model.log(
        artifact_path=None,
        name=ARTIFACT_NAME,
        flavor=sys.modules[__name__],
        flavor_name="keras",
        run_id=run_id,
        model_id=logged.model_id,
        model=model,
        signature=signature(int(model.output_shape[-1])),
        input_example=np.round(np.asarray(example, dtype=np.float32)[:1], EXAMPLE_DECIMALS),
        pip_requirements=requirements(),
        validate_serving_input=False,
    )
    client.finalize_logged_model(logged.model_id, "READY")
    client.set_tag(run_id, MODEL_ID_TAG, logged.model_id)
    return logged.model_id


def logged_model_id(client, run_id: str) -> str | None:
    """The run's logged model (from its tag, else its outputs); None for older runs."""
    run = client.get_run(run_id)
    if run.data.tags.get(MODEL_ID_TAG):
        return run.data.tags[MODEL_ID_TAG]
    outputs = run.outputs.model_outputs if run.outputs else []
    return outputs[-1].model_id if outputs else None
