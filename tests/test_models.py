"""The model zoo: builders from YAML, sizes computed from layers, Core ML conversion per family."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.models import ZOO, zoo_model

from kws_research.config import compose
from kws_research.contract import CLIP_SAMPLES
from kws_research.errors import ConfigError, KwsError
from kws_research.models import build_model, complexity, load_model


def test_seed_model_is_the_tutorial_network_and_its_size_is_counted_from_layers():
    model = build_model(compose("train", ["model=seed_cnn1d"]).model, 12)
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv1D"]
    assert [c.filters for c in convs] == [2, 4, 8, 16, 32, 64]
    assert {c.kernel_size for c in convs} == {(4,)} and {c.strides for c in convs} == {(2,)}
    assert {c.padding for c in convs} == {"valid"}
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [300, 150, 12]
    sizes = complexity(model)
    assert sizes["params"] == model.count_params()
    assert 4.7e6 < sizes["params"] < 4.9e6
    lengths, channels, conv_macs = CLIP_SAMPLES, 1, 0
    for f in (2, 4, 8, 16, 32, 64):
        lengths = (lengths - 4) // 2 + 1
        conv_macs += lengths * f * 4 * channels
        channels = f
    dense_macs = lengths * 64 * 300 + 300 * 150 + 150 * 12
    assert sizes["macs"] == conv_macs + dense_macs


@pytest.mark.parametrize("name", ZOO)
def test_every_family_builds_from_its_yaml_and_reports_params_and_macs(name):
    model = zoo_model(name, 12)
    assert model.input.shape == (None, CLIP_SAMPLES) and model.output.shape == (None, 12)
    probs = np.asarray(model(np.zeros((2, CLIP_SAMPLES), "float32")))
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    sizes = complexity(model)
    assert sizes["params"] > 0 and sizes["macs"] > sizes["frontend_macs"] >= 0
    if name not in ("seed_cnn1d", "cnn1d"):
        assert sizes["frontend_macs"] > 0 and sizes["frontend_constants"] > 0


def test_presets_are_yaml_files_with_the_published_sizes():
    sizes = {
        m: complexity(build_model(compose("train", [f"model={m}"]).model, 12))["params"]
        for m in ("tc_resnet", "tc_resnet14", "ds_cnn", "ds_cnn_m", "bc_resnet", "bc_resnet8")
    }
    assert 60_000 < sizes["tc_resnet"] < 70_000  # TC-ResNet8: 66 K
    assert 130_000 < sizes["tc_resnet14"] < 140_000  # TC-ResNet14: 137 K
    assert sizes["ds_cnn"] < sizes["ds_cnn_m"]
    assert sizes["bc_resnet"] < 15_000 < 300_000 < sizes["bc_resnet8"]


def test_a_bad_model_value_names_the_key():
    with pytest.raises(ConfigError, match="model"):
        build_model(compose("train", ["model=cnn1d", "model.global_pooling=median"]).model, 12)
    with pytest.raises(ConfigError, match="model.frontend"):
        build_model(compose("train", ["model=tc_resnet", "model.frontend.window_ms=100"]).model, 12)


def test_saved_models_reload_in_safe_mode_with_identical_outputs(tmp_path):
    model = zoo_model("bc_resnet", 5)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).normal(0, 0.1, (3, CLIP_SAMPLES)).astype("float32")
    assert np.allclose(np.asarray(model(x)), np.asarray(again(x)), atol=1e-6)


def test_a_model_with_code_is_refused_by_safe_mode_in_one_line(tmp_path):
    import keras

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(tmp_path / "lambda.keras")
    with pytest.raises(KwsError, match=r"lambda.keras: the model holds Python code .* safe mode will not load"):
        load_model(tmp_path / "lambda.keras")
    (tmp_path / "text.keras").write_text("not a model")
    with pytest.raises(KwsError, match=r"text.keras: not a loadable .keras model"):
        load_model(tmp_path / "text.keras")


@pytest.mark.parametrize("mels", [30, 64])
def test_bc_resnet_sub_bands_adapt_to_other_mel_counts(mels):
    model = build_model(compose("train", ["model=bc_resnet", f"model.frontend.n_mels={mels}"]).model, 5)
    bands = {layer.bands for layer in model.layers if layer.__class__.__name__ == "SubSpectralNorm"}
    assert bands and all(b >= 1 for b in bands)
    assert np.asarray(model(np.zeros((1, CLIP_SAMPLES), "float32"))).shape == (1, 5)
