"""The NumPy reference runtime against Keras: every family x both formats x fp32/fp16,
int8 weights, the seed interface, and corrupted files that must fail verification."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.models import ZOO, small_random_weights, zoo_model

from kws_research.config import compose
from kws_research.contract import CLIP_SAMPLES, INPUT_NAME, SAMPLE_RATE
from kws_research.coreml import runtime
from kws_research.coreml.convert import convert, convert_seed_interface, op_types
from kws_research.coreml.supported import MLPROGRAM_OPS, NEURALNETWORK_LAYERS
from kws_research.coreml.verify import verify

LABELS = ["silence", "unknown", "yes", "no", "up"]
TOLERANCE = dict(compose("export", []).tolerance)  # what export checks against


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    tones = [0.3 * np.sin(2 * np.pi * f * t) * np.hanning(CLIP_SAMPLES) for f in (300, 900, 2500)]
    noise = [rng.normal(0, s, CLIP_SAMPLES) for s in (0.01, 0.2)]
    silence = [np.zeros(CLIP_SAMPLES)]
    return np.asarray(tones + noise + silence, dtype=np.float32)


def peaked(name: str):
    """Random weights large enough that the outputs are far from uniform, so a wrong op
    shows up in the probabilities."""
    return small_random_weights(zoo_model(name, len(LABELS)), seed=3, scale=0.4)


# BC-ResNet converts 3-5x slower than the other families: `make test` verifies it.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "bc_resnet" else n for n in ZOO])
def test_every_family_verifies_in_both_formats_and_precisions(name, clips, tmp_path):
    """Each family converts to ops both Core ML formats support, and computes what Keras does."""
    model = peaked(name)
    keras_probs = np.asarray(model.predict(clips, verbose=0))
    truth = keras_probs.argmax(1)
    supported = {"mlprogram": MLPROGRAM_OPS, "neuralnetwork": NEURALNETWORK_LAYERS}
    for fmt, precision in (("neuralnetwork", "fp32"), ("mlprogram", "fp32"), ("mlprogram", "fp16")):
        path = tmp_path / f"{fmt}-{precision}.{'mlpackage' if fmt == 'mlprogram' else 'mlmodel'}"
        mlmodel = convert(model, LABELS, fmt=fmt, precision=precision)
        used = op_types(mlmodel)
        assert set(used) <= supported[fmt], f"{name} {fmt}: unsupported {set(used) - supported[fmt]}"
        assert used["classify" if fmt == "mlprogram" else "softmaxND"] == 1
        mlmodel.save(str(path))
        result = verify(path, fmt, precision, LABELS, clips, truth, keras_probs, TOLERANCE[precision])
        assert result.verified, (fmt, precision, result.max_abs_diff)
        assert result.agreement == 1.0 and result.coreml_accuracy == 1.0


def test_int8_weights_verify_within_their_tolerance_and_shrink_the_file(clips, tmp_path):
    model = peaked("tc_resnet")
    keras_probs = np.asarray(model.predict(clips, verbose=0))
    convert(model, LABELS, "mlprogram", "fp16").save(str(tmp_path / "f16.mlpackage"))
    convert(model, LABELS, "mlprogram", "fp16", quantize="int8").save(str(tmp_path / "i8.mlpackage"))
    result = verify(
        tmp_path / "i8.mlpackage",
        "mlprogram",
        "int8",
        LABELS,
        clips,
        keras_probs.argmax(1),
        keras_probs,
        TOLERANCE["int8"],
    )
    assert result.verified

    def size(p: Path) -> int:
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())

    assert size(tmp_path / "i8.mlpackage") < size(tmp_path / "f16.mlpackage")


def test_seed_interface_matches_the_tutorial_app_field_by_field(clips, tmp_path):
    import coremltools as ct
    from coremltools.proto import FeatureTypes_pb2

    model = peaked("seed_cnn1d")
    path = tmp_path / "seed.mlmodel"
    convert_seed_interface(model, LABELS).save(str(path))
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    assert spec.WhichOneof("Type") == "neuralNetworkClassifier"
    (inp,) = spec.description.input
    assert inp.name == "input1" and inp.type.WhichOneof("Type") == "multiArrayType"
    assert list(inp.type.multiArrayType.shape) == [CLIP_SAMPLES]
    assert inp.type.multiArrayType.dataType == FeatureTypes_pb2.ArrayFeatureType.DOUBLE
    outputs = {o.name: o.type.WhichOneof("Type") for o in spec.description.output}
    assert outputs == {"output1": "dictionaryType", "classLabel": "stringType"}
    probs = next(o for o in spec.description.output if o.name == "output1")
    assert probs.type.dictionaryType.WhichOneof("KeyType") == "stringKeyType"
    assert spec.description.predictedFeatureName == "classLabel"
    assert spec.description.predictedProbabilitiesName == "output1"
    assert list(spec.neuralNetworkClassifier.stringClassLabels.vector) == LABELS
    keras_probs = np.asarray(model.predict(clips, verbose=0))
    result = verify(path, "neuralnetwork", "fp32", LABELS, clips, keras_probs.argmax(1), keras_probs, TOLERANCE["fp32"])
    assert result.verified


def test_a_corrupted_weight_fails_verification(clips, tmp_path):
    import coremltools as ct

    model = peaked("tc_resnet")
    keras_probs = np.asarray(model.predict(clips, verbose=0))
    spec = convert(model, LABELS, "neuralnetwork").get_spec()
    layer = next(x for x in spec.neuralNetworkClassifier.layers if x.WhichOneof("layer") == "innerProduct")
    layer.innerProduct.weights.floatValue[0] += 2.0  # one weight of the classifier layer
    path = tmp_path / "corrupt.mlmodel"
    ct.models.MLModel(spec, skip_model_load=True).save(str(path))
    result = verify(path, "neuralnetwork", "fp32", LABELS, clips, keras_probs.argmax(1), keras_probs, TOLERANCE["fp32"])
    assert not result.verified and result.max_abs_diff > 1e-3

    package = tmp_path / "corrupt.mlpackage"
    convert(model, LABELS, "mlprogram", "fp32").save(str(package))
    weights = next(package.rglob("weight.bin"))
    data = bytearray(weights.read_bytes())
    middle = len(data) - 4096  # inside the last tensors: the body's weights, not the front end
    data[middle : middle + 64] = bytes(64 * [0x3F])
    weights.write_bytes(bytes(data))
    result = verify(package, "mlprogram", "fp32", LABELS, clips, keras_probs.argmax(1), keras_probs, TOLERANCE["fp32"])
    assert not result.verified


def test_an_unsupported_op_names_the_op_and_layer(tmp_path):
    import keras

    from kws_research.coreml.mil_runtime import UnsupportedOp

    inputs = keras.Input((CLIP_SAMPLES,), name=INPUT_NAME)
    x = keras.layers.Dense(5, name="dense")(keras.layers.Activation("elu", name="odd_activation")(inputs))
    model = keras.Model(inputs, keras.layers.Softmax()(x))
    convert(model, LABELS, "mlprogram", "fp32").save(str(tmp_path / "odd.mlpackage"))
    with pytest.raises(UnsupportedOp, match=r"'elu'.*odd_activation"):
        runtime.load(tmp_path / "odd.mlpackage")
