"""Style transfer in the browser: `python -m perceptual_style.web` serves the page in web/,
the LiteRT.js runtime (npm's @litertjs/core, installed by `npm ci` in web/) and the styles'
`.tflite` builds. The page runs a build on the visitor's CPU (WebAssembly), so photos
never leave the device; nothing is fetched from anywhere but this server.

LiteRT.js runs fixed-shape builds only (an input of height and width -1 is refused), so a
style is served as one 512x512 float16 *staged* build (tflite.py): a photo up to that size
runs in one pass, a larger one stage by stage in tiles of that size, normalized with the
whole photo's statistics, as one untiled pass would be. A network of several styles is one
build that takes the style weights, so the page applies each of its styles and any blend
of them with the same files; the catalog names its styles. Without --tflite_dir the builds
are made from --saved_dir on first start into a cache folder (again when a style's weights
change); with it, the fixed-shape builds of one style that folder holds are served as they
are (e.g. tools/export_tflite.py's output, which the page runs in tiles normalized one by
one). The responses carry the cross-origin isolation headers under which LiteRT.js may run
on several threads (SharedArrayBuffer).
"""

import functools
import hashlib
import http.server
import io
import json
import os
import sys
import tempfile
import time
import urllib.parse
from typing import NamedTuple

from absl import flags

from perceptual_style import cli, saved_nets

WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web")
RUNTIME = "/node_modules/@litertjs/"  # the only part of web/node_modules that is served
PAGE_FILES = ("/index.html", "/app.js")
SIZE = (512, 512)
QUANTIZATION = "float16"
BUILD_FORMAT = b"staged"  # part of a cached build's digest: builds of other pages are not served
SAMPLE = "astronaut"  # scikit-image's, 512x512: one tile
SAMPLE_URL = f"/samples/{SAMPLE}.png"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # Debian's packages

flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every interface; "
                    "browsers allow threads only on localhost or HTTPS).")
flags.DEFINE_integer("port", 8000, "Port to listen on (0: any free one).", lower_bound=0,
                     upper_bound=65535)
flags.DEFINE_list("styles", ["all"], "Styles to serve: names in --saved_dir (a network of "
                  "several styles brings all of them; with --tflite_dir, the folders or name "
                  "prefixes of its builds), or 'all'.")
cli.define_saved_dir(__name__)
flags.DEFINE_string("tflite_dir", None, "Serve the fixed-shape .tflite builds in this "
                    "folder (searched recursively; e.g. tools/export_tflite.py's output) "
                    "instead of building them. Default: build a "
                    f"{SIZE[0]}x{SIZE[1]} {QUANTIZATION} staged build of each style into the "
                    "cache folder ($XDG_CACHE_HOME or ~/.cache, perceptual_style/tflite/).")
FLAGS = flags.FLAGS


class Build(NamedTuple):
    """A served build: its `file`, and the `styles` of a network of several styles (in the
    order of its style weights; empty for one style)."""
    file: str
    styles: tuple = ()


def notice(message):
    """Progress and skipped builds, on stderr: stdout's one line is the server's address."""
    print(message, file=sys.stderr, flush=True)


def require_runtime(web_dir=WEB_DIR):
    """A one-line CommandError when LiteRT.js is not installed in `web_dir`."""
    if not os.path.isdir(os.path.join(web_dir, RUNTIME.strip("/"), "core", "wasm")):
        raise cli.CommandError(f"LiteRT.js is not installed: run `npm ci` in {web_dir} once "
                               "(from the npm registry; the page then needs no network)")


