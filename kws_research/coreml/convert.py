"""Keras 3 -> Core ML with coremltools, by converting the in-memory model.

(Passing a ``.keras`` path or a ``model.export()`` SavedModel fails with
coremltools 9; the in-memory Keras model traces to a TensorFlow graph that
converts.) Two interfaces: ``standard`` (input ``audio`` float32 (1, 16000),
outputs ``classLabel`` and ``classLabel_probs``) and ``seed``, the exact
interface of the tutorial app's model (neuralnetwork, input ``input1``
MultiArray [16000] DOUBLE, outputs ``output1`` and ``classLabel``).
"""

from __future__ import annotations

import collections
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from kws_research.contract import (
    CLIP_SAMPLES,
    CLIP_SECONDS,
    HOP_INPUT,
    INPUT_NAME,
    NEXT_STATE_OUTPUT,
    NORMALISATION,
    PROBABILITIES_OUTPUT,
    SAMPLE_RATE,
    STATE_INPUT,
)
from kws_research.coreml.formats import FORMATS, PRECISIONS
from kws_research.coreml.nn_runtime import NeuralNetwork
from kws_research.models.frontend import dense_dft

SEED_INPUT, SEED_PROBABILITIES = "input1", "output1"
LABEL_OUTPUT = "classLabel"
# The in-graph front end (layer "frontend") keeps fp32 in fp16 programs: its log of
# small energies loses up to 3e-2 in probability at fp16, the rest of the network
# stays within 2e-3 (measured on a trained TC-ResNet8, subset test split).
FRONTEND_LAYER = "frontend"


def _quiet() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("coremltools", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="coremltools")


def convert(model, labels: list[str], fmt: str = "mlprogram", precision: str = "fp16", quantize: str | None = None):
    """A Core ML classifier over ``labels`` taking ``audio`` float32 (1, 16000)."""
    _quiet()
    import coremltools as ct
    import numpy as np

    kwargs = _compute_kwargs(ct, fmt, precision, quantize)
    tensor = ct.TensorType(name=INPUT_NAME, shape=(1, CLIP_SAMPLES), dtype=np.float32)
    with dense_dft():  # the front end's DFT as fixed kernels: MIL has no FFT op
        mlmodel = ct.convert(
            model,
            source="tensorflow",
            inputs=[tensor],
            classifier_config=ct.ClassifierConfig([str(c) for c in labels]),
            convert_to=fmt,
            **kwargs,
        )
    return quantize_weights(mlmodel, quantize) if quantize else mlmodel


