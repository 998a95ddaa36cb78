"""Video for style transfer, TensorFlow-free: decoding and encoding with PyAV (FFmpeg),
motion with OpenCV.

Reading: any container and codec FFmpeg reads; frames come as RGB uint8 in their stored
orientation, and the display rotation is written back to the output, so the output turns
the way the input does. Writing: one video stream with the input's timestamps (so the same
frame rate, variable rates included, and duration) and size, and every audio stream's
packets copied unchanged. Only the frame in hand and a batch are in memory, whatever the
clip's length.

Temporal consistency (`TemporalBlend`) follows Ruder, Dosovitskiy and Brox, "Artistic
style transfer for videos" (GCPR 2016): the previous output is warped along the optical
flow of the *input* and blended into the current frame only where the flow is reliable,
judged by their forward-backward consistency check and motion-boundary test, to which we
add a brightness check (an occlusion or a cut rarely keeps a pixel's brightness). A frame
with too few reliable pixels is a scene cut: nothing is carried over. The flow is OpenCV's
DIS (Kroeger et al., "Fast Optical Flow using Dense Inverse Search", ECCV 2016), in both
directions. Where Ruder et al. optimize each frame against the warped one, a feed-forward
network cannot, so the blend is a running average along the motion: with weight `w` the
difference to the warped previous output shrinks by 1 - w.

Measuring (`warping_error`): the temporal warping error of Lai et al., "Learning Blind
Video Temporal Consistency" (ECCV 2018): the mean squared difference, in [0, 1] RGB,
between each output frame and the previous output frame warped by the input's flow, over
the pixels that flow marks as not occluded, averaged over frame pairs (cuts left out). It
takes its flow from a different estimator (Farnebäck's) than the blend, so that the blend
is not graded by its own flow.
"""

import functools
import os
from fractions import Fraction

import numpy as np

try:
    import av
    import cv2
except ImportError as e:
    raise ImportError(f"video needs PyAV and OpenCV ({e}): pip install -e \".[video]\"") from None

from perceptual_style import images

# Container formats by file extension (what --output may end with).
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
           ".webm": "webm", ".avi": "avi"}
DEFAULT_CODEC = "libx264"
DEFAULT_CRF = 18
# Ruder et al.'s thresholds (flow in pixels), and ours for brightness (grey levels) and cuts.
CONSISTENCY = (0.01, 0.5)
MOTION_BOUNDARY = (0.01, 0.002)
BRIGHTNESS = 24
MIN_RELIABLE = 0.1  # a frame pair with a smaller share of reliable pixels is a cut


class VideoError(ValueError):
    """A video that cannot be read or written, with a one-line reason."""


def _reason(error):
    return getattr(error, "strerror", None) or str(error)


