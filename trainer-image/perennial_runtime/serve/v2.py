"""Open Inference Protocol (V2, KServe/Triton/MLServer) REST documents for a tabular model.

Inputs (either form):

- one 2-D tensor ``[rows, n_features]`` (any name), values in feature order; numeric
  datatypes for all-numeric models, ``BYTES`` when some features are labels;
- one tensor per feature, named after it, shape ``[rows]`` or ``[rows, 1]`` (MLServer's
  pandas-codec convention for tables: a column per input).

Outputs: ``predict`` (``[rows]``) and, for classifiers, ``predict_proba``
(``[rows, n_classes]``, columns in the order of the metadata's ``classes``). All outputs
are returned unless the request lists the ones it wants in ``outputs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from perennial_runtime import __version__
from perennial_runtime.contract import ColumnType
from perennial_runtime.serve.errors import RequestError, describe, names_hint
from perennial_runtime.serve.model import Prediction, ServedModel, datatype_of_labels
from perennial_runtime.serve.schema import Batch


def json_array(values: Any) -> Any:
    """Numeric arrays go to orjson as numpy (fast); other arrays as lists."""
    if values.dtype.kind in "fiub":
        return np.ascontiguousarray(values)
    return values.tolist()


NUMERIC_DATATYPES = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
    | {"FP16", "FP32", "FP64"}
)
DATATYPES = NUMERIC_DATATYPES | {"BYTES"}
PREDICT = "predict"
ROW_NAME = "row {row} of the inputs"  # how errors found after parsing name a row
PREDICT_PROBA = "predict_proba"
_FEATURE_DATATYPE = {
    ColumnType.NUMERIC: "FP64",
    ColumnType.INTEGER: "INT64",
    ColumnType.BOOLEAN: "BOOL",
    ColumnType.CATEGORICAL: "BYTES",
}


def server_metadata() -> dict[str, Any]:
    return {
        "name": "perennial",
        "version": __version__,
        "extensions": ["monitoring", "feedback"],
    }


def label_datatype(classes: list[Any]) -> str:
    return datatype_of_labels(classes)


def output_names(model: ServedModel) -> tuple[str, ...]:
    return model.output_names


def model_metadata(model: ServedModel) -> dict[str, Any]:
    meta = model.metadata
    outputs: list[dict[str, Any]] = []
    if model.classes is not None:
        outputs.append({"name": PREDICT, "datatype": label_datatype(model.classes), "shape": [-1]})
        outputs.append(
            {"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(model.classes)]}
        )
    else:
        outputs.append({"name": PREDICT, "datatype": "FP64", "shape": [-1]})
    parameters: dict[str, Any] = {
        "content_type": "pd",
        "task": meta.task.value,
        "run": meta.run,
        "estimator": meta.estimator,
        "sha256": model.sha256,
        "backend": model.backend,
        "backend_reason": model.backend_reason,
        "features": [f.name for f in meta.features],
    }
    if model.onnx_sha256 is not None:
        parameters["onnx_sha256"] = model.onnx_sha256
    if model.classes is not None:
        parameters["classes"] = model.classes
    if meta.pipeline:
        parameters["pipeline"] = meta.pipeline
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "sklearn",
        "inputs": [
            {"name": f.name, "datatype": _FEATURE_DATATYPE[f.type], "shape": [-1]}
            for f in meta.features
        ],
        "outputs": outputs,
        "parameters": parameters,
    }


def _shape(value: Any, where: str) -> list[int]:
    if type(value) is list and value:
        for d in value:
            if type(d) is not int or d < 0:
                break
        else:
            return value
    raise RequestError(
        f"{where}.shape must be a non-empty list of non-negative integers, got {describe(value)}"
    )


@dataclass(slots=True)  # created per request: no frozen-init cost
class _Tensor:
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]  # flat or nested, row-major
    where: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def numbers(self) -> npt.NDArray[np.float64] | None:
        """The data as float64 in ``shape`` when it is all numbers, flat or nested exactly
        as ``shape`` (one numpy call); None sends it to :meth:`flat`, which names what is
        wrong."""
        if self.datatype == "BYTES":
            return None
        try:
            arr = np.array(self.data)
        except (ValueError, TypeError, RecursionError):
            return None
        if arr.dtype.kind not in "fiub":
            return None
        if arr.shape != tuple(self.shape) and not (arr.ndim == 1 and arr.size == self.size):
            return None  # mis-nested (e.g. [4, 2] for shape [2, 4]): never reshaped
        return arr.astype(np.float64, copy=False).reshape(self.shape)

    def flat(self) -> list[Any]:
        """Row-major values, checked against the shape (and against the datatype)."""
        data = _row_major(self.data, self.shape, self.where)
        if len(data) != self.size:
            raise RequestError(
                f"{self.where}: shape {self.shape} holds {self.size} values but data has "
                f"{len(data)}"
            )
        if self.datatype != "BYTES":
            for i, value in enumerate(data):
                if isinstance(value, str):
                    raise RequestError(
                        f"{self.where}: datatype {self.datatype} but data[{i}] is "
                        f"{describe(value)}; send numbers, or datatype BYTES for labels"
                    )
        return data


# How deep the nesting of a mis-nested ``data`` is described (it is never walked further).
_NESTING_SHOWN = 8


def _nesting(data: list[Any]) -> list[int]:
    """The lengths along the first elements: ``[[1, 2, 3]] * 2`` is ``[2, 3]``."""
    dims: list[int] = []
    item: Any = data
    while type(item) is list and len(dims) < _NESTING_SHOWN:
        dims.append(len(item))
        item = item[0] if item else None
    return dims


def _row_major(data: list[Any], shape: list[int], where: str) -> list[Any]:
    """``data`` flat, or nested exactly as ``shape``, as one row-major list.

    Iterative and bounded by ``shape``: a 1,000-level nesting is refused, not walked.
    Anything else (a [4, 2] nesting for shape [2, 4], ragged rows, a list where a value
    belongs) is a 400 naming the expected and the received nesting.
    """
    if not any(type(v) is list for v in data):
        return data  # flat: the caller checks the length
    got = _nesting(data)
    fix = (
        f"nest data exactly as the shape ({' x '.join(map(str, shape))}) or send it flat "
        f"({math.prod(shape)} values, row-major)"
    )
    if got[: len(shape)] != shape or len(got) > len(shape):
        shown = str(got) if len(got) < _NESTING_SHOWN else str(got)[:-1] + ", ...]"
        raise RequestError(f"{where}: data is nested as {shown} but shape is {shape}; {fix}")
    level: list[Any] = [data]
    for depth, width in enumerate(shape):
        last = depth == len(shape) - 1
        below: list[Any] = []
        for k, item in enumerate(level):
            path = "data" + "".join(f"[{i}]" for i in _unravel(k, shape[:depth]))
            if type(item) is not list or len(item) != width:
                got_here = f"a list of {len(item)}" if type(item) is list else describe(item)
                raise RequestError(
                    f"{where}: {path} is {got_here} where shape {shape} expects a list of "
                    f"{width}; {fix}"
                )
            if last:
                for i, value in enumerate(item):
                    if type(value) is list:
                        raise RequestError(
                            f"{where}: {path}[{i}] is a list where shape {shape} expects a "
                            f"value; {fix}"
                        )
            below.extend(item)
        level = below
    return level


def _unravel(k: int, dims: list[int]) -> list[int]:
    out: list[int] = []
    for d in reversed(dims):
        k, r = divmod(k, d)
        out.append(r)
    return out[::-1]


def _tensor(raw: Any, k: int) -> _Tensor:
    where = f"inputs[{k}]"
    if not isinstance(raw, dict):
        raise RequestError(f"{where} must be an object (name, shape, datatype, data)")
    for key in ("name", "shape", "datatype", "data"):
        if key not in raw:
            raise RequestError(f"{where}: '{key}' is missing")
    name = raw["name"]
    if not isinstance(name, str):
        raise RequestError(f"{where}.name must be a string, got {describe(name)}")
    where = f"inputs[{k}] ({name!r})"
    shape = _shape(raw["shape"], where)
    datatype = raw["datatype"]
    if type(datatype) is not str or datatype not in DATATYPES:  # a list is unhashable
        raise RequestError(
            f"{where}.datatype {describe(datatype)} is not a V2 datatype "
            f"(one of {', '.join(sorted(DATATYPES))})"
        )
    data = raw["data"]
    if not isinstance(data, list):
        raise RequestError(f"{where}.data must be a list, got {describe(data)}")
    return _Tensor(name, shape, datatype, data, where)


def parse_infer(body: Any, model: ServedModel) -> tuple[Batch, tuple[str, ...], str | None]:
    """A V2 inference request -> (batch, outputs to return, request id)."""
    if not isinstance(body, dict):
        raise RequestError(f"the request must be a JSON object, got {describe(body)}")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("'inputs' must be a non-empty list of tensors")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(f"'id' must be a string, got {describe(request_id)}")
    outputs = _requested_outputs(body.get("outputs"), model)
    tensors = [_tensor(raw, k) for k, raw in enumerate(inputs)]
    schema = model.schema
    if len(tensors) == 1 and tensors[0].name not in schema.position:
        return _from_matrix(tensors[0], model), outputs, request_id
    return _from_columns(tensors, model), outputs, request_id


def _requested_outputs(raw: Any, model: ServedModel) -> tuple[str, ...]:
    available = output_names(model)
    if raw is None:
        return available
    if not isinstance(raw, list):
        raise RequestError(f"'outputs' must be a list, got {describe(raw)}")
    names: list[str] = []
    for k, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in available:
            raise RequestError(
                f"outputs[{k}]: unknown output {describe(name)}; this model has: "
                f"{', '.join(available)}"
            )
        names.append(name)
    return tuple(names) or available


def _from_matrix(tensor: _Tensor, model: ServedModel) -> Batch:
    shape, where = tensor.shape, tensor.where
    schema = model.schema
    if len(shape) != 2 or shape[1] != schema.width:
        raise RequestError(
            f"{where}: expected a 2-D tensor [rows, {schema.width}] with the features in "
            f"order ({schema.hint()}), or one tensor per feature named after it; got shape "
            f"{shape}"
        )
    if schema.all_numeric:
        matrix = tensor.numbers()
        if matrix is not None:
            schema.check_rows(shape[0], where)
            return Batch(shape[0], matrix, np.empty((shape[0], 0), dtype=object))
    return schema.from_flat(tensor.flat(), shape[0], where)


def _from_columns(tensors: list[_Tensor], model: ServedModel) -> Batch:
    schema = model.schema
    unknown = [t.name for t in tensors if t.name not in schema.position]
    if unknown:
        raise RequestError(
            f"unknown input(s) {names_hint(unknown, 5)}: send one tensor per feature named "
            f"after it ({schema.hint()}), or a single 2-D tensor [rows, {schema.width}]"
        )
    columns: dict[str, tuple[Any, str]] = {}
    rows: int | None = None
    for t in tensors:
        shape, where = t.shape, t.where
        if t.name in columns:
            raise RequestError(f"{where}: feature {t.name!r} is sent twice")
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise RequestError(
                f"{where}: a feature tensor has shape [rows] or [rows, 1], got {shape}"
            )
        if rows is None:
            rows = shape[0]
        elif shape[0] != rows:
            raise RequestError(
                f"{where}: has {shape[0]} rows but {tensors[0].where} has {rows}; all feature "
                "tensors must have the same number of rows"
            )
        numbers = t.numbers() if schema.slot_of[t.name].numeric else None
        values = numbers.reshape(-1) if numbers is not None else t.flat()
        columns[t.name] = (values, where)
    missing = [n for n in schema.names if n not in columns]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise RequestError(f"feature {missing[0]!r} is missing from the inputs{more}")
    assert rows is not None
    return schema.from_columns(columns, rows)


def infer_response(
    model: ServedModel,
    prediction: Prediction,
    outputs: tuple[str, ...],
    request_id: str,
    ids: list[str],
) -> dict[str, Any]:
    rows = len(prediction.values)
    tensors: list[dict[str, Any]] = []
    for name in outputs:
        if name == PREDICT:
            datatype = model.predict_datatype
            tensors.append(
                {
                    "name": PREDICT,
                    "shape": [rows],
                    "datatype": datatype,
                    "data": json_array(prediction.values),
                }
            )
        else:
            assert prediction.proba is not None
            tensors.append(
                {
                    "name": PREDICT_PROBA,
                    "shape": [rows, prediction.proba.shape[1]],
                    "datatype": "FP64",
                    "data": json_array(prediction.proba.ravel()),
                }
            )
    return {
        "model_name": model.name,
        "model_version": model.version,
        "id": request_id,
        "parameters": {"ids": ids},
        "outputs": tensors,
    }
