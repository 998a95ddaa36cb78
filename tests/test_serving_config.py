"""serving/: every config parses with TensorFlow Serving's protos, names only styles that
exist, and the models it names export."""

import os
import re

import pytest
from google.protobuf import text_format

from conftest import REPO, tensorflow_only
from serving_protos import BatchingParameters, MonitoringConfig

SERVING = os.path.join(REPO, "serving")
# The styles that ship trained: a flagfile in styles/ and weights in savedNets/ (udnie has
# only its flagfile: see the README's Pretrained styles).
STYLES = sorted(name for name, ext in map(os.path.splitext,
                                          os.listdir(os.path.join(REPO, "styles")))
                if ext == ".flags" and os.path.isdir(os.path.join(REPO, "savedNets", name)))


def parse(name, message):
    with open(os.path.join(SERVING, name)) as f:
        return text_format.Parse(f.read(), message)


def model_configs():
    from tensorflow_serving.config import model_server_config_pb2

    return parse("models.config", model_server_config_pb2.ModelServerConfig()).model_config_list.config


def test_models_config_lists_every_style_with_a_version_policy():
    configs = model_configs()
    assert sorted(c.name for c in configs) == STYLES
    assert STYLES == ["candy", "la_muse", "mosaic", "rain_princess", "snight", "the_scream",
                      "wave"]
    for config in configs:
        assert os.path.isfile(os.path.join(REPO, "styles", f"{config.name}.flags"))
        assert config.base_path == f"/models/{config.name}"
        assert config.model_platform == "tensorflow"
        assert config.model_version_policy.latest.num_versions == 2


def test_batching_and_monitoring_configs():
    batching = parse("batching.config", BatchingParameters())
    assert batching.max_batch_size.value == 8 and batching.num_batch_threads.value == 1
    assert batching.max_enqueued_batches.value > 0
    assert batching.HasField("batch_timeout_micros") and batching.batch_timeout_micros.value == 0
    assert not batching.allowed_batch_sizes and not batching.pad_variable_length_inputs
    monitoring = parse("monitoring.config", MonitoringConfig())
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_compose_starts_tensorflow_serving_with_these_configs():
    with open(os.path.join(SERVING, "docker-compose.yml")) as f:
        compose = f.read()
    assert re.search(r"image: tensorflow/serving:\d+\.\d+\.\d+", compose)
    assert '"8500:8500"' in compose and '"8501:8501"' in compose
    assert "- ../models:/models:ro" in compose and "- .:/config:ro" in compose
    for flag, name in [("model_config_file", "models.config"),
                       ("batching_parameters_file", "batching.config"),
                       ("monitoring_config_file", "monitoring.config")]:
        assert f"--{flag}=/config/{name}" in compose
        assert os.path.isfile(os.path.join(SERVING, name))
    assert "--enable_batching=true" in compose


@tensorflow_only
@pytest.mark.parametrize("style", STYLES)
def test_each_served_style_exports(style, tmp_path):
    """Runs where the style has been trained (savedNets/<style>/weights.npz); the export
    path itself is always covered by the tiny style (test_exported_model_serves)."""
    from perceptual_style.export import export_style
    from perceptual_style.saved_nets import load_transformer

    folder = os.path.join(REPO, "savedNets", style)
    if not os.path.isfile(os.path.join(folder, "weights.npz")):
        pytest.skip(f"{style} is not trained here (no savedNets/{style}/weights.npz)")
    version, path = export_style(load_transformer(folder), str(tmp_path / style))
    assert version == 1
    assert_servable(path)


@tensorflow_only
def test_exported_model_serves(exported_model):
    assert_servable(exported_model[1])


def assert_servable(path):
    """What TensorFlow Serving needs from a version folder: a SavedModel with the serve
    tag, a serving_default predict signature, and variables."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    [graph] = saved.meta_graphs
    assert "serve" in graph.meta_info_def.tags
    assert graph.signature_def["serving_default"].method_name == "tensorflow/serving/predict"
    assert os.path.isfile(os.path.join(path, "variables", "variables.index"))
