"""Models: every card, its held-out metrics against its baselines, and its files."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from demo_core.cards import Card, load_card
from demo_core.errors import ModelUnavailable
from demo_core.stats import accuracy_interval
from demo_core.tasks import TASKS
from demo_core.xray.robustness import MAX_MEAN_TV, MIN_AGREEMENT
from ui.charts import CHART_CONFIG
from ui.navigation import run_inside_app_navigation

run_inside_app_navigation()

st.title("📊 Models")
st.write("Every model is trained by a script in `training/` and ships with a card. All metrics are measured on "
         "a held-out test split that no training or tuning step saw.")

def target_table(rows: list[tuple[str, object, object, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["metric", "result", "target", "baseline"]).astype(str)


def bar(title: str, values: dict, fmt: str = ".0%", target: float | None = None,
        intervals: dict[str, tuple[float, float]] | None = None, ymax: float = 1.1):
    error_y = None
    if intervals:  # 95 % intervals: a 5-film source's 100 % is not a 312-film source's 88 %
        error_y = dict(type="data", symmetric=False, color="#57606a", thickness=1.2,
                       array=[intervals[k][1] - v for k, v in values.items()],
                       arrayminus=[v - intervals[k][0] for k, v in values.items()])
    fig = go.Figure(go.Bar(x=list(values), y=list(values.values()), text=[format(v, fmt) for v in values.values()],
                           textposition="inside" if intervals else "outside", marker_color="#1f6feb",
                           error_y=error_y))
    if target is not None:
        fig.add_hline(y=target, line_dash="dash", line_color="#d1242f", annotation_text="target")
    fig.update_layout(title=title, height=320, yaxis=dict(range=[0, ymax]), margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, width="stretch", config=CHART_CONFIG)


def runtime_settings(typed: Card) -> None:
    """The settings the model reads at run time, beside its card: the scalars, and a poem's per-topic thresholds."""
    scalars = {k: v for k, v in typed.runtime.items() if isinstance(v, (int, float, str))}
    if not scalars:
        return
    with st.expander("Settings the model reads at run time"):
        st.json(scalars, expanded=True)
        if "thresholds" in typed.runtime and "topics" in typed.runtime:
            st.dataframe(pd.DataFrame({"topic": typed.runtime["topics"], "threshold": typed.runtime["thresholds"]}),
                         hide_index=True)


def files_and_notes(card: dict):
    with st.expander("Files, data, split and limitations"):
        st.dataframe(pd.DataFrame([{"file": k, "MB": round(v["bytes"] / 2**20, 2), "sha256": v["sha256"]}
                                   for k, v in card.get("files", {}).items()]), hide_index=True)
        st.json({k: card.get(k) for k in ("version", "date", "architecture", "input", "training_data", "license")},
                expanded=False)
        for lim in card.get("limitations", []):
            st.write(f"- {lim}")


def fmt(v, spec=".3f"):
    return "—" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def with_interval(part: dict | None) -> str:
    """An accuracy on n examples with its 95 % interval, e.g. '0.632 (0.50–0.74, n = 57)'."""
    if not part:
        return "—"
    lo, hi = accuracy_interval(part["accuracy"], part["n"])
    return f"{part['accuracy']:.3f} ({lo:.2f}–{hi:.2f}, n = {part['n']})"


def robustness_frame(current: dict, earlier: dict | None) -> pd.DataFrame:
    """One row per export transform: top-class agreement and mean TV, now and before the lung reading."""
    before = {r["transform"]: r for r in (earlier or {}).get("transforms", [])}
    rows = []
    for r in current.get("transforms", []):
        b = before.get(r["transform"], {})
        met = r["agreement"] >= MIN_AGREEMENT and r["mean_tv"] <= MAX_MEAN_TV
        # four places for TV, so that 0.0503 does not read as a met 0.050
        rows.append({"transform": r["transform"], "agreement": fmt(r["agreement"]),
                     "mean TV": fmt(r["mean_tv"], ".4f"),
                     f"targets (≥ {MIN_AGREEMENT}, ≤ {MAX_MEAN_TV})": "met" if met else "missed",
                     "before: agreement": fmt(b.get("agreement")), "before: mean TV": fmt(b.get("mean_tv"), ".4f")})
    return pd.DataFrame(rows)


