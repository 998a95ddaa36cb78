"""Stylizes images through TensorFlow Serving, over REST or gRPC.

    python -m perceptual_style.client --model=snight --input=photo.jpg --output=snight.png
    python -m perceptual_style.client --model=snight --status      # or --metadata
    python -m perceptual_style.client --model=paintings --input=photo.jpg --style=wave
    python -m perceptual_style.client --model=paintings --input=photo.jpg --mix=snight:0.7,wave:0.3

`ServingClient` speaks TensorFlow Serving's documented APIs: REST
`POST /v1/models/<name>[/versions/<v>]:predict` with `instances` holding `{"b64": ...}`
images, `GET /v1/models/<name>[/versions/<v>][/metadata]`, and the gRPC
`PredictionService` and `ModelService`. REST needs only the standard library, so a REST
client imports no TensorFlow; gRPC uses `tensorflow-serving-api`'s protos (which import
TensorFlow), loaded on first use. Requests answered 503 / UNAVAILABLE (a full batch
queue, a server going down) and refused connections (a server starting) are retried with
exponential backoff; every other failure raises `ServingError` with the server's message.
`timeout` bounds each attempt as a whole, however slowly a server sends; answers are read
up to `max_answer_bytes`, and stylized images must decode before they are returned.
A model of several styles is asked for one of them, or a blend, through its `_mix`
signatures; the client learns the names of its styles from the model itself and checks a
choice as `stylize --style/--mix` does (cli.blend, cli.style_vector) before sending it.
"""

import base64
import codecs
import functools
import http.client
import io
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request

import numpy as np
from absl import flags
from PIL import Image

from perceptual_style import cli, export, images
from perceptual_style.atomic import atomic_write

PROTOCOLS = ("rest", "grpc")
# Output format -> the exported model's signature (see perceptual_style/export.py).
SIGNATURES = {image_format: export.SIGNATURES[image_format] for image_format in ("png", "jpeg")}
OUTPUT_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}
GRPC_MESSAGE_LIMIT = 2**31 - 1  # TensorFlow Serving's own limit; gRPC's default is 4 MB
# A 2048 x 2048 PNG, the export's default pixel limit, is at most 12.6 MB, 16.8 MB in
# base64: room for a few per request.
MAX_ANSWER_BYTES = 64 * 2**20
PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG"}
FLAGS = flags.FLAGS


class ServingError(Exception):
    """A request that failed, in one line: the model, the status and the server's reason.
    `status` is the HTTP status or the gRPC code name; `retryable` marks 503/UNAVAILABLE."""

    def __init__(self, message, status=None, retryable=False):
        super().__init__(message)
        self.status, self.retryable = status, retryable


def _error_text(body):
    """The message of a TensorFlow Serving error body, `{ "error": "..." }`. The server
    C-escapes the message into the JSON string, so a quote or non-ASCII byte in it makes
    the body invalid JSON: such bodies are unescaped by hand."""
    text = body.decode("utf-8", "replace")
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        match = re.fullmatch(r'\s*\{\s*"error"\s*:\s*"(.*)"\s*\}\s*', text, re.S)
        if not match:
            return text.strip() or "(empty response)"
        raw = codecs.escape_decode(match.group(1).encode("latin-1", "backslashreplace"))[0]
        return raw.decode("utf-8", "replace")


def _json_value(value):
    """A value of one instance as TensorFlow Serving's REST API takes it: bytes as
    {"b64": ...}, numbers and rows of them as JSON."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value.tolist()


def _first_line(message):
    return message.strip().splitlines()[0] if message.strip() else message


def _remaining(deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


class _DeadlineReader(io.RawIOBase):
    """A socket's reading side whose every read waits only as long as the deadline allows."""

    def __init__(self, sock, deadline):
        self._sock, self._deadline = sock, deadline
        self._raw = sock.makefile("rb", buffering=0)  # keeps the connection open until closed

    def readable(self):
        return True

    def readinto(self, buffer):
        self._sock.settimeout(_remaining(self._deadline))
        return self._raw.readinto(buffer)

    def close(self):
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """A connected socket whose reads and writes all end by `deadline` (time.monotonic()).
    A socket timeout bounds each read alone: a server sending a byte a second would hold
    a request for ever."""

    def __init__(self, sock, deadline):
        self._sock, self._deadline = sock, deadline

    def makefile(self, mode, *args, **kwargs):
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def sendall(self, data):
        self._sock.settimeout(_remaining(self._deadline))
        self._sock.sendall(data)

    def close(self):
        self._sock.close()


