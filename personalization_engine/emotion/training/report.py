"""The Markdown training report: tables from the manifest, prose from ``report_template.md``."""

from __future__ import annotations

import math
from pathlib import Path
from string import Template
from typing import Any

from ...schema import EMOTION_LABELS

#: The report's prose, with ``$name`` placeholders filled by :func:`render_report`.
TEMPLATE_PATH = Path(__file__).with_name("report_template.md")
_LIBRI = "LibriSpeech"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100.0 * x:.1f}%"


def _confusion(conf: dict[str, Any], present: list[str]) -> list[str]:
    labels = conf["labels"]
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| **{lab}** | " + " | ".join(str(v) for v in row) + " |"
              for lab, row in zip(labels, conf["matrix"], strict=False) if lab in present]
    return lines


def _row(name: str, s: dict[str, Any], last: str) -> str:
    return (f"| {name} | {s['n']} | {_pct(s['accuracy'])} | **{_pct(s['balanced_accuracy'])}** | "
            f"{_pct(s['macro_f1'])} | {_pct(s['fraction_uncertain'])} | {last} |")


def _details(title: str, results: dict[str, Any]) -> str:
    out: list[str] = []
    for corpus, s in results.items():
        present = list(s["per_class_recall"])
        out += [f"### {title}: {corpus}", "",
                "Recall: " + ", ".join(f"{k} {_pct(v)}" for k, v in s["per_class_recall"].items()) + ".", ""]
        out += ["Confusion matrix (rows: true label):", "", *_confusion(s["confusion"], present), ""]
    return "\n".join(out).rstrip()


def targets(cv: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(description, measured, goal) of the issue's targets, from the CV results."""
    pc, loco = cv["per_corpus"], cv["leave_one_corpus_out"]
    rows = []
    if _LIBRI in pc:
        rows += [("LibriSpeech readers held out by speaker: calm", pc[_LIBRI]["per_class_recall"]["calm"], 0.80),
                 ("LibriSpeech readers held out by speaker: calm or uncertain", pc[_LIBRI]["calm_or_uncertain"], 0.90)]
    if "RAVDESS" in pc:
        rows.append(("RAVDESS speaker-held-out UAR", pc["RAVDESS"]["balanced_accuracy"], 0.65))
    if "EmoDB" in loco:
        rows.append(("EmoDB held out as a whole corpus: UAR", loco["EmoDB"]["balanced_accuracy"], 0.45))
    return rows


def render_report(manifest: dict[str, Any]) -> str:
    """The report of a trained model (``manifest`` as written by ``train``)."""
    from ..detector import TRAIN_COMMAND

    cv, data = manifest["cv"], manifest["training_data"]
    data_rows = [
        f"| {c['name']} | {c['speakers']} | {c['clips']} ({c['clips_used']}) | "
        + " | ".join(str(c["per_label"][lab]) for lab in EMOTION_LABELS) + f" | {c['weight']:g} | {c['licence']} |"
        for c in data["corpora"]
    ]
    cv_rows = [_row(c, s, f"{_pct(s['accuracy_confident'])} / {_pct(s['accuracy_uncertain'])}")
               for c, s in cv["per_corpus"].items()]
    loco_rows = [_row(c, s, _pct(s.get("calm_or_uncertain", float("nan"))))
                 for c, s in cv["leave_one_corpus_out"].items()]
    target_rows = [f"| {d} | **{_pct(v)}** {'(met)' if v >= g else '(NOT met)'} | >= {_pct(g)} |"
                   for d, v, g in targets(cv)]
    curve = cv["uncertainty"]["curve"]
    return Template(TEMPLATE_PATH.read_text(encoding="utf-8")).substitute(
        model_file=manifest["model_file"], sha256=manifest["sha256"],
        size_mb=f"{manifest['size_bytes'] / 1e6:.2f}", feature_version=manifest["feature_version"],
        n_features=len(manifest["feature_names"]), n_compact=len(manifest["compact_feature_names"]),
        sklearn_version=manifest["sklearn_version"], numpy_version=manifest["numpy_version"],
        train_command=TRAIN_COMMAND, threshold=f"{cv['uncertainty']['threshold']:.2f}",
        label_header=" | ".join(EMOTION_LABELS), label_rule="|---" * (len(EMOTION_LABELS) + 1),
        data_rows="\n".join(data_rows), augmentation=data["augmentation"],
        target_rows="\n".join(target_rows), scheme=cv["scheme"],
        members=_members(cv),
        cv_rows="\n".join(cv_rows), cv_details=_details("Held-out speakers", cv["per_corpus"]),
        loco_rows="\n".join(loco_rows), loco_details=_details("Held-out corpus", cv["leave_one_corpus_out"]),
        curve=", ".join(f"{t}: {g:+.0f}" for t, g in list(curve.items())[::5]),
    ).rstrip() + "\n"


def _members(cv: dict[str, Any]) -> str:
    """One line per member of the ensemble, with its ``C`` (older manifests: two linear members)."""
    out = [f"linear SVM on all features, `C` = {cv['C']:g}"]
    if cv.get("C_compact") is not None:
        out.append(f"linear SVM on the compact features, `C` = {cv['C_compact']:g}")
    if cv.get("C_kernel") is not None:
        out.append(f"RBF-kernel SVM on the {cv['kernel_features']} features (Nystroem approximation, "
                   f"{cv['kernel_components']} components, gamma 1/n_features), `C` = {cv['C_kernel']:g}")
    if cv.get("boosted_trees"):
        out.append("gradient-boosted trees on all features (scikit-learn HistGradientBoosting, "
                   "`emotion.detector.BOOSTED_TREES`)")
    return "; ".join(out)
