"""What every command-line tool here shares: help and flag errors before any heavy import,
a bad flag in one line like every other error, flags that several commands take defined
once (so that the commands can be imported into one process), and a console that carries
our own lines."""

import contextlib
import functools
import importlib.util
import math
import os
import re
import sys
from typing import Callable, NamedTuple

import numpy as np
from absl import app, flags

from perceptual_style.saved_nets import DEFAULT_DIR, IDENTITY

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


class DurationParser(flags.ArgumentParser):
    """'2h', '45m', '1h30m', '90s' or plain seconds -> seconds (float)."""

    syntactic_help = "a duration such as 2h, 45m, 1h30m or 90s"

    def parse(self, argument):
        if isinstance(argument, (int, float)):
            return float(argument)
        match = _DURATION.fullmatch(str(argument).strip())
        if not argument or not match or not any(match.groups()):
            raise ValueError(f"{argument!r} is not {self.syntactic_help}")
        hours, minutes, seconds = (float(g or 0) for g in match.groups())
        value = 3600 * hours + 60 * minutes + seconds
        if value <= 0:
            raise ValueError(f"{argument!r}: the duration must be positive")
        return value

    def flag_type(self):
        return "duration"


def define_duration(name, default, help_text, flag_values=flags.FLAGS):
    """A flag that takes a duration (see DurationParser); its value is in seconds."""
    flags.DEFINE(DurationParser(), name, default, help_text, flag_values=flag_values)


class CommandError(Exception):
    """A problem with the user's inputs: `run` reports it as `<program>: error: ...`, one
    line and exit status 1, never a traceback."""


def define_saved_dir(module_name):
    """--saved_dir, which every command that reads or writes trained styles takes: defined
    by the first of them imported, and a key flag (listed in --help, recorded in training
    metadata) of each. `module_name`: the caller's `__name__`."""
    module_name = _module(module_name)
    if "saved_dir" not in flags.FLAGS:
        flags.DEFINE_string("saved_dir", DEFAULT_DIR, "Folder of trained styles "
                            "(<saved_dir>/<name>/). When the default does not exist here, "
                            "commands that read styles use the savedNets/ of this "
                            "package's checkout.", module_name=module_name)
    _key_flags(module_name, ["saved_dir"])


def _module(module_name):
    """absl's name of a module: `__main__` is the program's own, named by its path."""
    return sys.argv[0] if module_name == "__main__" else module_name


def _key_flags(module_name, names):
    for name in names:
        flags.FLAGS.register_key_flag_for_module(module_name, flags.FLAGS[name])


STYLIZE_FLAGS = ("style", "mix", "output", "strength", "preserve_color", "tile_size",
                 "statistics", "precision")


def define_stylize_flags(module_name):
    """The flags of every command that applies trained styles (photos, video): defined by
    the first of them imported, and key flags of each, as define_saved_dir."""
    from perceptual_style import tiling  # its defaults; NumPy and Pillow only

    define_saved_dir(module_name)
    define_precision(module_name)
    module_name = _module(module_name)
    if "style" not in flags.FLAGS:
        flags.DEFINE_list("style", ["all"], "Styles to apply: names in --saved_dir (or "
                          "folders holding a weights.npz), comma-separated, or 'all' "
                          "(stylize_video takes one). Of a network of several styles, NET:STYLE "
                          "applies one, NET each of them.", module_name=module_name)
        flags.DEFINE_list("mix", None, "Blend the styles of the one network of several styles "
                          "that --style names: STYLE:WEIGHT,... (weights >= 0, scaled to sum "
                          "to 1), e.g. snight:0.7,wave:0.3.", module_name=module_name)
        flags.DEFINE_string("output", "results", "Output folder; for one input and one style "
                            "it may also be a file name (photos: .jpg or .png; video: .mp4, "
                            ".mkv, .mov, ...).", module_name=module_name)
        flags.DEFINE_float("strength", 1.0, "How much style: 1 full, 0 the input unchanged; "
                           "in between, a blend: of the style weights with those of the "
                           f"network's '{IDENTITY}' style where it has one (parameter space), "
                           "else of the stylized pixels with the input's.", lower_bound=0.0,
                           upper_bound=1.0, module_name=module_name)
        flags.DEFINE_bool("preserve_color", False, "Keep the input's colours: transfer only "
                          "the luminance (Gatys et al. 2016).", module_name=module_name)
        flags.DEFINE_integer("tile_size", tiling.TILE_SIZE, "Images (photos, video frames) "
                             f"with a side over tile_size + {2 * tiling.MARGIN} pixels are "
                             "stylized in tiles of this size (a multiple of 4): less memory, "
                             "the same result.", lower_bound=64,
                             module_name=module_name)
        flags.DEFINE_enum("statistics", "exact", list(tiling.STATISTICS), "For tiled images: "
                          "'exact' whole-image normalization statistics (the same result as "
                          "one pass, about 7x the work) or 'scaled' (from a copy scaled to one "
                          "tile: faster, slightly different).", module_name=module_name)
        flags.register_validator("tile_size", lambda size: size % 4 == 0,
                                 message="--tile_size must be a multiple of 4")
    _key_flags(module_name, STYLIZE_FLAGS)