def cache_dir():
    """Where made builds stay between runs: the XDG cache folder, as other tools use."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "perceptual_style", "tflite")


def build_missing(styles, folder, shape=SIZE, quantizations=(QUANTIZATION,), report=notice):
    """{URL path: Build} of the staged builds of `styles` ([(name, style folder)]) in
    `folder`, making those it lacks. A build is kept under the digest of its weights and of
    BUILD_FORMAT, `<folder>/<style>-<sha256>/<build name>`, so that a retrained style,
    another one of the same name (another --saved_dir) or a build made for another version
    of the page is never served. A network of several styles' names come from its
    metadata (a ValueError line when it does not name them)."""
    from perceptual_style import tflite
    from perceptual_style.atomic import atomic_write

    builds, todo = {}, []
    for name, source in styles:
        weights = os.path.join(source, saved_nets.WEIGHTS_FILE)
        with open(weights, "rb") as f:
            digest = hashlib.sha256(f.read() + BUILD_FORMAT).hexdigest()[:16]
        num_styles = saved_nets.read_weights(weights)[0].get("num_styles", 1)
        names = (tuple(saved_nets.load_style_names(source, os.path.dirname(source), num_styles))
                 if num_styles > 1 else ())
        for quantization in quantizations:
            file = tflite.build_name(name, shape, quantization)
            path = os.path.join(folder, f"{name}-{digest}", file)
            builds[f"/models/{name}/{file}"] = Build(path, names)
            if not os.path.isfile(path):
                todo.append((name, source, quantization, path))
    if todo:
        report(f"web: making {len(todo)} .tflite build{'s' * (len(todo) > 1)} in {folder} "
               "(once; a few seconds each)")
        cli.import_quietly(["tensorflow", "keras"])
    for i, (name, source, quantization, path) in enumerate(todo, 1):
        started = time.time()
        with tempfile.TemporaryDirectory() as tmp, cli.native_stderr_dropped():
            signatures = tflite.write_saved_model(saved_nets.load_transformer(source), tmp,
                                                  shape, staged=True)
            model = tflite.convert(tmp, quantization, signatures=signatures)
        atomic_write(path, lambda f: f.write(model))
        report(f"web: [{i}/{len(todo)}] {os.path.basename(path)} "
               f"({len(model) / 1e6:.1f} MB, {time.time() - started:.0f} s)")
    return builds


def find_builds(folder, styles=("all",), report=notice):
    """{URL path: Build} of the fixed-shape builds in `folder` (recursively) of `styles`,
    those in a folder `<style>/` or named `<style>_*` (['all']: every build). Resizable and
    unreadable builds, and builds of several styles (whose names a build does not hold),
    are reported and left out."""
    from perceptual_style import tflite

    if not os.path.isdir(folder):
        raise cli.CommandError(f"--tflite_dir: no folder {folder}")
    builds = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".tflite")):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            if "all" not in styles and not any(
                    relative.startswith(f"{style}/") or name.startswith(f"{style}_")
                    for style in styles):
                continue
            try:
                with open(path, "rb") as f, cli.native_stderr_dropped():
                    inputs = tflite.signature_details(f.read())["inputs"]
                shape = inputs[tflite.INPUT]["shape"]
            except (OSError, ValueError, RuntimeError, KeyError) as e:
                report(f"web: skipped {path}: not a readable stylize build ({e!s:.100})")
                continue
            if -1 in shape:
                report(f"web: skipped {path}: LiteRT.js runs fixed-shape builds only")
                continue
            if tflite.STYLE_WEIGHTS in inputs:
                report(f"web: skipped {path}: a network of several styles is served from "
                       "--saved_dir, whose metadata names its styles")
                continue
            builds["/models/" + relative] = Build(path)
    if not builds:
        of = "" if "all" in styles else f" of {','.join(styles)}"
        raise cli.CommandError(f"no fixed-shape .tflite builds{of} in {folder}/ (make some "
                               "with tools/export_tflite.py)")
    return builds


def sample_png():
    """scikit-image's astronaut as PNG bytes, or None without scikit-image."""
    from PIL import Image

    from perceptual_style.samples import sample_photos

    try:
        photo = sample_photos()[SAMPLE]
    except RuntimeError:
        return None
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG")
    return buffer.getvalue()


