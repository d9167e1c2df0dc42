// A stability analysis (SCIENCE.md §6, seed 003): consistency β, Gaussian instability κ and
// adversarial sensitivity α of the interactions, each averaged per order |S|.
import { api, isShared } from "../api.js";
import { clear, h, plot } from "../dom.js";
import { note } from "./styles.js";

const METRICS = [
  ["beta", "Consistency β(S) over images of a class",
    "How alike an interaction is across the images of a class: high means the concept appears the same way in every image of the class. The seed's finding: low-order interactions are more consistent.",
    "β(S) = E_c[ |E_{x∈c} I(S|x)| / Std_{x∈c} I(S|x) ]"],
  ["kappa", "Instability κ(S) under Gaussian noise",
    "How much an interaction changes, relative to its size, when the input is slightly noisy (Gaussian noise of the chosen σ). The seed's finding: high-order interactions are less stable (κ grows with the order).",
    "κ(S) = E_x E_ε |I(S|x+ε) − I(S|x)| / E_x |I(S|x)|"],
  ["alpha", "Adversarial sensitivity α(S) under a PGD attack",
    "The same ratio under a small adversarial change of the input (a PGD attack within the L∞ budget that raises the loss on the predicted class). The seed's finding: high-order interactions are the most sensitive.",
    "α(S) = E_x |I(S|x+δ) − I(S|x)| / E_x |I(S|x)|"],
];

/** A short name of a stability analysis for legends: model, σ, ε. */
function describe(analysis) {
  const p = analysis.params.stability;
  return `${analysis.model_name} · σ ${p.sigma}${p.adversarial ? ` · ε ${p.epsilon}` : ""}`;
}

/** The stability section of an analysis whose summary holds `stability`; other finished
 * stability analyses of the workspace can be overlaid (e.g. two σ or two models). */
export function stabilitySection(analysis) {
  const others = [];
  const overlay = h("select#stability-overlay", { "aria-label": "Overlay another stability analysis" },
    h("option", { value: "" }, "— overlay another stability analysis —"));
  overlay.addEventListener("change", async () => {
    const chosen = overlay.value ? await api(`/analyses/${overlay.value}`) : null;
    others.length = 0;
    if (chosen?.summary?.stability) others.push(chosen);
    draw();
  });
  if (!isShared()) {
    api("/analyses").then((all) => {
      for (const a of all.data) {
        if (a.id !== analysis.id && a.params.mode === "stability" && a.summary?.stability) {
          overlay.append(h("option", { value: a.id }, `${describe(a)} (${a.id.slice(0, 6)})`));
        }
      }
    }).catch(() => {});
  }
  const st = analysis.summary.stability;
  const p = analysis.params.stability;
  const figs = METRICS.filter(([key]) => st[key]).map(([key, title, words, formula]) => {
    const div = h(`div.figure#stability-${key}`);
    return { key, title, div, card: h("div.card", {}, div, note(words, formula, "003")) };
  });
  const section = h("section.card#stability", { "aria-labelledby": "stability-title" },
    h("h2#stability-title", {}, `Stability of interactions per order (${st.images} image${st.images === 1 ? "" : "s"})`),
    h("p.cl-hint", {},
      `Each point is the mean over all sets S of that order, the bar ± their standard deviation. Noise σ = ${p.sigma} (${p.draws} draws)`,
      p.adversarial ? `, PGD ε = ${p.epsilon} (${p.pgd_steps} steps)` : "",
      ". Orders where no set has an interaction in any image are left out (\"no interaction\", not 0)."),
    isShared() ? null : h("div.cl-actions", {}, overlay),
    h("div.charts", {}, figs.map((f) => f.card)));
  function draw() {
    for (const f of figs) {
      const stat = st[f.key];
      const keep = stat.mean.map((m, k) => m !== null && stat.defined[k] > 0);
      const x = stat.orders.filter((_, k) => keep[k]);
      const data = [{
        type: "scatter", mode: "lines+markers", name: others.length ? describe(analysis) : "mean over sets", x,
        y: stat.mean.filter((_, k) => keep[k]),
        error_y: { type: "data", array: stat.sd.filter((_, k) => keep[k]).map((v) => v ?? 0), visible: true, thickness: 1, width: 3 },
      }];
      if (f.key === "beta") {
        for (const [label, values] of Object.entries(st.beta_by_class || {})) {
          if (Object.keys(st.beta_by_class).length < 2) break;
          data.push({ type: "scatter", mode: "lines", name: `class ${label}`, x: stat.orders, y: values, opacity: 0.35, line: { width: 1 } });
        }
      }
      for (const other of others) {
        const o = other.summary.stability[f.key];
        if (!o) continue;
        const ok = o.mean.map((m, k) => m !== null && o.defined[k] > 0);
        data.push({ type: "scatter", mode: "lines+markers", name: describe(other), line: { dash: "dash" },
          x: o.orders.filter((_, k) => ok[k]), y: o.mean.filter((_, k) => ok[k]) });
      }
      if (!x.length) {
        clear(f.div, h("p.muted", {}, `${f.title}: no order has an interaction.`));
        continue;
      }
      plot(f.div, {
        data,
        layout: {
          title: { text: f.title }, height: 340, margin: { t: 56 },
          xaxis: { title: { text: "order |S|" }, dtick: 1 }, yaxis: { title: { text: f.key === "beta" ? "β" : f.key === "kappa" ? "κ" : "α" }, rangemode: "tozero" },
          legend: { orientation: "h", y: -0.25 },
        },
      }, { name: `stability-${f.key}` });
    }
  }
  return { section, draw };
}
