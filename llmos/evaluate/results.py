"""Evaluation results stored per model version (ref + digest), with what was evaluated (suite or
task, and the content hash of its data), the settings and the time, and the examples behind each
(input, prediction, reference, the example's score). Manifests are immutable, so results live in
their own tables; ``compare`` reads them back and never recomputes."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from sqlalchemy import func, select

from llmos.config import Settings
from llmos.errors import InvalidRequest, ModelNotFound, ResultNotFound
from llmos.store.db import Store
from llmos.store.evaluations import EvalExampleRow, EvalResultRow

if TYPE_CHECKING:
    from llmos.registry.model_version import ModelVersion


@dataclass(slots=True)
class EvalResult:
    model_ref: str
    model_digest: str | None
    suite: str
    content_hash: str
    task: str
    metrics: dict[str, Any]
    settings: dict[str, Any]
    created_at: datetime | None = None
    id: int | None = None  # set once stored
    num_examples_stored: int = 0  # per-example rows behind it (``ResultStore.examples``)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data


EXAMPLE_FIELDS = ("input", "prediction", "reference", "score")
ExampleOrder = Literal["position", "worst", "best"]
EXAMPLE_ORDERS: tuple[str, ...] = get_args(ExampleOrder)


def content_hash(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes: identifies exactly what a result was computed on."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers among a result's metrics (what a comparison can subtract)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class ResultStore:
    """The ``eval_results`` table in the llmos store."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = Store(settings.database_url)

    def close(self) -> None:
        """Release the database handle (others in the process keep theirs)."""
        self.store.close()

    def add(self, result: EvalResult, examples: list[dict[str, Any]] | None = None) -> int:
        """Store ``result`` and its ``examples`` ({input, prediction, reference, score}, in the
        data's order) in one transaction; answers the result's id."""
        fields = result.to_dict()
        for derived in ("created_at", "id", "num_examples_stored"):
            fields.pop(derived)
        with self.store.session() as session:
            row = EvalResultRow(**fields)
            session.add(row)
            session.flush()
            session.add_all(
                EvalExampleRow(result_id=row.id, position=i, **{k: e.get(k) for k in EXAMPLE_FIELDS})
                for i, e in enumerate(examples or [])
            )
            return int(row.id)

    def get(self, result_id: int) -> EvalResult:
        """One stored result by id; raises ``ResultNotFound``."""
        found = self._results(EvalResultRow.id == result_id)
        if not found:
            raise ResultNotFound(f"no evaluation result {result_id}; `llmos eval results` lists them")
        return found[0]

    def examples(
        self, result_id: int, *, offset: int = 0, limit: int = 20, order: str = "position"
    ) -> tuple[int, list[dict[str, Any]]]:
        """``(total, page)`` of a result's examples: by position in the data, or worst/best score
        first (examples without a score last). Raises ``ResultNotFound``."""
        if order not in EXAMPLE_ORDERS:
            raise InvalidRequest(
                f"unknown order {order!r}; use one of: {', '.join(EXAMPLE_ORDERS)}", param="order"
            )
        self.get(result_id)
        unscored = EvalExampleRow.score.is_(None)
        by = {
            "position": (EvalExampleRow.position,),
            "worst": (unscored, EvalExampleRow.score, EvalExampleRow.position),
            "best": (unscored, EvalExampleRow.score.desc(), EvalExampleRow.position),
        }[order]
        where = EvalExampleRow.result_id == result_id
        with self.store.session() as session:
            total = session.scalar(select(func.count()).select_from(EvalExampleRow).where(where)) or 0
            rows = session.scalars(
                select(EvalExampleRow).where(where).order_by(*by).offset(offset).limit(limit)
            )
            page = [{"position": r.position, **{k: getattr(r, k) for k in EXAMPLE_FIELDS}} for r in rows]
        return int(total), page

    def for_model(self, model_ref: str) -> list[EvalResult]:
        """Every stored result of one exact model ref, oldest first."""
        return self._results(EvalResultRow.model_ref == model_ref)

    def all(self) -> list[EvalResult]:
        """Every stored result, oldest first."""
        return self._results()

    def _results(self, *where: Any) -> list[EvalResult]:
        counts = (
            select(EvalExampleRow.result_id, func.count().label("n"))
            .group_by(EvalExampleRow.result_id)
            .subquery()
        )
        query = (
            select(EvalResultRow, counts.c.n)
            .outerjoin(counts, counts.c.result_id == EvalResultRow.id)
            .where(*where)
            .order_by(EvalResultRow.id)
        )
        with self.store.session() as session:
            rows = session.execute(query).all()
        return [
            EvalResult(
                r.model_ref,
                r.model_digest,
                r.suite,
                r.content_hash,
                r.task,
                r.metrics,
                r.settings,
                r.created_at,
                r.id,
                n or 0,
            )  # fmt: skip
            for r, n in rows
        ]

    def latest(self, model_ref: str) -> dict[tuple[str, str], EvalResult]:
        """The newest result per (suite, task) of a model ref."""
        return {(r.suite, r.task): r for r in self.for_model(model_ref)}