def _split_style(entry):
    """A --style entry -> (network name or folder, its style or None): NET or NET:STYLE."""
    path, colon, style = entry.rpartition(":")
    return (path, style) if colon else (entry, None)


def _network_name(path):
    return os.path.basename(os.path.normpath(path))


def parse_mix(items):
    """--mix's STYLE:WEIGHT items -> {style: weight}, the weights scaled to sum to 1; a
    one-line CommandError for anything else."""
    weights = {}
    for item in items:
        style, _, text = item.partition(":")
        try:
            weight = float(text)
        except ValueError:
            weight = math.nan
        if not style or not 0 <= weight < math.inf or style in weights:
            raise CommandError(f"--mix={','.join(items)}: give STYLE:WEIGHT,... with each style "
                               "once and weights >= 0, e.g. --mix=snight:0.7,wave:0.3")
        weights[style] = weight
    return blend(weights, f"--mix={','.join(items)}")


def blend(weights, given):
    """`weights` ({style: weight}) scaled to sum to 1: the one check of a blend of styles,
    for --mix and for the weights sent to a served model (client.py). A one-line
    CommandError, quoting `given` (how the user wrote them), when a weight is negative or
    not a number, or all of them are zero."""
    if not all(0 <= weight < math.inf for weight in weights.values()):  # NaN fails too
        raise CommandError(f"{given}: the weights must be numbers >= 0")
    total = sum(weights.values())
    if total == 0:
        raise CommandError(f"{given}: the weights are all zero")
    return {style: weight / total for style, weight in weights.items()}


def style_vector(network, names, weights):
    """{style: weight} -> the float32 vector of one weight per style of `names`, the styles
    of `network` in their order; a one-line CommandError for a style it does not have."""
    for style in weights:
        if style not in names:
            raise CommandError(f"{network} has no style {style!r} "
                               f"(its styles: {', '.join(names)})")
    return np.array([weights.get(style, 0.0) for style in names], np.float32)


def style_label(entry, mix=None):
    """What outputs of a --style entry are named by: NET, NET-STYLE, or NET-STYLE0.7+..."""
    path, style = _split_style(entry)
    name = _network_name(path)
    if mix:
        return f"{name}-" + "+".join(f"{s}{w:.2g}" for s, w in parse_mix(mix).items() if w)
    return name if style is None else f"{name}-{style}"


class Chosen(NamedTuple):
    """A style to apply: `net` (images -> stylized images) and `strength`, the blend with
    the photo left to color.finish: 1 where `net` took --strength in parameter space."""
    net: Callable
    strength: float


def _say_strength(name, strength, in_parameters):
    """Tells, for a --strength under 1, how `name` takes it."""
    if strength < 1:
        print(f"--strength={strength:g} for {name}: " + (
            f"in parameter space, towards its {IDENTITY} style" if in_parameters else
            f"a pixel blend with the photo (it has no {IDENTITY} style)"), file=sys.stderr)