def pooling_baseline(att: dict) -> str:
    """Both members pool with the lung prior, so a map with no preference of its own is not uniform."""
    share = att.get("pooling_weights_share")
    return "" if share is None else (f", and the members' lung-weighted pooling alone, with no preference of the "
                                     f"model's own, {fmt(share)}")


def lung_field_caption(field: dict) -> None:
    """Where both members read: how well the lung field is found, and how little a border crop moves it."""
    test = field.get("test", {})
    if "mean_iou" not in test:
        return
    first = test.get("first_look_mean_iou")
    st.caption("Both members read only the lung field the lung network finds"
               + (f" in {test['looks']} looks" if test.get("looks") else "")
               + f": IoU with the drawn lung boxes {fmt(test['mean_iou'])} on {test['n']} test films"
               + ("" if first is None else f" ({fmt(first)} after the first look)")
               + (f"; between a film and the same film cut by 6 % per side {fmt(field['border_crop_6pct_iou'])}"
                  if "border_crop_6pct_iou" in field else "") + ".")


def render_xray_robustness(card: dict) -> None:
    """What a film from another hospital meets: exports, sources never seen, calibration, where it looks."""
    metrics = card["metrics"]
    st.markdown("#### Robustness: the same film after an export")
    rob, earlier = metrics.get("robustness"), metrics.get("robustness_earlier")
    lung_field_caption(card.get("lung_field", {}))
    if rob:
        st.dataframe(robustness_frame(rob, earlier), hide_index=True)
        att, att_before = rob.get("attention_in_lungs", {}), (earlier or {}).get("attention_in_lungs", {})
        st.caption(f"{rob['films']} test films, each compared with itself after the transform (bench/"
                   "xray_robustness.py). 'Before' is the design shipped before the robustness work "
                   f"({(earlier or {}).get('design', 'whole-film members')}). Attention mass inside the lung boxes: "
                   f"{fmt(att.get('mean_share_inside_lung_boxes'))} (before "
                   f"{fmt(att_before.get('mean_share_inside_lung_boxes'))}; a uniform map would give "
                   f"{fmt(att.get('uniform_map_share'))}{pooling_baseline(att)}; {att.get('n', 0)} test films with "
                   "lung boxes; target ≥ 0.75). "
                   f"Each member's own map: the lung probe {fmt(att.get('lung_probe_map_share'))}, the fine-tuned "
                   f"member {fmt(att.get('finetuned_map_share'))}.")
        previous = metrics.get("robustness_previous")
        if previous:
            worst = min(previous.get("transforms", []), key=lambda r: r["agreement"], default=None)
            if worst:
                st.caption(f"In between, {previous['design']}: its least stable export was {worst['transform']} "
                           f"(agreement {fmt(worst['agreement'])}, mean TV {fmt(worst['mean_tv'])}), attention in the "
                           f"lungs {fmt(previous.get('attention_in_lungs', {}).get('mean_share_inside_lung_boxes'))}.")
        if rob.get("cost"):
            st.caption("What robustness cost: " + rob["cost"])
        check = rob.get("self_check")
        if check:
            st.markdown(
                f"**Self-check of each upload**: the page reads every film again after a 6 % border crop and as a "
                f"quality-50 JPEG, and says so when the answer changes. On the {check['n']} test films it flagged "
                f"{check['flagged']} ({check['flagged_share']:.0%}); those answers were right "
                f"{check['accuracy_flagged']:.0%} of the time (95 % CI {check['accuracy_flagged_95ci'][0]:.0%}–"
                f"{check['accuracy_flagged_95ci'][1]:.0%}), the others {check['accuracy_stable']:.0%}.")
    t = metrics["test"]
    if "ece" in t:
        st.markdown(f"**Calibration**: expected calibration error on the test split {t['ece']:.3f} after temperature "
                    f"scaling (T = {card['ensemble']['temperature']:g}, fitted on validation), "
                    f"{t['ece_before_calibration']:.3f} before; target ≤ 0.05.")
    loso = metrics.get("leave_one_source_out", {})
    if loso.get("sources"):
        st.markdown("#### Sources never seen: leave one source out")
        st.dataframe(pd.DataFrame([
            {"held-out source": s, "films": v["n"], "accuracy (95 % interval)":
             f"{v['accuracy']:.3f} ({v['interval_95'][0]:.2f}–{v['interval_95'][1]:.2f})",
             "labels": ", ".join(f"{k} {n}" for k, n in v["labels"].items()),
             "called": ", ".join(f"{k} {n}" for k, n in v["called"].items() if n)}
            for s, v in loso["sources"].items()]), hide_index=True)
        st.caption(loso["what"])
    fam = card.get("familiarity", {})
    if fam.get("held_out_sources"):
        st.markdown(f"**Unfamiliar-film warning**: above {fam['threshold']:.2f}. "
                    f"{fam['what']}; the threshold was set with sources held out entirely. Test films from the "
                    f"training sources flagged: {fam['test_films_flagged']:.1%}.")
        st.dataframe(pd.DataFrame([{"held-out source": s, "films": v["n"], "flagged": f"{v['flagged']:.0%}",
                                    "familiar validation films flagged": f"{v['familiar_validation_flagged']:.0%}"}
                                   for s, v in fam["held_out_sources"].items()]), hide_index=True)