def _compute_kwargs(ct, fmt: str, precision: str, quantize: str | None) -> dict:
    """Compute precision (fp16 everywhere but the front end) and deployment target of an mlprogram."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {FORMATS}")
    if fmt != "mlprogram":
        return {}
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    return {
        "compute_precision": (
            ct.transform.FP16ComputePrecision(op_selector=lambda op: FRONTEND_LAYER not in op.name)
            if precision == "fp16"
            else ct.precision.FLOAT32
        ),
        "minimum_deployment_target": ct.target.iOS16 if quantize else ct.target.iOS15,
    }


def _output_widths(mlmodel, hop: int, state: int) -> dict[str, int]:
    """Each output's width: from the spec (ML programs), or by running the network once on
    zeros (NeuralNetwork specs leave output shapes empty)."""
    import numpy as np

    outputs = mlmodel.get_spec().description.output
    widths = {o.name: int(np.prod(o.type.multiArrayType.shape)) for o in outputs if o.type.multiArrayType.shape}
    if len(widths) == len(outputs):
        return widths
    feeds = {HOP_INPUT: np.zeros((1, hop), np.float32), STATE_INPUT: np.zeros((1, state), np.float32)}
    return {name: int(value.size) for name, value in NeuralNetwork(mlmodel).run_all(feeds).items()}


def convert_streaming(
    stream_model, labels: list[str], fmt: str = "mlprogram", precision: str = "fp16", quantize: str | None = None
):
    """The streaming form (``models.streaming.streaming_model``) as a Core ML model of two
    inputs and two outputs: the newest hop and the state in, the probabilities and the next
    state out. Not a classifier (Core ML classifiers have one input and their own outputs):
    the labels are in the metadata, in the order of the probabilities."""
    _quiet()
    import coremltools as ct
    import numpy as np

    kwargs = _compute_kwargs(ct, fmt, precision, quantize)
    hop, state = (int(t.shape[1]) for t in stream_model.inputs)
    inputs = [
        ct.TensorType(name=HOP_INPUT, shape=(1, hop), dtype=np.float32),
        ct.TensorType(name=STATE_INPUT, shape=(1, state), dtype=np.float32),
    ]
    with dense_dft():
        mlmodel = ct.convert(stream_model, source="tensorflow", inputs=inputs, convert_to=fmt, **kwargs)
    if quantize:  # before the renaming, which rebuilds the model without its MIL program
        mlmodel = quantize_weights(mlmodel, quantize)
    spec = mlmodel.get_spec()
    for name, width in _output_widths(mlmodel, hop, state).items():  # TensorFlow's Identity names
        ct.utils.rename_feature(spec, name, PROBABILITIES_OUTPUT if width == len(labels) else NEXT_STATE_OUTPUT)
    weights = mlmodel.weights_dir if fmt == "mlprogram" else None
    return ct.models.MLModel(spec, weights_dir=weights, skip_model_load=True)


def convert_seed_interface(model, labels: list[str]):
    """The tutorial app's model interface, so the app can swap the file in unchanged."""
    _quiet()
    import coremltools as ct
    import numpy as np
    import tensorflow as tf
    from coremltools.proto import FeatureTypes_pb2

    @tf.function(input_signature=[tf.TensorSpec([CLIP_SAMPLES], tf.float32, name=SEED_INPUT)])
    def one_clip(audio):
        return tf.reshape(model(tf.reshape(audio, [1, CLIP_SAMPLES]), training=False), [-1])

    with dense_dft():  # traced here: a front end would take its convertible form
        mlmodel = ct.convert(
            [one_clip.get_concrete_function()],
            source="tensorflow",
            inputs=[ct.TensorType(name=SEED_INPUT, shape=(CLIP_SAMPLES,), dtype=np.float32)],
            classifier_config=ct.ClassifierConfig([str(c) for c in labels]),
            convert_to="neuralnetwork",
        )
    spec = mlmodel.get_spec()
    spec.description.input[0].type.multiArrayType.dataType = FeatureTypes_pb2.ArrayFeatureType.DOUBLE
    # Rename the probabilities output only: the layer blob it is read from
    # (labelProbabilityLayerName) keeps its name.
    old = spec.description.predictedProbabilitiesName
    for output in spec.description.output:
        if output.name == old:
            output.name = SEED_PROBABILITIES
    spec.description.predictedProbabilitiesName = SEED_PROBABILITIES
    return ct.models.MLModel(spec, skip_model_load=True)


def quantize_weights(mlmodel, mode: str):
    """8-bit weights: linear symmetric per channel (mlprogram, coremltools.optimize) or
    linear (neuralnetwork). The fixed front end keeps float weights: its DFT kernel
    carries the whole signal and is not learned."""

    if mode != "int8":
        raise ValueError(f"quantize {mode!r} is not int8")
    if mlmodel.get_spec().WhichOneof("Type") != "mlProgram":
        from coremltools.models.neural_network import quantization_utils

        return quantization_utils.quantize_weights(mlmodel, nbits=8)
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig,
        OptimizationConfig,
        linear_quantize_weights,
    )

    program = mlmodel._mil_program  # coremltools keeps the converted MIL program on the model
    frontend_ops = {
        op.name for op in program.functions["main"].operations if op.op_type == "const" and FRONTEND_LAYER in op.name
    }
    config = OptimizationConfig(
        global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", weight_threshold=512),
        op_name_configs={name: None for name in frontend_ops},
    )
    return linear_quantize_weights(mlmodel, config)