class _DeadlineConnection(http.client.HTTPConnection):
    def __init__(self, *args, deadline, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def connect(self):
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self.deadline)


class _DeadlineHandler(urllib.request.HTTPHandler):
    """urllib's HTTP, with every request over by `deadline`."""

    def __init__(self, deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(functools.partial(_DeadlineConnection, deadline=self.deadline), req)


class ServingClient:
    """One model on one TensorFlow Serving server.

    >>> client = ServingClient("snight")                     # REST on localhost:8501
    >>> [png] = client.stylize([open("photo.jpg", "rb").read()])
    >>> ServingClient("snight", protocol="grpc").status()     # gRPC on localhost:8500

    `version` pins a model version (default: the latest the server has loaded).
    `timeout` bounds each attempt in seconds (over plain HTTP and gRPC, the whole attempt);
    failed attempts that may succeed later are retried `retries` times, waiting `backoff`,
    2 x `backoff`, 4 x `backoff`... seconds. Answers over `max_answer_bytes` are refused.
    """

    def __init__(self, model, version=None, protocol="rest", rest_url="http://localhost:8501",
                 grpc_target="localhost:8500", timeout=60.0, retries=3, backoff=0.5,
                 max_answer_bytes=MAX_ANSWER_BYTES):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.model, self.version, self.protocol = model, version, protocol
        self.rest_url, self.grpc_target = rest_url.rstrip("/"), grpc_target
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.max_answer_bytes = max_answer_bytes
        self._channel = None
        self._styles = None

    def stylize(self, encoded_images, strength=1.0, image_format="png", style=None):
        """Encoded JPEG/PNG images (bytes) -> the stylized images, encoded as `image_format`
        (png or jpeg). `strength` in [0, 1] blends the photo (0) with the style (1).
        `style`, for a model of several styles (default: its first): see `style_weights`."""
        if image_format not in SIGNATURES:
            raise ValueError(f"image_format must be one of {sorted(SIGNATURES)}, got {image_format!r}")
        encoded_images = list(encoded_images)
        count = len(encoded_images)
        signature = SIGNATURES[image_format]
        inputs = {"image_bytes": np.array(encoded_images, object),
                  "strength": np.full(count, strength, np.float32)}
        if style is not None:
            signature = export.MIX_SIGNATURES[signature]
            inputs["style_weights"] = np.tile(self.style_weights(style), (count, 1))
        # One output per instance: TensorFlow Serving drops its name and b64-encodes
        # string outputs whose name ends in _bytes.
        stylized = self._predict(signature, inputs, "image_bytes",
                                 lambda p: base64.b64decode(p["b64"]))
        for index, data in enumerate(stylized):
            self._check_image(index, data, PIL_FORMATS[image_format])
        return stylized

    def styles(self):
        """The names of the model's styles, in the order of its style weights; [] for a
        model of one style. Read once (the model's signatures, then its `styles` one)."""
        if self._styles is None:
            signatures = self.metadata()["metadata"]["signature_def"]["signature_def"]
            mix = signatures.get(export.MIX_SIGNATURES[SIGNATURES["png"]])
            if mix is None:
                self._styles = []
            else:
                try:
                    count = int(mix["inputs"]["style_weights"]["tensor_shape"]["dim"][1]["size"])
                except (KeyError, IndexError, TypeError, ValueError) as e:
                    raise ServingError(f"{self._where()}: unexpected signature ({e!r})") from None
                names = self._predict(export.STYLES_SIGNATURE,
                                      {"index": np.arange(count, dtype=np.int32)}, "style",
                                      str.encode)
                self._styles = [name.decode() for name in names]
        return self._styles

    def style_weights(self, style):
        """What a model of several styles is sent for `style`: a style's name, a blend
        {style: weight, ...}, or one weight per style in the order of `styles()`; weights
        are >= 0, not all zero, and scaled to sum to 1 (float32, one per style). A style
        the model lacks, a vector of the wrong length, a negative weight or all zero is a
        one-line ValueError, as is any style for a model of one."""
        names = self.styles()
        try:
            if not names:
                raise cli.CommandError(f"{self._where()} has one style: it takes no style or blend")
            if isinstance(style, str):
                style = {style: 1.0}
            if not isinstance(style, dict):
                vector = [float(weight) for weight in style]
                if len(vector) != len(names):
                    raise cli.CommandError(f"style weights {vector}: {len(vector)} values for the "
                                           f"{len(names)} styles of {self._where()} "
                                           f"({', '.join(names)})")
                style = cli.blend(dict(zip(names, vector)), f"style weights {vector}")
            return cli.style_vector(self._where(), names, cli.blend(style, f"blend {style}"))
        except cli.CommandError as e:
            raise ValueError(str(e)) from None

    def _predict(self, signature, inputs, output, from_json):
        """The string output `output` of `signature` run on `inputs`, {alias: NumPy array
        with one row per instance}, as a list of bytes; `from_json` reads one from a REST
        prediction."""
        if self.protocol == "grpc":
            return self._retrying(lambda: self._grpc_predict(signature, inputs, output))
        count = len(next(iter(inputs.values())))
        body = {"signature_name": signature, "instances": [
            {alias: _json_value(values[i]) for alias, values in inputs.items()}
            for i in range(count)]}
        answer = self._retrying(lambda: self._rest("POST", ":predict", body))
        try:
            return [from_json(p) for p in answer["predictions"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ServingError(f"{self._where()}: unexpected predict answer ({e!r})") from None

    def _check_image(self, index, data, image_format):
        try:
            with Image.open(io.BytesIO(data), formats=[image_format]) as image:
                image.load()
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
            raise ServingError(f"{self._where()}: answer {index} is not a {image_format} image "
                               f"({len(data):,} bytes)") from None

    def status(self):
        """The versions the server has of the model and their state, as TensorFlow
        Serving's REST API returns it: {"model_version_status": [{"version": "1",
        "state": "AVAILABLE", "status": {...}}]}."""
        if self.protocol == "rest":
            return self._retrying(lambda: self._rest("GET", "", None))
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        request = get_model_status_pb2.GetModelStatusRequest()
        self._fill_spec(request.model_spec)
        stub = model_service_pb2_grpc.ModelServiceStub(self._grpc_channel())
        response = self._retrying(lambda: self._grpc_call(stub.GetModelStatus, request))
        return json_format.MessageToDict(response, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)

    def metadata(self):
        """The model's signatures, as TensorFlow Serving's REST API returns them:
        {"model_spec": {...}, "metadata": {"signature_def": {"signature_def": {...}}}}."""
        if self.protocol == "rest":
            return self._retrying(lambda: self._rest("GET", "/metadata", None))
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._fill_spec(request.model_spec)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(self._grpc_channel())
        response = self._retrying(lambda: self._grpc_call(stub.GetModelMetadata, request))
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        as_dict = functools.partial(json_format.MessageToDict, preserving_proto_field_name=True)
        return {"model_spec": as_dict(response.model_spec),
                "metadata": {"signature_def": as_dict(signatures)}}

    def close(self):
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _retrying(self, attempt):
        for tries in range(self.retries + 1):
            try:
                return attempt()
            except ServingError as e:
                if not e.retryable or tries == self.retries:
                    raise
                time.sleep(self.backoff * 2**tries)

    def _where(self):
        version = f" version {self.version}" if self.version is not None else ""
        return f"model {self.model}{version}"

    # REST

    def _rest(self, method, suffix, body):
        path = f"/v1/models/{self.model}"
        if self.version is not None:
            path += f"/versions/{self.version}"
        url = self.rest_url + path + suffix
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(_DeadlineHandler(time.monotonic() + self.timeout))
        try:
            with opener.open(request, timeout=self.timeout) as response:
                body = response.read(self.max_answer_bytes + 1)
                if len(body) > self.max_answer_bytes:
                    raise ServingError(f"{url}: answer over {self.max_answer_bytes:,} bytes")
                body += response.read()  # nothing, or IncompleteRead for a body cut short
            return json.loads(body)
        except urllib.error.HTTPError as e:
            message = _first_line(_error_text(e.read(self.max_answer_bytes)))
            raise ServingError(f"{self._where()}: HTTP {e.code}: {message}", e.code,
                               retryable=e.code == 503) from None
        except (TimeoutError, socket.timeout):
            raise self._timed_out(url) from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (TimeoutError, socket.timeout)):
                raise self._timed_out(url) from None
            raise ServingError(f"cannot reach {self.rest_url}: {e.reason}", "UNREACHABLE",
                               retryable=isinstance(e.reason, ConnectionRefusedError)) from None
        except http.client.IncompleteRead as e:
            raise ServingError(f"{url}: answer cut short ({e.expected:,} bytes missing)") from None
        except (http.client.HTTPException, ConnectionError) as e:  # not HTTP, or hung up
            raise ServingError(f"{url}: broken answer ({e!r:.120})") from None
        except ValueError as e:  # a 200 whose body is not JSON
            raise ServingError(f"{url}: not a TensorFlow Serving answer ({e!s:.200})") from None

    def _timed_out(self, where):
        return ServingError(f"{self._where()}: no answer from {where} within {self.timeout:g} s",
                            "DEADLINE_EXCEEDED")

    # gRPC

    def _grpc_channel(self):
        if self._channel is None:
            import grpc

            self._channel = grpc.insecure_channel(self.grpc_target, options=[
                ("grpc.max_receive_message_length", self.max_answer_bytes),
                ("grpc.max_send_message_length", GRPC_MESSAGE_LIMIT)])
        return self._channel

    def _fill_spec(self, spec, signature=None):
        spec.name = self.model
        if self.version is not None:
            spec.version.value = int(self.version)
        if signature:
            spec.signature_name = signature

    def _grpc_call(self, method, request):
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code = e.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise self._timed_out(self.grpc_target) from None
            raise ServingError(f"{self._where()}: {code.name}: {_first_line(e.details() or '')}",
                               code.name, retryable=code == grpc.StatusCode.UNAVAILABLE) from None

    def _grpc_predict(self, signature, inputs, output):
        """The string tensor `output` of `signature` run on `inputs` (see `_predict`)."""
        from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        request = predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec, signature)
        for alias, values in inputs.items():
            shape = tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in values.shape])
            flat = values.ravel().tolist()
            tensor = (dict(dtype=types_pb2.DT_STRING, string_val=flat) if values.dtype == object
                      else dict(dtype=types_pb2.DT_INT32, int_val=flat) if values.dtype == np.int32
                      else dict(dtype=types_pb2.DT_FLOAT, float_val=flat))
            request.inputs[alias].CopyFrom(tensor_pb2.TensorProto(tensor_shape=shape, **tensor))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(self._grpc_channel())
        return list(self._grpc_call(stub.Predict, request).outputs[output].string_val)


