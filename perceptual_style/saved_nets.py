"""Trained styles on disk: `savedNets/<name>/weights.npz` and `metadata.json`.

Weights are stored as float16 (half the size, about 3.4 MB a style; the network's outputs
change by well under one grey level) together with the architecture config. `metadata.json`
beside it records how the style was trained, for people and for the tools that rebuild its
loss; its schema is written and read here only (trained_metadata, distilled_metadata): at
the top level what the network is and saw (name, architecture, backend, steps, batch_size,
image_size, images_seen, ...; a distilled one, or one fine-tuned from it, its distillation;
one cut to some of another's styles, `selected_from`: selected_metadata),
under "flags" the training command's flags as given (the loss recipe among them:
style_flags.saved_style_loss), under "training" one record per session. A value is stored
once: the style image and VGG19 weights only under "flags". The folder is written as a unit
(a new folder, then renamed into place), so weights never meet another run's metadata.
Loading restores float32 weights, and a damaged file or a config that is no TransformerNet
is one `ValueError` line, raised before any network is built. A network of several styles
(conditional instance normalization: the config's `num_styles`) names them in its
metadata's `styles` list, one entry with at least a `name` per row of its normalization
parameters, in order; it is not saved without it (training writes each entry's painting
SHA-256 and loss flags beside the name: its "flags"). Backend-neutral.
"""

import datetime
import json
import os
import re
import zipfile
import zlib

import numpy as np

from perceptual_style.atomic import atomic_write, replace_directory

WEIGHTS_FILE = "weights.npz"
METADATA_FILE = "metadata.json"
DEFAULT_DIR = "savedNets"
REPO_SAVED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              DEFAULT_DIR)
_CONFIG_KEY = "config"
# What a style of a multi-style network may be called: the command line selects it as
# NET:STYLE and mixes it as STYLE:WEIGHT,..., and output file names carry it.
_STYLE_NAME = re.compile(r"[\w.-]+")
# The style of this name is trained on the content loss alone (style_flags): it reproduces
# the photo, and stylizing interpolates towards it for --strength.
IDENTITY = "identity"


HISTORY_FILE = "history.json"  # a run's sessions so far, beside its checkpoints


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_history(checkpoint_dir, start_step):
    """This run's earlier sessions (resumed from the same checkpoints at `start_step`). Steps
    checkpointed by a session that never recorded itself (killed) are a session of their
    own, marked so, so that the record still covers every step the weights have had."""
    sessions = _read_kept(checkpoint_dir, HISTORY_FILE, list) or []
    recorded = sessions[-1]["steps"][1] if sessions else 0
    if recorded < start_step:
        sessions.append({"steps": [recorded, start_step],
                         "note": "not recorded: its process ended without recording it"})
    return sessions


def _read_kept(checkpoint_dir, name, kind):
    """The JSON `name` kept beside a run's checkpoints if it is a `kind`, else None."""
    try:
        with open(os.path.join(checkpoint_dir, name)) as f:
            value = json.load(f)
        return value if isinstance(value, kind) else None
    except (OSError, ValueError):
        return None


PRIOR_FILE = "initialized_from.json"  # --init_from's metadata, beside a run's checkpoints


def keep_prior(checkpoint_dir, prior):
    """Keeps --init_from's metadata with the run's checkpoints, so that a resumed run
    counts what its starting weights had seen even when its command no longer names them."""
    os.makedirs(checkpoint_dir, exist_ok=True)
    write_json(os.path.join(checkpoint_dir, PRIOR_FILE), prior)


def kept_prior(checkpoint_dir):
    """The metadata keep_prior kept for this run, or None."""
    return _read_kept(checkpoint_dir, PRIOR_FILE, dict)


def record_session(checkpoint_dir, sessions, first_step, last_step, seconds, run, **notes):
    """Appends what this session trained to the run's history (kept beside its
    checkpoints): a style may be trained over many sessions, recipes and machines. `run`:
    its batch_size, image_size, crop_size, learning_rate, backend, precision and machine;
    `notes`: anything else the record should say (how the session ended)."""
    if last_step <= first_step:
        return sessions
    sessions = sessions + [{
        "steps": [first_step, last_step],
        "images": (last_step - first_step) * run["batch_size"],
        **run,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / (last_step - first_step), 3),
        "date": now(),
        **notes,
    }]
    atomic_write(os.path.join(checkpoint_dir, HISTORY_FILE),
                 lambda f: f.write(json.dumps(sessions, indent=1).encode()))
    return sessions


