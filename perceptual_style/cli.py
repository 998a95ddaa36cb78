"""What every command-line tool here shares: help and flag errors before any heavy import,
a bad flag in one line like every other error, and a console that carries our own lines."""

import contextlib
import importlib
import os
import re
import sys

from absl import app, flags

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


def run(main, program, imports=()):
    """`app.run(main)`, with help exiting 0 (absl's exits 1), absl's two-line flag errors
    replaced by `<program>: error: ...`, and `imports`, the modules that load a backend,
    imported quietly once the flags are parsed, so that help and flag errors are instant."""

    def parse_flags(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            sys.exit(f"{program}: error: {e} (see --helpfull)")
        except SystemExit:  # --help, --helpshort, --helpfull, --helpxml: printed, then exit(1)
            sys.exit(0)

    def start(argv):
        try:
            import_quietly(imports)
        except ImportError as e:
            sys.exit(f"{program}: error: {e}")
        return main(argv)

    app.run(start, flags_parser=parse_flags)
