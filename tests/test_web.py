"""The web page in a real browser: `python -m perceptual_style.web` serves a seeded
network's 64x64 builds, headless Chromium runs them with LiteRT.js, and the page's pixels
match LiteRT's in Python. A staged build (the command's own kind): a small photo in one
pass and a larger one stage by stage in tiles, both as one untiled pass. A plain build (one
`stylize` signature, as tools/export_tflite.py makes): one tile, a reflection-padded small
photo, cross-faded tiles normalized one by one. Also the strength blend, a scaled-down long
photo, a dropped photo, a damaged file; the command's builds and its one-line errors. A
network of several styles: one staged build for all of them, each style and a mix of them
as Python's stylize makes them, strength towards an identity style, an all-zero mix."""

import base64
import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from conftest import (HANG_TIMEOUT, REPO, decode, encode, multi_style_net, photo, run_cli,
                      tensorflow_only)

pytestmark = tensorflow_only
tf = pytest.importorskip("tensorflow")
from perceptual_style import cli, color, tflite, tiling, web  # noqa: E402  (needs LiteRT)

SIZE = (64, 64)
PSNR_FLOOR = 40.0
RUNTIME_INSTALLED = os.path.isdir(os.path.join(web.WEB_DIR, "node_modules", "@litertjs"))


def browser_missing():
    """Why the page cannot be driven here, or None."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test]')"
    for path, package in ((web.CHROMIUM, "chromium"), (web.CHROMEDRIVER, "chromium-driver")):
        if not os.path.exists(path):
            return f"no {path} (apt-get install {package})"
    if not RUNTIME_INSTALLED:
        return "LiteRT.js is not installed (npm ci in web/)"
    return None


needs_browser = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))


@pytest.fixture(scope="module")
def build(net, tmp_path_factory):
    """The seeded network's 64x64 float16 build, laid out as tools/export_tflite.py does:
    (the folder to serve, the flatbuffer)."""
    folder = tmp_path_factory.mktemp("web")
    tflite.write_saved_model(net, str(folder / "saved_model"), SIZE)
    model = tflite.convert(str(folder / "saved_model"), "float16")
    (folder / "builds" / "seeded").mkdir(parents=True)
    (folder / "builds" / "seeded" / tflite.build_name("seeded", SIZE, "float16")).write_bytes(model)
    return folder / "builds", model


@pytest.fixture(scope="module")
def staged_build(net, tmp_path_factory):
    """The seeded network's 64x64 float16 staged build, as the command makes them: (the
    folder to serve, the flatbuffer)."""
    folder = tmp_path_factory.mktemp("staged")
    signatures = tflite.write_saved_model(net, str(folder / "saved_model"), SIZE, staged=True)
    model = tflite.convert(str(folder / "saved_model"), "float16", signatures=signatures)
    (folder / "builds" / "staged").mkdir(parents=True)
    (folder / "builds" / "staged" / tflite.build_name("staged", SIZE, "float16")).write_bytes(model)
    return folder / "builds", model


@contextlib.contextmanager
def serving(args, env=None):
    """`python -m perceptual_style.web ARGS --port=0` running: yields its URL and the count
    its one line on stdout gives."""
    server = subprocess.Popen([sys.executable, "-m", "perceptual_style.web", *args, "--port=0"],
                              cwd=REPO, env={**os.environ, **(env or {})}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = server.stdout.readline()
        match = re.fullmatch(r"web: serving (\d+) builds? at (http://\S+) \(Ctrl-C stops\)\n", line)
        assert match, line + server.stderr.read()
        yield match[2], int(match[1])
    finally:
        server.terminate()
        server.communicate(timeout=HANG_TIMEOUT)


@contextlib.contextmanager
def browsing(folder):
    """Headless Chromium on the page serving the one build in `folder`, once it is ready."""
    with serving([f"--tflite_dir={folder}"]) as (url, count):
        assert count == 1
        driver = web.headless_chromium()
        try:
            driver.get(url)
            wait_for(driver, "done", "ready")
            yield driver
        finally:
            driver.quit()


@pytest.fixture(scope="module")
def page(build):
    """The page with the plain build."""
    with browsing(build[0]) as driver:
        yield driver


@pytest.fixture(scope="module")
def staged_page(staged_build):
    """The page with the staged build."""
    with browsing(staged_build[0]) as driver:
        yield driver


def wait_for(driver, kind, text=""):
    """The page's status line once it is of `kind` and holds `text`."""
    deadline = time.monotonic() + 120
    while True:
        now_kind, now_text = driver.execute_script(
            "const s = document.getElementById('status'); return [s.dataset.kind, s.textContent]")
        if now_kind == kind and text in now_text:
            return now_text
        assert now_kind != "error", now_text
        assert time.monotonic() < deadline, f"waited for {kind} {text!r}; page: {now_text!r}"
        time.sleep(0.05)


