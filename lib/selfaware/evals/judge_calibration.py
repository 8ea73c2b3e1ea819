"""How good is a judge? It scores answers written by this project with known labels (clearly aligned,
clearly misaligned, incoherent; ``data/em/judge_calibration.yaml``) with the same prompts it uses on a page,
and the page reports how often its probability falls on numbers, how well it separates the labels (AUROC)
and how many misaligned answers the paper's rule catches. Every judged page starts here.

``choose_rule`` then decides which rule turns a page's scores into "misaligned": the rule calibrated on
one half of these answers (``selfaware.judge.calibrate_rule``) when that half holds enough scored aligned
and misaligned answers to fit it, the paper's absolute rule otherwise, with the reason in words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..util import fmt
from ..judge import (ALIGNMENT_PROMPT, COHERENCE_PROMPT, MIN_NUMBER_MASS, PAPER_RULE, CalibratedRule, DecisionRule,
                     calibrate_rule, is_misaligned, judge_answers, judge_messages)
from ..models import load_model, parse_spec
from ..paths import REPO_ROOT
from .questions import load_judge_calibration


def _path(name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else REPO_ROOT / path


CALIBRATION_PROMPTS = (ALIGNMENT_PROMPT, COHERENCE_PROMPT)  # what calibrate_judge asks of every answer


def plan_calibration(plan, judge_spec: str, path: str, limit: int | None = None, system: str | None = None) -> None:
    """Add to a page's plan the judge calls ``calibrate_judge`` makes: every labelled answer (the first
    ``limit``), once per prompt of ``CALIBRATION_PROMPTS``."""
    rows = load_judge_calibration(_path(path))[:limit]
    for template in CALIBRATION_PROMPTS:
        plan.ask("judge calibration (labelled answers)", judge_spec,
                 [judge_messages(template, r.question, r.answer, system) for r in rows], 3, kind="number")


def calibrate_judge(judge_spec: str, path: str, limit: int | None = None,
                    min_mass: float = MIN_NUMBER_MASS, system: str | None = None) -> pd.DataFrame:
    """Every labelled answer (the first ``limit``) judged with the page's prompts and system message."""
    rows = load_judge_calibration(_path(path))[:limit]
    judge = load_model(judge_spec)
    questions, answers = [r.question for r in rows], [r.answer for r in rows]
    aligned, coherent = (judge_answers(judge, template, questions, answers, min_mass, system)
                         for template in CALIBRATION_PROMPTS)
    return pd.DataFrame([{"id": r.id, "label": r.label, "alignment": a.score, "alignment mass": a.mass,
                          "coherence": c.score, "coherence mass": c.mass,
                          "judged misaligned": is_misaligned(a.score, c.score)}
                         for r, a, c in zip(rows, aligned, coherent)])


def _auc(higher: list[float], lower: list[float]) -> float:
    """Probability that a random item of ``higher`` scores above one of ``lower`` (ties count half)."""
    pairs = [(h > low) + 0.5 * (h == low) for h in higher for low in lower]
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


# ---- the decision rule a page uses ----------------------------------------------------------------------
def choose_rule(calibration: pd.DataFrame | None, decision: str = "calibrated", seed: int = 0,
                min_per_label: int = 10) -> tuple[DecisionRule, CalibratedRule | None, str]:
    """(the rule a page applies, the calibration behind it or None, why it was chosen, in words).

    ``decision`` "paper": the paper's absolute rule. "calibrated": the threshold fitted on one half of the
    judged labelled answers, when that half holds at least ``min_per_label`` scored aligned and as many
    scored misaligned answers; otherwise the paper's rule, and the reason says what was missing."""
    calibrated = None
    if calibration is not None and len(calibration):
        calibrated = calibrate_rule(calibration.to_dict("records"), seed)
    if decision == "paper":
        return PAPER_RULE, calibrated, "the page was asked for the paper's rule (decision_rule: paper)"
    if calibrated is None:
        return PAPER_RULE, None, "no labelled answers were judged (calibration_file is empty or off)"
    fitting = calibration[calibration["id"].isin(calibrated.fitting_ids)]
    scored = fitting.dropna(subset=["alignment", "coherence"])
    counts = {label: int((scored["label"] == label).sum()) for label in ("aligned", "misaligned")}
    if min(counts.values()) < min_per_label:
        return PAPER_RULE, calibrated, (
            f"the fitting half holds only {counts['aligned']} scored aligned and {counts['misaligned']} scored "
            f"misaligned answers (at least {min_per_label} of each are needed to fit a threshold)")
    return calibrated.rule, calibrated, (
        f"its threshold was fitted on {len(calibrated.fitting_ids)} labelled answers and, on the other "
        f"{len(calibrated.reporting_ids)}, it finds misaligned answers that the paper's rule "
        + ("misses" if (calibrated.absolute.recall or 0) < (calibrated.fitted.recall or 0) else "also finds"))


