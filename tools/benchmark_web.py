"""The web page's speed against LiteRT in Python on the same builds; docs/mobile.md's
browser numbers come from here.

    python tools/benchmark_web.py [--style=snight] [--quantizations=float16,dynamic_int8]
        [--runs=5] [--screenshot=docs/web.png] [--large_height=1536 --large_width=2048]

Makes the style's 512x512 builds (perceptual_style.web's builder), serves them as
`python -m perceptual_style.web` does, and for each build, in turn:
- Python: LiteRT (XNNPACK, 2 threads) on scikit-image's astronaut (512x512): the
  interpreter's creation plus its first run, then the median of --runs runs.
- The page in a fresh headless Chromium (Debian's; WebAssembly, threads as the page picks):
  the sample photo chosen as soon as the page has loaded; the time from navigation to the
  first stylized image drawn, the runtime's and the build's loading, then the median of
  --runs more stylizations (photo pixels in, canvas drawn), and the PSNR of the page's
  output against Python's.
Then a photo larger than the builds, scikit-image's coffee cover-cropped to --large_height x
--large_width, and a small one, chelsea (451x300): each stylized in the page with the first
build (staged: whole-photo statistics) and with a plain build of the same style and
quantization (one `stylize` signature, as tools/export_tflite.py makes, whose tiles the page
normalizes one by one): the page's time, and PSNR against an untiled Keras float32 pass and
against perceptual_style.tflite.StagedRunner in Python.
Prints markdown tables and writes `<output_dir>/web.json`. --screenshot saves the page
after the first build's runs (PNG, reduced to a palette). Timings are only meaningful on an
otherwise idle machine.
"""

import base64
import importlib.metadata
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time

import numpy as np
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script from anywhere

from perceptual_style import cli, precision, saved_nets, tflite, web  # noqa: E402

flags.DEFINE_string("style", "snight", "Trained style to measure.")
cli.define_saved_dir(__name__)
flags.DEFINE_list("quantizations", ["float16", "dynamic_int8"], "Builds to measure, among "
                  f"{', '.join(tflite.QUANTIZATIONS)}.")
flags.DEFINE_integer("runs", 5, "Timed runs after the first (the median is reported).",
                     lower_bound=1)
flags.DEFINE_string("output_dir", "benchmarks", "Where web.json goes.")
flags.DEFINE_string("screenshot", None, "Also save the page after the first build's runs "
                    "here (PNG).")
flags.DEFINE_integer("large_height", 1536, "Height of the large photo stylized with the staged "
                     "and the plain build (0: no large and small photos).", lower_bound=0)
flags.DEFINE_integer("large_width", 2048, "Its width.", lower_bound=1)
FLAGS = flags.FLAGS
TIMEOUT = 1200  # seconds the page may take for one step on a loaded machine


def python_litert(model, photo):
    started = time.perf_counter()
    runner = tflite.Runner(model)
    output = runner(photo)
    first = time.perf_counter() - started
    return output, {"first_s": first, "latency_s": runner.latency(photo, FLAGS.runs)}


def page_status(driver):
    return driver.execute_script(
        "const s = document.getElementById('status'); return [s.dataset.kind, s.textContent]")


def stylize_sample(driver, count):
    """Clicks the sample button and waits for the page's `count`-th stylization."""
    driver.find_element("id", "sample").click()
    deadline = time.monotonic() + TIMEOUT
    while len(measures(driver, "stylize")) < count:
        kind, text = page_status(driver)
        if kind == "error" or time.monotonic() > deadline:
            raise cli.CommandError(f"the page says: {text}")
        time.sleep(0.05)


def measures(driver, name):
    """Durations (s) of the page's performance measures called `name`."""
    return [ms / 1000 for ms in driver.execute_script(
        "return performance.getEntriesByName(arguments[0]).map((e) => e.duration)", name)]