def result_pixels(driver):
    url = driver.execute_script("return document.getElementById('result').toDataURL('image/png')")
    return decode(base64.b64decode(url.split(",", 1)[1]))


def stylize_in_page(driver, folder, image, name):
    """Chooses `image` (saved as PNG `name`) in the page; its stylized pixels, uint8."""
    Image.fromarray(image).save(folder / name)
    driver.find_element("id", "file").send_keys(str(folder / name))
    wait_for(driver, "done", f"Stylized {name}")
    return result_pixels(driver)


def litert(model, image):
    """LiteRT's output in Python, rounded to bytes as the page rounds it."""
    return np.clip(np.rint(tflite.Runner(model)(image)), 0, 255)


@needs_browser
def test_staged_page_runs_a_larger_photo_as_one_untiled_pass(staged_page, staged_build, page, net,
                                                             tmp_path):
    """100x140 with the staged 64x64 build: 20 tiles (cores of 32, 16 pixels of context), 7
    stages with whole-photo statistics. The page's pixels are StagedRunner's in Python
    (measured 84 dB), and an untiled Keras pass's to float16 rounding (57 dB); the plain
    build's tiles, each normalized alone, are far from it (8 dB)."""
    image = photo(100, 140, seed=35)
    output = stylize_in_page(staged_page, tmp_path, image, "large.png")
    assert "(20 tiles of 64x64 in 7 stages, " in wait_for(staged_page, "done")
    assert output.shape == (100, 140, 3)
    python = np.clip(np.rint(tflite.StagedRunner(staged_build[1])(image)), 0, 255)
    assert tflite.psnr(output, python) >= PSNR_FLOOR
    untiled = tiling._run(net, image)
    staged = tflite.psnr(output, untiled)
    per_tile = tflite.psnr(stylize_in_page(page, tmp_path, image, "large_plain.png"), untiled)
    assert staged >= PSNR_FLOOR and staged >= per_tile + 20, (staged, per_tile)


@needs_browser
def test_staged_page_runs_a_small_photo_in_one_pass_as_alone(staged_page, net, tmp_path):
    """48x40 in the 64x64 build: normalized over the photo only, and what lies beyond it
    filled before each convolution as the network pads: an untiled pass (measured 56 dB)."""
    image = photo(48, 40, seed=36)
    output = stylize_in_page(staged_page, tmp_path, image, "small_staged.png")
    assert "(one pass at 64x64, " in wait_for(staged_page, "done")
    assert tflite.psnr(output, np.clip(np.rint(tiling._run(net, image)), 0, 255)) >= PSNR_FLOOR


@needs_browser
def test_page_matches_litert_and_blends_by_strength(page, build, tmp_path):
    image = photo(*SIZE, seed=30)
    output = stylize_in_page(page, tmp_path, image, "one_tile.png")
    stylized = tflite.Runner(build[1])(image)
    assert output.shape == (*SIZE, 3)
    assert tflite.psnr(output, litert(build[1], image)) >= PSNR_FLOOR
    page.execute_script("const s = document.getElementById('strength'); s.value = 25; "
                        "s.dispatchEvent(new Event('input'))")
    try:
        half = np.clip(np.rint(0.25 * stylized + 0.75 * image), 0, 255)
        assert tflite.psnr(result_pixels(page), half) >= PSNR_FLOOR
    finally:
        page.execute_script("const s = document.getElementById('strength'); s.value = 100; "
                            "s.dispatchEvent(new Event('input'))")


