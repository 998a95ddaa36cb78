"""The client against the stand-in TensorFlow Serving (tests/fake_model_server.py), which
serves the session's exported SavedModel over loopback REST and gRPC."""

import base64
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import HANG_TIMEOUT, REPO, decode, encode, photo, tensorflow_only
from perceptual_style.client import ServingClient, ServingError, _error_text
from perceptual_style.images import to_uint8

pytestmark = tensorflow_only
PROTOCOLS = ["rest", "grpc"]


@pytest.fixture(scope="module")
def server(exported_model, exported_multi_style):
    from fake_model_server import FakeModelServer

    with FakeModelServer({"tiny": os.path.join(exported_model[0], "tiny"),
                          "trio": os.path.join(exported_multi_style[0], "trio")}) as running:
        yield running


@pytest.fixture
def connect(server):
    """ServingClient factory for the stand-in; resets its failure switches afterwards."""
    clients = []

    def make(protocol, model="tiny", **kwargs):
        kwargs = {"retries": 0, "backoff": 0.01, "timeout": 30, **kwargs}
        client = ServingClient(model, protocol=protocol, rest_url=server.rest_url,
                               grpc_target=server.grpc_target, **kwargs)
        clients.append(client)
        return client

    yield make
    server.unavailable, server.delay, server.raw_reply, server.drip = 0, 0.0, None, 0.0
    for client in clients:
        client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stylized_image_equals_the_local_model(exported_model, connect, protocol):
    net = exported_model[2]
    photos = [photo(32, 48), photo(24, 36, seed=1)]
    results = connect(protocol).stylize([encode(p) for p in photos])
    for data, original in zip(results, photos):
        expected = to_uint8(np.asarray(net(original[np.newaxis].astype(np.float32)))[0])
        stylized = decode(data)
        assert stylized.shape == original.shape
        assert np.abs(stylized.astype(int) - expected).max() <= 1  # 8-bit rounding only
        assert np.mean(stylized == expected) > 0.99


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_strength_version_and_jpeg(connect, protocol):
    original = photo()
    client = connect(protocol, version=1)
    [untouched] = client.stylize([encode(original)], strength=0.0)
    assert np.array_equal(decode(untouched), original)
    [jpeg] = client.stylize([encode(original)], image_format="jpeg")
    assert jpeg.startswith(b"\xff\xd8\xff") and decode(jpeg).shape == original.shape


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_status_and_metadata(connect, protocol):
    client = connect(protocol)
    assert client.status() == {"model_version_status": [{
        "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    metadata = client.metadata()
    assert metadata["model_spec"]["name"] == "tiny" and metadata["model_spec"]["version"] == "1"
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "stylize_jpeg", "stylize_tensor"} <= set(signatures)
    assert signatures["serving_default"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"


@pytest.mark.parametrize("protocol,status", [("rest", 404), ("grpc", "NOT_FOUND")])
def test_unknown_model_or_version_is_a_clear_error_without_retries(server, connect, protocol, status):
    calls = server.predict_calls
    with pytest.raises(ServingError) as error:
        connect(protocol, model="nope", retries=3).stylize([encode(photo())])
    assert error.value.status == status and not error.value.retryable
    assert str(error.value).endswith("Servable not found for request: Latest(nope)")
    assert server.predict_calls == calls + 1
    with pytest.raises(ServingError, match="Servable not found for request: Specific\\(tiny, 7\\)"):
        connect(protocol, version=7).stylize([encode(photo())])
    with pytest.raises(ServingError, match="Could not find version 7 of model tiny"):
        connect(protocol, version=7).status()


@pytest.mark.parametrize("protocol,status", [("rest", 400), ("grpc", "INVALID_ARGUMENT")])
def test_bad_images_are_4xx_errors_naming_the_problem(connect, protocol, status):
    client = connect(protocol)
    with pytest.raises(ServingError) as error:
        client.stylize([encode(photo()), b"not an image"])
    assert error.value.status == status
    assert str(error.value) == (f"model tiny: {'HTTP 400' if protocol == 'rest' else status}: "
                                "assertion failed: [image_bytes[1] is not a JPEG or PNG image]")
    with pytest.raises(ServingError, match=r"is 61 x 40 pixels, over the limit of 2400 pixels"):
        client.stylize([encode(photo(40, 61))])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retries_with_backoff_on_unavailable(server, connect, protocol):
    server.unavailable = 2
    calls = server.predict_calls
    started = time.monotonic()
    [data] = connect(protocol, retries=3, backoff=0.05).stylize([encode(photo())])
    assert decode(data).shape == (32, 48, 3)
    assert server.predict_calls == calls + 3
    assert time.monotonic() - started >= 0.05 + 0.1  # waited backoff, then 2 x backoff
    server.unavailable = 5
    with pytest.raises(ServingError, match="is full") as error:
        connect(protocol, retries=2).stylize([encode(photo())])
    assert error.value.retryable and error.value.status in (503, "UNAVAILABLE")
    assert server.predict_calls == calls + 3 + 3


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_timeout(server, connect, protocol):
    server.delay = 1.0
    started = time.monotonic()
    with pytest.raises(ServingError, match="no answer from .* within 0.2 s") as error:
        connect(protocol, timeout=0.2, retries=2, backoff=60).status()
    assert error.value.status == "DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 60  # not retried: a retry would wait 60 s first


def keras_uint8(net, image, style_weights):
    weights = np.asarray(style_weights, np.float32)
    return to_uint8(np.asarray(net(image[np.newaxis].astype(np.float32), style_weights=weights))[0])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_style_or_a_blend_of_a_multi_style_model(exported_multi_style, connect, protocol):
    """By name, as a blend of names, or as a vector: the Keras network's image; without a
    style, the model's first; the styles differ, so a wrong choice would show."""
    net = exported_multi_style[2]
    client = connect(protocol, model="trio")
    assert client.styles() == ["a", "b", "c"]
    assert connect(protocol).styles() == []  # tiny: one style
    original = photo(24, 36)
    results = {}
    for style, weights in [(None, [1, 0, 0]), ("b", [0, 1, 0]), ({"a": 7, "c": 3}, [0.7, 0, 0.3]),
                           ([0.7, 0, 0.3], [0.7, 0, 0.3])]:
        [data] = client.stylize([encode(original)], style=style)
        results[str(style)] = decode(data).astype(int)
        assert np.abs(results[str(style)] - keras_uint8(net, original, weights)).max() <= 1
    assert np.abs(results["b"] - results["None"]).max() > 20
    [jpeg] = client.stylize([encode(original)] * 2, image_format="jpeg", style="c")[1:]
    assert jpeg.startswith(b"\xff\xd8\xff") and decode(jpeg).shape == original.shape


@pytest.mark.parametrize("model,style,message", [
    ("trio", "z", "model trio has no style 'z' (its styles: a, b, c)"),
    ("trio", {"a": 0.5, "z": 0.5}, "model trio has no style 'z' (its styles: a, b, c)"),
    ("trio", [1, 0], "style weights [1.0, 0.0]: 2 values for the 3 styles of model trio (a, b, c)"),
    ("trio", [0.5, -1, 0], "style weights [0.5, -1.0, 0.0]: the weights must be numbers >= 0"),
    ("trio", [1, float("nan"), 0], "style weights [1.0, nan, 0.0]: the weights must be numbers >= 0"),
    ("trio", [0, 0, 0], "style weights [0.0, 0.0, 0.0]: the weights are all zero"),
    ("trio", {"a": 0, "b": 0}, "blend {'a': 0, 'b': 0}: the weights are all zero"),
    ("tiny", "a", "model tiny has one style: it takes no style or blend"),
])
def test_bad_styles_are_one_line_errors_sent_nowhere(server, connect, model, style, message):
    client = connect("rest", model=model)
    client.styles()
    calls = server.predict_calls
    with pytest.raises(ValueError) as error:
        client.stylize([encode(photo())], style=style)
    assert str(error.value) == message
    assert server.predict_calls == calls


@pytest.mark.parametrize("protocol,status", [("rest", 400), ("grpc", "INVALID_ARGUMENT")])
def test_the_model_refuses_bad_style_weights_itself(connect, protocol, status):
    """What a client other than ours sends: checked in the model's graph."""
    client = connect(protocol, model="trio")
    inputs = {"image_bytes": np.array([encode(photo())], object),
              "strength": np.ones(1, np.float32), "style_weights": np.zeros((1, 3), np.float32)}
    with pytest.raises(ServingError) as error:
        client._predict("stylize_mix", inputs, "image_bytes", base64.b64decode)
    assert error.value.status == status
    assert str(error.value) == (f"model trio: {'HTTP 400' if protocol == 'rest' else status}: "
                                "assertion failed: [style_weights: the weights of a row are all "
                                "zero, got [[0 0 0]]]")


def http_reply(body, length=None):
    return (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body) if length is None else length}\r\n\r\n".encode() + body)


NOT_AN_IMAGE = http_reply(json.dumps({"predictions": [
    {"b64": base64.b64encode(b"not an image " * 8).decode()}]}).encode())


@pytest.mark.parametrize("reply,drip,client,message", [
    # A server sending a byte every 0.05 s would take 3 s: the attempt ends at 0.5 s.
    (http_reply(b'{"model_version_status": []}' + b" " * 32), 0.05, {"timeout": 0.5},
     r"no answer from .* within 0.5 s"),
    (http_reply(b'{"predictions": [', length=1000), 0, {},
     r"tiny: answer cut short \(983 bytes missing\)"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", 0, {}, r"broken answer \(BadStatusLine\('SSH-2.0-OpenSSH_9.6\\r\\n'\)\)"),
    (http_reply(b'{"model_version_status": "' + b"x" * 5000 + b'"}'), 0,
     {"max_answer_bytes": 1000}, r"answer over 1,000 bytes"),
    (NOT_AN_IMAGE, 0, {}, r"model tiny: answer 0 is not a PNG image \(104 bytes\)"),
], ids=["slow", "cut_short", "not_http", "huge", "not_an_image"])
def test_broken_slow_and_huge_answers_are_one_line_errors(server, connect, reply, drip, client,
                                                         message):
    server.raw_reply, server.drip = reply, drip
    with pytest.raises(ServingError, match=message) as error:
        if reply is NOT_AN_IMAGE:
            connect("rest", **client).stylize([encode(photo())])
        else:
            connect("rest", **client).status()
    assert "\n" not in str(error.value)


def test_unreachable_server_is_retried_then_reported():
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(ServingError, match=f"cannot reach {url}: .*refused") as error:
        ServingClient("tiny", rest_url=url, retries=1, backoff=0.01).status()
    assert error.value.retryable


def test_c_escaped_error_bodies_are_read(server, connect):
    # TensorFlow Serving C-escapes messages into its JSON, so a quote makes the body
    # invalid JSON; an unknown signature name with a quote gets such a body back.
    with pytest.raises(ServingError, match="""Serving signature name: "it's" not found"""):
        connect("rest")._rest("POST", ":predict", {"signature_name": "it's", "instances": [1]})
    assert _error_text(b'{ "error": "caf\\303\\251 \\"x\\" \\\'y\\\'" }') == """café "x" 'y'"""
    assert _error_text(b"<html>Bad gateway</html>") == "<html>Bad gateway</html>"


def run_client_without_tensorflow(args):
    """The CLI in a process where importing TensorFlow fails, as on a REST-only machine."""
    code = ("import sys; sys.path.insert(0, 'tests'); import no_tensorflow; "
            "from perceptual_style.client import run; sys.argv = ['client'] + sys.argv[1:]; run()")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=HANG_TIMEOUT)


def test_cli_over_rest_needs_no_tensorflow(exported_model, server, tmp_path):
    net = exported_model[2]
    original = photo()
    (tmp_path / "photo.png").write_bytes(encode(original))
    out = tmp_path / "stylized.png"
    result = run_client_without_tensorflow([
        "--model=tiny", f"--rest_url={server.rest_url}", f"--input={tmp_path / 'photo.png'}",
        f"--output={out}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Stylized" in result.stdout
    expected = to_uint8(np.asarray(net(original[np.newaxis].astype(np.float32)))[0])
    assert np.abs(decode(out.read_bytes()).astype(int) - expected).max() <= 1
    (tmp_path / "notes.txt").write_text("not an image")
    for args, message in [
        ([f"--input={tmp_path / 'notes.txt'}"], "not an image file Pillow can read"),
        ([f"--input={tmp_path / 'missing.jpg'}"], "missing.jpg: no such file"),
        (["--model=nope", f"--input={tmp_path / 'photo.png'}"],
         "client: error: model nope: HTTP 404: Servable not found for request: Latest(nope)"),
        ([f"--input={tmp_path / 'photo.png'}", f"--output={tmp_path / 'x.gif'}"],
         "--output must end in .png, .jpg, .jpeg"),
        (["--strength=2"], "client: error: flag --strength=2: 2.0 is not a number in the range [0.0, 1.0]"),
    ]:
        failed = run_client_without_tensorflow(["--model=tiny", f"--rest_url={server.rest_url}", *args])
        assert failed.returncode != 0
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("client: error: ") and message in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "photo.png", "stylized.png"]
    server.raw_reply = NOT_AN_IMAGE  # a 200 whose "image" is something else is not written
    try:
        failed = run_client_without_tensorflow([
            "--model=tiny", f"--rest_url={server.rest_url}", f"--input={tmp_path / 'photo.png'}",
            f"--output={tmp_path / 'other.png'}"])
    finally:
        server.raw_reply = None
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        "client: error: model tiny: answer 0 is not a PNG image (104 bytes)"]
    assert not (tmp_path / "other.png").exists()


def test_cli_chooses_and_mixes_styles_without_tensorflow(exported_multi_style, server, tmp_path):
    net = exported_multi_style[2]
    original = photo()
    (tmp_path / "photo.png").write_bytes(encode(original))
    common = ["--model=trio", f"--rest_url={server.rest_url}", f"--input={tmp_path / 'photo.png'}"]
    for flag, name, weights in [("--style=b", "photo_trio-b.png", [0, 1, 0]),
                                ("--mix=a:7,c:3", "photo_trio-a0.7+c0.3.png", [0.7, 0, 0.3])]:
        result = run_client_without_tensorflow([*common, flag])
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"with {name[6:-4]} over rest" in result.stdout
        stylized = decode((tmp_path / name).read_bytes()).astype(int)
        assert np.abs(stylized - keras_uint8(net, original, weights)).max() <= 1
    for args, message in [
        (["--style=z"], "model trio has no style 'z' (its styles: a, b, c)"),
        (["--mix=a:0,b:0"], "--mix=a:0,b:0: the weights are all zero"),
        (["--mix=a:-1"], "--mix=a:-1: give STYLE:WEIGHT,... with each style once and weights "
                         ">= 0, e.g. --mix=snight:0.7,wave:0.3"),
        (["--style=a", "--mix=a:1"], "give --style or --mix, not both"),
        (["--model=tiny", "--style=a"], "model tiny has one style: it takes no style or blend"),
    ]:
        failed = run_client_without_tensorflow([*common, *args])
        assert failed.returncode == 1
        assert failed.stderr.strip().splitlines() == [f"client: error: {message}"]
    assert sorted(os.listdir(tmp_path)) == ["photo.png", "photo_trio-a0.7+c0.3.png",
                                            "photo_trio-b.png"]


def test_cli_over_grpc_sends_upright_pictures(exported_model, server, tmp_path, monkeypatch):
    from PIL import Image, ImageOps

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)

    net = exported_model[2]
    original = photo(24, 36)
    rotated = Image.fromarray(original).transpose(Image.Transpose.ROTATE_270)  # on its side...
    exif = Image.Exif()
    exif[0x0112] = 8  # ...with EXIF saying "turn 90 degrees counter-clockwise to view"
    rotated.save(tmp_path / "phone.jpg", quality=95, exif=exif)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "phone.jpg")))
    assert np.abs(upright.astype(int) - original).mean() < 10  # as shot, up to JPEG loss
    result = subprocess.run(
        [sys.executable, "-m", "perceptual_style.client", "--model=tiny", "--protocol=grpc",
         f"--grpc_target={server.grpc_target}", f"--input={tmp_path / 'phone.jpg'}"],
        cwd=REPO, capture_output=True, text=True, timeout=HANG_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""  # TensorFlow (under the gRPC protos) starts quietly
    stylized = decode((tmp_path / "phone_tiny.png").read_bytes())
    assert stylized.shape == (24, 36, 3)
    expected = to_uint8(np.asarray(net(upright[np.newaxis].astype(np.float32)))[0])
    assert np.abs(stylized.astype(int) - expected).max() <= 1
