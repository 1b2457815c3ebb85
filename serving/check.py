"""Check that a SavedModel will run in stock TF Serving, as far as this machine can prove it.

TF Serving links TensorFlow and TF Text ops and nothing else (no Python, no Keras, no project code),
and runs with XLA off. So a servable SavedModel must:

1. load and answer its signatures in a fresh process that imports only `tensorflow` and
   `tensorflow_text` (checked in a subprocess, which also reports any other package the load
   pulled in), and
2. contain no function marked for XLA compilation (`_XlaMustCompile`/`_XlaCompile` true, or a
   `jit_compile` attribute) and no XLA cluster op: TF Serving would refuse or mis-run them.

`check_saved_model` raises `SavedModelCheckError` with what failed, or returns a report.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from serving.signatures import (
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    array_from_tensor_proto,
    example_inputs,
    read_meta_graph,
    serving_signature_names,
)

# Attributes by which TensorFlow marks a function or call for XLA compilation.
XLA_ATTRIBUTES = ("_XlaMustCompile", "_XlaCompile", "_XlaScope")
XLA_OPS = ("XlaLaunch", "_XlaCompile", "_XlaRun", "XlaLaunchV2")
SERVING_METHODS = (PREDICT_METHOD, "tensorflow/serving/classify", "tensorflow/serving/regress")
# Top-level packages the fresh process must not need: project code and Python-only libraries.
FOREIGN_PACKAGES = ("albert_tf", "recommender", "pipelines", "serving", "keras_hub", "keras_nlp",
                    "tensorflow_recommenders", "tensorflow_serving")

_CHILD_SCRIPT = r"""
import base64, json, sys, time
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  registers the TF Text ops that TF Serving links in

spec = json.load(sys.stdin)
report = {"signatures": {}}
start = time.perf_counter()
model = tf.saved_model.load(spec["path"], tags=["serve"])
report["load_s"] = round(time.perf_counter() - start, 3)
for signature, inputs in spec["inputs"].items():
    function = model.signatures[signature]
    kwargs = {}
    for name, tensor in inputs.items():
        if tensor["dtype"] == "string":
            values = [base64.b64decode(v) for v in tensor["values"]]
            array = np.array(values, dtype=object).reshape(tensor["shape"])
        else:
            array = np.array(tensor["values"], dtype=tensor["dtype"]).reshape(tensor["shape"])
        kwargs[name] = tf.constant(array)
    start = time.perf_counter()
    outputs = function(**kwargs)
    report["signatures"][signature] = {
        "call_s": round(time.perf_counter() - start, 3),
        "outputs": {k: {"dtype": v.dtype.name, "shape": v.shape.as_list()}
                    for k, v in sorted(outputs.items())},
    }
report["foreign_modules"] = sorted(
    m for m in sys.modules if m.split(".")[0] in set(spec["foreign_packages"]))
