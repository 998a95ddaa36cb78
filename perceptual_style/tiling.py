"""Stylizing photos of any size in bounded memory: overlapping, blended tiles.

A photo that fits in one window runs in one pass. A larger one is cut into a grid of
`tile_size` cores, each run with `margin` pixels of real context on every side (more than
the network's receptive field, measured at 54 pixels, so a kept pixel never sees a tile
edge), and neighbouring tiles are cross-faded over a `blend`-wide band. Tiles sit on a grid
of multiples of 4, where the network's two stride-2 stages sample the same pixels as an
untiled pass would.

Instance normalization needs each layer's mean and variance over the whole photo; taken per
tile, every tile would get its own tone. Two ways to share them across tiles:
- "exact": one pass over the tiles per normalization layer (15), each stopping at that
  layer, sums its activations over the whole photo; then the output pass. The result equals
  an untiled pass up to float rounding, at about 7x the work of one pass.
- "scaled": the statistics of a copy scaled down to one window, in one extra small pass.
  Tiles still agree with each other; the result differs a little from an untiled pass.
Backend-neutral. Keras is imported where it is used, so that `stylize --help`, which shows
the defaults below, loads no backend.
"""

import contextlib
import functools
import weakref

import numpy as np

from perceptual_style.images import fit_longer_side

TILE_SIZE = 768
MARGIN = 96
BLEND = 32
STATISTICS = ("exact", "scaled")
_COMPILED = weakref.WeakKeyDictionary()  # network -> its compiled forward pass


def forward(net):
    """`net` (a network, or one bound to its style weights as cli.py binds it) as a
    one-pass stylization runs it: on TensorFlow, one compiled graph per network, made at
    the first pass and kept (frozen.compiled_function: in float32 with the weights the
    network has then, so for inference, not while it trains), which runs one image up to
    2x faster than eagerly; on JAX, eagerly. Tiled passes stay eager: a graph does not see
    statistics hooks. tools/benchmark.py's `auto` path measures this."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return net
    model, bound = (net.func, net.keywords) if isinstance(net, functools.partial) else (net, {})
    if model not in _COMPILED:
        from perceptual_style.frozen import compiled_function

        _COMPILED[model] = compiled_function(model)
    return functools.partial(_COMPILED[model], **bound)


def _run(net, image):
    """uint8 or float (H, W, 3) -> float32 (H, W, 3) in [0, 255], one network pass."""
    return _run_batch(net, np.asarray(image)[None])[0]


def _run_batch(net, batch):
    """uint8 or float (N, H, W, 3) -> float32 (N, H, W, 3) in [0, 255], one network pass (of
    a network computing in float32 or bfloat16)."""
    from keras import ops

    return ops.convert_to_numpy(ops.cast(net(np.asarray(batch, np.float32)), "float32"))


def _ramp(length, start, stop, core_start, core_stop, blend):
    """1-D weights over [start, stop): 1 on the core, cross-fading across each interior
    core edge over `blend` pixels so that neighbours' weights sum to 1."""
    x = np.arange(start, stop, dtype=np.float32) + 0.5
    half = blend / 2
    weight = np.ones(stop - start, np.float32)
    if core_start > 0:
        weight = np.minimum(weight, np.clip((x - core_start + half) / blend, 0, 1))
    if core_stop < length:
        weight = np.minimum(weight, np.clip((core_stop + half - x) / blend, 0, 1))
    return weight


def grid(length, padded_length, core, margin, window=None):
    """Tiles along a side of `length` pixels (`padded_length` once padded as the network pads):
    [(core start, core stop, window start, window stop)], cores of `core` pixels from 0, each
    with `margin` pixels of context on both sides where the padded side has them. With a
    fixed `window` size (a fixed-shape build's), the windows at the far end are shifted
    inwards instead of cut, and one longer than the side starts at 0. Cores, margins and
    windows that are multiples of 4 keep every window on the grid of multiples of 4."""
    spans = []
    for start in range(0, length, core):
        stop = min(start + core, length)
        if window is None:
            spans.append((start, stop, max(start - margin, 0), min(stop + margin, padded_length)))
        else:
            first = max(min(start - margin, padded_length - window), 0)
            spans.append((start, stop, first, first + window))
    return spans