def image_file_bytes(path):
    """What to send for an image file: a JPEG or PNG as it is, unless it needs its EXIF
    rotation or has transparency; any other image re-encoded as PNG, upright and composited
    on white the way `images.load_rgb` reads photos (the server decodes only JPEG and PNG,
    and ignores EXIF)."""
    upright = images.open_image(path)  # one-line ImageError for anything unusable
    with Image.open(path) as original:
        as_is = (original.format in ("JPEG", "PNG") and original.mode in ("RGB", "L")
                 and original.getexif().get(0x0112, 1) == 1)
    if as_is:
        with open(path, "rb") as f:
            return f.read()
    buffer = io.BytesIO()
    images.composite_on_white(upright).save(buffer, "PNG")
    return buffer.getvalue()


def define_flags():
    """The CLI's flags, defined only when it runs, so importing ServingClient registers none."""
    flags.DEFINE_string("model", None, "Model (style) name on the server, e.g. snight.")
    flags.DEFINE_integer("model_version", None, "Model version to use. Default: the latest "
                         "the server has loaded.", lower_bound=1)
    flags.DEFINE_enum("protocol", "rest", list(PROTOCOLS), "REST (JSON, port 8501) or gRPC "
                      "(port 8500).")
    flags.DEFINE_string("rest_url", "http://localhost:8501", "TensorFlow Serving's REST address.")
    flags.DEFINE_string("grpc_target", "localhost:8500", "TensorFlow Serving's gRPC address.")
    flags.DEFINE_string("input", None, "Image to stylize (any format Pillow reads).")
    flags.DEFINE_string("output", None, "Where to write the stylized image: .png (lossless) "
                        "or .jpg. Default: <input name>_<model>.png beside the input.")
    flags.DEFINE_float("strength", 1.0, "Style strength: 0 returns the photo, 1 the full style.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_string("style", None, "Of a model of several styles, the one to apply "
                        "(default: its first).")
    flags.DEFINE_list("mix", None, "Of a model of several styles, a blend: STYLE:WEIGHT,... "
                      "(weights >= 0, scaled to sum to 1), e.g. snight:0.7,wave:0.3.")
    flags.DEFINE_float("timeout", 60.0, "Seconds each attempt may take in all, however slowly "
                       "the server answers.", lower_bound=0.001)
    flags.DEFINE_integer("retries", 3, "Retries, with exponential backoff, while the server "
                         "answers 503 / UNAVAILABLE or refuses connections.", lower_bound=0)
    flags.DEFINE_bool("status", False, "Print the model's version status (JSON) and exit.")
    flags.DEFINE_bool("metadata", False, "Print the model's signatures (JSON) and exit.")