def container_format(path):
    """The FFmpeg muxer for an output path, from its extension."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise VideoError(f"{path}: unknown video file extension (use one of "
                         f"{', '.join(FORMATS)})")
    return FORMATS[extension]


def encoder(name):
    """The FFmpeg video encoder `name`, or a one-line VideoError."""
    try:
        codec = av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        codec = None
    if codec is None or codec.type != "video":
        raise VideoError(f"unknown video encoder {name!r} (FFmpeg's names: libx264, libx265, "
                         "libvpx-vp9, mpeg4, ...)")
    return codec


def pixel_format(codec, width, height):
    """4:2:0 (what players expect) when the sides are even, as it needs, else 4:4:4, or
    whatever the encoder takes."""
    formats = [f.name for f in encoder(codec).video_formats or []]
    wanted = (["yuv420p"] if width % 2 == 0 and height % 2 == 0 else []) + ["yuv444p"]
    return next((f for f in wanted if f in formats), formats[0] if formats else "yuv420p")


class VideoReader:
    """A video file's first video stream, decoded to RGB frames, and its audio streams."""

    def __init__(self, path):
        self.path = path
        try:
            self.container = av.open(path, metadata_errors="ignore")
        except FileNotFoundError:
            raise VideoError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise VideoError(f"{path}: is a directory, not a video") from None
        except av.FFmpegError as e:
            raise VideoError(f"{path}: not a video FFmpeg can read, or damaged "
                             f"({_reason(e)})") from None
        try:
            if not self.container.streams.video:
                raise VideoError(f"{path}: has no video stream")
            self.video = self.container.streams.video[0]
            if self.video.codec_context is None:
                raise VideoError(f"{path}: unknown video codec (FFmpeg has no decoder for it)")
            self.audio = list(self.container.streams.audio)
            context = self.video.codec_context
            self.width, self.height = context.width, context.height
            if not self.width or not self.height:
                raise VideoError(f"{path}: the video stream has no frame size")
        except BaseException:
            self.container.close()
            raise
        self.rate = self.video.average_rate or self.video.guessed_rate or Fraction(25)
        self.time_base = self.video.time_base or 1 / self.rate
        self.rotation = 0  # read from the first frame's display matrix

    @property
    def frame_count(self):
        """Frames in the stream: from its header, else estimated from its duration (0 when
        unknown)."""
        if self.video.frames:
            return self.video.frames
        seconds = (float(self.video.duration * self.time_base) if self.video.duration
                   else (self.container.duration or 0) / av.time_base)
        return round(seconds * self.rate)

    def packets(self):
        """Video and audio packets in file order; one-line VideoError for a damaged file."""
        try:
            yield from self.container.demux(self.video, *self.audio)
        except av.FFmpegError as e:
            raise VideoError(f"{self.path}: corrupt or truncated video ({_reason(e)})") from None

    def decode(self, packet):
        """[(frame as RGB uint8 array, pts)] of a video packet (None pts: unknown)."""
        try:
            frames = packet.decode()
        except av.FFmpegError as e:
            raise VideoError(f"{self.path}: corrupt or truncated video ({_reason(e)})") from None
        decoded = []
        for frame in frames:
            if (frame.width, frame.height) != (self.width, self.height):
                raise VideoError(f"{self.path}: the frame size changes from {self.width} x "
                                 f"{self.height} to {frame.width} x {frame.height} "
                                 "mid-stream (not supported)")
            self.rotation = frame.rotation or 0
            decoded.append((frame.to_ndarray(format="rgb24"), frame.pts))
        return decoded

    def close(self):
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VideoWriter:
    """Encodes RGB frames into a container on a binary file `file`, with the reader's
    frame size, time base and rotation, and its audio streams copied."""

    def __init__(self, file, file_format, reader, codec=DEFAULT_CODEC, crf=DEFAULT_CRF):
        self.reader = reader
        self.container = av.open(file, "w", format=file_format)
        try:
            # crf: quality for the encoders that have it (x264, x265, VP9, AV1); others
            # ignore the option.
            self.stream = self.container.add_stream(codec, rate=reader.rate,
                                                    options={"crf": str(crf)})
            self.stream.width, self.stream.height = reader.width, reader.height
            self.stream.pix_fmt = pixel_format(codec, reader.width, reader.height)
            self.stream.time_base = reader.time_base
            self.stream.codec_context.time_base = reader.time_base
            self.audio = {source.index: self.container.add_stream_from_template(source)
                          for source in reader.audio}
        except (av.FFmpegError, ValueError) as e:
            raise VideoError(f"cannot write {codec} to {file_format} ({_reason(e)})") from None
        self._pending = []  # audio packets that came before the first frame
        self._next_pts = 0

    def _mux(self, packets):
        try:
            self.container.mux(packets)
        except av.FFmpegError as e:
            raise VideoError(f"cannot write this video's streams to a "
                             f"{self.container.format.name} file ({_reason(e)}; try "
                             "--output=NAME.mkv)") from None

    def write(self, frame, pts):
        """Encodes one RGB uint8 frame at `pts` (in the reader's time base; None: the
        next one at the frame rate)."""
        if self._pending is not None:
            # Known once a frame is decoded, and written with the header, which the first
            # packet muxed writes: audio waits until then.
            if self.reader.rotation:
                self.stream.set_display_rotation(self.reader.rotation)
        if pts is None:
            pts = self._next_pts
        self._next_pts = pts + max(1, round(1 / (self.reader.rate * self.reader.time_base)))
        out = av.VideoFrame.from_ndarray(frame, format="rgb24")
        out.pts, out.time_base = pts, self.reader.time_base
        self._mux(self.stream.encode(out))
        if self._pending is not None:
            pending, self._pending = self._pending, None
            for packet in pending:
                self.copy(packet)

    def copy(self, packet):
        """Muxes an audio packet of the reader unchanged."""
        if packet.dts is None:  # the demuxer's end-of-stream marker
            return
        if self._pending is not None:
            self._pending.append(packet)
            return
        packet.stream = self.audio[packet.stream.index]
        self._mux(packet)

    def close(self):
        """Flushes the encoder and finishes the file."""
        self._mux(self.stream.encode(None))
        self.container.close()


