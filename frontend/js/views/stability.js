// A stability analysis (SCIENCE.md §6, seed 003): consistency β, Gaussian instability κ and
// adversarial sensitivity α of the interactions, each averaged per order |S|.
import { clear, h, plot } from "../dom.js";

const METRICS = [
  ["beta", "Consistency β(S) over images of a class",
    "β(S) = |mean of I(S)| / its standard deviation over the images of a class, averaged over the classes: high means the concept appears the same way in every image of the class. The seed's finding: low-order interactions are more consistent."],
  ["kappa", "Instability κ(S) under Gaussian noise",
    "κ(S) = E|I(S | x + ε) − I(S | x)| / E|I(S | x)| for noise ε of the chosen σ: how much an interaction changes, relative to its size, when the input is slightly noisy. The seed's finding: high-order interactions are less stable (κ grows with the order)."],
  ["alpha", "Adversarial sensitivity α(S) under a PGD attack",
    "α(S), the same ratio for a PGD perturbation within the L∞ budget that raises the model's loss on its predicted class; A(s) is its mean over sets of order s. The seed's finding: high-order interactions are the most sensitive."],
];

/** The stability section of an analysis whose summary holds `stability`. */
export function stabilitySection(analysis) {
  const st = analysis.summary.stability;
  const p = analysis.params.stability;
  const figs = METRICS.filter(([key]) => st[key]).map(([key, title, note]) => {
    const div = h(`div.figure#stability-${key}`);
    return { key, title, div, card: h("div.card", {}, div, h("p.cl-hint", {}, note)) };
  });
  const section = h("section.card#stability", { "aria-labelledby": "stability-title" },
    h("h2#stability-title", {}, `Stability of interactions per order (${st.images} image${st.images === 1 ? "" : "s"})`),
    h("p.cl-hint", {},
      `Each point is the mean over all sets S of that order, the bar ± their standard deviation. Noise σ = ${p.sigma} (${p.draws} draws)`,
      p.adversarial ? `, PGD ε = ${p.epsilon} (${p.pgd_steps} steps)` : "",
      ". Orders where no set has an interaction in any image are left out (\"no interaction\", not 0)."),
    h("div.charts", {}, figs.map((f) => f.card)));
  const draw = () => {
    for (const f of figs) {
      const stat = st[f.key];
      const keep = stat.mean.map((m, k) => m !== null && stat.defined[k] > 0);
      const x = stat.orders.filter((_, k) => keep[k]);
      const data = [{
        type: "scatter", mode: "lines+markers", name: "mean over sets", x,
        y: stat.mean.filter((_, k) => keep[k]),
        error_y: { type: "data", array: stat.sd.filter((_, k) => keep[k]).map((v) => v ?? 0), visible: true, thickness: 1, width: 3 },
      }];
      if (f.key === "beta") {
        for (const [label, values] of Object.entries(st.beta_by_class || {})) {
          if (Object.keys(st.beta_by_class).length < 2) break;
          data.push({ type: "scatter", mode: "lines", name: `class ${label}`, x: stat.orders, y: values, opacity: 0.35, line: { width: 1 } });
        }
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
  };
  return { section, draw };
}
