"""Real-time neural style transfer (Johnson et al. 2016) for Keras 3."""

__version__ = "0.1.0"