def window_fits(shape, tile_size=TILE_SIZE, margin=MARGIN):
    """Whether an image of `shape` is small enough to run in one pass."""
    return max(shape[:2]) <= tile_size + 2 * margin


def scaled_statistics(net, image, max_side):
    """{layer path: (mean, variance)} of a copy of `image` scaled to fit `max_side`."""
    from keras import ops

    from perceptual_style.transformer_net import statistics_hook

    if max(image.shape[:2]) > max_side:
        image = np.asarray(fit_longer_side(image, max_side, minimum=4))
    statistics = {}

    def record(layer, x):
        statistics[layer.path] = ops.moments(x, axes=(1, 2), keepdims=True)
        return statistics[layer.path]

    with statistics_hook(record):
        _run(net, image)
    return statistics


class _LayerSummed(Exception):
    """Ends a pass early: the layer being measured has been summed over this tile."""


class _ExactStatistics:
    """Statistics hook that replays known layers and sums the first unknown one over the
    current tile's core (`region`, in window pixels), then stops the pass."""

    def __init__(self):
        self.values = {}
        self.window_height, self.region = None, None
        self._path, self._sums = None, None

    def __call__(self, layer, x):
        from keras import ops

        if layer.path in self.values:
            return self.values[layer.path]
        self._path = layer.path
        scale = self.window_height // ops.shape(x)[1]  # 1, 2 or 4
        y0, y1, x0, x1 = (v // scale for v in self.region)
        # Sliced and summed in NumPy, in float64 (bfloat16 would round the sums): sliced in
        # the backend, every region would be another op to compile on JAX.
        part = ops.convert_to_numpy(x[0])[y0:y1, x0:x1].astype(np.float32)
        sums = np.stack([np.full(x.shape[-1], (y1 - y0) * (x1 - x0), np.float64)] + [
            np.sum(v, axis=(0, 1), dtype=np.float64) for v in (part, np.square(part))])
        self._sums = sums if self._sums is None else self._sums + sums
        raise _LayerSummed

    def finish_layer(self):
        """Turns the sums of the layer just measured into its statistics; False if the
        last pass measured nothing (it was the output pass)."""
        from keras import ops

        if self._path is None:
            return False
        count, total, squares = self._sums
        mean = total / count
        variance = np.maximum(squares / count - mean ** 2, 0)
        self.values[self._path] = tuple(ops.convert_to_tensor(v.astype(np.float32)[None, None, None])
                                        for v in (mean, variance))
        self._path, self._sums = None, None
        return True


@contextlib.contextmanager
def _unfiltered_tracebacks():
    """Within this block (this thread), Keras does not rewrite the exceptions its layers
    raise: its rewriting keeps each aborted pass's frames, and with them the pass's
    activations, in reference cycles, and a garbage collection per pass to free them was
    71% of the time of a tiled 100x200 photo (45 of 63 s, 120 passes)."""
    import keras

    filtering = keras.config.is_traceback_filtering_enabled()
    keras.config.disable_traceback_filtering()
    try:
        yield
    finally:
        if filtering:
            keras.config.enable_traceback_filtering()


def stylize_batch(net, batch, tile_size=TILE_SIZE, statistics="exact"):
    """Stylizes equally sized uint8 RGB images (N, H, W, 3), such as video frames ->
    float32 in [0, 255]: in one pass when they fit one window, else each tiled."""
    if window_fits(batch.shape[1:], tile_size):
        return _run_batch(forward(net), batch)
    return np.stack([stylize_image(net, image, tile_size, statistics=statistics)
                     for image in batch])


def stylize_image(net, image, tile_size=TILE_SIZE, margin=MARGIN, blend=BLEND,
                  statistics="exact", statistics_side=None, progress=None):
    """Stylizes a uint8 RGB image (H, W, 3) -> float32 (H, W, 3) in [0, 255].

    Runs untiled when the image fits in one window of `tile_size + 2 * margin`; otherwise
    tiled, with `statistics` "exact" or "scaled" (from a copy whose longer side is
    `statistics_side`, default one window). `progress(done, total)` follows the work.
    """
    import keras
    from keras import ops

    from perceptual_style.transformer_net import statistics_hook

    if tile_size % 4 or margin % 4 or tile_size < 2 * blend or margin < blend:
        raise ValueError("tile_size and margin must be multiples of 4, with tile_size >= "
                         f"2 * blend and margin >= blend (blend = {blend})")
    if statistics not in STATISTICS:
        raise ValueError(f"statistics must be one of {STATISTICS}, not {statistics!r}")
    if window_fits(image.shape, tile_size, margin):
        return _run(forward(net), image)
    height, width = image.shape[:2]
    # Padded as the network itself pads an untiled pass (in its padding mode), so that
    # every window's sides are multiples of 4 and the border tiles see the same pixels. (A
    # network of several styles comes bound to its style weights, as cli.py binds it.)
    model = net.func if isinstance(net, functools.partial) else net
    padded = ops.convert_to_numpy(model.pad_input(np.asarray(image)[None]))[0]
    padded_height, padded_width = padded.shape[:2]
    # On JAX, whose eager ops compile once per shape (about 70 ms each, 437 compilations in
    # a 100x170 photo's 48 passes of 6 window shapes), windows of one size, shifted inwards
    # at the far sides: more context never changes a core's pixels. On TensorFlow, cut
    # windows, whose edge tiles cost less.
    fixed = keras.backend.backend() == "jax"
    sides = [grid(length, padded, tile_size, margin,
                  min(tile_size + 2 * margin, padded) if fixed else None)
             for length, padded in ((height, padded_height), (width, padded_width))]
    tiles = [(rows, cols) for rows in sides[0] for cols in sides[1]]
    if statistics == "exact":
        hook = _ExactStatistics()
        passes = 1 + len(scaled_statistics(net, np.zeros((16, 16, 3), np.uint8), 16))
    else:
        values = scaled_statistics(net, image, statistics_side or tile_size + 2 * margin)
        hook, passes = (lambda layer, x: values[layer.path]), 1
    total, done = passes * len(tiles), 0
    output = np.zeros((height, width, 3), np.float32)
    with statistics_hook(hook), _unfiltered_tracebacks():
        while True:
            for (y, y1, wy0, wy1), (x, x1, wx0, wx1) in tiles:
                if statistics == "exact":
                    # The core, in window pixels; the last cores take the padding along, as
                    # an untiled pass counts it.
                    hook.window_height = wy1 - wy0
                    hook.region = (y - wy0, (padded_height if y1 == height else y1) - wy0,
                                   x - wx0, (padded_width if x1 == width else x1) - wx0)
                try:
                    result = _run(net, padded[wy0:wy1, wx0:wx1])
                except _LayerSummed:
                    result = None
                if result is not None:
                    # Kept: the core plus half a blend band into each neighbour.
                    ky0, kx0 = max(y - blend // 2, 0), max(x - blend // 2, 0)
                    ky1, kx1 = min(y1 + blend // 2, height), min(x1 + blend // 2, width)
                    weight = (_ramp(height, ky0, ky1, y, y1, blend)[:, None, None]
                              * _ramp(width, kx0, kx1, x, x1, blend)[None, :, None])
                    output[ky0:ky1, kx0:kx1] += weight * result[ky0 - wy0:ky1 - wy0,
                                                                kx0 - wx0:kx1 - wx0]
                done += 1
                if progress:
                    progress(done, total)
            if statistics == "scaled" or not hook.finish_layer():
                return output