def sweep_mixes(styles, steps):
    """--sweep's two styles -> the --mix items of `steps` blends from all of the first to
    all of the second (a mixing sweep, one contact-sheet column each)."""
    if len(styles) != 2 or styles[0] == styles[1]:
        raise CommandError(f"--sweep={','.join(styles)}: give two styles of the network, "
                           "e.g. --sweep=snight,wave")
    return [[f"{styles[0]}:{1 - t:g}", f"{styles[1]}:{t:g}"]
            for t in np.linspace(0, 1, steps).round(4)]


def _chosen(net, entry, names, mixes, strength):
    """{label: Chosen} for one --style entry: a single-style network as it is; of a
    network of several styles (`names`), each chosen style or each blend of `mixes` (lists
    of --mix items), as the network with its style weights bound, which tiling calls as any
    network. NET alone chooses each style but the identity (the photo). Where there is an
    identity style, `strength` moves the weights towards it, and no pixel blend is left."""
    path, style = _split_style(entry)
    name = _network_name(path)
    if not names:
        if style is not None or mixes:
            raise CommandError(f"{name} is a network of one style: give --style={name}"
                               + (" without --mix" if mixes else ""))
        _say_strength(name, strength, False)
        return {name: Chosen(net, strength)}
    if mixes and style is not None:
        raise CommandError(f"--mix blends the styles of {name}: give --style={name}, "
                           f"not --style={entry}")
    if mixes:
        blends = {style_label(entry, mix): parse_mix(mix) for mix in mixes}
    else:
        blends = {style_label(f"{path}:{s}"): {s: 1.0}
                  for s in ([s for s in names if s != IDENTITY] if style is None else [style])}
    vectors = {label: style_vector(name, names, weights) for label, weights in blends.items()}
    identity = np.array([s == IDENTITY for s in names], np.float32)
    in_parameters = bool(identity.any())
    _say_strength(name, strength, in_parameters)
    chosen = {}
    for label, style_weights in vectors.items():
        if in_parameters:
            style_weights = (np.float32(strength) * style_weights
                             + np.float32(1 - strength) * identity)
        chosen[label] = Chosen(functools.partial(net, style_weights=style_weights),
                               1.0 if in_parameters else strength)
    return chosen


def load_styles(names, directory, precision="float32", mix=None, strength=1.0, sweep=None,
                sweep_steps=5):
    """{label: Chosen} of the --style entries `names` (['all']: every network in
    `directory`), computing in `precision` (a --precision choice), at --strength
    `strength`, or a one-line CommandError. A network of several styles gives NET-STYLE
    for each style it is asked for (NET:STYLE, or NET: all of them but its identity), or
    with `mix` (--mix), one blend of them, or with `sweep` (two of its styles),
    `sweep_steps` blends from one to the other."""
    from perceptual_style import saved_nets
    from perceptual_style.precision import resolve

    if mix and sweep:
        raise CommandError("give --mix (one blend) or --sweep (blends of two styles), not both")
    if (mix or sweep) and (names == ["all"] or len(names) != 1):
        raise CommandError(f"--{'mix' if mix else 'sweep'} blends the styles of one network: "
                           "name it with --style=NET")
    mixes = [mix] if mix else sweep_mixes(sweep, sweep_steps) if sweep else []
    precision = resolve(precision)
    if names == ["all"]:
        names = saved_nets.list_styles(directory)
    if not names:
        raise CommandError(f"no trained styles in {directory}/ (train one with "
                           "python -m perceptual_style.train)")
    nets = {}
    for entry in names:
        path, _ = _split_style(entry)
        try:
            net = saved_nets.load_transformer(path, directory, precision)
            styles = (saved_nets.load_style_names(path, directory, net.num_styles)
                      if net.num_styles > 1 else [])
        except (FileNotFoundError, ValueError) as e:
            raise CommandError(str(e)) from None
        nets.update(_chosen(net, entry, styles, mixes, strength))
    return nets


