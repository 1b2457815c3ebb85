"""The models a server holds: which versions to load, loading them, and looking them up.

Follows TF Serving's model manager where a client can see it:
- models come from a text-format `ModelServerConfig` (`model_config_list`) or one
  `--model_name`/`--model_base_path` pair; each version is an integer folder under the base path;
- `model_version_policy` picks the versions to serve (`latest { num_versions }`, default 1;
  `all {}`; `specific { versions }`) and `version_labels` names versions;
- each version goes START -> LOADING -> AVAILABLE (or END with the load error), and END when the
  policy drops it; `refresh()` re-reads the folders, so a version exported while the server runs
  is picked up (TF Serving polls its file system the same way);
- `reload()` (gRPC `HandleReloadConfigRequest`, or a changed models.config) makes the registry serve
  exactly a new model list: new models load, removed ones unload, changed ones are updated and
  the others serve on untouched; a list TF Serving would refuse changes nothing;
- a version replays `assets.extra/tf_serving_warmup_requests` before it becomes AVAILABLE;
- lookups fail with TF Serving's messages ("Servable not found for request: Latest(name)", ...).

A loaded version (`Servable`) runs signatures with `tf.saved_model.load` and nothing else.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from concurrent.futures import Executor, Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from google.protobuf import text_format

from serving.batching import BatchScheduler, batchable
from serving.json_tensor import check_input_shape
from serving.layout import (
    WARMUP_FILE,
    BatchingOptions,
    read_models_config,
    read_warmup_requests,
    version_dirs,
)
from serving.signatures import (
    DEFAULT_SIGNATURE,
    SERVE_TAG,
    array_from_tensor_proto,
    input_dtypes,
    read_meta_graph,
    shape_of,
)
from serving.status import ServingStatus, from_tf_error, invalid_argument, not_found

log = logging.getLogger("opinionrec.serving")

DOCKER_MODELS_PREFIX = "/models"
_SERVING_METHODS = ("tensorflow/serving/predict", "tensorflow/serving/classify",
                    "tensorflow/serving/regress")
_MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many warm-up records
# A signature whose calls average under this may run on an otherwise idle event loop.
QUICK_CALL_SECONDS = 0.005


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions on disk to serve (TF Serving's `ServableVersionPolicy`)."""

    kind: str = "latest"  # "latest", "all" or "specific"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: Sequence[int]) -> list[int]:
        available = sorted(available)
        if self.kind == "all":
            return available
        if self.kind == "specific":
            return [v for v in available if v in self.versions]
        return available[-max(self.num_versions, 1):] if available else []


@dataclass(frozen=True)
class ModelSource:
    """One served model: its name, base folder, version policy and version labels."""

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=dict)


def resolve_base_path(base_path: str, config_dir: Path) -> Path:
    """A config's base path on this machine.

    `/models/<name>` is where the TF Serving container mounts the model folder; when it does not
    exist here it means `<config folder>/<name>`. Relative paths are relative to the config folder.
    """
    path = Path(base_path)
    if not path.is_absolute():
        return (config_dir / path).resolve()
    if path.exists():
        return path
    parts = path.parts
    if len(parts) >= 2 and "/" + parts[1] == DOCKER_MODELS_PREFIX:
        return config_dir.joinpath(*parts[2:]).resolve()
    return path


def sources_from_config(config_path: str | Path) -> list[ModelSource]:
    """Model sources of a text-format `ModelServerConfig` file (ValueError if it is not a valid
    one; relative base paths are relative to its folder)."""
    config_path = Path(config_path).resolve()
    try:
        return sources_from_proto(read_models_config(config_path), config_path.parent)
    except (ServingStatus, text_format.ParseError) as error:
        raise ValueError(f"{config_path}: {error}") from None