def xray_reading_notes(card: dict) -> None:
    """How the served answer is read (framings, temperature) and what the gate reads, beside the figures."""
    ens, one = card.get("ensemble", {}), card["metrics"].get("test_one_framing")
    if ens.get("framings"):
        reader = ens.get("framings_read_by", "both members").capitalize()
        text = (f"{reader} reads {len(ens['framings'])} framings of the lung crop ({ens['framings_described']}) "
                "and its class probabilities are averaged; the temperature "
                f"({ens['temperature']:.2f}) was fitted on validation films read that way.")
        if one:
            text += (f" The same blend read with one framing on this test split: accuracy {fmt(one['accuracy'])}, "
                     f"macro AUC {fmt(one['macro_auc'])}, ECE {fmt(one.get('ece'))}.")
        st.caption(text)
    gate = card["metrics"].get("gate", {})
    if gate.get("cross_validation"):
        cv = next((c for c in gate["cross_validation"] if c["C"] == gate["C"]), None)
        text = f"The gate reads {gate['features']}, C = {gate['C']:g} chosen by cross-validation on the training images"
        if cv:
            text += (f" (chest films refused {cv['chest_films_refused']:.2%}, other images accepted "
                     f"{cv['other_images_accepted']:.2%})")
        text += f"; validation chest films accepted {fmt(gate.get('val_chest_xrays_accepted'), '.2%')}."
        held = gate.get("held_out_sources", {})
        if held:
            films, worst = sum(v["n"] for v in held.values()), min(v["accepted"] for v in held.values())
            share = "every film" if worst == 1 else f"at least {worst:.1%} of the films"
            text += (f" Refitted without each source in turn, it accepted {share} of that source ({len(held)} "
                     f"sources, {films:,} films).")
        earlier = [r for r in card["metrics"].get("earlier_test_reads", [])
                   if r.get("gate_others_refused") and "gate on the probe" not in r["design"]]
        if earlier:
            text += (f" The gate it replaced (the fine-tuned member's features) refused "
                     f"{earlier[-1]['gate_others_refused']:.2%} of the same test images.")
        st.caption(text)


