// The AND-OR split of an exact result (SCIENCE.md §2–§3): AND and OR salient sets side by
// side, their counts per order against AND-only, the sparsity curves, Σ|I| and the residuals.
import { api } from "../api.js";
import { clear, formatCount, h, plot } from "../dom.js";
import { GridCanvas, NEGATIVE, POSITIVE } from "../grid.js";
import { fact, note, tintLegend } from "./styles.js";

const THUMB_PX = 104;
const COLOURS = { and: "#d62728", or: "#1f77b4", and_only: "#7f7f7f" };
const NAMES = { and: "AND", or: "OR", and_only: "AND-only (Harsanyi)" };

/** The section's frame; `draw(tau, k)` fills it from the stored split. */
export function andOrSection(summary, base, grid, toCells) {
  const a = summary.and_or;
  const facts = h("div.trust", {},
    fact("Σ|I|, AND only → AND + OR", `${a.loss_and_only.toFixed(3)} → ${a.loss.toFixed(3)}`),
    fact("optimality gap", a.gap > 0 ? `≤ ${(100 * a.gap).toPrecision(2)} %` : "0 (optimal)", a.gap < 0.05 ? "ok" : "warn"),
    fact("steps", `${formatCount(a.steps_used)} of ${formatCount(a.steps)}${a.converged ? " (converged)" : ""}${a.polished ? ", exact LP" : ""}`),
    fact("faithfulness residual, AND-only / AND-OR", `${summary.residual.toExponential(1)} / ${a.residual.toExponential(1)}`, Math.max(summary.residual, a.residual) < 1e-6 ? "ok" : "warn"),
    a.q_bound > 0 ? fact("noise |q| max (bound)", `${a.q_max.toPrecision(3)} (${a.q_bound.toPrecision(3)})`) : null);
  const galleries = { and: h("div.gallery#and-sets"), or: h("div.gallery#or-sets") };
  const counts = h("div.figure#and-or-counts");
  const curves = h("div.figure#and-or-curves");
  const section = h("section.card#and-or", { "aria-labelledby": "and-or-title" },
    h("h2#and-or-title", {}, "AND-OR interactions"),
    note([
      "The output is split into AND interactions (a set adds its effect only when all its patches are present) and OR interactions (when any of them is present), ",
      "learned to make Σ|I| as small as possible while still rebuilding every masked output exactly. A sparse split means a few concepts explain the model. ",
      "Salient: |I(S)| ≥ τ × the largest |I| among all AND and OR terms together (AND-only uses its own largest)."],
      "v(T) − q_T = Σ_{S⊆T} I_and(S) + Σ_{S∩T≠∅} I_or(S), minimising Σ|I_and| + Σ|I_or|", "002"),
    tintLegend(),
    facts,
    h("div.and-or-sides", {},
      h("div", {}, h("h3#and-title", {}, "AND"), galleries.and),
      h("div", {}, h("h3#or-title", {}, "OR"), galleries.or)),
    h("div.charts", {}, h("div", {}, counts), h("div", {}, curves)));

  async function draw(tau, k) {
    const out = await api(`${base}/and_or?tau=${tau}&top_k=${k}`);
    for (const side of ["and", "or"]) {
      const rows = out[side].top;
      clear(section.querySelector(`#${side}-title`), `${NAMES[side]}: ${formatCount(out[side].total)} salient, Σ|I| = ${out[side].sum_abs.toFixed(3)}`);
      clear(galleries[side], rows.length ? null : h("p.muted", {}, "No term reaches τ."),
        rows.map((row) => {
          const c = h("canvas", { width: THUMB_PX, height: THUMB_PX });
          const g = new GridCanvas(c, grid.grid);
          g.image = grid.image;
          g.highlights = [{ cells: toCells(row.players), color: row.value > 0 ? POSITIVE : NEGATIVE }];
          g.draw();
          return h("figure.set", {}, c, h("figcaption", {}, `{${toCells(row.players).join(", ")}} `,
            h(row.value > 0 ? "strong.pos" : "strong.neg", {}, row.value.toPrecision(3))));
        }));
    }
    const orders = [...Array(out.n_players + 1).keys()];
    plot(counts, {
      data: ["and_only", "and", "or"].map((name) => ({
        type: "bar", name: NAMES[name], x: orders, marker: { color: COLOURS[name] },
        y: orders.map((m) => out[name].positive[m] + out[name].negative[m]),
      })),
      layout: {
        title: { text: `Salient interactions per order (τ = ${tau})` }, barmode: "group", height: 340,
        xaxis: { title: { text: "order |S|" }, dtick: 1 }, yaxis: { title: { text: "salient sets" }, rangemode: "tozero" },
        margin: { t: 50 }, legend: { orientation: "h", y: -0.25 },
      },
    }, { name: "and-or-counts" });
    plot(curves, {
      data: ["and_only", "and", "or"].map((name) => ({
        type: "scatter", mode: "lines", name: NAMES[name], line: { color: COLOURS[name] },
        x: out[name].curve.rank, y: out[name].curve.strength,
      })),
      layout: {
        title: { text: "Sparsity: strengths sorted, strongest first" }, height: 340,
        xaxis: { title: { text: "rank of the set" }, type: "log" },
        yaxis: { title: { text: "|I(S)| / max" }, type: "log", exponentformat: "power" },
        shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: tau, y1: tau, line: { dash: "dot", color: "#999" } }],
        margin: { t: 50 }, legend: { orientation: "h", y: -0.25 },
      },
    }, { name: "and-or-sparsity" });
  }
  section.append(note("Left: how many salient sets each order has, AND-only against AND and OR. Right: the strengths of all sets sorted; the sooner a curve falls below the dotted τ line, the sparser the explanation.",
    "R^(k) = #{S : |S| = k, |I(S)| ≥ τ · max|I|}", "002"));
  return { section, draw };
}
