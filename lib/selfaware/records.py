"""Sample records: one line of ``samples.jsonl`` per model answer or exact score. Below the experiment
layer, so that the artifact store can read and write them."""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field

from .errors import SelfAwareError
from .util import clean


class SampleRecord(BaseModel):
    """One model answer (or one exact score) in ``samples.jsonl``: the columns every section shares, and
    the section's own columns under ``extra``."""

    model_config = ConfigDict(extra="forbid")

    run: str
    kind: str  # what was measured: behaviour, self_report_score, code_answer, free_form_answer, ...
    condition: str | None = None
    role: str | None = None
    seed: int | None = None
    model: str | None = None  # the model spec that answered
    task: str | None = None
    paraphrase: int | None = None
    variant: str | None = None
    prompt: str | None = None
    answer: str | None = None
    score: float | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


_RECORD_FIELDS = set(SampleRecord.model_fields) - {"run", "kind", "extra", "model"}


def sample_records(rows: Iterable[dict[str, Any]], run: str, kind: str, **columns: str) -> list[SampleRecord]:
    """Rows of a measurement as records. ``columns`` maps a record field to the row column that holds it
    (``task="question"``, ``score="p_toward"``); a row's ``spec`` is the record's ``model``, and every
    column not mapped goes to ``extra``."""
    unknown = set(columns) - _RECORD_FIELDS
    if unknown:
        raise SelfAwareError(f"sample_records: unknown record field(s) {', '.join(sorted(unknown))}")
    records = []
    for row in rows:
        row = clean(dict(row))
        values = {name: row.pop(columns.get(name, name), None) for name in _RECORD_FIELDS}
        values["model"] = row.pop("spec", None)
        if "model" in row:  # the measurement's readable model name; the record's model is the spec
            row["model_name"] = row.pop("model")
        for name in ("prompt", "answer", "task"):
            if values[name] is not None and not isinstance(values[name], str):
                values[name] = str(values[name])
        if values["score"] is not None and not isinstance(values["score"], (int, float)):
            values["score"] = float(values["score"])
        records.append(SampleRecord(run=run, kind=kind, extra=row, **values))
    return records