def sources_from_proto(config: Any, config_dir: Path | None) -> list[ModelSource]:
    """Model sources of a `ModelServerConfig`, checked as TF Serving checks one (INVALID_ARGUMENT
    with its messages). Relative base paths are relative to `config_dir`; without one they are
    refused, as TF Serving refuses them."""
    if config.WhichOneof("config") != "model_config_list":
        raise invalid_argument("ModelServerConfig type not supported: only ModelConfigList is "
                               "currently supported")
    sources = []
    for entry in config.model_config_list.config:
        if entry.model_platform not in ("", "tensorflow"):
            raise invalid_argument(f"Model {entry.name} has model_platform "
                                   f"{entry.model_platform!r}; only 'tensorflow' is supported")
        if not entry.base_path or (config_dir is None and not Path(entry.base_path).is_absolute()):
            raise invalid_argument(f"Expected model {entry.name} to have an absolute path or URI; "
                                   f"got base_path()={entry.base_path}")
        sources.append(ModelSource(
            name=entry.name,
            base_path=(resolve_base_path(entry.base_path, config_dir) if config_dir is not None
                       else Path(entry.base_path)),
            policy=_policy_from_proto(entry.model_version_policy),
            labels=dict(entry.version_labels),
        ))
    _check_unique_names(sources)
    return sources


def _check_unique_names(sources: Sequence[ModelSource]) -> None:
    names = [source.name for source in sources]
    for name in names:
        if names.count(name) > 1:
            raise invalid_argument(f"Illegal to list model {name} multiple times in config list")


def _policy_from_proto(policy: Any) -> VersionPolicy:
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return VersionPolicy("all")
    if kind == "specific":
        return VersionPolicy("specific", versions=tuple(policy.specific.versions))
    if kind == "latest":
        return VersionPolicy("latest", num_versions=policy.latest.num_versions or 1)
    return VersionPolicy()