def render_xray_outside(typed: Card) -> None:
    """Films from another hospital: the held-out NIH films beside the same-source figures, and the view audit."""
    outside = typed.metrics.get("outside_hospital")
    if not outside:
        return
    t, audit, target = outside["table"], outside["view_audit"], typed.target_text
    first = (typed.metrics.get("earlier_outside_reads") or [{}])[0]  # the design before the outside-hospital work
    earlier = first.get("table", {})
    st.markdown("**Films from another hospital** (NIH Clinical Center, held out by patient; none of them trained "
                "or tuned on)")

    def share(table: dict, view: str) -> str:
        s = table.get("no_finding_called_negative", {}).get(view)
        return "—" if not s else f"{s['share']:.2f} ({s['interval_95'][0]:.2f}–{s['interval_95'][1]:.2f}, n = {s['n']})"

    def auc(table: dict) -> str:
        if "pneumonia_auc" not in table:
            return "—"
        lo, hi = table["pneumonia_auc_interval_95"]
        return f"{table['pneumonia_auc']:.3f} ({lo:.2f}–{hi:.2f})"

    gap_before = earlier.get("mean_p_negative", {})
    before_gap = (gap_before["no_finding/AP"] - gap_before["no_finding/PA"]) if {"no_finding/AP", "no_finding/PA"} \
        <= set(gap_before) else None
    rows = [("normal AP films called negative", share(t, "AP"), target("nih_no_finding_called_negative_ap"),
             share(earlier, "AP")),
            ("normal PA films called negative", share(t, "PA"), target("nih_no_finding_called_negative_pa"),
             share(earlier, "PA")),
            ("pneumonia vs normal AUC, 1 − P(negative)", auc(t), target("nih_pneumonia_auc"), auc(earlier)),
            ("P(negative): normal AP − normal PA", fmt(audit.get("normal_view_gap_nih"), "+.3f"),
             target("nih_normal_view_gap").replace("≤ ", "within ±"), fmt(before_gap, "+.3f")),
            ("flagged unfamiliar", fmt(t.get("flagged_unfamiliar"), ".1%"), "", fmt(earlier.get("flagged_unfamiliar"), ".1%")),
            ("P(abnormal) calibration error", fmt(t.get("abnormal_ece")), "", fmt(earlier.get("abnormal_ece"))),
            ("wrong answers on normal films with a caution beside them", cautioned(t), "", cautioned(earlier)),
            ("accepted by the gate", fmt(t.get("gate_accepted"), ".1%"), "", "")]
    st.dataframe(pd.DataFrame(rows, columns=["metric", "result", "target", "before"]).astype(str), hide_index=True)
    reads = len(typed.metrics.get("earlier_outside_reads", []))
    st.caption(f"{t['n']} films ({t['n_no_finding']} No Finding, {t['n_pneumonia']} Pneumonia); 95 % intervals. "
               f"Shipped: {outside.get('design', '')}. \"before\": {first.get('design', 'the design before')}; "
               f"{reads} earlier read(s) of these films are in the card. {outside.get('labels_can_show', '')}")
    with st.expander("View audit: does the answer change with the film's view?"):
        st.dataframe(pd.DataFrame([{"collection": r["collection"], "class": r["class"],
                                    "AP: mean P(negative) (n)": view_cell(r["AP"]),
                                    "PA: mean P(negative) (n)": view_cell(r["PA"])} for r in audit["rows"]]),
                     hide_index=True)
        st.caption("Films of the same class whose view is known: the held-out NIH films and our own test films. "
                   "Within a class, P(negative) should not depend on whether the film was taken AP (bedside) or PA.")


def cautioned(table: dict) -> str:
    """'9 of 15': wrong answers on normal films that carried a caution (before the bedside caution, the
    unfamiliar-film one was the only one)."""
    wrong = table.get("wrong_on_normal")
    if not wrong:
        return "—"
    shown = wrong.get("with_a_caution", wrong.get("flagged_unfamiliar"))
    return "—" if shown is None else f"{shown} of {wrong['n']}"


def view_cell(part: dict) -> str:
    return "—" if not part["n"] else f"{part['mean_p_negative']:.2f} ({part['n']}, mostly {part['top_class']})"


