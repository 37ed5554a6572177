"""Where and in what precision a model trains: one device, every GPU of one host, or several
hosts (TensorFlow's tf.distribute), in float32 or mixed precision.

Batch sizes in a TrainConfig are per replica; a step takes `replicas()` times as many images.
"""

import contextlib
import json
import os
from dataclasses import dataclass

import keras

from bloodcell.config import STRATEGIES


@dataclass(frozen=True)
class Placement:
    """A distribution strategy (None: Keras' default device) and whether this process writes
    the run: every worker trains, only the chief keeps what it wrote."""

    name: str
    strategy: object | None = None
    chief: bool = True

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1


def place(name: str) -> Placement:
    """The placement called `name`. Create it before anything else touches TensorFlow: a
    multi-worker strategy configures the collective operations of the whole program."""
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy '{name}'; choose one of: {', '.join(STRATEGIES)}.")
    if name == "default":
        return Placement(name)
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"--strategy {name} runs on TensorFlow's tf.distribute; set KERAS_BACKEND=tensorflow "
            f"(this process uses {keras.backend.backend()})."
        )
    import tensorflow as tf

    if name == "mirrored":
        return Placement(name, tf.distribute.MirroredStrategy())
    if not os.environ.get("TF_CONFIG"):
        raise ValueError(
            "--strategy multiworker reads the cluster and this worker's place in it from the "
            "TF_CONFIG environment variable, which is not set (see the README)."
        )
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    _mend_keras_reductions(strategy)
    return Placement(name, strategy, chief=_is_chief(json.loads(os.environ["TF_CONFIG"])))


def _is_chief(tf_config: dict) -> bool:
    """The task called 'chief', or worker 0 of a cluster that names none (TensorFlow's rule)."""
    task = tf_config.get("task", {})
    if "chief" in tf_config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def _mend_keras_reductions(strategy) -> None:
    """Two reductions that Keras 3 asks of a multi-worker strategy fail (keras-team/keras#20585):
    - it builds the model from the first batch averaged over every replica, and an (images,
      labels) pair cannot be averaged across workers; building needs only the batch's shapes,
      so it gets this worker's own batch;
    - it averages each logged loss and metric along axis 0, which a scalar does not have; a
      scalar is averaged whole."""
    reduce = strategy.reduce

    def mended(reduce_op, value, axis=None):
        if isinstance(value, tuple | list | dict):
            return keras.tree.map_structure(lambda v: strategy.experimental_local_results(v)[0], value)
        if axis is not None and strategy.experimental_local_results(value)[0].shape.rank == 0:
            axis = None
        return reduce(reduce_op, value, axis)

    strategy.reduce = mended


def replicas() -> int:
    """Model replicas that share one training step here: 1 unless inside a tf.distribute scope."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def accelerator() -> str:
    """The accelerator Keras computes on here (its device name), or 'none'."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return (
            tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "none"
        )
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return device.device_kind if device.platform != "cpu" else "none"
    return "none"


def mixed_policy() -> str:
    """Keras' mixed-precision policy for this machine: float16 on a GPU, bfloat16 on a CPU."""
    return "mixed_float16" if accelerator() != "none" else "mixed_bfloat16"


@contextlib.contextmanager
def precision(mixed: bool):
    """Build models inside in float32 or, if `mixed`, in this machine's mixed policy (layers
    compute in 16 bits, weights stay float32, and every model's logits and softmax stay float32).
    Yields the policy's name."""
    if not mixed:
        yield "float32"
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(mixed_policy())
    try:
        yield keras.config.dtype_policy().name
    finally:
        keras.config.set_dtype_policy(previous)