class Handler(http.server.SimpleHTTPRequestHandler):
    """The page's files, LiteRT.js's, the builds, `/catalog.json` (the builds with the
    styles of each, the sample, the context a staged build's tiles take and the name of the
    identity style, towards which strength moves the style weights) and the sample photo;
    nothing else (no folder listings)."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".wasm": "application/wasm",
                      ".tflite": "application/octet-stream"}

    def __init__(self, *args, builds, sample, **kwargs):
        from perceptual_style.tflite import TILE_MARGIN

        self.builds, self.sample, self.tile_margin = builds, sample, TILE_MARGIN
        super().__init__(*args, directory=WEB_DIR, **kwargs)

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/catalog.json":
            catalog = {"builds": [{"name": os.path.splitext(os.path.basename(build.file))[0],
                                   "url": urllib.parse.quote(url),
                                   "bytes": os.path.getsize(build.file),
                                   "styles": list(build.styles)}
                                  for url, build in self.builds.items()],
                       "sample": SAMPLE_URL if self.sample else None,
                       "tile_margin": self.tile_margin, "identity": saved_nets.IDENTITY}
            self.send_bytes(json.dumps(catalog).encode(), "application/json")
        elif path == SAMPLE_URL and self.sample:
            self.send_bytes(self.sample, "image/png")
        else:
            super().do_GET()

    def send_bytes(self, data, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def translate_path(self, path):
        path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        if path in self.builds:
            return self.builds[path].file
        if path == "/":
            path = "/index.html"
        if path in PAGE_FILES or path.startswith(RUNTIME):
            file = super().translate_path(path)  # drops '..' and the like
            if os.path.isfile(file):
                return file
        return ""  # no such file: 404

    def log_request(self, code="-", size="-"):
        """Only failed requests: a visit fetches a dozen files."""
        if str(code).isdigit() and int(code) >= 400:
            super().log_request(code, size)


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A browser that drops a connection (a reload mid-download) is no error of ours."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def make_server(host, port, builds, sample):
    """An HTTP server of the page (not started); OSError when it cannot listen."""
    return Server((host, port), functools.partial(Handler, builds=builds, sample=sample))


def headless_chromium(size=(1280, 900)):
    """A Selenium WebDriver of Debian's headless Chromium (packages chromium and
    chromium-driver), window `size`, for the tests and tools/benchmark_web.py."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--window-size={size[0]},{size[1]}"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def main(argv):
    try:
        from perceptual_style import tflite  # LiteRT reads the builds
    except ImportError as e:
        raise cli.CommandError(f"{e} (pip install -e '.[tflite]')") from None
    try:
        require_runtime()
        if FLAGS.tflite_dir:
            builds = find_builds(FLAGS.tflite_dir, FLAGS.styles)
        else:
            from perceptual_style.export import style_sources

            all_styles = FLAGS.styles == ["all"]
            builds = build_missing(style_sources(None if all_styles else FLAGS.styles,
                                                 all_styles,
                                                 saved_nets.find_saved_dir(FLAGS.saved_dir)),
                                   cache_dir())
        sample = sample_png()
    except (OSError, ValueError, tflite.TFLiteError) as e:  # a damaged style or build
        sys.exit(f"web: error: {e}")
    except KeyboardInterrupt:  # a build under way is not written (atomic_write)
        return 130
    try:
        server = make_server(FLAGS.host, FLAGS.port, builds, sample)
    except OSError as e:
        sys.exit(f"web: error: cannot listen on {FLAGS.host}:{FLAGS.port}: "
                 f"{e.strerror or e} (see --port, --host)")
    host, port = server.server_address[:2]
    host = "localhost" if host == "0.0.0.0" else host
    print(f"web: serving {len(builds)} build{'s' * (len(builds) > 1)} at "
          f"http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        return 130
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    cli.run(main, "web")
