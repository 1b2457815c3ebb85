"""The TF Serving model folder: integer versions, models.config, batching.config, warm-up requests.

```
models_root/
  models.config                 ModelServerConfig (text format): one entry per model
  batching.config               BatchingParameters (text format), for --enable_batching
  <name>/<version>/             a SavedModel; integer versions, the highest is the latest
    saved_model.pb, variables/, assets/
    assets.extra/tf_serving_warmup_requests   TFRecord of PredictionLog(PredictRequest)
```

Stock TF Serving runs this folder as is (see `docker_command`). A new version is written only when
its content differs from the latest one, so re-running an export that changed nothing keeps the
served version; versions appear by an atomic rename of a fully written folder, because TF Serving
polls the model folder and would otherwise load a half-copied version.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from serving.check import SavedModelCheckError, check_saved_model  # noqa: F401  (re-exported)
from serving.signatures import (
    example_inputs,
    input_dtypes,
    read_meta_graph,
    tensor_proto_from_array,
)

MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
DOCKER_MODELS_ROOT = "/models"
DEFAULT_KEEP = 2
_STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class BatchingOptions:
    """`BatchingParameters` for CPU serving: no timeout (a batch is whatever queued while the
    previous one ran, so a lone request is never held back), batch threads on half the cores
    (the other half reads, parses and answers requests), a bounded queue. Measured on 2 cores
    (benchmarks/serving.py, recommender, 8 clients): one thread and no timeout answer 75% of
    the in-process requests/s, two threads 62%; a 2 ms timeout added 3 ms at 1 client."""

    max_batch_size: int = 32
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 100
    num_batch_threads: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2))
    pad_variable_length_inputs: bool = False
    allowed_batch_sizes: tuple[int, ...] = ()


def read_batching_config(path: str | Path) -> BatchingOptions:
    """`BatchingOptions` of a text-format `BatchingParameters` file (unset fields: defaults)."""
    from google.protobuf import text_format

    from serving.batching_proto import batching_parameters_class

    params = text_format.Parse(Path(path).read_text(), batching_parameters_class()())
    defaults = BatchingOptions()
    names = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
             "num_batch_threads")
    values = {name: (getattr(params, name).value if params.HasField(name)
                     else getattr(defaults, name)) for name in names}
    return BatchingOptions(**values, pad_variable_length_inputs=params.pad_variable_length_inputs,
                           allowed_batch_sizes=tuple(params.allowed_batch_sizes))


def model_versions(model_dir: str | Path) -> list[int]:
    """Integer versions present under `model_dir`, ascending (other entries are ignored, as by
    TF Serving)."""
    return sorted(version_dirs(model_dir))


def version_dirs(model_dir: str | Path) -> dict[int, Path]:
    """Version number -> folder, for every integer-named folder under `model_dir`."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return {}
    return {int(p.name): p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()}


def content_digest(folder: str | Path) -> str:
    """SHA-256 over every file's relative path and bytes: equal digests mean equal content."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def export_model(
    saved_model_dir: str | Path,
    models_root: str | Path,
    name: str,
    *,
    warmup_inputs: Mapping[str, Mapping[str, Any]] | None = None,
    keep: int = DEFAULT_KEEP,
) -> int:
    """Copy a SavedModel to `models_root/<name>/<version>/` and return the version now latest.

    Args:
        saved_model_dir: the SavedModel to serve.
        models_root: TF Serving's model base folder.
        name: the served model name.
        warmup_inputs: signature name -> input name -> example values, e.g.
            `{"serving_default": {"text": ["great battery"]}}`; inputs not given get defaults of
            their dtype and shape. Written as `assets.extra/tf_serving_warmup_requests`.
            None: one request for the default signature, all inputs defaulted.
        keep: how many of the newest versions to keep on disk.
    """
    if keep < 1:
        raise ValueError(f"`keep` must be at least 1. Received: keep={keep}")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"`name` must be a plain folder name. Received: name={name!r}")
    source = Path(saved_model_dir)
    meta_graph = read_meta_graph(source)  # fails early on something that is not a SavedModel
    model_dir = Path(models_root) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(model_dir)

    staging = model_dir / f"{_STAGING_PREFIX}{uuid.uuid4().hex}"
    try:
        shutil.copytree(source, staging)
        write_warmup_requests(staging, name, meta_graph.signature_def, warmup_inputs)
        existing = version_dirs(model_dir)
        latest = max(existing, default=0)
        if latest and content_digest(existing[latest]) == content_digest(staging):
            version = latest
        else:
            version = latest + 1
            staging.rename(model_dir / str(version))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    existing = version_dirs(model_dir)
    for old in sorted(existing)[:-keep]:
        shutil.rmtree(existing[old], ignore_errors=True)
    return version


def _remove_stale_staging(model_dir: Path) -> None:
    for path in model_dir.glob(f"{_STAGING_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)


def warmup_requests(
    name: str,
    signature_defs: Mapping[str, Any],
    warmup_inputs: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Any]:
    """`PredictRequest`s for the given signatures' example inputs (see `export_model`)."""
    from tensorflow_serving.apis import predict_pb2

    warmup_inputs = warmup_inputs or {"serving_default": {}}
    requests = []
    for signature_name, samples in warmup_inputs.items():
        if signature_name not in signature_defs:
            raise ValueError(f"Warm-up inputs name signature {signature_name!r}, which the model "
                             f"does not have. Signatures: {sorted(signature_defs)}")
        signature_def = signature_defs[signature_name]
        unknown = set(samples) - set(signature_def.inputs)
        if unknown:
            raise ValueError(f"Warm-up inputs {sorted(unknown)} are not inputs of signature "
                             f"{signature_name!r}. Inputs: {sorted(signature_def.inputs)}")
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.model_spec.signature_name = signature_name
        dtypes = input_dtypes(signature_def)
        for input_name, array in example_inputs(signature_def, samples).items():
            request.inputs[input_name].CopyFrom(tensor_proto_from_array(array, dtypes[input_name]))
        requests.append(request)
    return requests


