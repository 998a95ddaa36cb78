"""TensorBoard event files without TensorFlow, so both backends log the same way.

Uses the `tensorboard` package's own event writer and protos (the package TensorBoard is
viewed with). Where it is not installed, `SummaryWriter.open` returns None and training
goes on without TensorBoard logs.
"""

import io
import time

from absl import logging
from PIL import Image


class SummaryWriter:
    def __init__(self, logdir):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._writer = EventFileWriter(logdir)

    @classmethod
    def open(cls, logdir):
        try:
            return cls(logdir)
        except ImportError:
            logging.warning("the tensorboard package is not installed: no TensorBoard logs")
            return None

    def _write(self, step, values):
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(**v) for v in values])
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                               summary=summary))

    def scalars(self, step, scalars):
        self._write(step, [{"tag": tag, "simple_value": float(value)}
                           for tag, value in scalars.items()])

    def image(self, step, tag, array):
        from tensorboard.compat.proto import summary_pb2

        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "PNG")
        encoded = summary_pb2.Summary.Image(height=array.shape[0], width=array.shape[1],
                                            colorspace=3, encoded_image_string=buffer.getvalue())
        self._write(step, [{"tag": tag, "image": encoded}])

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()