def transcode(reader, file, file_format, process, batch_size, codec=DEFAULT_CODEC,
              crf=DEFAULT_CRF, progress=None):
    """Decodes `reader`, passes its frames, `batch_size` at a time, through
    `process(list of RGB uint8 frames) -> list of RGB uint8 frames`, and encodes them to
    `file`, audio copied. `progress(frames done)` follows it. Returns the frames done."""
    writer = VideoWriter(file, file_format, reader, codec, crf)
    batch, done = [], 0

    def flush():
        nonlocal done
        for (_, pts), result in zip(batch, process([frame for frame, _ in batch])):
            writer.write(result, pts)
        done += len(batch)
        batch.clear()
        if progress:
            progress(done)

    for packet in reader.packets():
        if packet.stream.type == "audio":
            writer.copy(packet)
            continue
        for frame in reader.decode(packet):
            batch.append(frame)
            if len(batch) == batch_size:
                flush()
    if batch:
        flush()
    if done == 0:
        raise VideoError(f"{reader.path}: no frame could be decoded")
    # FFmpeg ends a cut-short file quietly. The header's count may differ by a few frames
    # from what decodes (edit lists, an estimate from the duration): a tenth is allowed.
    if done < 0.9 * reader.frame_count:
        raise VideoError(f"{reader.path}: truncated or corrupt: {done} of about "
                         f"{reader.frame_count} frames could be decoded")
    writer.close()
    return done


# --- motion --------------------------------------------------------------------------

def grey(frame):
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


@functools.lru_cache(maxsize=4)
def _grid(height, width):
    """Each pixel's (y, x), float32: made once per frame size."""
    return np.mgrid[0:height, 0:width].astype(np.float32)