def render_xray(typed: Card) -> None:
    card = typed.raw
    target = typed.target_text
    st.subheader(card["name"])
    t, g, b = card["metrics"]["test"], card["metrics"]["gate"], card.get("baselines", {})
    src = t.get("accuracy_per_source", {})
    # with two members the useful comparison is each member alone; otherwise the probe baseline
    members = card["metrics"].get("test_members", {})
    ref_name, ref = ("fine-tuned alone", members["finetuned"]) if "finetuned" in members else \
        ("probe", b.get("imagenet_linear_probe", {}))
    st.dataframe(target_table([
        ("accuracy (4 classes)", fmt(t["accuracy"]), target("accuracy"), f"{ref_name} {fmt(ref.get('accuracy'))}, always-typical {fmt(b.get('always_typical_accuracy'))}"),
        ("macro one-vs-rest AUC", fmt(t["macro_auc"]), target("macro_auc"), f"{ref_name} {fmt(ref.get('macro_auc'))}"),
        ("accuracy on ieee8023", with_interval(src.get("ieee8023")), target("ieee8023_accuracy"),
         f"{ref_name} {fmt(ref.get('accuracy_per_source', {}).get('ieee8023', {}).get('accuracy'))}"),
        ("opacity AP@0.5", fmt(t.get("opacity_ap50")), target("opacity_ap50"), ""),
        # two decimals of a per cent, so that 98.97 % does not read as a met 0.990
        ("gate: chest X-rays accepted", fmt(g.get("test_chest_xrays_accepted"), ".2%"), target("gate_xray_accepted"),
         ""),
        ("gate: photos/documents refused", fmt(g.get("test_negatives_refused"), ".2%"),
         target("gate_photos_refused"), f"n = {g.get('test_negatives_n', '—')}"),
    ]), hide_index=True)
    render_xray_outside(typed)
    ens = card.get("ensemble", {})
    st.caption("The lung probe's input size, features, regularisation, the blend weight and the temperature "
               f"were chosen on {ens.get('selected_by', 'validation')}. Every member learnt from the training "
               "films only.")
    xray_reading_notes(card)
    served = card.get("served", {})
    if served:
        worst = max((f["largest_difference"] for f in served.get("files", {}).values()), default=0.0)
        st.caption(f"Served through {served['runtime']}: the largest difference between an exported network's "
                   f"outputs and the trained Keras graph's was {worst:.1e}.")
    for read in card["metrics"].get("earlier_test_reads", []):
        st.caption(f"Read earlier on the same test split ({read.get('note', 'not the shipped design')}): "
                   f"{read['design']}: accuracy "
                   f"{fmt(read['accuracy'])}, macro AUC {fmt(read['macro_auc'])}, ieee8023 "
                   f"{fmt(read['ieee8023_accuracy'])}.")
    c1, c2 = st.columns(2)
    with c1:
        bar("Accuracy per source (held-out, 95 % intervals)",
            {f"{k} (n={v['n']})": v["accuracy"] for k, v in src.items()}, target=0.85,
            intervals={f"{k} (n={v['n']})": accuracy_interval(v["accuracy"], v["n"])
                       for k, v in src.items()})
        st.caption("The whiskers are 95 % Wilson intervals: with a few dozen films per source, a difference of "
                   "a few films moves a source's accuracy by several points.")
    with c2:
        bar("AUC and AP per class (held-out)", {f"AUC {k}": v for k, v in t.get("auc_per_class", {}).items()}
            | {f"AP {k}": v for k, v in t.get("ap_per_class", {}).items()}, ".2f")
    render_xray_robustness(card)
    hist = card.get("training", {}).get("history", [])
    if hist:
        h = pd.DataFrame(hist)
        x = list(range(1, len(h) + 1))  # a second learning-rate cycle continues the first's count
        fig = go.Figure([go.Scatter(x=x, y=h.val_accuracy, name="val accuracy"),
                         go.Scatter(x=x, y=h.val_macro_auc, name="val macro AUC")])
        fig.update_layout(title="Training curve (validation)", height=280, margin=dict(l=10, r=10, t=40, b=10),
                          xaxis_title="epoch" + (" (both cycles)" if "cycle" in h else ""))
        st.plotly_chart(fig, width="stretch", config=CHART_CONFIG)
        if card["training"].get("run"):
            st.caption(f"Trained with {card['training']['run']}. The curve is the validation score seen "
                       "during training; the epoch with the best accuracy + macro AUC was kept.")
    files_and_notes(card)


