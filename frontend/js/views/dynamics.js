// Learning dynamics over a model series (SCIENCE.md §6, seed 003): how similar each
// checkpoint's interactions are to the final model's, per order, and where their strength lies.
import { h, plot } from "../dom.js";
import { note } from "./styles.js";

/** The dynamics section of an analysis whose summary holds `dynamics`. */
export function dynamicsSection(analysis) {
  const d = analysis.summary.dynamics;
  const similarity = h("div.figure#dynamics-similarity");
  const strength = h("div.figure#dynamics-strength");
  const section = h("section.card#dynamics", { "aria-labelledby": "dynamics-title" },
    h("h2#dynamics-title", {}, `Learning dynamics of “${analysis.params.series}” (${d.steps.length} checkpoints, ${d.images} image${d.images === 1 ? "" : "s"})`),
    h("div.charts", {},
      h("div.card", {}, similarity, note(
        "How much of each checkpoint's interactions the final model shares, per order |S|: 1 = the same interactions. The seed's finding: low-order interactions settle early, high-order ones late. The thick line is all orders together.",
        "sim_s(t) = Σ min(Ĩ_t, Ĩ_T) / Σ max(Ĩ_t, Ĩ_T), Ĩ = [max(I,0), max(−I,0)] over |S| = s and images", "003")),
      h("div.card", {}, strength, note(
        "Where each checkpoint's interaction strength lies, as a share of its total. Read a row for one checkpoint, a column for how one order grows or fades during training.",
        "E_x Σ_{|S|=s} |I_t(S|x)| / Σ_{S≠∅} |I_t(S|x)|", "003"))));
  const draw = () => {
    const n = d.similarity[0].length;
    const data = [];
    for (let s = 0; s < n; s++) {
      data.push({ type: "scatter", mode: "lines+markers", name: `order ${s + 1}`, x: d.steps, y: d.similarity.map((row) => row[s]),
        line: { width: 1 }, marker: { size: 5 } });
    }
    data.push({ type: "scatter", mode: "lines", name: "all orders", x: d.steps, y: d.overall, line: { width: 4, color: "#222" } });
    plot(similarity, {
      data,
      layout: { title: { text: "Similarity to the final model" }, height: 360, margin: { t: 56 },
        xaxis: { title: { text: "training step" } }, yaxis: { title: { text: "similarity" }, range: [0, 1.05] } },
    }, { name: "dynamics-similarity" });
    plot(strength, {
      data: [{ type: "heatmap", x: [...Array(n).keys()].map((s) => s + 1), y: d.steps.map(String),
        z: d.strength.map((row) => row.slice(1)), colorscale: "Viridis", colorbar: { title: { text: "share" } } }],
      layout: { title: { text: "Strength by order at each checkpoint" }, height: 360, margin: { t: 56 },
        xaxis: { title: { text: "order |S|" }, dtick: 1 }, yaxis: { title: { text: "training step" }, type: "category" } },
    }, { name: "dynamics-strength" });
  };
  return { section, draw };
}
