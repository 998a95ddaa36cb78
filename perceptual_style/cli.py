"""What every command-line tool here shares: help and flag errors before any heavy import,
a bad flag in one line like every other error, flags that several commands take defined
once (so that the commands can be imported into one process), and a console that carries
our own lines."""

import contextlib
import importlib
import os
import re
import sys

from absl import app, flags

from perceptual_style.saved_nets import DEFAULT_DIR

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
    if module_name == "__main__":  # absl's name for the program's own module
        module_name = sys.argv[0]
    if "saved_dir" not in flags.FLAGS:
        flags.DEFINE_string("saved_dir", DEFAULT_DIR, "Folder of trained styles "
                            "(<saved_dir>/<name>/). When the default does not exist here, "
                            "commands that read styles use the savedNets/ of this "
                            "package's checkout.", module_name=module_name)
    flags.FLAGS.register_key_flag_for_module(module_name, flags.FLAGS["saved_dir"])


def define_precision(module_name):
    """--precision, shared by training and stylizing (defined once, as --saved_dir is)."""
    from perceptual_style.precision import PRECISIONS

    if module_name == "__main__":
        module_name = sys.argv[0]
    if "precision" not in flags.FLAGS:
        flags.DEFINE_enum("precision", "float32", PRECISIONS, "What the networks compute in: "
                          "bfloat16 runs about twice as fast on CPUs with native bf16 "
                          "(AVX512_BF16, AMX), with weights, losses and stylized images kept "
                          "float32; auto picks it there on the TensorFlow backend.",
                          module_name=module_name)
    flags.FLAGS.register_key_flag_for_module(module_name, flags.FLAGS["precision"])


def require(*names):
    """Refuses, in one line, to go on without the flags `names` (path flags with no
    default: no path of a development machine is one)."""
    for name in names:
        if not flags.FLAGS[name].value:
            raise CommandError(f"--{name} is required (see --helpfull)")


# Set by the user to choose what TensorFlow logs: then nothing is dropped.
USER_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")


@contextlib.contextmanager
def native_stderr_dropped():
    """Drops what native code writes to stderr (file descriptor 2) in the block, where no
    log level reaches: TensorFlow's start-up lines (oneDNN, CUDA drivers, CPU features),
    the TFLite calibrator's and LiteRT's. TF_CPP_MIN_LOG_LEVEL=0 shows them."""
    if USER_LOG_LEVEL is not None:
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


def import_quietly(modules):
    """Imports `modules` with TensorFlow's start-up lines and its C++ log lines below errors
    dropped, unless the user set TF_CPP_MIN_LOG_LEVEL."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_dropped():
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