def held_out_poet_rows(unseen: dict, target) -> list[tuple]:
    """Cross-validation by poet (training and validation poems, each fold's poets left out of training)."""
    cv = unseen.get("cross_validated")
    if not cv:
        return []
    return [("80 % interval coverage, poets held out by fold",
             f"{fmt(cv['coverage'])} (95 % CI {'–'.join(fmt(v, '.2f') for v in cv['coverage_95ci'])}; "
             f"{cv['poems']:,} poems of {cv['poets']:,} poets, worth {cv['effective_n']:.0f} visitors)",
             target("interval_coverage"),
             f"half-width ±{unseen['half_width_80']:.0f} years, weighted to the poets a visitor resembles")]


def render_poem(typed: Card) -> None:
    card = typed.raw
    target = typed.target_text
    st.subheader(card["name"])
    shipped = card["metrics"]["shipped"]
    tests = card["metrics"]["test"]
    s, b = tests[shipped], card.get("baselines", {})
    unseen = typed.section("metrics", "unseen_poets")
    st.write(f"Shipped design: **{shipped}** (chosen on validation).")
    st.dataframe(target_table([
        ("top-1 topic accuracy", fmt(s["topics"]["top1_accuracy"]), target("top1_accuracy"),
         f"most frequent {fmt(b.get('most_frequent_topic_top1'))}, TF-IDF+LR {fmt(b.get('tfidf_logreg', {}).get('top1_accuracy'))}"),
        ("topic micro-F1", fmt(s["topics"]["micro_f1"]), target("micro_f1"), f"TF-IDF+LR {fmt(b.get('tfidf_logreg', {}).get('micro_f1'))}"),
        ("year MAE, text only (years)", fmt(s["year_mae_text_only"], ".1f"), target("year_mae"),
         f"median {fmt(b.get('median_year_mae'), '.1f')}, TF-IDF ridge {fmt(b.get('tfidf_ridge_year_mae'), '.1f')}"),
        ("year MAE, with author", fmt(s["year_mae_with_author"], ".1f"), target("year_mae"), ""),
        ("80 % interval coverage, text only", fmt(s.get("year_interval_coverage_text_only")), target("interval_coverage"), ""),
        ("80 % interval coverage, with author", fmt(s.get("year_interval_coverage_with_author")), target("interval_coverage"), ""),
        ("80 % interval coverage, poets never seen",
         f"{fmt(unseen.get('test_coverage_80'))} (95 % CI {'–'.join(fmt(v, '.2f') for v in unseen.get('test_coverage_95ci', []))}, "
         f"n = {unseen.get('test_n', '—')})", target("interval_coverage"),
         f"the earlier interval {fmt(unseen.get('before', {}).get('test_coverage_80'))}"),
        ("year MAE, poets never seen (years)", fmt(unseen.get("test_mae"), ".1f"), target("year_mae"), ""),
        *held_out_poet_rows(unseen, target),
    ]), hide_index=True)
    for read in unseen.get("earlier_reads", []):
        st.caption(f"Poets never seen, an earlier interval read on the same test poems ({read.get('note', '')}): "
                   f"±{read['half_width_80']:.0f} years covered {fmt(read['test_coverage_80'])}.")
    refit = s.get("refit")
    if refit:
        # cards written before "train_only_design" was recorded name it as the shipped key's first part
        before = tests.get(refit.get("train_only_design", shipped.split(",")[0]), {}).get("topics", {})
        st.caption(f"The shipped topic heads were trained again on the training and validation poems "
                   f"({refit['topic_poems']:,}) with the design, epochs and thresholds that validation had chosen "
                   f"for heads trained on the training poems alone; those heads read top-1 "
                   f"{fmt(before.get('top1_accuracy'))} on this test split. The year parts are the train-only ones.")
    for read in card["metrics"].get("earlier_test_reads", []):
        st.caption(f"Also read on the same test poems: {read['design']}: top-1 {fmt(read['top1_accuracy'])}.")
    by_seen = s.get("year_by_author_seen")
    if by_seen:
        st.write("Text-only year, by whether the poet has dated poems in the training split:")
        st.dataframe(pd.DataFrame(by_seen).T.style.format(
            {"n": "{:.0f}", "mae_text_only": "{:.1f}", "coverage_text_only": "{:.2f}"}))
    comp = pd.DataFrame({d: {"top-1": v["topics"]["top1_accuracy"], "micro-F1": v["topics"]["micro_f1"],
                             "year MAE (text)": v["year_mae_text_only"], "year MAE (author)": v["year_mae_with_author"]}
                         for d, v in tests.items()}).T
    st.write("Designs compared on the same held-out poems:")
    st.dataframe(comp.style.format("{:.3f}"))
    fig = go.Figure([go.Bar(name=m, x=comp.index, y=comp[m]) for m in ("top-1", "micro-F1")])
    fig.update_layout(barmode="group", title="Topics by design (held-out)", height=300, yaxis=dict(range=[0, 1]),
                      margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, width="stretch", config=CHART_CONFIG)
    runtime_settings(typed)
    files_and_notes(card)