def prior_training(prior):
    """--init_from's own training record; metadata from before records were kept becomes
    one summary entry."""
    if not prior:
        return []
    if "training" in prior:
        return prior["training"]
    return [{"images": prior.get("images_seen", 0), "batch_size": prior.get("batch_size"),
             "image_size": prior.get("image_size"), "crop_size": prior.get("image_size"),
             "backend": prior.get("backend"), "precision": "float32",
             "machine": "2-core CPU (not recorded)", "date": prior.get("date")}]


# What distillation records (distilled_metadata), kept by the networks fine-tuned from
# a distilled one: how their architecture first learned the style.
_DISTILLATION = ("distilled_from", "teacher_steps", "distillation", "distillation_loss_every_log")


def architecture(net):
    """A network's architecture as its metadata states it (its weights file holds the
    config), which fine-tuning (--init_from) may have kept from another network."""
    config = net.get_config()
    return {k: config[k] for k in ("arch", "width_multiplier", "num_residual_blocks",
                                   "upsampling", "padding")}


def trained_metadata(name, flag_values, run, steps, sessions, prior=None, **facts):
    """A trained style's metadata. `flag_values`: {flag: value} of the training command;
    `run`: as for record_session (its learning rate is replaced by the one used, `facts`'
    learning_rate); `prior`: the metadata of the style it started from (--init_from), whose
    images and sessions are added to this one's; `facts`: style_sha256, replicas,
    learning_rate, final_losses, seconds_per_step, skipped_content_images, architecture. A
    prior that was distilled passes on its distillation record (_DISTILLATION)."""
    metadata = {
        "name": name, "steps": steps,
        **{k: run[k] for k in ("backend", "batch_size", "image_size", "crop_size", "precision")},
        "images_seen": steps * run["batch_size"] + (prior or {}).get("images_seen", 0),
        "training": prior_training(prior) + sessions,
        **{k: prior[k] for k in _DISTILLATION if k in (prior or {})},
        **facts,
        "date": now(),
        "flags": flag_values,
    }
    if prior is not None:
        metadata["initialized_from"] = {k: prior.get(k) for k in (
            "name", "steps", "batch_size", "image_size", "images_seen", "date")}
    return metadata


def distilled_metadata(teacher, teacher_name, name, flag_values, losses, steps, batch_size,
                       image_size, seconds_per_step, backend, student):
    """A distilled style's metadata: the teacher's (its training flags, so that its loss
    is measured as the teacher's), with the distillation's own facts and the `student`
    network's architecture in place of the teacher's, and `flag_values`, the distillation
    command's flags."""
    metadata = {
        **teacher,
        "name": name,
        "architecture": architecture(student),
        "distilled_from": teacher_name,
        "teacher_steps": teacher.get("steps"),
        "distillation": flag_values,
        "distillation_loss_every_log": [float(v) for v in losses],
        "steps": steps, "batch_size": batch_size, "images_seen": steps * batch_size,
        "image_size": image_size, "seconds_per_step": seconds_per_step, "backend": backend,
        "date": now(),
    }
    metadata.pop("final_losses", None)  # the teacher's, not the student's
    return metadata


def selected_metadata(metadata, kept, name, source):
    """The metadata of a network of some of the styles of another (`source`, named in
    `metadata`'s `styles`): its `styles` entries `kept` (names, in that order) and the
    rest as it was, under its new `name`, with a `selected_from` record (one per selection,
    oldest first) of the network the styles were kept from and its styles then."""
    entries = {entry["name"]: entry for entry in metadata["styles"]}
    return {**metadata, "name": name, "styles": [entries[style] for style in kept],
            "selected_from": [*metadata.get("selected_from", []), {
                "name": metadata.get("name") or source, "styles": list(entries),
                "kept": list(kept), "date": now()}]}


def write_json(path, data):
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2, sort_keys=True).encode()))


def style_names(metadata, num_styles):
    """The names of a network's `num_styles` styles, from `metadata`'s `styles` list;
    one `ValueError` line when they are missing, too few or many, repeated or unfit for
    the command line."""
    styles = metadata.get("styles") if isinstance(metadata, dict) else None
    names = [style.get("name") if isinstance(style, dict) else None
             for style in styles] if isinstance(styles, list) else []
    if len(names) != num_styles:
        raise ValueError(f"a network of {num_styles} styles needs a metadata 'styles' list "
                         f"of {num_styles} entries, each with a name; found {len(names)}")
    for name in names:
        if not isinstance(name, str) or not _STYLE_NAME.fullmatch(name):
            raise ValueError(f"style name {name!r}: use letters, digits, '_', '.' and '-'")
    if len(set(names)) != len(names):
        raise ValueError(f"style names repeat: {', '.join(names)}")
    return names


