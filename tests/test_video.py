"""Video: the stylize_video CLI on clips the tests make (camera pans and zooms over real
photos, a cut, a sound track), temporal consistency measured, and every bad input."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import HANG_TIMEOUT, REPO, SHARED_DATA, photo, run_cli, sigint_default
from perceptual_style import color, tiling

av = pytest.importorskip("av")
video = pytest.importorskip("perceptual_style.video")

SIZE, FRAMES, RATE = (160, 120), 24, 12
STYLE = ["--saved_dir=" + os.path.join(REPO, "savedNets"), "--style=snight_mobile"]


def photos(count=2):
    """Real photos when ../shared is there (CI), else generated ones."""
    paths = sorted(glob.glob(os.path.join(SHARED_DATA, "content", "eval", "*.jpg")))[:count]
    if len(paths) == count:
        from perceptual_style.images import load_rgb

        return [load_rgb(path) for path in paths]
    return [photo(240, 320, seed=i) for i in range(count)]


def make_clip(path, frames, rotation=0):
    with open(path, "wb") as f:
        video.write_clip(f, video.container_format(str(path)), frames, RATE, rotation=rotation)
    return path


def decoded_audio(path):
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], -1)


def stylize(*args):
    """Runs the CLI as a user would, with TensorFlow's log level unset (ours drops its
    lines then)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", "perceptual_style.stylize_video", *STYLE,
                           *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=HANG_TIMEOUT)


def one_line_error(result):
    assert result.returncode == 1, (result.stdout, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stylize_video: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="session")
def clip_frames():
    return video.camera_path(photos(), *SIZE, FRAMES)