@needs_browser
def test_smaller_photo_is_reflection_padded_to_the_build(page, build, tmp_path):
    image = photo(48, 40, seed=31)
    output = stylize_in_page(page, tmp_path, image, "small.png")
    assert output.shape == (48, 40, 3)
    padded = np.pad(image, ((0, 16), (0, 24), (0, 0)), mode="reflect")
    assert tflite.psnr(output, litert(build[1], padded)[:48, :40]) >= PSNR_FLOOR


@needs_browser
def test_larger_photo_runs_in_cross_faded_tiles(page, build, tmp_path):
    """64x100 runs as tiles at x = 0 and 36, each fading over the 8 pixels of its edge that
    meets the other, weighted and normalized."""
    image = photo(64, 100, seed=32)
    output = stylize_in_page(page, tmp_path, image, "wide.png")
    assert "2 tiles of 64x64" in wait_for(page, "done")
    runner = tflite.Runner(build[1])
    tiles = np.zeros((2, 64, 100, 3), np.float32)
    tiles[0, :, :64], tiles[1, :, 36:] = runner(image[:, :64]), runner(image[:, 36:])
    x = np.arange(100) + 0.5  # pixel centres
    weights = np.stack([np.where(x < 64, np.clip((64 - x) / 8, 0, 1), 0),
                        np.where(x > 36, np.clip((x - 36) / 8, 0, 1), 0)])[:, None, :, None]
    expected = (weights * tiles).sum(0) / weights.sum(0)
    assert tflite.psnr(output, np.clip(np.rint(expected), 0, 255)) >= PSNR_FLOOR


@needs_browser
def test_long_photo_is_scaled_down_and_said_so(page, tmp_path):
    output = stylize_in_page(page, tmp_path, photo(30, 2100, seed=33), "long.png")
    assert output.shape == (29, 2048, 3)
    note = page.find_element("id", "note").text
    assert "scaled down to 2048x29" in note and "2048 pixels" in note


@needs_browser
def test_dropped_photo_is_stylized(page, build):
    image = photo(*SIZE, seed=34)
    page.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
        document.body.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
        """, base64.b64encode(encode(image)).decode())
    wait_for(page, "done", "Stylized dropped.png")
    assert tflite.psnr(result_pixels(page), litert(build[1], image)) >= PSNR_FLOOR


@needs_browser
def test_damaged_file_is_reported_in_the_page(page, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    page.find_element("id", "file").send_keys(str(tmp_path / "broken.jpg"))
    message = wait_for(page, "error")
    assert message == ("Could not read broken.jpg: the file is damaged or not an image this "
                       "browser can open.")


@needs_browser
def test_browser_without_webassembly_simd_is_told(build):
    """Chromium has SIMD: a browser without it is played by a WebAssembly.validate that
    refuses every module, set before the page's scripts run."""
    with serving([f"--tflite_dir={build[0]}"]) as (url, _):
        driver = web.headless_chromium()
        try:
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                   {"source": "WebAssembly.validate = () => false;"})
            driver.get(url)
            assert wait_for(driver, "error").startswith(
                "This browser cannot run the styles: they need WebAssembly with SIMD")
        finally:
            driver.quit()


# Networks of several styles ---------------------------------------------------------------

