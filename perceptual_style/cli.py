"""What every command-line tool here shares: a bad flag is one line, like every other error."""

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


def run(main, program):
    """`app.run(main)`, with absl's two-line flag errors replaced by `<program>: error: ...`."""

    def parse_flags(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            sys.exit(f"{program}: error: {e} (see --helpfull)")

    app.run(main, flags_parser=parse_flags)