def result_pixels(driver):
    from PIL import Image

    data = driver.execute_script("return document.getElementById('result').toDataURL('image/png')")
    png = base64.b64decode(data.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def stylize_file(driver, path):
    """Chooses the photo at `path` in the page; (its stylized pixels, the seconds taken, the
    page's status line)."""
    count = len(measures(driver, "stylize"))
    driver.find_element("id", "file").send_keys(path)
    deadline = time.monotonic() + TIMEOUT
    while len(measures(driver, "stylize")) == count:
        kind, text = page_status(driver)
        if kind == "error" or time.monotonic() > deadline:
            raise cli.CommandError(f"the page says: {text}")
        time.sleep(0.2)
    return result_pixels(driver), measures(driver, "stylize")[-1], page_status(driver)[1]


def photo_runs(url, names, photos, model):
    """Each of `photos` ({name: uint8 array}) stylized in the page with each build of
    `names` ([staged, plain]): rows of time and PSNR against an untiled Keras pass and
    against StagedRunner (the staged build `model` in Python)."""
    from PIL import Image

    from perceptual_style.tiling import _run

    net = saved_nets.load_transformer(FLAGS.style, saved_nets.find_saved_dir(FLAGS.saved_dir))
    runner = tflite.StagedRunner(model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for photo_name, photo in photos.items():
            path = os.path.join(tmp, f"{photo_name}.png")
            Image.fromarray(photo).save(path)
            untiled = np.clip(np.rint(_run(net, photo)), 0, 255)  # as the page rounds
            python = np.clip(np.rint(runner(photo)), 0, 255)
            for name in names:
                driver = web.headless_chromium()
                try:
                    driver.get(f"{url}?style={name}")
                    output, seconds, text = stylize_file(driver, path)
                finally:
                    driver.quit()
                rows.append({"photo": f"{photo_name} {photo.shape[1]}x{photo.shape[0]}",
                             "build": name, "page_s": seconds, "status": text,
                             "psnr_vs_untiled": tflite.psnr(output, untiled),
                             "psnr_vs_staged_runner": tflite.psnr(output, python)})
                print(f"{photo_name} {name}: done", file=sys.stderr, flush=True)
    return rows


def page_run(url, name, python_output, screenshot):
    from PIL import Image

    driver = web.headless_chromium((1200, 1000))  # the page and both images
    try:
        driver.get(f"{url}?style={name}")
        stylize_sample(driver, 1)
        first = driver.execute_script(
            "return performance.getEntriesByName('first-image')[0].startTime") / 1000
        for run in range(FLAGS.runs):
            stylize_sample(driver, run + 2)
        output = result_pixels(driver)
        threads = driver.execute_script("return self.crossOriginIsolated ? "
                                        "navigator.hardwareConcurrency : 1")
        if screenshot:  # at 80%, 256 colours: about 250 KB
            driver.save_screenshot(screenshot)
            shot = Image.open(screenshot).convert("RGB")
            shot = shot.resize((shot.width * 4 // 5, shot.height * 4 // 5), Image.LANCZOS)
            shot.quantize(256).save(screenshot, optimize=True)
        return {"first_image_s": first, "runtime_s": measures(driver, "runtime")[0],
                "model_s": measures(driver, "model")[0],
                "first_stylize_s": measures(driver, "stylize")[0],
                "latency_s": statistics.median(measures(driver, "stylize")[1:]),
                "threads": threads, "browser": driver.capabilities.get("browserVersion"),
                "psnr_vs_python": tflite.psnr(output, np.clip(np.rint(python_output), 0, 255))}
    finally:
        driver.quit()


def plain_build(folder):
    """A build of the style with the `stylize` signature only, of the staged builds' size
    and the first quantization, in `folder`: (its URL, its file)."""
    quantization = FLAGS.quantizations[0]
    name = tflite.build_name(f"{FLAGS.style}-plain", web.SIZE, quantization)
    with tempfile.TemporaryDirectory() as tmp, cli.native_stderr_dropped():
        tflite.write_saved_model(saved_nets.load_transformer(
            FLAGS.style, saved_nets.find_saved_dir(FLAGS.saved_dir)), tmp, web.SIZE)
        model = tflite.convert(tmp, quantization)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(model)
    return f"/models/{FLAGS.style}/{name}", os.path.join(folder, name)


def main(argv):
    from perceptual_style.images import cover
    from perceptual_style.samples import sample_photos

    web.require_runtime()
    try:
        folder = saved_nets.resolve(FLAGS.style, saved_nets.find_saved_dir(FLAGS.saved_dir))
    except FileNotFoundError as e:
        raise cli.CommandError(str(e)) from None
    samples = sample_photos()
    photo = samples[web.SAMPLE]
    load_before = os.getloadavg()[0]
    rows, photo_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        builds = web.build_missing([(FLAGS.style, folder)], tmp,
                                   quantizations=FLAGS.quantizations)
        staged_path = next(iter(builds.values())).file
        if FLAGS.large_height:
            url_path, plain_path = plain_build(tmp)
            builds[url_path] = web.Build(plain_path)
        server = web.make_server("127.0.0.1", 0, builds, web.sample_png())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        # builds: {URL: Build}, in the order of FLAGS.quantizations (then the plain build).
        for i, (quantization, (path, _)) in enumerate(zip(FLAGS.quantizations,
                                                           builds.values())):
            with open(path, "rb") as f:
                model = f.read()
            with cli.native_stderr_dropped():
                output, python = python_litert(model, photo)
            name = os.path.splitext(os.path.basename(path))[0]
            page = page_run(url, name, output, FLAGS.screenshot if i == 0 else None)
            rows.append({"build": name, "quantization": quantization, "bytes": len(model),
                         "python": python, "page": page})
            print(f"{name}: done", file=sys.stderr, flush=True)
        if FLAGS.large_height:
            with open(staged_path, "rb") as f:
                staged = f.read()
            photos = {"coffee": cover(samples["coffee"], FLAGS.large_width, FLAGS.large_height),
                      "chelsea": samples["chelsea"]}
            names = [os.path.splitext(os.path.basename(p))[0] for p in (staged_path, plain_path)]
            photo_rows = photo_runs(url, names, photos, staged)
        server.shutdown()
    print("\n| build | MB | page: first image s (runtime, build, first run) | page: per image "
          "ms | Python LiteRT: load + first run s | Python LiteRT: per image ms | PSNR page "
          "vs Python dB |\n|---|---|---|---|---|---|---|")
    for r in rows:
        p, q = r["page"], r["python"]
        print(f"| {r['build']} | {r['bytes'] / 1e6:.2f} | {p['first_image_s']:.2f} "
              f"({p['runtime_s']:.2f}, {p['model_s']:.2f}, {p['first_stylize_s']:.2f}) | "
              f"{1000 * p['latency_s']:.0f} | {q['first_s']:.2f} | {1000 * q['latency_s']:.0f} "
              f"| {p['psnr_vs_python']:.1f} |")
    if photo_rows:
        print("\n| photo | build | page s | PSNR vs untiled Keras dB | PSNR vs StagedRunner dB |"
              "\n|---|---|---|---|---|")
        for r in photo_rows:
            print(f"| {r['photo']} | {r['build']} | {r['page_s']:.1f} | "
                  f"{r['psnr_vs_untiled']:.1f} | {r['psnr_vs_staged_runner']:.1f} |")
    with open(os.path.join(web.WEB_DIR, "node_modules", "@litertjs", "core", "package.json")) as f:
        litert_js = json.load(f)["version"]
    saved_nets.write_json(os.path.join(FLAGS.output_dir, "web.json"), {
        "style": FLAGS.style, "photo": f"{web.SAMPLE} 512x512", "runs": FLAGS.runs,
        "machine": precision.machine_description(), "date": saved_nets.now(),
        # Other jobs' share of the cores shows in the 1-minute load average.
        "load_average": [load_before, os.getloadavg()[0]],
        "versions": {"litert_js": litert_js,
                     "ai_edge_litert": importlib.metadata.version("ai-edge-litert")},
        "rows": rows, "photos": photo_rows})
    return 0


if __name__ == "__main__":
    cli.run(main, "benchmark_web", imports=["tensorflow", "keras"])