def define_precision(module_name):
    """--precision, shared by training and stylizing (defined once, as --saved_dir is)."""
    from perceptual_style.precision import PRECISIONS

    module_name = _module(module_name)
    if "precision" not in flags.FLAGS:
        flags.DEFINE_enum("precision", "float32", PRECISIONS, "What the networks compute in: "
                          "bfloat16 runs about twice as fast on CPUs with native bf16 "
                          "(AVX512_BF16, AMX), with weights, losses and stylized images kept "
                          "float32; auto picks it there on the TensorFlow backend.",
                          module_name=module_name)
    _key_flags(module_name, ["precision"])


def require(*names):
    """Refuses, in one line, to go on without the flags `names` (path flags with no
    default: no path of a development machine is one)."""
    for name in names:
        if not flags.FLAGS[name].value:
            raise CommandError(f"--{name} is required (see --helpfull)")


# Set by the user to choose what TensorFlow logs: at 0, nothing is dropped.
USER_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")


@contextlib.contextmanager
def native_stderr_dropped():
    """Drops what native code writes to stderr (file descriptor 2) in the block, where no
    log level reaches: TensorFlow's start-up lines (oneDNN, CUDA drivers, CPU features),
    the TFLite calibrator's and LiteRT's. TF_CPP_MIN_LOG_LEVEL=0 shows them."""
    if USER_LOG_LEVEL == "0":  # a higher level (often inherited) still drops them
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# What TensorFlow's import pulls in where it is installed, each for a feature no command
# uses and each import guarded, so that only that feature is off in the process: JAX for
# converting JAX functions (tensorflow/lite/python/util.py), matplotlib and OpenCV for
# keras.visualization (through tf.keras), SciPy for the legacy tf.keras engine's sparse
# inputs. With all four installed, TensorFlow and Keras hold 701 MiB after import, 541
# without them. (h5py, 11 MiB, stays: Keras' .h5 loading keeps the h5py it finds then.)
SKIPPED_BY_TENSORFLOW = ("jax", "matplotlib", "cv2", "scipy")


def import_tensorflow_lean():
    """Imports TensorFlow, on the TensorFlow backend, without SKIPPED_BY_TENSORFLOW (those
    not imported yet), which then stay importable: what a process that stylizes, serves or
    trains holds is the same whichever extras are installed."""
    if (os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow"
            or "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None):
        return
    skipped = [name for name in SKIPPED_BY_TENSORFLOW if name not in sys.modules]
    for name in skipped:
        sys.modules[name] = None  # makes `import name` raise ImportError, which TF expects
    try:
        importlib.import_module("tensorflow")
    finally:
        for name in skipped:
            del sys.modules[name]


def import_quietly(modules):
    """Imports `modules` (which load a backend) with TensorFlow's start-up lines and its
    C++ log lines below errors dropped, unless the user set TF_CPP_MIN_LOG_LEVEL; TensorFlow
    first, without what it imports for nothing here (import_tensorflow_lean)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_dropped():
        if modules:
            import_tensorflow_lean()
        for name in modules:
            importlib.import_module(name)


def run(main, program, imports=(), arguments=False):
    """`app.run(main)`, with help exiting 0 (absl's exits 1), absl's two-line flag errors
    replaced by `<program>: error: ...`, arguments other than flags refused unless the
    command takes some (`arguments`), a CommandError from `main` reported in one line, and
    `imports`, the modules that load a backend, imported quietly once the flags are
    parsed, so that help and flag errors are instant."""

    def parse_flags(argv):
        try:
            argv = flags.FLAGS(argv)
        except flags.Error as e:
            sys.exit(f"{program}: error: {e} (see --helpfull)")
        except SystemExit:  # --help, --helpshort, --helpfull, --helpxml: printed, then exit(1)
            sys.exit(0)
        if len(argv) > 1 and not arguments:
            sys.exit(f"{program}: error: unexpected arguments: {' '.join(argv[1:])} "
                     "(flags are --name=value)")
        return argv

    def start(argv):
        try:
            import_quietly(imports)
        except ImportError as e:
            sys.exit(f"{program}: error: {e}")
        try:
            return main(argv)
        except CommandError as e:
            sys.exit(f"{program}: error: {e}")

    app.run(start, flags_parser=parse_flags)
