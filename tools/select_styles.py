"""A trained network of several styles cut to some of them, without retraining: e.g. to
ship only the styles that pass tools/quality.py's bar.

    python tools/select_styles.py --net=paintings --styles=snight,wave,mosaic \\
        --output=savedNets/paintings3

The new network has the styles kept in the order given, each computing exactly as in the
original (its convolutions and their normalization rows: transformer_net.select_styles).
Its metadata is the original's, with `styles` cut to them and a `selected_from` record
(saved_nets.selected_metadata). It is written as a unit, and takes the place of a network
already in --output only with --overwrite (--output may be --net's own folder).
"""

import os

from absl import flags

from perceptual_style import cli, saved_nets

flags.DEFINE_string("net", None, "The network of several styles: a name in --saved_dir or a "
                    "folder holding weights.npz; required.")
cli.define_saved_dir(__name__)
flags.DEFINE_list("styles", None, "The styles to keep (at least 2), by name, in the order "
                  "the new network has them; required.")
flags.DEFINE_string("output", None, "The new network's folder (e.g. savedNets/NAME; its "
                    "name is the folder's); required.")
flags.DEFINE_bool("overwrite", False, "Replace the trained network in --output.")
FLAGS = flags.FLAGS


def _reason(error):
    """An OSError or ValueError as one line, naming its file where it has one."""
    filename = getattr(error, "filename", None)
    return f"{filename}: {error.strerror}" if filename else str(error)


def kept_indices(network, names, kept):
    """The rows of `kept` (style names) among `names`, a network's styles; a one-line
    CommandError for a style it does not have or one given twice."""
    for i, style in enumerate(kept):
        if style not in names:
            raise cli.CommandError(f"{network} has no style {style!r} "
                                   f"(its styles: {', '.join(names)})")
        if style in kept[:i]:
            raise cli.CommandError(f"--styles: {style!r} is given twice")
    return [names.index(style) for style in kept]


def check_output(output):
    """--output may be new or an empty folder; a trained network only with --overwrite;
    anything else never (replacing it would delete what it holds)."""
    if not os.path.lexists(output) or os.path.isdir(output) and not os.listdir(output):
        return
    if not os.path.isfile(os.path.join(output, saved_nets.WEIGHTS_FILE)):
        raise cli.CommandError(f"{output} exists and holds no trained network: give a new "
                               "--output")
    if not FLAGS.overwrite:
        raise cli.CommandError(f"{output} already holds a trained network: give another "
                               "--output, or pass --overwrite to replace it")


def main(argv):
    del argv
    from perceptual_style.transformer_net import select_styles

    cli.require("net", "styles", "output")
    if len(FLAGS.styles) < 2:
        raise cli.CommandError("--styles: keep at least 2 styles (one style of a network is "
                               "applied as stylize --style=NET:STYLE)")
    check_output(FLAGS.output)
    saved_dir = saved_nets.find_saved_dir(FLAGS.saved_dir)
    try:
        folder = saved_nets.resolve(FLAGS.net, saved_dir)
        net = saved_nets.load_transformer(folder)
        metadata = saved_nets.load_metadata(folder)
        names = saved_nets.style_names(metadata, net.num_styles) if net.num_styles > 1 else []
    except (OSError, ValueError) as e:
        raise cli.CommandError(f"--net: {_reason(e)}") from None
    network = os.path.basename(os.path.normpath(folder))
    if not names:
        raise cli.CommandError(f"{network} is a network of one style: nothing to select")
    indices = kept_indices(network, names, FLAGS.styles)
    name = os.path.basename(os.path.normpath(FLAGS.output))
    try:
        saved_nets.save_transformer(select_styles(net, indices), FLAGS.output,
                                    saved_nets.selected_metadata(metadata, FLAGS.styles, name,
                                                                 network))
    except OSError as e:
        raise cli.CommandError(f"cannot write --output: {_reason(e)}") from None
    print(f"Kept {', '.join(FLAGS.styles)} of {network}'s {len(names)} styles: "
          f"{os.path.join(FLAGS.output, saved_nets.WEIGHTS_FILE)}")
    return 0


if __name__ == "__main__":
    cli.run(main, "select_styles", imports=["keras"])