def render_car(typed: Card) -> None:
    card = typed.raw
    st.subheader(card["name"])
    car_headline_table(typed)
    car_price_notes(card)
    p = card["metrics"]["photo_test"]
    car_charts(card, p)
    car_photo_candidates(p)
    runtime_settings(typed)
    files_and_notes(card)


def car_headline_table(typed: Card) -> None:
    card = typed.raw
    target = typed.target_text
    t, p, b = card["metrics"]["test"], card["metrics"]["photo_test"], card.get("baselines", {})
    papers = {"+".join(r["given"]): r for r in typed.section("metrics", "with_papers").get("test", [])}
    with_both, with_mpg, with_tax = (papers.get(k, {}) for k in ("mpg+tax", "mpg", "tax"))
    calibration = typed.section("metrics", "photo_calibration")
    st.dataframe(target_table([
        ("MAPE from details", fmt(t["mape"], ".1%"), target("mape"), f"median price {fmt(b.get('median_price_mape'), '.1%')}, Keras MLP {fmt(b.get('keras_embedding_mlp_mape'), '.1%')}"),
        ("80 % interval coverage", fmt(t["interval_coverage_80"]), target("interval_coverage_80"), ""),
        ("car / not-car balanced accuracy", fmt(p["car_not_car_balanced_accuracy"]), target("car_not_car_balanced_accuracy"),
         f"linear probe {fmt(b.get('linear_probe_car_balanced_accuracy'))}"),
        ("· not-car photos refused", with_interval(p.get("n_test_not_car") and
                                                  {"accuracy": p["not_car_refused"], "n": p["n_test_not_car"]}), "", ""),
        ("· car photos accepted", with_interval(p.get("n_test_not_car") and
                                               {"accuracy": p["car_accepted"], "n": p["n_test"] - p["n_test_not_car"]}), "", ""),
        ("make top-1 (listing brands)", fmt(p.get("make_top1_listing_brands")), target("make_top1"),
         f"linear probe {fmt(b.get('linear_probe_make_top1'))}"),
        ("MAPE with mpg and road tax", fmt(with_both.get("mape"), ".1%"), target("mape_with_mpg_and_tax"),
         f"mpg alone {fmt(with_mpg.get('mape'), '.1%')}, tax alone {fmt(with_tax.get('mape'), '.1%')}"),
        ("make probability calibration error", fmt(calibration.get("make", {}).get("test_ece_after")),
         target("photo_ece"), f"before calibration {fmt(calibration.get('make', {}).get('test_ece_before'))}"),
        ("car-check calibration error", fmt(calibration.get("car_check", {}).get("test_ece_after")),
         target("photo_ece"), f"before calibration {fmt(calibration.get('car_check', {}).get('test_ece_before'))}"),
    ]), hide_index=True)