def rule_table(calibrated: CalibratedRule) -> pd.DataFrame:
    """The calibrated rule and the paper's rule on the reporting half: what each flags and how well."""
    rows = []
    for name, report in (("calibrated (fitted on the other half)", calibrated.fitted),
                         ("paper's absolute rule", calibrated.absolute)):
        rows.append({"rule": name, "alignment below": round(report.threshold, 1),
                     "coherence from": report.coherent_from, "answers": report.answers, "flagged": report.flagged,
                     "precision": report.precision, "recall": report.recall})
    table = pd.DataFrame(rows)
    table["alignment AUROC"] = calibrated.alignment_auroc
    return table


def coherence_check(calibration: pd.DataFrame | None, calibrated: CalibratedRule | None,
                    coherent_from: float) -> dict | None:
    """How the coherence cut does on the reporting half: the share of the sensible (aligned and misaligned)
    answers it keeps and the share of the incoherent ones it lets through. Why coherence is not calibrated
    too: 17 incoherent answers, 9 in a fitting half, are too few to fit a second threshold, so the paper's
    cut is kept and checked here instead."""
    if calibration is None or calibrated is None or not calibrated.reporting_ids:
        return None
    part = calibration[calibration["id"].isin(calibrated.reporting_ids)].dropna(subset=["coherence"])
    sensible = part[part["label"] != "incoherent"]
    incoherent = part[part["label"] == "incoherent"]
    return {"coherent_from": coherent_from,
            "sensible_kept": float((sensible["coherence"] >= coherent_from).mean()) if len(sensible) else None,
            "incoherent_passed": float((incoherent["coherence"] >= coherent_from).mean()) if len(incoherent) else None,
            "sensible": len(sensible), "incoherent": len(incoherent)}


def rule_metrics(rule: DecisionRule, calibrated: CalibratedRule | None, reason: str,
                 coherence: dict | None = None) -> dict:
    found = {"name": rule.name, "threshold": rule.threshold, "coherent_from": rule.coherent_from, "why": reason,
             "coherence_check": coherence}
    if calibrated is not None:
        found |= {"fitted_threshold": calibrated.threshold, "fitted_on": len(calibrated.fitting_ids),
                  "reported_on": len(calibrated.reporting_ids), "alignment_auroc": calibrated.alignment_auroc,
                  "calibrated_precision": calibrated.fitted.precision, "calibrated_recall": calibrated.fitted.recall,
                  "paper_rule_precision": calibrated.absolute.precision,
                  "paper_rule_recall": calibrated.absolute.recall}
    return found


def rule_sentence(rule: DecisionRule, calibrated: CalibratedRule | None, reason: str,
                  coherence: dict | None = None) -> str:
    """Which rule produced a page's rates, why, and how both rules did on the reporting half."""
    text = f"Rates on this page use {rule.describe()}: {reason}."
    if calibrated is not None and calibrated.reporting_ids:
        fitted, absolute = calibrated.fitted, calibrated.absolute
        text += (f" On the {len(calibrated.reporting_ids)} labelled answers the threshold never saw, the judge ranks "
                 f"an aligned answer above a misaligned one with probability "
                 f"{fmt(calibrated.alignment_auroc, '.2f')}; the calibrated rule (alignment < "
                 f"{calibrated.threshold:.1f}) flags {fitted.flagged} answers, precision "
                 f"{fmt(fitted.precision, '.0%')}, recall {fmt(fitted.recall, '.0%')}; the paper's rule (alignment < "
                 f"{absolute.threshold:g}) flags {absolute.flagged}, precision {fmt(absolute.precision, '.0%')}, "
                 f"recall {fmt(absolute.recall, '.0%')}.")
    if coherence:
        text += (f" The coherence cut stays the paper's {coherence['coherent_from']:g} (too few incoherent labelled "
                 f"answers to fit one): on the same half it keeps {fmt(coherence['sensible_kept'], '.0%')} of the "
                 f"{coherence['sensible']} sensible answers and lets through {fmt(coherence['incoherent_passed'], '.0%')} "
                 f"of the {coherence['incoherent']} incoherent ones.")
    return text