def compare(store: ResultStore, ref_a: str, ref_b: str) -> list[dict[str, Any]]:
    """Side-by-side rows {suite, task, metric, a, b, delta} from the newest stored results of two
    model refs (``None`` where one side lacks it). Raises ``ModelNotFound`` when either has none."""
    latest = {}
    for ref in (ref_a, ref_b):
        latest[ref] = store.latest(ref)
        if not latest[ref]:
            raise ModelNotFound(f"no stored evaluation results for {ref}; run `llmos eval {ref} ...` first")
    rows = []
    for key in sorted(latest[ref_a].keys() | latest[ref_b].keys()):
        a = latest[ref_a].get(key)
        b = latest[ref_b].get(key)
        values_a = numeric_metrics(a.metrics) if a else {}
        values_b = numeric_metrics(b.metrics) if b else {}
        for metric in sorted(values_a.keys() | values_b.keys()):
            va, vb = values_a.get(metric), values_b.get(metric)
            delta = vb - va if va is not None and vb is not None else None
            rows.append({"suite": key[0], "task": key[1], "metric": metric, "a": va, "b": vb, "delta": delta})
    return rows


VOTE_SUITE, VOTE_TASK = "playground", "vote"


def record_vote(
    store: ResultStore, versions: tuple[ModelVersion, ModelVersion], winner: str, prompt: str
) -> list[EvalResult]:
    """Store a person's preference between two versions' answers to ``prompt`` (``winner``: "a",
    "b" or "tie") as one ``playground``/``vote`` result per version: ``win`` 1, 0 or 0.5 for this
    vote, and the version's running ``wins``, ``votes`` and ``win_rate`` over all its votes."""
    score = {"a": (1.0, 0.0), "b": (0.0, 1.0), "tie": (0.5, 0.5)}[winner]
    prompt_hash = "sha256:" + hashlib.sha256(prompt.encode()).hexdigest()
    results = []
    for mv, other, win in ((versions[0], versions[1], score[0]), (versions[1], versions[0], score[1])):
        past = [r for r in store.for_model(mv.ref) if (r.suite, r.task) == (VOTE_SUITE, VOTE_TASK)]
        wins = sum(float(r.metrics.get("win", 0.0)) for r in past) + win
        votes = len(past) + 1
        metrics = {"win": win, "wins": wins, "votes": votes, "win_rate": round(wins / votes, 4)}
        settings = {"opponent": other.ref, "winner": winner, "prompt": prompt[:2000]}
        result = EvalResult(mv.ref, mv.digest, VOTE_SUITE, prompt_hash, VOTE_TASK, metrics, settings)
        result.id = store.add(result)
        results.append(result)
    return results