class Servable:
    """One loaded model version: its signature defs and callable signatures."""

    def __init__(self, name: str, version: int, path: Path,
                 batching: BatchingOptions | None = None) -> None:
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  TF Serving links TF Text ops in; register them too

        self.name, self.version, self.path = name, version, Path(path)
        self.signature_defs = dict(read_meta_graph(self.path).signature_def)
        self._model = tf.saved_model.load(str(self.path), tags=[SERVE_TAG])
        signatures = dict(self._model.signatures)
        self._input_specs = {sig: dict(fn.structured_input_signature[1])
                             for sig, fn in signatures.items()}
        self._functions = {sig: _direct_call(fn, self._input_specs[sig])
                           for sig, fn in signatures.items()}
        # Each input's dims (None where any size fits) and dtype, for checks in plain Python.
        self._input_checks = {
            sig: {name: (spec.shape.as_list() if spec.shape.rank is not None else None,
                         spec.dtype) for name, spec in specs.items()}
            for sig, specs in self._input_specs.items()}
        # What every request checks against, read from the protos once (walking a protobuf map
        # and naming its dtypes costs more than the checks themselves).
        self._input_dtypes = {sig: input_dtypes(signature_def)
                              for sig, signature_def in self.signature_defs.items()}
        self._input_names = {sig: frozenset(signature_def.inputs)
                             for sig, signature_def in self.signature_defs.items()}
        self._output_names = {sig: frozenset(signature_def.outputs)
                              for sig, signature_def in self.signature_defs.items()}
        self._call_seconds: dict[str, float] = {}  # moving average of each signature's calls
        # One batch scheduler per signature that batches, when batching is on.
        self.schedulers: dict[str, BatchScheduler] = {}
        for sig, signature_def in self.signature_defs.items():
            if batching is not None and sig in self._functions and batchable(
                    {k: shape_of(v) for k, v in signature_def.inputs.items()},
                    {k: shape_of(v) for k, v in signature_def.outputs.items()}):
                self.schedulers[sig] = BatchScheduler(
                    functools.partial(self._call, sig), batching, f"{name}-{version}-{sig}")

    def _call(self, signature_name: str, tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        outputs = self._functions[signature_name](**tensors)
        outputs = {alias: value.numpy() for alias, value in outputs.items()}
        seconds = time.perf_counter() - start
        # Rises at once with a slow call, decays over a few dozen quick ones.
        last = self._call_seconds.get(signature_name, 0.0)
        self._call_seconds[signature_name] = max(seconds, 0.8 * last + 0.2 * seconds)
        return outputs

    def is_quick(self, signature_name: str) -> bool:
        """Whether the signature's recent calls all took about QUICK_CALL_SECONDS or less (a
        moving average that a slow call raises at once): short enough to run on a caller that
        should not be held up long. Unknown until the signature has been called."""
        seconds = self._call_seconds.get(signature_name or DEFAULT_SIGNATURE)
        return seconds is not None and seconds < QUICK_CALL_SECONDS

    def close(self) -> None:
        """Stop the batch threads (requests still queued get UNAVAILABLE)."""
        for scheduler in self.schedulers.values():
            scheduler.close()

    def input_dtypes(self, signature_name: str) -> dict[str, str]:
        """Input name -> `DT_*` of a signature (as TF Serving's REST handler looks it up)."""
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self.signature_defs:
            raise invalid_argument(f'Serving signature name: "{name}" not found in signature def')
        return dict(self._input_dtypes[name])

    def predict(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        """Run a signature on numpy inputs; outputs by alias (all, or those in `output_filter`)."""
        return self.submit(self.prepare(signature_name, inputs, output_filter)).result()

    def prepare(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> "PreparedCall":
        """Check a request against its signature (no model call yet): its arrays, checked."""
        import tensorflow as tf

        name = signature_name or DEFAULT_SIGNATURE
        signature_def = self.signature_defs.get(name)
        if signature_def is None or name not in self._functions:
            raise ServingStatus("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
        if signature_def.method_name not in _SERVING_METHODS:
            raise ServingStatus("INTERNAL", "Expected prediction signature method_name to be one "
                                f"of {{{', '.join(_SERVING_METHODS)}}}. Was: "
                                f"{signature_def.method_name}")
        verify_input_names(set(inputs), self._input_names[name])
        outputs_wanted = _verify_output_filter(output_filter, self._output_names[name])

        tensors = {}
        for input_name, (dims, dtype) in self._input_checks[name].items():
            # The shape is checked on the array, before TensorFlow converts it: a deep enough
            # string array crashes its converter.
            shape = list(np.shape(inputs[input_name]))
            check_input_shape(input_name, shape)
            if dims is not None and (len(dims) != len(shape) or any(
                    d is not None and d != n for d, n in zip(dims, shape))):
                spec = self._input_specs[name][input_name]
                raise invalid_argument(
                    f"Input {input_name} has shape {_shape_text(tf.TensorShape(shape))}, but "
                    f"signature {name} expects {_shape_text(spec.shape)}"
                )
            # Checked on the array too: the tensor is made on the thread that runs the call
            # (once per batch when batching), not on the event loop that answers requests.
            array = np.asarray(inputs[input_name])
            sent = _tf_dtype_of(array)
            if sent != dtype:
                raise invalid_argument(f"Input {input_name} has dtype {sent.name}, but "
                                       f"signature {name} expects {dtype.name}")
            tensors[input_name] = array
        return PreparedCall(name, tensors, outputs_wanted)

    def submit(self, call: "PreparedCall", executor: Executor | None = None,
               now: bool = False) -> Future:
        """Start a prepared call; a future of its outputs (errors as `ServingStatus`).

        A signature that batches joins its batch queue; any other runs on `executor`, or at once
        on this thread without one (or with `now`, which skips the batch queue too). The caller
        may wait for the future, or (an event loop) be called back when it is done instead of
        holding a thread; cancelling it drops a call that has not started.
        """
        scheduler = None if now else self.schedulers.get(call.signature)
        if scheduler is not None:
            raw = scheduler.submit_async(call.tensors)
        elif executor is not None and not now:
            raw = executor.submit(self._call, call.signature, call.tensors)
        else:
            raw = Future()
            try:
                raw.set_result(self._call(call.signature, call.tensors))
            except BaseException as error:  # noqa: BLE001  handed to the future, as a pool does
                raw.set_exception(error)
        done: Future = Future()

        def finish(future: Future) -> None:
            if future.cancelled() or done.cancelled():
                done.cancel()
                return
            error = future.exception()
            try:
                if error is None:
                    outputs = future.result()
                    done.set_result({alias: outputs[alias]
                                     for alias in (call.outputs_wanted or outputs)})
                else:
                    done.set_exception(_status_of(error))
            except InvalidStateError:
                pass  # cancelled by its caller meanwhile (a deadline): nobody waits for it

        raw.add_done_callback(finish)
        done.add_done_callback(lambda f: f.cancelled() and raw.cancel())  # not started: dropped
        return done

    def warm_up(self) -> int:
        """Replay the version's warm-up requests (a failure fails the load, as in TF Serving)."""
        path = self.path / WARMUP_FILE
        if not path.exists():
            return 0
        count = 0
        for record in read_warmup_requests(path)[:_MAX_WARMUP_RECORDS]:
            if record.WhichOneof("log_type") != "predict_log":
                log.warning("%s v%d: skipped a warm-up record of type %s (predict only)",
                            self.name, self.version, record.WhichOneof("log_type"))
                continue
            request = record.predict_log.request
            inputs = {k: array_from_tensor_proto(v) for k, v in request.inputs.items()}
            self.predict(request.model_spec.signature_name, inputs, request.output_filter)
            count += 1
        return count


@dataclass
class PreparedCall:
    """A request checked against its signature: the arrays to call it with."""

    signature: str
    tensors: dict[str, np.ndarray]
    outputs_wanted: list[str]


def _tf_dtype_of(array: np.ndarray) -> Any:
    """The TensorFlow dtype `tf.convert_to_tensor(array)` gives (object and bytes: string)."""
    import tensorflow as tf

    if array.dtype.kind in "OSU":
        return tf.string
    return tf.dtypes.as_dtype(array.dtype)


def _status_of(error: BaseException) -> BaseException:
    """A model call's error as the status a client gets (a TensorFlow error keeps its code)."""
    import tensorflow as tf

    if isinstance(error, tf.errors.OpError):
        return from_tf_error(error)
    if isinstance(error, (TypeError, ValueError)) and not isinstance(error, ServingStatus):
        return invalid_argument(str(error))
    return error


def _direct_call(signature: Any, input_specs: Mapping[str, Any]) -> Callable[..., Any]:
    """A loaded signature, called through a function traced over it once.

    Same graph, same outputs. A loaded signature re-resolves each of its captured variables
    and tables on every call (in case it runs under a distribution strategy, which a server
    never does): ~60 us a call for the recommender's 37, a tenth of the whole call.
    """
    import tensorflow as tf

    return tf.function(lambda **inputs: signature(**inputs)).get_concrete_function(
        **input_specs)


def verify_input_names(sent: set[str], expected: set[str] | frozenset[str]) -> None:
    if sent != expected:
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - expected))}}}. Missing but required: "
            f"{{{','.join(sorted(expected - sent))}}}."
        )


