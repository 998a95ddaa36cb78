"""A stand-in for `tensorflow_model_server`, for the client's tests only (the real server
cannot run here).

It serves real exported SavedModels from TensorFlow Serving's layout
(`<base_path>/<version>/`) on loopback, on ephemeral ports: REST through `http.server`, and
gRPC through grpcio with `tensorflow-serving-api`'s `PredictionService` (Predict,
GetModelMetadata) and `ModelService` (GetModelStatus). It reproduces what
`tensorflow_serving/model_servers/http_rest_api_handler.cc`, `util/json_tensor.cc`,
`servables/tensorflow/predict_util.cc` and `get_model_status_impl.cc` do for these calls:
the URL patterns, the row (`instances`) and columnar (`inputs`) JSON formats with `{"b64":
...}` for strings and for outputs named `*_bytes`, signature defaults filled in for
missing inputs, the status-code to HTTP mapping, the C-escaped `{ "error": "..." }` bodies
and the messages of its errors (for example "Servable not found for request:
Latest(name)" with 404 / NOT_FOUND).

Not reproduced: batching, classify/regress, output_filter, version labels, model config reloads,
Prometheus metrics, and file-system polling (versions are read once, at start).
`unavailable` makes the next Predict calls fail with 503 / UNAVAILABLE, as a full batch
queue does; `delay` holds every request, to test client timeouts. `raw_reply` makes REST
requests answered by those bytes as they are (a broken server, or not an HTTP one), sent a
byte every `drip` seconds when that is set.
"""

import base64
import http.server
import json
import os
import re
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, prediction_service_pb2_grpc)
from tensorflow_serving.apis import predict_pb2

DEFAULT_SIGNATURE = "serving_default"
# http_server.cc: ToHTTPStatusCode. Anything else is 500.
HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


