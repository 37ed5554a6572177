"""bloodcell: peripheral blood cell image classification."""

import os

# TensorFlow's start-up chatter hides the answers on the command line; users can still set it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