@dataclass
class About:
    """What Xcode's model viewer shows and the user metadata the app can read."""

    description: str
    author: str | None
    license: str | None
    version: str | None
    user: Mapping[str, object]

    def apply(self, mlmodel, **more: object) -> None:
        mlmodel.short_description = self.description
        if self.author:
            mlmodel.author = self.author
        if self.license:
            mlmodel.license = self.license
        if self.version:
            mlmodel.version = str(self.version)
        metadata = {**self.user, **more}
        mlmodel.user_defined_metadata.update({k: str(v) for k, v in metadata.items() if v is not None})


def set_metadata(mlmodel, labels: list[str], interface: str, about: About) -> None:
    """Descriptions of the window model's input and outputs, and ``about``."""
    spec_inputs = [i.name for i in mlmodel.get_spec().description.input]
    probs = mlmodel.get_spec().description.predictedProbabilitiesName
    about.apply(mlmodel)
    mlmodel.input_description[spec_inputs[0]] = (
        f"{CLIP_SECONDS} s of mono {SAMPLE_RATE // 1000} kHz audio: {CLIP_SAMPLES:,} samples, {NORMALISATION}"
        + (f" (shape [{CLIP_SAMPLES}])" if interface == "seed" else f" (shape [1, {CLIP_SAMPLES}])")
    )
    mlmodel.output_description[LABEL_OUTPUT] = "the most likely class: " + ", ".join(labels)
    mlmodel.output_description[probs] = "probability of every class"


def set_streaming_metadata(mlmodel, labels: list[str], about: About) -> None:
    """What each input and output of the streaming model holds, how the app calls it, and ``about``."""
    shapes = {i.name: list(i.type.multiArrayType.shape) for i in mlmodel.get_spec().description.input}
    hop, state = shapes[HOP_INPUT][-1], shapes[STATE_INPUT][-1]
    warmup = CLIP_SAMPLES // hop - 1
    about.apply(
        mlmodel,
        streaming_inputs=f"{HOP_INPUT}, {STATE_INPUT}",
        streaming_outputs=f"{PROBABILITIES_OUTPUT}, {NEXT_STATE_OUTPUT}",
        hop_samples=hop,
        hop_ms=1000 * hop / SAMPLE_RATE,
        state_size=state,
        warmup_calls=warmup,
    )
    mlmodel.input_description[HOP_INPUT] = (
        f"the newest {hop} samples ({1000 * hop // SAMPLE_RATE} ms) of mono {SAMPLE_RATE // 1000} kHz audio, "
        f"{NORMALISATION} (shape [1, {hop}])"
    )
    mlmodel.input_description[STATE_INPUT] = (
        f"{NEXT_STATE_OUTPUT} of the previous call; zeros at the start (shape [1, {state}])"
    )
    mlmodel.output_description[PROBABILITIES_OUTPUT] = (
        "probability of every class over the last second, in the order of the `labels` metadata: "
        + ", ".join(labels)
        + f" (the first {warmup} calls cover less than a second)"
    )
    mlmodel.output_description[NEXT_STATE_OUTPUT] = f"pass it as {STATE_INPUT} to the next call"


def op_types(mlmodel) -> collections.Counter:
    """Layer types (neuralnetwork) or MIL op types (mlprogram) of a converted model."""
    spec = mlmodel.get_spec()
    kind = spec.WhichOneof("Type")
    if kind == "mlProgram":
        return collections.Counter(
            op.type
            for function in spec.mlProgram.functions.values()
            for block in function.block_specializations.values()
            for op in block.operations
        )
    network = getattr(spec, kind)
    return collections.Counter(layer.WhichOneof("layer") for layer in network.layers)