def car_price_notes(card: dict) -> None:
    if card.get("price_design"):
        st.caption(f"Price model: {card['price_design']} (lower mileage never lowers the price).")
    for read in card["metrics"].get("earlier_test_reads", []):
        st.caption(f"Also read on the same test listings before: {read['design']}: MAPE {fmt(read['mape'], '.2%')}, "
                   f"interval coverage {fmt(read['interval_coverage_80'])}.")
    floor = card.get("analysis", {}).get("noise_floor_validation", {}).get("settings", [])
    if floor and floor[-1]["lookalike_median_mape"] is not None:
        f = floor[-1]
        st.caption(f"How much is left to win: on the {f['share']:.0%} of validation listings with at least "
                   f"{f['min_lookalikes']} training look-alikes (same fields, mileage within "
                   f"{f['mileage_tolerance']:.0%}), the look-alikes' median price misses by "
                   f"{f['lookalike_median_mape']:.1%} and the model by {f['model_mape_same_rows']:.1%}.")
    partial = card["metrics"].get("partial_details_test", {})
    if partial:
        st.write("When the visitor leaves fields out (held-out listings):")
        st.dataframe(pd.DataFrame(partial).T.style.format({"mape": "{:.1%}", "interval_coverage_80": "{:.2f}", "n": "{:.0f}"}))


def car_charts(card: dict, p: dict) -> None:
    c1, c2 = st.columns(2)
    with c1:
        per_brand = p.get("make_top1_per_brand", {})
        counts = card.get("training_data", {}).get("photo_counts", {}).get("test", {})
        bar("Make accuracy per brand (held-out photos, 95 % intervals)", per_brand, target=0.85,
            intervals={k: accuracy_interval(v, counts[k]) for k, v in per_brand.items()}
            if all(k in counts for k in per_brand) else None)
    with c2:
        cands = card.get("selection", {}).get("candidates", {})
        mapes = {k: v["val_mape"] for k, v in cands.items()}
        # on a 0-100 % axis the candidates' 0.3-point differences would vanish
        bar("Validation MAPE by candidate", mapes, ".2%", ymax=max(mapes.values(), default=0.1) * 1.25)
        if "ensemble_hgb_keras" in mapes:
            st.caption("The HGB + Keras average ships only when it beats the best boosted model by 0.2 points "
                       "on validation; a smaller gain does not pay for a second model in every request.")


def car_photo_candidates(p: dict) -> None:
    photo_cands = {k: v for k, v in p.get("candidates", {}).items() if isinstance(v, dict)}
    if photo_cands:
        c3, c4 = st.columns(2)
        with c3:
            bar("Photo make top-1 by candidate (validation)", {k: v["val_make_top1"] for k, v in photo_cands.items()})
        history = photo_cands.get("tail_fine_tuned", {}).get("history")
        if history:
            with c4:
                fig = go.Figure(go.Scatter(x=[h["epoch"] for h in history], y=[h["val_make_top1"] for h in history],
                                           mode="lines+markers"))
                fig.update_layout(title="Make fine-tuning: validation top-1 per epoch", height=300,
                                  xaxis_title="epoch", yaxis=dict(range=[0, 1]), margin=dict(l=10, r=10, t=40, b=10))
                st.plotly_chart(fig, width="stretch", config=CHART_CONFIG)
        for k, v in p.get("candidates", {}).items():
            if isinstance(v, str):
                st.caption(f"{k.replace('_', ' ')}: {v}")
    views = p.get("make_views")
    if views:
        grid = {f"crop {g['center_crop']:.0%}{' + mirror' if g['flip'] else ''}": g["val_make_top1"]
                for g in views["validation_grid"]}
        bar("Make top-1 by test-time view (validation)", grid, ".1%")
        st.caption(f"The make reads {views['description']}; the car / not-car check reads the whole photo.")
    for read in p.get("earlier_test_reads", []):
        st.caption(f"Also read on the same test photos before: the make from {read['make_views']}: "
                   f"top-1 {fmt(read['make_top1_listing_brands'])}.")


RENDERERS = {"xray": render_xray, "poem": render_poem, "car": render_car}
tabs = st.tabs(["Chest X-ray", "Poem analyzer", "Car price"])
for tab, task in zip(tabs, TASKS):
    with tab:
        try:
            RENDERERS[task](load_card(task))
        except ModelUnavailable as exc:
            st.error(str(exc))