def write_warmup_requests(
    version_dir: str | Path,
    name: str,
    signature_defs: Mapping[str, Any],
    warmup_inputs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write `assets.extra/tf_serving_warmup_requests`: TFRecord of `PredictionLog` records that
    TF Serving replays when it loads the version, so the first real request is not slow."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in warmup_requests(name, signature_defs, warmup_inputs):
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.CopyFrom(request)
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(path: str | Path) -> list[Any]:
    """The `PredictionLog` records of a warm-up file."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs


def write_models_config(
    models_root: str | Path,
    names: Iterable[str] | None = None,
    *,
    absolute_paths: bool = False,
    serve_versions: int = DEFAULT_KEEP,
) -> Path:
    """Write `models_root/models.config` listing `names` (default: every model folder with a
    version). Base paths are `/models/<name>` (the folder mounted at /models in the TF Serving
    container) or, with `absolute_paths`, this machine's absolute folders. `serve_versions`
    newest versions are loaded (`model_version_policy { latest { num_versions } }`), so a request
    may name an older version still on disk."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    root = Path(models_root)
    if names is None:
        names = [p.name for p in sorted(root.iterdir()) if model_versions(p)]
    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = (str((root / name).resolve()) if absolute_paths
                           else f"{DOCKER_MODELS_ROOT}/{name}")
        entry.model_platform = "tensorflow"
        if serve_versions != 1:
            entry.model_version_policy.latest.num_versions = serve_versions
    path = root / MODELS_CONFIG
    _write_atomically(path, text_format.MessageToString(config))
    return path


def read_models_config(path: str | Path) -> Any:
    """Parse a text-format `ModelServerConfig`."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    return text_format.Parse(Path(path).read_text(), model_server_config_pb2.ModelServerConfig())


def write_batching_config(
    models_root: str | Path, options: BatchingOptions | None = None
) -> Path:
    """Write `models_root/batching.config` (text-format `BatchingParameters`)."""
    from google.protobuf import text_format

    from serving.batching_proto import batching_parameters_class

    options = options or BatchingOptions()
    params = batching_parameters_class()()
    params.max_batch_size.value = options.max_batch_size
    params.batch_timeout_micros.value = options.batch_timeout_micros
    params.max_enqueued_batches.value = options.max_enqueued_batches
    params.num_batch_threads.value = options.num_batch_threads
    params.pad_variable_length_inputs = options.pad_variable_length_inputs
    params.allowed_batch_sizes.extend(options.allowed_batch_sizes)
    path = Path(models_root) / BATCHING_CONFIG
    _write_atomically(path, text_format.MessageToString(params))
    return path


def docker_command(models_root: str | Path, *, batching: bool = True) -> str:
    """The command that serves `models_root` with stock TF Serving in Docker."""
    command = (
        "docker run --rm -p 8501:8501 -p 8500:8500 "
        f"-v {Path(models_root).resolve()}:{DOCKER_MODELS_ROOT} tensorflow/serving "
        f"--model_config_file={DOCKER_MODELS_ROOT}/{MODELS_CONFIG}"
    )
    if batching:
        command += (f" --enable_batching --batching_parameters_file="
                    f"{DOCKER_MODELS_ROOT}/{BATCHING_CONFIG}")
    return command


def binary_command(models_root: str | Path, *, batching: bool = True) -> str:
    """The command that serves `models_root` with a locally installed `tensorflow_model_server`
    (for a models.config written with absolute base paths)."""
    root = Path(models_root).resolve()
    command = (f"tensorflow_model_server --port=8500 --rest_api_port=8501 "
               f"--model_config_file={root / MODELS_CONFIG}")
    if batching:
        command += f" --enable_batching --batching_parameters_file={root / BATCHING_CONFIG}"
    return command


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_text(text)
    temporary.replace(path)
