"""Trains several styles in turns, so all of them progress together.

Each round runs `python -m perceptual_style.train --flagfile=styles/<name>.flags --steps=S`
for every style, with S growing by --round_steps each round. Every run resumes from the
style's checkpoint and refreshes `savedNets/<name>/`, so stopping this at any point leaves
every style trained as far as the machine got (its metadata says how far). With
--time_budget, each run gets an equal share of what is left among the styles still to run
in the round, and none starts with under a minute left. Flags after `--` go to every
training run:

    python tools/train_styles.py --styles=snight,wave --steps=10000 --round_steps=500 \
        --time_budget=2h -- --content_dir=PHOTOS
"""

import glob
import os
import subprocess
import sys
import time

from absl import flags

from perceptual_style import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_list("styles", None, "Style names (flagfiles in styles/). Default: all of them.")
flags.DEFINE_integer("steps", 10000, "Final number of steps for every style.", lower_bound=1)
flags.DEFINE_integer("round_steps", 500, "Steps each style gets per round.", lower_bound=1)
cli.define_duration("time_budget", None, "Stop the whole campaign after this long (e.g. 2h).")
FLAGS = flags.FLAGS


def style_names():
    found = sorted(os.path.splitext(os.path.basename(p))[0]
                   for p in glob.glob(os.path.join(REPO, "styles", "*.flags")))
    names = FLAGS.styles or found
    unknown = sorted(set(names) - set(found))
    if unknown:
        sys.exit(f"train_styles: error: no flagfile styles/<name>.flags for {', '.join(unknown)}")
    return names


def main(argv):
    extra = argv[1:]
    names = style_names()
    deadline = time.monotonic() + FLAGS.time_budget if FLAGS.time_budget else None
    target = 0
    while target < FLAGS.steps:
        target = min(target + FLAGS.round_steps, FLAGS.steps)
        for done, name in enumerate(names):
            budget = []
            if deadline is not None:
                left = deadline - time.monotonic()
                if left < 60:
                    print("== time budget spent", flush=True)
                    return 0
                # An equal share of what is left for each style still to run this round,
                # so a slow machine cannot spend the whole budget on the first style.
                budget = [f"--time_budget={left / (len(names) - done):.0f}s"]
            print(f"== {name}: to step {target} of {FLAGS.steps}", flush=True)
            cmd = [sys.executable, "-m", "perceptual_style.train",
                   f"--flagfile=styles/{name}.flags", f"--steps={target}", *budget, *extra]
            status = subprocess.call(cmd, cwd=REPO)
            if status:
                sys.exit(f"train_styles: error: {name} stopped with status {status}")


if __name__ == "__main__":
    cli.run(main, "train_styles", arguments=True)