def _verify_output_filter(output_filter: Sequence[str], outputs: frozenset[str]) -> list[str]:
    seen: list[str] = []
    for alias in output_filter:
        if alias not in outputs:
            raise invalid_argument(f"output tensor alias not found in signature: {alias} Outputs "
                                   f"expected to be in the set {{{','.join(sorted(outputs))}}}.")
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return seen


def _shape_text(shape: Any) -> str:
    dims = shape.as_list() if shape.rank is not None else None
    if dims is None:
        return "[?]"
    return "[" + ",".join("-1" if d is None else str(d) for d in dims) + "]"


@dataclass
class VersionState:
    """Where a version is in its life (TF Serving's `ModelVersionStatus`)."""

    version: int
    state: str = "START"  # START, LOADING, AVAILABLE, UNLOADING, END
    error_code: str = "OK"
    error_message: str = ""
    servable: Servable | None = None
    failed_loads: int = 0  # consecutive failed attempts to load this version's folder as it is
    failed_at: float = 0.0  # time.monotonic() of the last failure
    failed_listing: tuple[tuple[str, int, int], ...] = ()  # the folder the last failure saw


# TF Serving's --max_num_load_retries and --load_retry_interval_micros defaults.
MAX_LOAD_RETRIES = 5
LOAD_RETRY_INTERVAL_SECONDS = 60.0