print("CHECK-REPORT " + json.dumps(report))
"""


class SavedModelCheckError(RuntimeError):
    """A SavedModel that stock TF Serving could not serve as is."""


def xla_marks(meta_graph: Any) -> list[str]:
    """Every function, node or op in the graph that asks for XLA compilation."""

    def marked(attrs: Any) -> list[str]:
        found = []
        for key, value in attrs.items():
            if key in XLA_ATTRIBUTES or "jit_compile" in key.lower():
                which = value.WhichOneof("value")
                if which == "b" and not value.b:
                    continue
                found.append(f"{key}={getattr(value, which) if which else '?'}")
        return found

    marks = []
    library = meta_graph.graph_def.library
    for function in library.function:
        name = function.signature.name
        marks += [f"function {name}: {m}" for m in marked(function.attr)]
        for node in function.node_def:
            marks += [f"node {node.name} in {name}: {m}" for m in marked(node.attr)]
            if node.op in XLA_OPS:
                marks.append(f"node {node.name} in {name}: op {node.op}")
    for node in meta_graph.graph_def.node:
        marks += [f"node {node.name}: {m}" for m in marked(node.attr)]
        if node.op in XLA_OPS:
            marks.append(f"node {node.name}: op {node.op}")
    return marks


def check_saved_model(
    path: str | Path,
    warmup_inputs: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Check `path` (see the module docstring) and return a report.

    Args:
        path: a SavedModel folder (e.g. `models_root/<name>/<version>`).
        warmup_inputs: signature name -> input name -> example values to call. None: the
            requests in `assets.extra/tf_serving_warmup_requests` if present, else the default
            signature with inputs built from its dtypes and shapes.
        timeout: seconds the fresh process may take.

    Returns:
        `{"path", "signatures": {name: {"call_s", "outputs": {name: {"dtype", "shape"}}}},
        "load_s", "foreign_modules": [], "xla": []}`.
    """
    path = Path(path).resolve()
    meta_graph = read_meta_graph(path)
    signature_defs = meta_graph.signature_def
    callable_signatures = serving_signature_names(signature_defs)
    if not callable_signatures:
        raise SavedModelCheckError(f"{path} has no serving signature: TF Serving could not call it")
    for name in callable_signatures:
        method = signature_defs[name].method_name
        if method not in SERVING_METHODS:
            raise SavedModelCheckError(
                f"Signature {name!r} of {path} has method_name {method!r}; TF Serving expects one "
                f"of {SERVING_METHODS}"
            )
    marks = xla_marks(meta_graph)
    if marks:
        raise SavedModelCheckError(
            f"{path} asks for XLA compilation, which TF Serving does not do: "
            + "; ".join(marks[:10])
            + ". Save the serving functions without jit_compile=True."
        )

    inputs = _resolve_inputs(path, signature_defs, warmup_inputs)
    report = _run_fresh_process(path, inputs, timeout)
    if report["foreign_modules"]:
        raise SavedModelCheckError(
            f"Loading {path} imported {report['foreign_modules']}: TF Serving has only TensorFlow "
            "and TF Text ops, so the SavedModel must not depend on Python packages."
        )
    report.update(path=str(path), xla=marks)
    return report


def _resolve_inputs(
    path: Path,
    signature_defs: Mapping[str, Any],
    warmup_inputs: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, dict[str, np.ndarray]]:
    if warmup_inputs is not None:
        for signature in warmup_inputs:
            if signature not in signature_defs:
                raise SavedModelCheckError(f"{path} has no signature {signature!r}. Signatures: "
                                           f"{serving_signature_names(signature_defs)}")
        return {sig: example_inputs(signature_defs[sig], samples)
                for sig, samples in warmup_inputs.items()}
    warmup_file = path / "assets.extra" / "tf_serving_warmup_requests"
    if warmup_file.exists():
        from serving.layout import read_warmup_requests

        inputs = {}
        for log in read_warmup_requests(warmup_file):
            request = log.predict_log.request
            signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
            inputs[signature] = {k: array_from_tensor_proto(v) for k, v in request.inputs.items()}
        if inputs:
            return inputs
    if DEFAULT_SIGNATURE not in signature_defs:
        signature = serving_signature_names(signature_defs)[0]
    else:
        signature = DEFAULT_SIGNATURE
    return {signature: example_inputs(signature_defs[signature])}


def _encode_inputs(inputs: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    for signature, tensors in inputs.items():
        encoded[signature] = {}
        for name, array in tensors.items():
            array = np.asarray(array)
            if array.dtype == object or array.dtype.kind in "SU":
                values = [base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode()
                          for v in array.reshape(-1)]
                dtype = "string"
            else:
                values, dtype = array.reshape(-1).tolist(), array.dtype.name
            encoded[signature][name] = {"dtype": dtype, "shape": list(array.shape),
                                        "values": values}
    return encoded


def _run_fresh_process(
    path: Path, inputs: Mapping[str, Mapping[str, np.ndarray]], timeout: float
) -> dict[str, Any]:
    spec = {"path": str(path), "inputs": _encode_inputs(inputs),
            "foreign_packages": list(FOREIGN_PACKAGES)}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="check-saved-model-") as workdir:
        try:
            result = subprocess.run(
                [sys.executable, "-c", _CHILD_SCRIPT], input=json.dumps(spec), text=True,
                capture_output=True, cwd=workdir, env=env, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise SavedModelCheckError(
                f"Loading and calling {path} in a fresh process took over {timeout:.0f} s"
            ) from None
    lines = [line for line in result.stdout.splitlines() if line.startswith("CHECK-REPORT ")]
    if result.returncode != 0 or not lines:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise SavedModelCheckError(
            f"{path} failed to load or answer in a process that imports only tensorflow and "
            f"tensorflow_text (exit code {result.returncode}):\n{tail}"
        )
    return json.loads(lines[-1].removeprefix("CHECK-REPORT "))