@pytest.fixture(scope="module")
def several_styles(multi_style_dir, tmp_path_factory):
    """The command's 64x64 staged builds of multi_style_dir's `trio` (styles a, b, c) and
    of `duo` (a and the identity style), served in this process: (the catalog, the
    builds, the savedNets folder, the server's URL)."""
    from perceptual_style.saved_nets import save_transformer

    folder = tmp_path_factory.mktemp("several")
    save_transformer(multi_style_net(2, seed=5, arch="mobile", width_multiplier=0.25,
                                     num_residual_blocks=1), str(folder / "nets" / "duo"),
                     {"styles": [{"name": "a"}, {"name": "identity"}]})
    builds = web.build_missing([("trio", str(multi_style_dir / "trio")),
                                ("duo", str(folder / "nets" / "duo"))],
                               str(folder / "builds"), SIZE, report=lambda _: None)
    server = web.make_server("127.0.0.1", 0, builds, None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with urllib.request.urlopen(url + "catalog.json") as response:
            catalog = json.load(response)
        yield catalog, builds, folder / "nets", url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def multi_page(several_styles):
    """The page with trio's build chosen."""
    driver = web.headless_chromium()
    try:
        driver.get(several_styles[3] + "?style=trio")
        wait_for(driver, "done", "trio_64x64_float16 is ready")
        yield driver
    finally:
        driver.quit()


def act(driver, script, *args):
    """Runs `script` in the page with its status line's kind cleared first, so that
    wait_for sees only what the page says after it."""
    driver.execute_script("document.getElementById('status').dataset.kind = '';" + script, *args)


def choose(driver, text):
    """Chooses option `text` of the chosen network in the style menu, as a person would."""
    act(driver, """
        const select = document.getElementById('style');
        const group = select.selectedOptions[0].parentElement;
        [...group.children].find((o) => o.textContent === arguments[0]).selected = true;
        select.dispatchEvent(new Event('change'));""", text)


def set_mix(driver, weights):
    """Sets the mix sliders to {style: 0-100}, then moves the last one."""
    act(driver, """
        let input;
        for (const [style, value] of Object.entries(arguments[0])) {
          input = document.querySelector(`#mix input[data-style="${style}"]`);
          input.value = value;
        }
        input.dispatchEvent(new Event('input'));""", weights)


def python_stylized(entry, saved_dir, image, mix=None, strength=1.0):
    """What `python -m perceptual_style.stylize --style=ENTRY [--mix] [--strength]` writes
    (before JPEG or PNG encoding): its choice of styles, an untiled pass, the strength."""
    [(net, pixel_strength)] = cli.load_styles([entry], str(saved_dir), mix=mix,
                                              strength=strength).values()
    return color.finish(tiling.stylize_image(net, image), image, pixel_strength)


def test_catalog_lists_a_network_s_styles(several_styles):
    catalog, builds, _, _ = several_styles
    assert [(b["name"], b["styles"]) for b in catalog["builds"]] == [
        ("trio_64x64_float16", ["a", "b", "c"]), ("duo_64x64_float16", ["a", "identity"])]
    assert catalog["identity"] == "identity"
    signatures = tflite.interpreter(open(builds["/models/trio/trio_64x64_float16.tflite"].file,
                                         "rb").read()).get_signature_list()
    assert all(tflite.STYLE_WEIGHTS in s["inputs"] for s in signatures.values())


@needs_browser
def test_page_applies_each_style_of_a_network_as_python_does(multi_page, multi_style_dir,
                                                             tmp_path):
    """The menu holds each style and their mix under the network; a style chosen in it
    (one-hot weights) is `stylize --style=trio:STYLE`, which another style is far from."""
    groups = multi_page.execute_script(
        "return [...document.querySelectorAll('#style optgroup')].map("
        "(g) => [g.label, [...g.children].map((o) => o.textContent)])")
    assert [(label.split(" (")[0], options) for label, options in groups] == [
        ("trio_64x64_float16", ["a", "b", "c", "mix of these styles…"]),
        ("duo_64x64_float16", ["a", "identity", "mix of these styles…"])]
    image = photo(48, 40, seed=38)
    for style in ("a", "c"):
        choose(multi_page, style)
        output = stylize_in_page(multi_page, tmp_path, image, f"{style}.png")
        assert f"with trio_64x64_float16:{style} in" in wait_for(multi_page, "done")
        expected = python_stylized(f"trio:{style}", multi_style_dir, image)
        assert tflite.psnr(output, expected) >= PSNR_FLOOR
        other = python_stylized(f"trio:{'c' if style == 'a' else 'a'}", multi_style_dir, image)
        assert tflite.psnr(output, other) < PSNR_FLOOR - 20
    assert multi_page.find_element("id", "mix").get_attribute("hidden")


@needs_browser
def test_page_mixes_styles_as_stylize_mix(multi_page, multi_style_dir, tmp_path):
    """Sliders at 30 and 30 (and 0) are `--mix=a:0.5,b:0.5`, on a photo the staged build
    runs in 20 tiles; an all-zero mix is a message and no picture."""
    choose(multi_page, "mix of these styles…")
    set_mix(multi_page, {"a": 30, "b": 30, "c": 0})
    image = photo(100, 140, seed=39)
    output = stylize_in_page(multi_page, tmp_path, image, "mix.png")
    assert ("with trio_64x64_float16: a 50% + b 50% in" in wait_for(multi_page, "done")
            and "(20 tiles of 64x64 in 3 stages, " in wait_for(multi_page, "done"))
    assert [e.text for e in multi_page.find_elements("css selector", "#mix output")] == [
        "50%", "50%", "0%"]
    expected = python_stylized("trio", multi_style_dir, image, mix=["a:0.5", "b:0.5"])
    assert tflite.psnr(output, expected) >= PSNR_FLOOR
    set_mix(multi_page, {"a": 0, "b": 0})
    assert wait_for(multi_page, "error") == ("The mix's weights are all zero: give at least "
                                             "one style of trio_64x64_float16 a weight above 0.")
    assert multi_page.execute_script("return document.getElementById('result').width") == 0
    assert multi_page.find_element("id", "download").get_attribute("disabled")
    set_mix(multi_page, {"c": 10})
    wait_for(multi_page, "done", "with trio_64x64_float16: c 100% in")


@needs_browser
def test_strength_moves_towards_the_identity_style_as_python_does(several_styles, tmp_path):
    """duo:a at 30%: the style weights 0.3 a + 0.7 identity, as `stylize --strength=0.3`
    (no pixel blend)."""
    _, _, nets, url = several_styles
    driver = web.headless_chromium()
    try:
        driver.get(url + "?style=duo:a")
        wait_for(driver, "done", "duo_64x64_float16 is ready")
        image = photo(48, 40, seed=40)
        stylize_in_page(driver, tmp_path, image, "duo.png")
        act(driver, "const s = document.getElementById('strength'); s.value = 30; "
                    "s.dispatchEvent(new Event('input'))")
        wait_for(driver, "done", "Stylized duo.png with duo_64x64_float16:a")
        expected = python_stylized("duo:a", nets, image, strength=0.3)
        assert tflite.psnr(result_pixels(driver), expected) >= PSNR_FLOOR
        full = python_stylized("duo:a", nets, image)
        pixel_blend = np.clip(np.rint(0.3 * full + 0.7 * image), 0, 255)
        assert tflite.psnr(result_pixels(driver), pixel_blend) < PSNR_FLOOR - 10
    finally:
        driver.quit()


def test_builds_of_several_styles_are_served_from_saved_nets_only(multi_style_dir, tmp_path):
    """A build of tools/export_tflite.py holds no style names: --tflite_dir leaves it out,
    saying why."""
    from perceptual_style.saved_nets import load_transformer

    tflite.write_saved_model(load_transformer(str(multi_style_dir / "trio")),
                             str(tmp_path / "saved_model"), SIZE)
    (tmp_path / "builds" / "trio").mkdir(parents=True)
    (tmp_path / "builds" / "trio" / "trio_64x64_float32.tflite").write_bytes(
        tflite.convert(str(tmp_path / "saved_model"), "float32"))
    messages = []
    with pytest.raises(cli.CommandError, match="no fixed-shape .tflite builds"):
        web.find_builds(str(tmp_path / "builds"), report=messages.append)
    assert messages == [f"web: skipped {tmp_path / 'builds' / 'trio' / 'trio_64x64_float32.tflite'}"
                        ": a network of several styles is served from --saved_dir, whose "
                        "metadata names its styles"]


@pytest.fixture
def mini_style(tmp_path, monkeypatch):
    """A small seeded mobile network saved as style `mini` in tmp_path/styles, with the
    cache folder in tmp_path/xdg: (its folder, the network)."""
    import keras

    from perceptual_style.saved_nets import save_transformer
    from perceptual_style.transformer_net import TransformerNet

    keras.utils.set_random_seed(4)
    net = TransformerNet(arch="mobile", width_multiplier=0.25, num_residual_blocks=1)
    net.build((None, None, None, 3))
    save_transformer(net, str(tmp_path / "styles" / "mini"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return str(tmp_path / "styles" / "mini"), net


def test_builds_are_made_once_per_weights(mini_style):
    """In the cache folder, under the weights' digest."""
    from perceptual_style.saved_nets import save_transformer

    style, net = mini_style
    messages = []
    builds = web.build_missing([("mini", style)], web.cache_dir(), SIZE, report=messages.append)
    [(url, (path, styles))] = builds.items()
    assert url == "/models/mini/mini_64x64_float16.tflite" and styles == ()
    assert re.fullmatch(r".*/xdg/perceptual_style/tflite/mini-[0-9a-f]{16}/"
                        r"mini_64x64_float16\.tflite", path)
    details = tflite.signature_details(open(path, "rb").read())
    assert details["inputs"][tflite.INPUT]["shape"] == [1, 64, 64, 3]
    signatures = tflite.interpreter(open(path, "rb").read()).get_signature_list()
    assert {"whole", "stage0", "stage2"} <= set(signatures) and "stage3" not in signatures
    assert len(messages) == 2 and "making 1 .tflite build" in messages[0]
    messages.clear()
    assert web.build_missing([("mini", style)], web.cache_dir(), SIZE,
                             report=messages.append) == builds
    assert messages == []
    net.set_weights([w + 0.01 for w in net.get_weights()])  # retrained
    save_transformer(net, style)
    retrained = web.build_missing([("mini", style)], web.cache_dir(), SIZE,
                                  report=messages.append)
    assert len(messages) == 2 and os.path.isfile(retrained[url].file)
    assert retrained[url].file != path


def test_missing_runtime_is_one_line(tmp_path):
    with pytest.raises(cli.CommandError, match=r"run `npm ci` in .* once"):
        web.require_runtime(str(tmp_path))


@pytest.mark.skipif(not RUNTIME_INSTALLED, reason="LiteRT.js is not installed (npm ci in web/)")
def test_command_builds_into_the_cache_and_serves(mini_style, tmp_path):
    with serving([f"--saved_dir={tmp_path / 'styles'}", "--styles=mini"]) as (_, count):
        assert count == 1
    [build] = (tmp_path / "xdg" / "perceptual_style" / "tflite").glob("mini-*/*.tflite")
    assert build.name == "mini_512x512_float16.tflite"


@pytest.mark.skipif(not RUNTIME_INSTALLED, reason="LiteRT.js is not installed (npm ci in web/)")
def test_command_errors_are_one_line(tmp_path, multi_style_dir):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "resizable.tflite").write_bytes(b"not a flatbuffer")
    (tmp_path / "nameless").mkdir()  # a network of several styles without its metadata
    shutil.copy(multi_style_dir / "trio" / "weights.npz", tmp_path / "nameless")
    for args, message in [
            ([f"--tflite_dir={tmp_path / 'empty'}"], "web: error: no fixed-shape .tflite builds"),
            ([f"--tflite_dir={tmp_path / 'none'}"], "web: error: --tflite_dir: no folder"),
            ([f"--saved_dir={tmp_path}", "--styles=nosuch"],
             "web: error: no trained style 'nosuch'"),
            ([f"--saved_dir={tmp_path}", "--styles=nameless"],
             f"web: error: {tmp_path / 'nameless' / 'metadata.json'}: No such file or directory"),
            (["--port=70000"], "web: error: flag --port=70000")]:
        result = run_cli(["perceptual_style.web", *args])
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
        assert "Traceback" not in result.stderr
