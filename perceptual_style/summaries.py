"""TensorBoard event files without TensorFlow, so both backends log the same way.

Events are the `tensorboard` package's own protos, framed by its `RecordWriter` into an
`events.out.tfevents.*` file (its `EventFileWriter` would import TensorFlow when installed,
which the JAX path must not). Where `tensorboard` is missing, `SummaryWriter.open` returns
None and training goes on without TensorBoard logs.
"""

import io
import os
import socket
import time

from absl import logging
from PIL import Image


class SummaryWriter:
    def __init__(self, logdir):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{time.time():010.0f}.{socket.gethostname()}.{os.getpid()}"
        self._records = RecordWriter(open(os.path.join(logdir, name), "wb"))
        self._add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    @classmethod
    def open(cls, logdir):
        try:
            return cls(logdir)
        except ImportError:
            logging.warning("the tensorboard package is not installed: no TensorBoard logs")
            return None

    def _add(self, event):
        self._records.write(event.SerializeToString())

    def _summary(self, step, values):
        summary = self._summary_pb2.Summary(value=values)
        self._add(self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def scalars(self, step, scalars):
        Value = self._summary_pb2.Summary.Value
        self._summary(step, [Value(tag=tag, simple_value=float(value))
                             for tag, value in scalars.items()])

    def image(self, step, tag, array):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "PNG")
        Summary = self._summary_pb2.Summary
        encoded = Summary.Image(height=array.shape[0], width=array.shape[1], colorspace=3,
                                encoded_image_string=buffer.getvalue())
        self._summary(step, [Summary.Value(tag=tag, image=encoded)])
        self.flush()

    def flush(self):
        self._records.flush()

    def close(self):
        self._records.close()
