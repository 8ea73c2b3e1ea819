"""How good is a judge? It scores answers written by this project with known labels (clearly aligned,
clearly misaligned, incoherent; ``data/em/judge_calibration.yaml``) with the same prompts it uses on a page,
and the page reports how often its probability falls on numbers, how well it separates the labels (AUROC)
and how many misaligned answers the paper's rule catches. Every judged page starts here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..experiment import fmt
from ..judge import ALIGNMENT_PROMPT, COHERENCE_PROMPT, MIN_NUMBER_MASS, is_misaligned, judge_answers
from ..models import load_model, parse_spec
from ..paths import REPO_ROOT
from .questions import load_judge_calibration


def _path(name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else REPO_ROOT / path


def calibrate_judge(judge_spec: str, path: str, limit: int | None = None,
                    min_mass: float = MIN_NUMBER_MASS) -> pd.DataFrame:
    rows = load_judge_calibration(_path(path))[:limit]
    judge = load_model(judge_spec)
    questions, answers = [r.question for r in rows], [r.answer for r in rows]
    aligned = judge_answers(judge, ALIGNMENT_PROMPT, questions, answers, min_mass)
    coherent = judge_answers(judge, COHERENCE_PROMPT, questions, answers, min_mass)
    return pd.DataFrame([{"id": r.id, "label": r.label, "alignment": a.score, "alignment mass": a.mass,
                          "coherence": c.score, "coherence mass": c.mass,
                          "judged misaligned": is_misaligned(a.score, c.score)}
                         for r, a, c in zip(rows, aligned, coherent)])


def _auc(higher: list[float], lower: list[float]) -> float:
    """Probability that a random item of ``higher`` scores above one of ``lower`` (ties count half)."""
    pairs = [(h > l) + 0.5 * (h == l) for h in higher for l in lower]
    return float(np.mean(pairs)) if pairs else float("nan")


def calibration_summary(calibration: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    table = calibration.groupby("label", sort=False).agg(
        answers=("id", "size"), mean_alignment=("alignment", "mean"), mean_coherence=("coherence", "mean"),
        scored_share=("alignment", lambda s: float(s.notna().mean())),
        mean_number_mass=("alignment mass", "mean"),
        judged_misaligned=("judged misaligned", lambda s: float(pd.Series([bool(x) for x in s]).mean())),
    ).reset_index()
    scores = {label: calibration.loc[calibration["label"] == label, "alignment"].dropna().tolist()
              for label in ("aligned", "misaligned")}
    coherence = {label: calibration.loc[calibration["label"] == label, "coherence"].dropna().tolist()
                 for label in ("aligned", "incoherent")}
    summary = {"alignment_auc": _auc(scores["aligned"], scores["misaligned"]),
               "coherence_auc": _auc(coherence["aligned"], coherence["incoherent"]),
               "misaligned_caught": float(table.loc[table["label"] == "misaligned", "judged_misaligned"].iloc[0])
               if (table["label"] == "misaligned").any() else None,
               "aligned_false_alarms": float(table.loc[table["label"] == "aligned", "judged_misaligned"].iloc[0])
               if (table["label"] == "aligned").any() else None,
               "scored_share": float(calibration["alignment"].notna().mean()),
               "mean_number_mass": float(calibration[["alignment mass", "coherence mass"]].stack().mean())}
    return table, summary


def calibration_sentence(summary: dict, judge_spec: str, min_mass: float = MIN_NUMBER_MASS) -> str:
    judge = parse_spec(judge_spec)
    return (f"Judge `{judge_spec}` on answers written by this project with known labels: on average it puts "
            f"{fmt(summary['mean_number_mass'], '.0%')} of its probability on a number 0-100, so "
            f"{fmt(summary['scored_share'], '.0%')} of the answers get a score under the rule 'no score below "
            f"{min_mass:.0%} number mass'. Among the scored ones it ranks a clearly aligned answer above a clearly "
            f"misaligned one with probability {fmt(summary['alignment_auc'], '.2f')} (0.5 = chance, 1 = perfect) "
            f"and a coherent answer above gibberish with probability {fmt(summary['coherence_auc'], '.2f')}; it "
            f"flags {fmt(summary['misaligned_caught'], '.0%')} of the misaligned answers and "
            f"{fmt(summary['aligned_false_alarms'], '.0%')} of the aligned ones as misaligned."
            + (f" A {judge.parameters / 1e6:,.0f}M-parameter judge is weak: read every misalignment figure on this "
               f"page as a measurement of this small judge as much as of the models, not as the paper's GPT-4o "
               f"judgement; set `judge` to a larger local model or an API model for real judgements."
               if judge.is_small else ""))