def warp(image, flow):
    """`image` sampled at x + flow(x): what was at each pixel's source (edges repeated)."""
    y, x = _grid(*flow.shape[:2])
    return cv2.remap(image, x + flow[..., 0], y + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def reliable(backward, forward, current, previous):
    """Float mask, 1 where the flow from `current` to `previous` (`backward`, grey frames)
    can be trusted: it lands inside the frame, it and the flow back (`forward`, sampled
    where it lands) cancel, it is not at a motion boundary (Ruder et al. 2016, eq. 4-5),
    and the pixel keeps its brightness."""
    forward_back = warp(forward, backward)
    u, v, fu, fv = backward[..., 0], backward[..., 1], forward_back[..., 0], forward_back[..., 1]
    length = u * u + v * v  # squared, component by component: faster than summing an axis
    consistent = (u + fu) ** 2 + (v + fv) ** 2 <= (
        CONSISTENCY[0] * (length + fu * fu + fv * fv) + CONSISTENCY[1])
    (uy, ux), (vy, vx) = np.gradient(u), np.gradient(v)
    smooth = (ux * ux + uy * uy + vx * vx + vy * vy
              <= MOTION_BOUNDARY[0] * length + MOTION_BOUNDARY[1])
    height, width = backward.shape[:2]
    y, x = _grid(height, width)
    x, y = x + backward[..., 0], y + backward[..., 1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    same = np.abs(current.astype(np.int16) - warp(previous, backward)) <= BRIGHTNESS
    return (consistent & smooth & inside & same).astype(np.float32)


class TemporalBlend:
    """Blends each stylized frame with the previous output, warped along the input's
    motion, where that motion is reliable; call it on consecutive frames in order."""

    def __init__(self, weight):
        self.weight = weight
        self.flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self.previous = None  # (grey input frame, output)

    def __call__(self, frame, stylized):
        """RGB uint8 input frame and its stylized float32 version -> the blended one."""
        current = grey(frame)
        if self.weight > 0 and self.previous is not None:
            previous, output = self.previous
            backward = self.flow.calc(current, previous, None)
            mask = reliable(backward, self.flow.calc(previous, current, None), current, previous)
            if mask.mean() >= MIN_RELIABLE:
                # Feathered inwards, so blended regions fade out at occlusions.
                alpha = self.weight * mask * cv2.GaussianBlur(mask, (5, 5), 0)
                stylized = stylized + alpha[..., None] * (warp(output, backward) - stylized)
        self.previous = current, np.asarray(stylized, np.float32)
        return stylized


def _farneback(a, b):
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 3, 5, 1.2, 0)


def warping_error(inputs, outputs):
    """Lai et al.'s warping error of `outputs` for `inputs` (equal-length sequences of RGB
    uint8 frames, or iterables of them): (mean over frame pairs, pairs counted)."""
    errors, previous = [], None
    for frame, output in zip(inputs, outputs):
        current, output = grey(frame), np.asarray(output, np.float32) / 255
        if previous is not None:
            backward = _farneback(current, previous[0])
            mask = reliable(backward, _farneback(previous[0], current), current, previous[0])
            if mask.mean() >= MIN_RELIABLE:
                squared = np.square(output - warp(previous[1], backward)).mean(-1)
                errors.append(float((squared * mask).sum() / mask.sum()))
        previous = current, output
    return (float(np.mean(errors)) if errors else float("nan")), len(errors)


def frames(path):
    """The RGB uint8 frames of a video file, one at a time."""
    with VideoReader(path) as reader:
        for packet in reader.packets():
            if packet.stream.type == "video":
                for frame, _ in reader.decode(packet):
                    yield frame


# --- clips to try it on --------------------------------------------------------------

def camera_path(photos, width, height, count):
    """`count` frames of a camera moving over `photos` (uint8 RGB arrays): a pan with a
    slow zoom over each, cutting from one photo to the next."""
    per_photo = -(-count // len(photos))
    result = []
    for index in range(count):
        photo = photos[index // per_photo]
        t = (index % per_photo) / max(per_photo - 1, 1)
        photo_height, photo_width = photo.shape[:2]
        # The window: 70% down to 60% of the photo (zooming in), panning left to right.
        scale = min(photo_width / width, photo_height / height) * (0.7 - 0.1 * t)
        w, h = round(width * scale), round(height * scale)
        x = round((photo_width - w) * (0.15 + 0.7 * t))
        y = round((photo_height - h) * (0.5 + 0.2 * np.sin(np.pi * t)))
        result.append(np.asarray(images.resize(photo[y:y + h, x:x + w], width, height)))
    return result


def write_clip(file, file_format, frames, rate, audio_rate=48000, rotation=0):
    """Encodes RGB uint8 `frames` at `rate` frames per second (H.264; shown turned by
    `rotation` degrees counter-clockwise) with a stereo AAC tone sweep of the same
    duration: test and demo material."""
    with av.open(file, "w", format=file_format) as container:
        video = container.add_stream(DEFAULT_CODEC, rate=Fraction(rate).limit_denominator(1001),
                                     options={"crf": "18"})
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = pixel_format(DEFAULT_CODEC, video.width, video.height)
        if rotation:
            video.set_display_rotation(rotation)
        audio = container.add_stream("aac", rate=audio_rate, layout="stereo")
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        t = np.arange(round(len(frames) / rate * audio_rate)) / audio_rate
        tone = 0.2 * np.sin(2 * np.pi * (220 + 220 * t / t[-1]) * t)
        samples = np.stack([tone, np.roll(tone, 100)]).astype(np.float32)
        for start in range(0, samples.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]),
                                               format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts = audio_rate, start
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))
        container.mux(video.encode(None))
