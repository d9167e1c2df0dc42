// The result of a sampled analysis (large grids): the order-strength curve over the images with
// its error bars, per image or per class, and the sampled I^(m)(i,j) of a clicked patch.
import { api, url } from "../api.js";
import { clear, errorBox, formatCount, h, plot } from "../dom.js";
import { GridCanvas, cursorKey } from "../grid.js";
import { fact, note } from "./styles.js";

const CANVAS_PX = 384;
const MAX_PARTNER_TRACES = 24;

export async function renderSampled(body, analysis, item, prefix, state) {
  const p = analysis.params;
  const s = item.summary;
  const base = `${prefix}/items/${item.id}`;
  const [, height, width] = analysis.input_shape;
  const scale = Math.max(1, Math.floor(CANVAS_PX / Math.max(height, width)));
  const set = analysis.summary || {};
  const view = { debias: false, byLabel: false, cursor: state.i ?? 0 };

  const curve = h("div.figure#curve-figure");
  const debias = h("input#debias-toggle", { type: "checkbox", on: { change: () => { view.debias = debias.checked; drawCurve(); } } });
  const byLabel = h("input#by-label-toggle", { type: "checkbox", disabled: !set.by_label, on: { change: () => { view.byLabel = byLabel.checked; drawCurve(); } } });
  const canvas = h("canvas#patch-canvas", {
    width: width * scale, height: height * scale, tabindex: 0,
    "aria-label": "The image with its patch grid: click a patch, or move with the arrow keys and press Enter, to see its sampled pairwise interactions",
  });
  const grid = new GridCanvas(canvas, { rows: p.grid_rows, cols: p.grid_cols, width, height });
  const pairs = h("div.figure#pairs-figure", {}, h("p.muted", {}, "Click a patch to see I^(m)(i, j) of its sampled pairs."));
  const spec = p.sampled || {};
  const design = spec.hybrid
    ? `hybrid: ${p.pairs[0]} pairs × ${spec.contexts} contexts at low orders, ${p.pairs[1] ?? p.pairs[0]} pairs × ${spec.hybrid.contexts} contexts above m/n = ${spec.hybrid.split}`
    : `${p.pairs[0]} pairs × ${spec.contexts} contexts per order`;

  clear(body,
    h("section.card.trust", { "aria-label": "Sampling" },
      fact("orders m", p.orders.join(", ")),
      fact("design", design),
      fact("seed", String(spec.seed)),
      fact("forward passes (this image)", `${formatCount(s.passes)}${s.cached ? " (reused)" : ""}`),
      h("div.exports", {}, "Export: ",
        ["json", "csv", "npz"].map((fmt) => h("a", { href: url(`${base}/export.${fmt}`), download: "" }, fmt.toUpperCase())))),
    h("section.card", { "aria-labelledby": "curve-title" },
      h("h2#curve-title", {}, `Order-strength curve over ${set.images} image${set.images === 1 ? "" : "s"}`),
      note([
        "J(m) is the average strength |I^(m)(i, j)| of pairwise interactions at order m (the number of other patches present), divided by its mean over the orders: ",
        "the representation bottleneck shows as a curve high at both ends and low in the middle. Bars are 95 % intervals of the sampling noise (a jackknife over groups of contexts, Student t): over repeated runs they hold the curve that infinitely many contexts would give about 95 % of the time. ",
        "The dashed F(m) is the theory's shape on its own log axis: it predicts an ordering, not values. The dotted purple line is what an i.i.d. random game would give (averaging over many contexts alone makes a deep U): the network's structure is how its curve differs. Thin lines are single images (or classes)."],
        "J(m) = E_x E_{i,j} |I^(m)(i,j)| / mean_m; Î^(m)(i,j) = mean of Δv(i,j,S) over sampled S, |S| = m", "000"),
      h("div.cl-actions", {},
        h("label.cl-check", {}, debias, " Debiased strength"),
        h("label.cl-check", {}, byLabel, " One line per class")),
      h("p.cl-hint", {}, "Debiased: |Î| overstates small interactions by about their noise; the debiased strength removes that bias per pair (closed form), at the price of slightly wider bars."),
      curve),
    h("div.explore", {},
      h("section.card", { "aria-labelledby": "image-title" },
        h("h2#image-title", {}, "Patches"), canvas,
        h("p.cl-hint", {}, "Patches are numbered row by row from 0 at the top left.")),
      h("section.card", { "aria-labelledby": "pairs-title" },
        h("h2#pairs-title", {}, "Sampled pairwise interactions"),
        note("Each line is one sampled pair (i, j): how much more the two patches add together than apart, averaged over random contexts S of m other patches, with its 95 % interval. Only pairs in the analysis's pair set appear (local pairs within its radius, or its random pairs).",
          "Δv(i,j,S) = v(S∪{i,j}) − v(S∪{i}) − v(S∪{j}) + v(S)", "000"),
        pairs)));

  async function drawCurve() {
    try {
      const q = new URLSearchParams({ debias: String(view.debias), by_label: String(view.byLabel) });
      plot(curve, await api(`${prefix}/figures/curve?${q}`), { name: "order-strength" });
    } catch (error) {
      clear(curve, errorBox(error.message));
    }
  }

  async function select(cell) {
    view.cursor = cell;
    state.i = cell;
    grid.selected = [cell];
    grid.draw();
    try {
      const out = await api(`${base}/sampled_pairs?player=${cell}`);
      drawPairs(out, cell);
    } catch (error) {
      clear(pairs, errorBox(error.message));
    }
  }

  function drawPairs(out, cell) {
    const partners = out.partners.slice(0, MAX_PARTNER_TRACES);
    if (!partners.length) {
      clear(pairs, h("p.muted", {}, `Patch ${cell} is in no sampled pair.`));
      return;
    }
    const n = out.n_players;
    const data = partners.map((row) => ({
      type: "scatter", mode: "lines+markers", name: `(${cell}, ${row.player})`,
      x: row.orders.map((m) => m / n), y: row.mean,
      error_y: {
        type: "data", symmetric: false, visible: true, thickness: 1, width: 2,
        array: row.hi.map((hi, k) => (hi == null || row.mean[k] == null ? null : hi - row.mean[k])),
        arrayminus: row.lo.map((lo, k) => (lo == null || row.mean[k] == null ? null : row.mean[k] - lo)),
      },
      customdata: row.orders, hovertemplate: `pair (${cell}, ${row.player})<br>m = %{customdata}<br>I = %{y:.4g}<extra></extra>`,
    }));
    clear(pairs);
    plot(pairs, {
      data,
      layout: {
        title: { text: `I<sup>(m)</sup>(${cell}, j) of the sampled pairs with patch ${cell}` },
        xaxis: { title: { text: "order ratio m/n" } },
        yaxis: { title: { text: "I<sup>(m)</sup>(i, j)" }, zeroline: true },
        margin: { t: 60 },
        height: 360,
      },
    }, { name: `pairs-${cell}` });
  }

  canvas.addEventListener("click", (event) => {
    const cell = grid.cellAt(event);
    if (cell !== null) select(cell);
  });
  canvas.addEventListener("keydown", (event) => {
    const key = cursorKey(event, view.cursor, { rows: p.grid_rows, cols: p.grid_cols });
    if (!key) return;
    view.cursor = key.cursor;
    if (key.activate) select(view.cursor);
    else { grid.selected = [view.cursor]; grid.draw(); }
  });
  await grid.load(url(`${base}/image?scale=${scale}`));
  await drawCurve();
  if (state.i != null) await select(state.i);
}