class Status(Exception):
    """A non-OK TensorFlow status: a gRPC code and a message."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def invalid(message):
    return Status(grpc.StatusCode.INVALID_ARGUMENT, message)


def c_escape(text):
    """absl::CEscape, which the REST server applies to error messages inside JSON."""
    special = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x22: '\\"', 0x27: "\\'", 0x5C: "\\\\"}
    return "".join(special.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}")
                   for b in text.encode())


def op_error_message(error):
    """The message the C++ server gives for a failed graph run: TensorFlow's Python
    wrapper adds a 'Graph execution error' preamble and an [Op:...] suffix."""
    message = re.sub(r"^Graph execution error:\s*(Detected at node .*?\n<stack traces unavailable>\n)?",
                     "", error.message, flags=re.S)
    return re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", message)


class Servable:
    """One loaded version of a model, with its SignatureDefs as the server reads them."""

    def __init__(self, path, version):
        self.version = version
        saved_model = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            saved_model.ParseFromString(f.read())
        self.signature_defs = {k: v for k, v in saved_model.meta_graphs[0].signature_def.items()
                               if not k.startswith("__")}
        self.functions = tf.saved_model.load(path).signatures

    def run(self, signature_name, inputs):
        """predict_util.cc: input checks, defaults for missing inputs, then the graph."""
        signature = self.signature_defs[signature_name]
        if len(inputs) > len(signature.inputs) or (
                len(inputs) < len(signature.inputs) and not signature.defaults):
            raise invalid(f"input size does not match signature: {len(inputs)}!="
                          f"{len(signature.inputs)} len({{{','.join(sorted(inputs))}}}) != "
                          f"len({{{','.join(sorted(signature.inputs))}}}).")
        feeds = {}
        for alias in signature.inputs:
            if alias in inputs:
                feeds[alias] = inputs[alias]
            elif alias in signature.defaults:
                feeds[alias] = tf.make_ndarray(signature.defaults[alias])
            else:
                raise invalid(f"Signature input alias: {alias}(feed name: "
                              f"{signature.inputs[alias].name}) not found in request and no "
                              "default value provided.")
        if set(inputs) - set(signature.inputs):
            raise invalid(f"Inputs contains invalid name. Used request inputs: "
                          f"{{{','.join(sorted(feeds))}}}, request inputs: "
                          f"{{{','.join(sorted(inputs))}}}")
        try:
            outputs = self.functions[signature_name](**{k: tf.constant(v) for k, v in feeds.items()})
        except tf.errors.OpError as e:
            code = next(c for c in grpc.StatusCode if c.value[0] == e.error_code)
            raise Status(code, op_error_message(e)) from None
        except (TypeError, ValueError) as e:  # a dtype the signature does not take
            raise invalid(str(e).splitlines()[0]) from None
        return {name: value.numpy() for name, value in outputs.items()}


class FakeModelServer:
    """`models` maps model names to base paths holding integer version folders."""

    def __init__(self, models):
        self.models = {}
        for name, base_path in models.items():
            self.models[name] = {int(v): Servable(os.path.join(base_path, v), int(v))
                                 for v in os.listdir(base_path) if v.isdigit()}
        self.unavailable = 0  # the next this many Predict calls answer 503 / UNAVAILABLE
        self.delay = 0.0  # seconds every request waits before it is handled
        self.raw_reply, self.drip = None, 0.0  # what REST requests get instead, and how slowly
        self.predict_calls = 0
        self._lock = threading.Lock()
        self.rest_url = self.grpc_target = None

    def __enter__(self):
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _rest_handler(self))
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.rest_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Prediction(self), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_Models(self), self._grpc)
        self.grpc_target = f"127.0.0.1:{self._grpc.add_insecure_port('127.0.0.1:0')}"
        self._grpc.start()
        return self

    def __exit__(self, *exc):
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(grace=None)

    # What ServerCore and the service implementations answer.

    def servable(self, name, version=None):
        versions = self.models.get(name, {})
        chosen = versions.get(version) if version is not None else (
            versions[max(versions)] if versions else None)
        if chosen is None:
            request = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise Status(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}")
        return chosen

    def admit(self):
        """Counts a Predict request, and fails it while `unavailable` says so."""
        with self._lock:
            self.predict_calls += 1
            if self.unavailable > 0:
                self.unavailable -= 1
                raise Status(grpc.StatusCode.UNAVAILABLE, QUEUE_FULL)

    def predict(self, name, version, signature_name, inputs):
        servable = self.servable(name, version)
        if signature_name not in servable.signature_defs:
            raise Status(grpc.StatusCode.FAILED_PRECONDITION,
                         f'Serving signature key "{signature_name}" not found.')
        return servable, servable.run(signature_name, inputs)

    def model_status(self, name, version=None):
        response = get_model_status_pb2.GetModelStatusResponse()
        versions = self.models.get(name, {})
        if version is not None and version not in versions:
            raise Status(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}")
        if not versions:
            raise Status(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        for v in [version] if version is not None else sorted(versions):
            status = response.model_version_status.add(version=v)
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            status.status.SetInParent()  # healthy: error_code OK, as ToStatusProto writes it
        return response

    def model_metadata(self, name, version=None):
        servable = self.servable(name, version)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signatures.signature_def[key].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signatures)
        return response


# REST: json_tensor.cc's formats.

def _from_json(value, dtype):
    """A JSON value (nested lists, {"b64": ...} objects) -> numpy array of `dtype`."""
    def convert(v):
        if isinstance(v, list):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            if set(v) != {"b64"}:
                raise invalid(f"JSON Value: {json.dumps(v)} Type: Object is not of expected type: string")
            return base64.b64decode(v["b64"])
        if dtype == tf.string:
            if not isinstance(v, str):
                raise invalid(f"JSON Value: {json.dumps(v)} Type: Number is not of expected type: string")
            return v.encode()
        if isinstance(v, (str, bool)) or v is None:
            raise invalid(f"JSON Value: {json.dumps(v)} is not of expected type: {dtype.name}")
        return v

    converted = convert(value)
    return np.array(converted, dtype=object) if dtype == tf.string else np.array(converted, dtype.as_numpy_dtype)


def _to_json(name, array):
    if array.dtype == object:
        if name.endswith("_bytes"):
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(array).tolist()
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist()
    return array.tolist()


def parse_predict_body(body, input_dtypes):
    """FillPredictRequestFromJson: (signature_name, {alias: array}, row format?)."""
    try:
        doc = json.loads(body or b"")
    except ValueError as e:
        raise invalid(f"JSON Parse error: {e}") from None
    if not isinstance(doc, dict):
        raise invalid("JSON Value: ... Is not object")
    signature_name = doc.get("signature_name", "") or DEFAULT_SIGNATURE
    if not isinstance(signature_name, str):
        raise invalid("'signature_name' key must be a string value.")
    dtypes = input_dtypes(signature_name)
    if "instances" in doc and "inputs" in doc:
        raise invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ")
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid("Excepting 'instances' to be an list/array")
        if not instances:
            raise invalid("No values in 'instances' array")
        named = isinstance(instances[0], dict) and set(instances[0]) != {"b64"}
        if not named and len(dtypes) > 1:
            raise invalid("instances is a plain list, but expecting list of objects as multiple "
                          "input tensors required as per tensorinfo_map")
        if named:
            for i, instance in enumerate(instances):
                if not isinstance(instance, dict) or set(instance) != set(dtypes):
                    raise invalid(f"Failed to process element: {i} of 'instances' list. JSON object: "
                                  f"{json.dumps(instance)} keys must be equal to: {','.join(sorted(dtypes))}")
            columns = {name: [instance[name] for instance in instances] for name in dtypes}
        else:
            columns = {next(iter(dtypes)): instances}
        return signature_name, {k: _from_json(v, dtypes[k]) for k, v in columns.items()}, True
    if "inputs" in doc:
        inputs = doc["inputs"]
        if not isinstance(inputs, dict) or set(inputs) == {"b64"}:
            if len(dtypes) > 1:
                raise invalid("inputs is a plain value/list, but expecting an object as multiple "
                              "input tensors required as per tensorinfo_map")
            inputs = {next(iter(dtypes)): inputs}
        for name in dtypes:
            if name not in inputs:
                raise invalid(f"Missing named input: {name} in 'inputs' object.")
        return signature_name, {k: _from_json(inputs[k], dtypes[k]) for k in dtypes}, False
    raise invalid("Missing 'inputs' or 'instances' key")


def predictions_json(outputs, row_format):
    """MakeJsonFromTensors: {"predictions": [...]} for rows, {"outputs": ...} for columns;
    a single output loses its name."""
    values = {name: _to_json(name, array) for name, array in outputs.items()}
    if row_format:
        rows = len(next(iter(outputs.values())))
        if len(values) == 1:
            return {"predictions": next(iter(values.values()))}
        return {"predictions": [{name: values[name][i] for name in values} for i in range(rows)]}
    return {"outputs": next(iter(values.values())) if len(values) == 1 else values}


def _rest_handler(server):
    predict_path = re.compile(r"(?i)/v1/models/([^/:]+)(?:/versions/(\d+))?:(classify|regress|predict)")
    status_path = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:/versions/(\d+))?(?:/(metadata))?")

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self._handle("POST")

        def do_GET(self):
            self._handle("GET")

        def _handle(self, method):
            time.sleep(server.delay)
            path = self.path.split("?")[0]
            if not re.fullmatch(r"(?i)/v1/.*", path):
                return self._reply(404, b"")  # not a REST API path: the HTTP server's own 404
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if server.raw_reply is not None:
                return self._raw(server.raw_reply)
            try:
                self._reply(200, json.dumps(self._answer(method, path, body), indent=1).encode())
            except Status as s:
                error = f'{{ "error": "{c_escape(s.message)}" }}'.encode()
                self._reply(HTTP_STATUS.get(s.code, 500), error)

        def _answer(self, method, path, body):
            match = predict_path.fullmatch(path)
            if method == "POST" and match:
                name, version, verb = match.group(1), match.group(2), match.group(3)
                if verb != "predict":
                    raise Status(grpc.StatusCode.UNIMPLEMENTED, f"the stand-in does not {verb}")
                version = int(version) if version else None
                server.admit()

                def input_dtypes(signature_name):  # HttpRestApiHandler::GetInfoMap
                    signatures = server.servable(name, version).signature_defs
                    if signature_name not in signatures:
                        raise invalid(f'Serving signature name: "{signature_name}" not found in signature def')
                    return {k: tf.dtypes.as_dtype(v.dtype) for k, v in signatures[signature_name].inputs.items()}

                signature_name, inputs, rows = parse_predict_body(body, input_dtypes)
                return predictions_json(server.predict(name, version, signature_name, inputs)[1], rows)
            match = status_path.fullmatch(path)
            if method == "GET" and match:
                name, version, metadata = match.groups()
                if not name:
                    raise invalid("Missing model name in request.")
                version = int(version) if version else None
                options = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
                if not metadata:
                    return json_format.MessageToDict(server.model_status(name, version), **options)
                response = server.model_metadata(name, version)
                signatures = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(signatures)
                return {"model_spec": json_format.MessageToDict(response.model_spec, **options),
                        "metadata": {"signature_def": json_format.MessageToDict(signatures, **options)}}
            raise invalid(f"Malformed request: {method} {path}")

        def _raw(self, data):
            self.close_connection = True
            chunks = [data[i:i + 1] for i in range(len(data))] if server.drip else [data]
            try:
                for chunk in chunks:
                    self.wfile.write(chunk)
                    time.sleep(server.drip)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up

        def _reply(self, code, body):
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

    return Handler


# gRPC

def _spec_version(spec):
    return spec.version.value if spec.HasField("version") else None


class _Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server):
        self.server = server

    def Predict(self, request, context):
        time.sleep(self.server.delay)
        spec = request.model_spec
        signature_name = spec.signature_name or DEFAULT_SIGNATURE
        try:
            self.server.admit()
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            servable, outputs = self.server.predict(spec.name, _spec_version(spec), signature_name, inputs)
        except Status as s:
            context.abort(s.code, s.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for name in outputs:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
        return response

    def GetModelMetadata(self, request, context):
        time.sleep(self.server.delay)
        if not request.metadata_field:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
        try:
            return self.server.model_metadata(request.model_spec.name, _spec_version(request.model_spec))
        except Status as s:
            context.abort(s.code, s.message)


class _Models(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server):
        self.server = server

    def GetModelStatus(self, request, context):
        time.sleep(self.server.delay)
        if not request.HasField("model_spec"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        try:
            return self.server.model_status(request.model_spec.name, _spec_version(request.model_spec))
        except Status as s:
            context.abort(s.code, s.message)