def style_label():
    """What the output is named by: the model, MODEL-STYLE, or MODEL-STYLE0.7+..."""
    return cli.style_label(f"{FLAGS.model}:{FLAGS.style}" if FLAGS.style else FLAGS.model,
                           FLAGS.mix)


def output_path():
    path = FLAGS.output or f"{os.path.splitext(FLAGS.input)[0]}_{style_label()}.png"
    if os.path.splitext(path)[1].lower() not in OUTPUT_FORMATS:
        raise ValueError(f"--output must end in {', '.join(OUTPUT_FORMATS)}: {path}")
    return path


def main(argv):
    if not FLAGS.model:
        sys.exit("client: error: --model is required (see --helpfull)")
    if not (FLAGS.status or FLAGS.metadata or FLAGS.input):
        sys.exit("client: error: give --input=IMAGE, --status or --metadata (see --helpfull)")
    if FLAGS.style and FLAGS.mix:
        sys.exit("client: error: give --style or --mix, not both")
    style = cli.parse_mix(FLAGS.mix) if FLAGS.mix else FLAGS.style  # a one-line CommandError
    if FLAGS.protocol == "grpc":  # its protos load TensorFlow, whose start-up lines are not ours
        cli.import_quietly(["tensorflow_serving.apis.prediction_service_pb2_grpc"])
    client = ServingClient(FLAGS.model, FLAGS.model_version, FLAGS.protocol, FLAGS.rest_url,
                           FLAGS.grpc_target, FLAGS.timeout, FLAGS.retries)
    try:
        with client:
            if FLAGS.status or FLAGS.metadata:
                print(json.dumps(client.status() if FLAGS.status else client.metadata(), indent=2))
                return 0
            path = output_path()
            started = time.time()
            [stylized] = client.stylize([image_file_bytes(FLAGS.input)], FLAGS.strength,
                                        OUTPUT_FORMATS[os.path.splitext(path)[1].lower()], style)
            atomic_write(path, lambda f: f.write(stylized))
    except (ServingError, ValueError, OSError) as e:  # ImageError is a ValueError
        sys.exit(f"client: error: {e}")
    print(f"Stylized {FLAGS.input} with {style_label()} over {FLAGS.protocol} in "
          f"{time.time() - started:.2f} s: {path}")
    return 0


def run():
    define_flags()
    cli.run(main, "client")


if __name__ == "__main__":
    run()