class ModelRegistry:
    """Loads the versions each `ModelSource` asks for and answers lookups by name/version/label.

    A version that fails to load (a folder caught half-copied) is tried again, as TF Serving
    does: up to `max_load_retries` more times, `load_retry_interval` seconds apart, at the next
    refreshes. Only failures of an unchanged folder count: one that changed since its last failed
    load (a copy still being written, or written again) starts afresh, so a copy slower than the
    retries is still loaded once complete. A failed version whose folder goes away is forgotten,
    so putting it back loads it.
    Versions the policy no longer wants are unloaded only once a wanted one is available.
    With `batching`, concurrent requests to a signature that batches are merged
    (`serving.batching`). `config_path` is the models.config the sources came from, which
    `reload_config_file` re-reads.
    """

    def __init__(self, sources: Sequence[ModelSource], *, warm_up: bool = True,
                 max_load_retries: int = MAX_LOAD_RETRIES,
                 load_retry_interval: float = LOAD_RETRY_INTERVAL_SECONDS,
                 batching: BatchingOptions | None = None,
                 config_path: str | Path | None = None) -> None:
        self.sources = {source.name: source for source in sources}
        self.config_path = Path(config_path).resolve() if config_path is not None else None
        self._file_sources = list(sources)  # as last read from config_path
        self._file_error = ""  # the last error reading or applying config_path (logged once)
        self._warm_up = warm_up
        self.batching = batching  # server-side batching of the signatures that batch
        self._max_load_retries = max_load_retries
        self._load_retry_interval = load_retry_interval
        self._states: dict[str, dict[int, VersionState]] = {name: {} for name in self.sources}
        self._reported_empty: set[str] = set()  # models whose empty base path was logged
        self._lock = threading.Lock()  # guards _states and changes to sources
        self._refresh_lock = threading.Lock()  # one refresh or reload at a time

    @classmethod
    def from_config_file(cls, path: str | Path, **kwargs: Any) -> "ModelRegistry":
        return cls(sources_from_config(path), config_path=path, **kwargs)

    @classmethod
    def from_base_path(cls, name: str, base_path: str | Path, **kwargs: Any) -> "ModelRegistry":
        return cls([ModelSource(name, Path(base_path).resolve())], **kwargs)

    def refresh(self) -> None:
        """Load versions the policies now select and unload those they dropped."""
        with self._refresh_lock:
            for source in self.sources.values():
                self._refresh_model(source, self._states[source.name])

    # === Config reloads ===

    def reload(self, sources: Sequence[ModelSource]) -> list[str]:
        """Serve exactly `sources`. New models are loaded; removed ones unloaded (their requests
        are NOT_FOUND); a model whose base path changed is loaded from it aside and then takes
        the old one's place; one whose policy or labels changed is refreshed under them; the
        others serve on untouched. Duplicate names or a missing base path are INVALID_ARGUMENT
        and change nothing. Returns, for new or moved models with no version available, why."""
        _check_unique_names(sources)
        for source in sources:
            if not source.base_path.exists():
                raise invalid_argument(f"Could not find base path {source.base_path} for "
                                       f"servable {source.name}")
        with self._refresh_lock:
            old, new = dict(self.sources), {source.name: source for source in sources}
            replaced = [source for source in sources if source.name not in old
                        or old[source.name].base_path != source.base_path]
            for source in replaced:
                self._replace_model(source)
            for source in sources:
                if source not in replaced and old[source.name] != source:
                    with self._lock:  # a new policy or new labels
                        self.sources[source.name] = source
                    self._refresh_model(source, self._states[source.name])
            for name in old.keys() - new.keys():
                self._remove_model(name)
            unavailable = [self._unavailable_reason(source) for source in replaced]
        log.info("config reloaded: models %s (added %s, removed %s)", sorted(new),
                 sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys()))
        return [reason for reason in unavailable if reason]

    def reload_config(self, config: Any) -> list[str]:
        """`reload` with a `ModelServerConfig` proto (relative base paths: relative to
        `config_path`'s folder); an empty config changes nothing, as in TF Serving."""
        if config.WhichOneof("config") is None:
            log.info("taking no action for an empty config")
            return []
        config_dir = self.config_path.parent if self.config_path is not None else None
        return self.reload(sources_from_proto(config, config_dir))

    def reload_config_file(self) -> bool:
        """Re-read `config_path` and `reload` it if its model list changed since it was last read
        (True then). A file that cannot be read or applied is logged once, and the models served
        stay as they are."""
        try:
            sources = sources_from_config(self.config_path)
            if sources == self._file_sources:
                return False
            unavailable = self.reload(sources)
        except (OSError, ValueError, ServingStatus) as error:
            if str(error) != self._file_error:
                log.error("%s not applied, serving on as before: %s", self.config_path, error)
                self._file_error = str(error)
            return False
        self._file_sources, self._file_error = sources, ""
        for reason in unavailable:
            log.error("did not become available: %s", reason)
        return True

    def _replace_model(self, source: ModelSource) -> None:
        """Load a new model, or a model from its new base path aside, then put it in place."""
        states: dict[int, VersionState] = {}
        if source.name not in self._states:  # new: its versions show as LOADING meanwhile
            with self._lock:
                self._states[source.name], self.sources[source.name] = states, source
        self._reported_empty.discard(source.name)
        self._refresh_model(source, states)
        with self._lock:
            previous = self._states[source.name]
            self._states[source.name], self.sources[source.name] = states, source
        if previous is not states:
            _close_servables(previous)
            log.info("%s: now served from %s", source.name, source.base_path)

    def _remove_model(self, name: str) -> None:
        with self._lock:
            del self.sources[name]
            states = self._states.pop(name)
        self._reported_empty.discard(name)
        _close_servables(states)
        log.info("%s: unloaded (no longer in the config)", name)

    def _unavailable_reason(self, source: ModelSource) -> str:
        """Why a model has no version available ("" when it has one)."""
        with self._lock:
            states = list(self._states[source.name].values())
        if any(state.state == "AVAILABLE" for state in states):
            return ""
        errors = [state.error_message for state in states if state.error_message]
        return f"{source.name}: " + (errors[0] if errors else
                                     f"no versions found under {source.base_path}")

    # === Loading ===

    def _refresh_model(self, source: ModelSource, states: dict[int, VersionState]) -> None:
        folders = version_dirs(source.base_path)
        wanted = set(source.policy.select(list(folders)))
        for version, state in list(states.items()):
            if version not in folders and state.failed_loads:
                with self._lock:  # a failed version taken away: a new copy starts afresh
                    del states[version]
        for version in sorted(wanted, reverse=True):
            state = states.get(version)
            if state is not None and state.state != "END":
                continue  # loaded or loading
            failed_before = self._failures_before(state, folders[version])
            if failed_before is not None:
                self._load(source.name, version, folders[version], states, failed_before)
        # Availability first: versions the policy dropped keep serving until a wanted one is
        # up (a new version that fails to load must not take the model down with it).
        wanted_up = any(states[v].state == "AVAILABLE" for v in wanted if v in states)
        for version, state in list(states.items()):
            if version not in wanted and state.state == "AVAILABLE" and wanted_up:
                with self._lock:
                    states[version] = VersionState(version, "END")
                if state.servable is not None:
                    state.servable.close()
                log.info("%s: unloaded version %d", source.name, version)
        if folders:
            self._reported_empty.discard(source.name)
        elif source.name not in self._reported_empty:  # once, not at every poll
            self._reported_empty.add(source.name)
            log.warning("%s: no versions found under %s", source.name, source.base_path)

    def _failures_before(self, state: VersionState | None, path: Path) -> int | None:
        """The failed loads a load of `path` would follow now (None: no load is due). TF Serving
        gives a failed version its retries and then leaves it failed; here a folder that changed
        since it failed counts as a new copy (as if taken away and put back), so the retries of
        a version caught half-copied are not used up before the copy is complete."""
        if state is None or not state.failed_loads:
            return 0
        if time.monotonic() - state.failed_at < self._load_retry_interval:
            return None
        if _folder_listing(path) != state.failed_listing:
            return 0
        return state.failed_loads if state.failed_loads <= self._max_load_retries else None

    def _load(self, name: str, version: int, path: Path, states: dict[int, VersionState],
              failed_before: int = 0) -> None:
        with self._lock:
            states[version] = VersionState(version, "LOADING")
        listing = _folder_listing(path)  # as this attempt finds it
        try:
            servable = Servable(name, version, path, self.batching)
            warmed = servable.warm_up() if self._warm_up else 0
        except Exception as error:  # a bad version must not stop the server: record and go on
            status = error if isinstance(error, ServingStatus) else from_tf_error(error)
            message = (f"Failed to load {name} version {version} from {path}: "
                       f"{type(error).__name__}: {status.message}")
            failed = failed_before + 1
            with self._lock:
                states[version] = VersionState(
                    version, "END", status.code, message, failed_loads=failed,
                    failed_at=time.monotonic(), failed_listing=listing)
            retry = (f"; retrying in {self._load_retry_interval:g} s "
                     f"({self._max_load_retries - failed + 1} retries left)"
                     if failed <= self._max_load_retries
                     else "; no retries left unless its folder changes")
            log.error("%s: version %d failed to load: %s%s", name, version, error, retry)
            return
        with self._lock:
            states[version] = VersionState(version, "AVAILABLE", servable=servable)
        log.info("%s: version %d available (%s, %d warm-up requests)", name, version, path, warmed)

    def resolve_label(self, name: str, label: str) -> int:
        source = self.sources.get(name)
        if source is None or label not in source.labels:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return int(source.labels[label])

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable for a request (latest available version unless one is named)."""
        if label is not None:
            version = self.resolve_label(name, label)
        with self._lock:
            states = self._states.get(name, {})
            available = {v: s.servable for v, s in states.items()
                         if s.state == "AVAILABLE" and s.servable is not None}
        if version is None:
            if not available:
                raise not_found(f"Servable not found for request: Latest({name})")
            return available[max(available)]
        if version not in available:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return available[version]

    def status(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[VersionState]:
        """Version states of a model, newest first (TF Serving's GetModelStatus)."""
        if label is not None:
            version = self.resolve_label(name, label)
        with self._lock:
            states = dict(self._states.get(name, {}))
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            return [states[version]]
        if not states:
            raise not_found(f"Could not find any versions of model {name}")
        return [states[v] for v in sorted(states, reverse=True)]

    def available(self) -> dict[str, list[int]]:
        """Model name -> versions now AVAILABLE (for logs and the ready line)."""
        with self._lock:
            return {name: sorted(v for v, s in states.items() if s.state == "AVAILABLE")
                    for name, states in self._states.items()}


def _folder_listing(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """(relative path, size, modification time in ns) of `folder` and everything under it: what
    a copy in progress changes between two looks, found without reading a file."""
    listing = []
    for directory, _, names in os.walk(folder):
        for path in (directory, *(os.path.join(directory, name) for name in names)):
            try:
                stat = os.stat(path)
            except OSError:  # removed while listed
                continue
            listing.append((os.path.relpath(path, folder), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(listing))


def _close_servables(states: Mapping[int, VersionState]) -> None:
    for state in states.values():
        if state.servable is not None:
            state.servable.close()