def save_transformer(net, directory, metadata=None):
    """Makes `directory` hold `net` (float16, however it was trained) and, if given,
    `metadata`, replacing what it held. A network of several styles needs metadata that
    names them (style_names)."""
    if net.num_styles > 1:
        style_names(metadata, net.num_styles)
    arrays = {f"w{i:03d}": np.asarray(w, np.float16) for i, w in enumerate(net.get_weights())}
    # A network trained in bfloat16 is stored as one that computes in float32: the
    # precision it runs in is chosen where it runs.
    arrays[_CONFIG_KEY] = np.array(json.dumps({**net.get_config(), "dtype": "float32"}))

    def write(folder):
        with open(os.path.join(folder, WEIGHTS_FILE), "wb") as f:
            np.savez_compressed(f, **arrays)
        if metadata is not None:
            write_json(os.path.join(folder, METADATA_FILE), metadata)

    replace_directory(directory, write)


def read_npz(path):
    """{name: array} of an `.npz` file; one `ValueError` line when it is damaged (cut
    short, corrupted, empty) or is no `.npz` archive at all."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not an .npz archive (empty, cut short or another kind of file)")
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{path}: damaged .npz archive ({e})") from None


def _network(config, path):
    """The TransformerNet of a stored config, unbuilt; checked first, since a crafted one
    could ask for a huge network or not be a config at all."""
    from perceptual_style.transformer_net import TransformerNet  # Keras: not needed by --help

    if not isinstance(config, dict):
        raise ValueError(f"{path}: its config is not a TransformerNet's")
    try:
        # Stored as float32; it computes in the precision chosen where it runs.
        return TransformerNet.from_config({**config, "dtype": None})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad TransformerNet config ({e})") from None


def find_saved_dir(saved_dir):
    """`saved_dir`, except that the default, when it does not exist here, means the
    savedNets/ of this package's checkout (so commands work from any folder)."""
    if os.path.isdir(saved_dir) or saved_dir != DEFAULT_DIR:
        return saved_dir
    return REPO_SAVED_DIR


def list_styles(saved_dir):
    """Sorted names of the trained styles in `saved_dir`. Hidden folders are skipped: they
    are saves in progress, or left (`.tmp-*`) by a save that was killed."""
    if not os.path.isdir(saved_dir):
        return []
    return sorted(name for name in os.listdir(saved_dir) if not name.startswith(".")
                  and os.path.isfile(os.path.join(saved_dir, name, WEIGHTS_FILE)))


def resolve(name_or_path, saved_dir=DEFAULT_DIR):
    """A style name in `saved_dir`, or a folder, -> the folder holding its weights."""
    for directory in (name_or_path, os.path.join(saved_dir, name_or_path)):
        if os.path.isfile(os.path.join(directory, WEIGHTS_FILE)):
            return directory
    raise FileNotFoundError(
        f"no trained style {name_or_path!r}: expected {os.path.join(saved_dir, name_or_path, WEIGHTS_FILE)}")


def read_weights(path):
    """(architecture config, float16 weights) of a weights file, without building a network
    (Keras-free: tools/torch_peer.py reads styles too)."""
    stored = read_npz(path)
    try:
        config = json.loads(str(stored[_CONFIG_KEY]))
        weights = [stored[f"w{i:03d}"] for i in range(len(stored) - 1)]
    except (ValueError, KeyError) as e:
        raise ValueError(f"{path}: not a readable style weights file ({e!s:.200})") from None
    return config, weights


def load_transformer(name_or_path, saved_dir=DEFAULT_DIR, precision="float32"):
    """Rebuilds a saved TransformerNet with float32 weights, computing in `precision`
    (float32, or bfloat16 where the CPU has it natively: see precision.py)."""
    from perceptual_style.precision import policy

    path = os.path.join(resolve(name_or_path, saved_dir), WEIGHTS_FILE)
    config, weights = read_weights(path)
    with policy(precision):
        net = _network(config, path)
        net.build((None, None, None, 3))
    expected = [tuple(w.shape) for w in net.weights]
    if [w.shape for w in weights] != expected:
        raise ValueError(f"{path}: weights do not match the architecture in its config")
    net.set_weights([w.astype(np.float32) for w in weights])
    return net


def load_style_names(name_or_path, saved_dir, num_styles):
    """style_names from a saved network's metadata; one `ValueError` line, naming the
    file, when it cannot be read or does not name them."""
    path = os.path.join(resolve(name_or_path, saved_dir), METADATA_FILE)
    try:
        with open(path) as f:
            return style_names(json.load(f), num_styles)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: {getattr(e, 'strerror', None) or e}") from None


def load_metadata(name_or_path, saved_dir=DEFAULT_DIR):
    with open(os.path.join(resolve(name_or_path, saved_dir), METADATA_FILE)) as f:
        return json.load(f)