@pytest.fixture(scope="session")
def clip(clip_frames, tmp_path_factory):
    """A 2-second 160 x 120 clip at 12 fps, shown turned 90 degrees, with AAC audio."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", clip_frames, rotation=90)


@pytest.fixture(scope="session")
def outputs(clip, tmp_path_factory):
    """The clip stylized with --temporal at its default and at 0."""
    folder = tmp_path_factory.mktemp("stylized")
    paths = {}
    for name, temporal in (("temporal", []), ("frame_by_frame", ["--temporal=0"])):
        paths[name] = folder / f"{name}.mp4"
        result = stylize(clip, f"--output={paths[name]}", *temporal)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().endswith(f"wrote {paths[name]} ({FRAMES} frames)")
        assert "fps: " in result.stdout and "frame" in result.stdout  # the progress bar
    assert sorted(os.listdir(folder)) == ["frame_by_frame.mp4", "temporal.mp4"]
    return paths


# --- the CLI -------------------------------------------------------------------------

def test_output_keeps_frames_rate_size_rotation_duration_and_audio(clip, outputs):
    with av.open(str(clip)) as source, av.open(str(outputs["temporal"])) as out:
        a, b = source.streams.video[0], out.streams.video[0]
        assert b.codec_context.name == "h264" and out.format.name.startswith("mov,mp4")
        assert (b.width, b.height) == (a.width, a.height) == SIZE
        assert b.average_rate == a.average_rate == RATE
        assert b.frames == a.frames == FRAMES
        assert abs(float(b.duration * b.time_base) - float(a.duration * a.time_base)) < 1e-6
        assert abs(out.duration - source.duration) <= 1e6 / RATE  # microseconds
        assert [f.rotation for f in out.decode(video=0)] == [90] * FRAMES
        assert len(out.streams.audio) == 1
        assert out.streams.audio[0].codec_context.name == "aac"
    assert np.array_equal(decoded_audio(clip), decoded_audio(outputs["temporal"]))


def test_temporal_blend_at_least_halves_the_warping_error(clip, outputs):
    """Lai et al.'s warping error, by a flow estimator other than the blend's, on the
    frames as encoded; the cut is left out of both."""
    errors = {}
    for name, path in outputs.items():
        errors[name], pairs = video.warping_error(video.frames(clip), video.frames(path))
        assert pairs == FRAMES - 2
    assert errors["temporal"] <= 0.5 * errors["frame_by_frame"], errors
    # Consistent, yet still the style: far from the input itself.
    styled = np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(
        video.frames(clip), video.frames(outputs["temporal"]))])
    assert styled > 20


def test_tiles_colour_controls_odd_size_other_container_and_codec(tmp_path):
    """Frames larger than a tile are tiled; --preserve_color keeps the input's chroma; an
    odd frame size (written 4:4:4, as 4:2:0 needs even sides) in Matroska with VP9."""
    source = make_clip(tmp_path / "odd.mkv", video.camera_path(photos(1), 301, 181, 4))
    out = tmp_path / "out.mkv"
    result = stylize(source, f"--output={out}", "--tile_size=64", "--statistics=scaled",
                     "--preserve_color", "--codec=libvpx-vp9", "--crf=10")
    assert result.returncode == 0, result.stderr[-3000:]
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "vp9"
        assert container.streams.video[0].format.name == "yuv444p"
    stylized, inputs = list(video.frames(out)), list(video.frames(source))
    assert len(stylized) == 4 and stylized[0].shape == (181, 301, 3)
    for a, b in zip(inputs, stylized):
        a, b = color.rgb_to_ycbcr(a), color.rgb_to_ycbcr(b)
        assert np.median(np.abs(a[..., 1:] - b[..., 1:])) < 2
        assert np.abs(a[..., 0] - b[..., 0]).mean() > 8


def test_one_style_or_a_mix_of_a_multi_style_network(tmp_path, multi_style_dir):
    """--style=NET:STYLE and --mix as stylize takes them, naming the output; NET alone, of
    several styles, is a one-line error (a video takes one)."""
    source = make_clip(tmp_path / "tiny.mp4", video.camera_path(photos(1), 64, 48, 2))
    styles = [f"--saved_dir={multi_style_dir}", "--style=trio", f"--output={tmp_path / 'out'}"]
    result = stylize(source, *styles, "--mix=a:1,b:1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.listdir(tmp_path / "out") == ["trio-a0.5+b0.5_tiny.mp4"]
    assert one_line_error(stylize(source, *styles)) == (
        "stylize_video: error: trio holds 3 styles: name one (--style=trio:STYLE) or blend "
        "them (--mix)")


def test_demo_clip(tmp_path):
    pytest.importorskip("skimage")
    result = run_cli(["perceptual_style.stylize_video",
                      f"--make_demo_clip={tmp_path / 'demo.mp4'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    with av.open(str(tmp_path / "demo.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.frames) == (640, 360, 72)
        assert len(container.streams.audio) == 1


# --- bad input -----------------------------------------------------------------------

def test_bad_inputs_are_one_line_errors_that_leave_nothing(tmp_path, clip):
    (tmp_path / "notes.mp4").write_text("not a video\n")
    with av.open(str(tmp_path / "sound.m4a"), "w") as container:
        stream = container.add_stream("aac", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    data = clip.read_bytes()
    (tmp_path / "unknown.mp4").write_bytes(data.replace(b"avc1", b"zzzz"))  # codec tag
    (tmp_path / "cut.mp4").write_bytes(data[:len(data) // 2])  # its index is at the end
    (tmp_path / "copy.mp4").write_bytes(data)
    out = tmp_path / "out"
    expected = {
        "notes.mp4": "not a video FFmpeg can read, or damaged",
        "sound.m4a": "has no video stream",
        "unknown.mp4": "unknown video codec",
        "cut.mp4": "not a video FFmpeg can read, or damaged",
        "missing.mp4": "no such file",
    }
    for name, message in expected.items():
        line = one_line_error(stylize(tmp_path / name, f"--output={out}"))
        assert line.startswith(f"stylize_video: error: {tmp_path / name}: {message}"), line
    line = one_line_error(stylize(tmp_path / "copy.mp4", f"--output={tmp_path / 'copy.mp4'}"))
    assert line.endswith("is the input; give another file")
    assert (tmp_path / "copy.mp4").read_bytes() == data
    line = one_line_error(stylize(clip, f"--output={out}", "--codec=nope"))
    assert "unknown video encoder 'nope'" in line
    line = one_line_error(stylize(clip, f"--output={out / 'x.flv'}"))
    assert "unknown video file extension" in line
    assert not out.exists()


def test_missing_extra_is_named_in_one_line(clip, tmp_path):
    code = ("import runpy, sys; sys.modules['cv2'] = None; "  # as if it were not installed
            "sys.argv = ['stylize_video', *sys.argv[1:]]; "
            "runpy.run_module('perceptual_style.stylize_video', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code, *STYLE, str(clip),
                             f"--output={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                            timeout=HANG_TIMEOUT)
    line = one_line_error(result)
    assert line.startswith("stylize_video: error: video needs PyAV and OpenCV (")
    assert line.endswith(': pip install -e ".[video]"')
    assert os.listdir(tmp_path) == []


def test_truncated_stream_is_an_error_and_leaves_nothing(tmp_path, clip_frames):
    """Matroska keeps its index at the start: cut short, FFmpeg decodes what is left
    without a word, and the missing frames are what tells."""
    data = make_clip(tmp_path / "whole.mkv", clip_frames).read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[:len(data) // 2])
    out = tmp_path / "out"
    out.mkdir()
    line = one_line_error(stylize(tmp_path / "cut.mkv", f"--output={out}"))
    assert f"{tmp_path / 'cut.mkv'}: truncated or corrupt" in line
    assert os.listdir(out) == []


def test_ctrl_c_exits_130_and_leaves_no_output(tmp_path, clip_frames):
    source = make_clip(tmp_path / "long.mp4", clip_frames * 20)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "perceptual_style.stylize_video", *STYLE,
                                str(source), f"--output={out}"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=sigint_default)
    # Its temporary file holds the first frames once it is past its header.
    while not (out.exists() and any(os.path.getsize(p) > 2000 for p in out.iterdir())):
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=HANG_TIMEOUT)
    assert process.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "stylize_video: interrupted (no output written)"
    assert "Traceback" not in stderr
    assert os.listdir(out) == []


# --- the parts -----------------------------------------------------------------------

def test_batches_equal_single_frames(net):
    """One pass over a batch, or each frame tiled as stylize_image tiles it."""
    frames = np.stack([photo(48, 260, seed=i) for i in range(2)])
    batched = tiling.stylize_batch(net, frames)
    tiled = tiling.stylize_batch(net, frames, tile_size=64, statistics="scaled")
    for frame, one, in_tiles in zip(frames, batched, tiled):
        np.testing.assert_allclose(one, tiling.stylize_image(net, frame), atol=0.05)
        np.testing.assert_array_equal(in_tiles, tiling.stylize_image(
            net, frame, tile_size=64, statistics="scaled"))
    assert np.abs(tiled - batched).mean() > 0.1  # scaled statistics: not quite one pass


def test_blend_follows_motion_and_skips_cuts():
    """A pan: the previous output, carried along the motion, matches the current frame's
    content; a cut: nothing is carried over."""
    scene = photo(120, 220, seed=3)
    first, second = scene[:, 40:200], scene[:, 44:204]  # the camera moves 4 pixels right
    blend = video.TemporalBlend(0.5)
    previous = np.zeros(first.shape, np.float32)
    blend(first, previous)
    current = np.full(second.shape, 200, np.float32)
    blended = blend(second, current)
    inner = blended[8:-8, 8:-12]  # away from the edge the pan uncovers
    assert np.median(inner) == pytest.approx(100, abs=1)  # half of the warped zeros
    cut = photo(120, 160, seed=9) // 4  # another, darker scene
    assert np.array_equal(blend(cut, current), current)


def test_warping_error_measures_flicker_not_motion():
    scene = photo(120, 240, seed=4)
    frames = [scene[:, 8 * i:8 * i + 160] for i in range(6)]
    steady, pairs = video.warping_error(frames, frames)
    assert pairs == 5 and steady < 0.002  # what is left: the flow's sub-pixel error
    rng = np.random.default_rng(0)
    flicker = [np.clip(f + rng.normal(0, 20, f.shape), 0, 255) for f in frames]
    error = video.warping_error(frames, flicker)[0]
    assert error > 5 * steady and error > (20 / 255) ** 2
