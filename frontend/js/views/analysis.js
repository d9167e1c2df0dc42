// One analysis: progress while it runs, then linked views of its results.
// Owner: #/analyses/{id}. Share link: the same view, read-only (api.js in share mode).
import { api, isShared, url } from "../api.js";
import { badge, clear, errorBox, formatCount, formatSeconds, h, plot, toast } from "../dom.js";
import { GridCanvas, NEGATIVE, POSITIVE, cursorKey } from "../grid.js";
import { andOrSection } from "./andor.js";
import { renderSampled } from "./sampled.js";
import { dynamicsSection } from "./dynamics.js";
import { stabilitySection } from "./stability.js";
import { button, fact, note, sharePanel, tintLegend } from "./styles.js";
import { compareEntry, sharedCompareSection } from "./compare.js";
import { datasetSection } from "./dataset.js";
import { labelsPanel } from "./runlabels.js";

const POLL_MS = 500;
const CANVAS_PX = 384;
const THUMB_PX = 120;

export async function mount(root, params, ctx) {
  const state = { timer: null, analysis: null, itemId: params.query.get("image"), i: null, j: null, alive: true };
  state.leave = () => ctx?.navigate("#/");
  state.go = (hash) => ctx?.navigate(hash);
  const prefix = isShared() ? "" : `/analyses/${params.id}`;
  const stop = () => {
    state.alive = false; // answers that arrive after the page is left are dropped
    clearTimeout(state.timer);
  };

  async function refresh() {
    let analysis;
    try {
      analysis = await api(prefix);
      if (!state.alive) return; // the page was left while the answer travelled
    } catch (error) {
      if (!state.alive) return;
      clear(root, errorBox(error.message));
      return;
    }
    const wasRunning = state.analysis && isActive(state.analysis);
    state.analysis = analysis;
    if (isActive(analysis)) {
      renderProgress(root, analysis, prefix, state, refresh);
      state.timer = setTimeout(refresh, POLL_MS);
    } else if (!state.rendered || wasRunning) {
      state.rendered = true;
      await renderResults(root, analysis, prefix, state, refresh);
    }
  }
  await refresh();
  return stop;
}

function isActive(analysis) {
  return analysis.status === "queued" || analysis.status === "running";
}

function header(analysis, prefix, state, refresh) {
  const p = analysis.params;
  const target = p.target === "predicted" ? "the predicted class" : `class ${label(analysis, p.target)}`;
  const actions = h("div.actions");
  if (!isShared()) {
    if (isActive(analysis)) {
      actions.append(button("Cancel", "#cancel", async () => {
        await api(`${prefix}/cancel`, { method: "POST" });
        refresh();
      }));
    }
    if (analysis.status === "failed" || analysis.status === "cancelled") {
      actions.append(button("Retry", "#retry", async () => {
        await api(`${prefix}/retry`, { method: "POST" });
        refresh();
      }));
    }
    if (analysis.summary?.J) actions.append(compareEntry(analysis, state.go));
    actions.append(button("Delete", "#delete-analysis", async () => {
      const what = `${analysis.model_name} · ${p.grid} grid`;
      if (!window.confirm(`Delete the analysis “${what}”? Its results are deleted too; a running one is cancelled.`)) return;
      clearTimeout(state.timer); // no poll while it goes
      try {
        await api(prefix, { method: "DELETE" });
      } catch (error) {
        refresh(); // polls again while it runs
        throw error;
      }
      state.leave();
    }));
  }
  const what = `${analysis.model_name} · ${p.grid} grid · ${analysis.n_players} players${p.mode === "sampled" ? " · sampled" : ""}`;
  const title = h("h1#analysis-title", {}, analysis.name || what);
  const retitle = (run) => clear(title, run.name || what);
  return h("section.card.analysis-head", {},
    h("div.head-line", {}, title, badge(analysis.status)),
    analysis.name ? h("p.muted", {}, what) : null,
    h("p.muted", {},
      `${p.output} of ${target}; baseline ${p.baseline}; other patches ${p.others_present ? "present" : "absent"}; `,
      imageCount(analysis)),
    analysis.error ? errorBox(analysis.error) : null,
    isShared() || isActive(analysis) ? null : labelsPanel({ path: prefix, run: analysis, onSaved: retitle }),
    actions);
}

/** "4 images", or for a stability analysis "4 images, each also with noise and attacked". */
function imageCount(analysis) {
  const images = new Set(analysis.items.map((it) => it.image_id)).size;
  const per = analysis.items.length / Math.max(images, 1);
  return `${images} image${images === 1 ? "" : "s"}${per > 1 ? `, each analysed ${per} times (as it is and perturbed)` : ""}`;
}

/** "3 (cat)" for a class with a label of its own; "3" when there is none or it is the number. */
function label(analysis, cls) {
  const name = analysis.labels?.[cls];
  return name !== undefined && name !== null && String(name) !== String(cls) ? `${cls} (${name})` : `${cls}`;
}

function renderProgress(root, analysis, prefix, state, refresh) {
  const pct = analysis.progress_total ? (100 * analysis.progress_done) / analysis.progress_total : 0;
  // every pass is done but the job still runs: the transforms, for which there is no ETA
  const finishing = analysis.status === "running" && analysis.progress_total > 0
    && analysis.progress_done >= analysis.progress_total;
  clear(root,
    header(analysis, prefix, state, refresh),
    h("section.card", { "aria-labelledby": "progress-title" },
      h("h2#progress-title", {}, analysis.status === "queued" ? "Queued" : finishing ? "Finishing" : "Computing forward passes"),
      h("progress#progress", { max: 100, value: pct, "aria-label": "forward passes done" }),
      h("p#progress-text", {},
        `${formatCount(analysis.progress_done)} / ${formatCount(analysis.progress_total)} forward passes`,
        finishing
          ? " — all done; computing the interactions from them (Harsanyi transform, curves, summaries)."
          : ` (${pct.toFixed(0)}%) · time left ${analysis.eta_seconds == null ? "estimating…" : formatSeconds(analysis.eta_seconds)}`)));
}

async function renderResults(root, analysis, prefix, state, refresh) {
  const done = analysis.items.filter((item) => item.status === "done" && !item.variant);
  const parts = [header(analysis, prefix, state, refresh)];
  if (!done.length) {
    clear(root, ...parts, analysis.status === "done" ? null : errorBox("No image of this analysis finished."));
    return;
  }
  const item = done.find((it) => it.id === state.itemId) || done[0];
  state.itemId = item.id;
  const body = h("div.result");
  const stability = analysis.summary?.stability ? stabilitySection(analysis)
    : analysis.summary?.dynamics ? dynamicsSection(analysis) : null;
  if (stability) parts.push(stability.section);
  const dataset = done.length > 1 && analysis.params.mode !== "sampled"
    ? datasetSection(prefix, (itemId) => {
      state.itemId = itemId;
      state.i = state.j = null;
      renderResults(root, analysis, prefix, state, refresh).then(() => root.querySelector("nav.tabs")?.scrollIntoView());
    })
    : null;
  if (dataset) parts.push(dataset.section);
  parts.push(imageTabs(analysis, done, item, state, () => renderResults(root, analysis, prefix, state, refresh)));
  parts.push(body);
  if (!isShared()) parts.push(sharePanel(prefix, "analysis"));
  else parts.push(sharedCompareSection(url("")));
  clear(root, ...parts);
  stability?.draw();
  dataset?.draw();
  if (analysis.params.mode === "sampled") await renderSampled(body, analysis, item, prefix, state);
  else await renderItem(body, analysis, item, prefix, state);
}

function imageTabs(analysis, done, item, state, rerender) {
  if (done.length < 2) return null;
  return h("nav.tabs", { "aria-label": "Images of this analysis" },
    done.map((it, k) => h("button", {
      type: "button",
      "aria-pressed": String(it.id === item.id),
      on: { click: () => { state.itemId = it.id; state.i = state.j = null; rerender(); } },
    }, it.summary.prediction == null ? `Image ${k + 1}` : `Image ${k + 1}: class ${label(analysis, it.summary.prediction)}`)));
}

async function renderItem(body, analysis, item, prefix, state) {
  const p = analysis.params;
  const s = item.summary;
  const base = `${prefix}/items/${item.id}`;
  const [, height, width] = analysis.input_shape;
  const cells = p.players || [...Array(p.grid_rows * p.grid_cols).keys()];
  const scale = Math.max(1, Math.floor(CANVAS_PX / Math.max(height, width)));

  const canvas = h("canvas#patch-canvas", {
    width: width * scale, height: height * scale, tabindex: 0,
    "aria-label": "The image with its patch grid: click a patch, or move with the arrow keys and press Enter or Space, to see its interactions",
  });
  const grid = new GridCanvas(canvas, { rows: p.grid_rows, cols: p.grid_cols, width, height });
  grid.players = p.players;
  await grid.load(url(`${base}/image?scale=${scale}`));

  const tau = h("input#tau-slider", { type: "range", min: 0.01, max: 0.5, step: 0.01, value: p.tau });
  const tauOut = h("output", { for: "tau-slider" }, String(p.tau));
  const topk = h("input#topk-slider", { type: "range", min: 1, max: 40, step: 1, value: Math.min(12, p.top_k) });
  const topkOut = h("output", { for: "topk-slider" }, topk.value);
  const patchInput = h("input#patch-input", { type: "number", min: 0, max: cells.length - 1, placeholder: "patch" });
  const selection = h("div#selection", { "aria-live": "polite" },
    h("p.muted", {}, "Click a patch (or type its number) to list the salient interactions that contain it; click a second patch for their multi-order interaction."));
  const heat = h("div.figure#shapley-figure", {},
    h("p.muted", {}, "Select a patch: its Shapley interaction with every other patch appears here."));
  const pairFig = h("div.figure#pair-figure");
  // each note shows with its chart (they are drawn once a patch, then a pair, is selected)
  const shapleyNote = note(...CHART_NOTES.shapley);
  const pairNote = note(...CHART_NOTES.pair);
  shapleyNote.hidden = pairNote.hidden = true;
  const gallery = h("div.gallery#top-sets");
  const figs = {
    curve: h("div.figure#curve-figure"),
    salient: h("div.figure#salient-figure"),
    sparsity: h("div.figure#sparsity-figure"),
    average_output: h("div.figure#average-figure"),
  };

  clear(body,
    h("section.card.trust", { "aria-label": "Faithfulness" },
      fact("prediction", `class ${label(analysis, s.prediction)}`),
      fact("target", `class ${label(analysis, s.target)} (${s.output})`),
      fact("v(N) − v(∅)", s.v_full_minus_empty.toFixed(4)),
      fact("faithfulness residual", s.residual.toExponential(1), s.residual < 1e-6 ? "ok" : "warn"),
      fact("forward passes", `${formatCount(2 ** analysis.n_players)}${s.cached ? " (reused)" : ""}`),
      s.learned_baseline ? fact("Σ|I|, learned baseline", `${s.learned_baseline.loss_before.toFixed(2)} (${s.learned_baseline.start}) → ${s.learned_baseline.loss_after.toFixed(2)} in ${s.learned_baseline.steps} steps, ±${s.learned_baseline.radius}`) : null,
      h("div.exports", {}, "Export: ",
        ["json", "csv", "npz"].map((fmt) => h("a", { href: url(`${base}/export.${fmt}`), download: "" }, fmt.toUpperCase()))),
      note(...CHART_NOTES.trust, "p.cl-hint.trust-note")),
    h("div.explore", {},
      h("section.card", { "aria-labelledby": "image-title" },
        h("h2#image-title", {}, "Patches"),
        canvas,
        h("label", {}, "Patch ", patchInput),
        tintLegend("hover or focus a listed set to tint its patches"),
        selection),
      h("section.card", { "aria-labelledby": "heat-title" },
        h("h2#heat-title", {}, "Pairwise interaction strength"),
        heat, shapleyNote, pairFig, pairNote)),
    h("section.card.controls", { "aria-label": "Thresholds" },
      h("label", {}, "salient threshold τ ", tau, tauOut),
      h("label", {}, "top-k ", topk, topkOut)),
    h("section.card", { "aria-labelledby": "gallery-title" },
      h("h2#gallery-title", {}, "Strongest interactions"), tintLegend(), gallery),
    h("section.charts", {}, Object.entries(figs).map(([name, div]) => h("div.card", {}, div, note(...CHART_NOTES[name])))));

  const state2 = { tau: Number(p.tau), k: Number(topk.value) };
  const toCells = (players) => players.map((q) => cells[q]);
  const andOr = s.and_or ? andOrSection(s, base, grid, toCells) : null;
  if (andOr) body.querySelector("section.charts").before(andOr.section);
  const dense = isShared() ? null : denseNote(analysis, s, state);
  if (dense) body.querySelector(".explore").before(dense);
  const playerOf = (cell) => cells.indexOf(cell);

  async function drawFigures() {
    const all = await api(`${base}/figures?tau=${state2.tau}`);
    plot(figs.salient, all.salient, { name: "salient-by-order" });
    plot(figs.sparsity, all.sparsity, { name: "sparsity" });
    plot(figs.average_output, all.average_output, { name: "average-output" });
    const curve = analysis.items.filter((it) => it.status === "done").length > 1
      ? await api(`${prefix}/figures/curve`) : all.curve;
    plot(figs.curve, curve, { name: "order-strength" });
  }

  async function drawGallery() {
    const top = await api(`${base}/interactions?top_k=${state2.k}&tau=${state2.tau}`);
    clear(gallery, top.data.length ? null : h("p.muted", {}, "No interaction reaches τ."),
      await Promise.all(top.data.map(async (row) => {
        const c = h("canvas", { width: THUMB_PX, height: THUMB_PX });
        const g = new GridCanvas(c, grid.grid);
        g.image = grid.image;
        g.highlights = [{ cells: toCells(row.players), color: row.value > 0 ? POSITIVE : NEGATIVE }];
        g.draw();
        return h("figure.set", {}, c,
          h("figcaption", {}, `{${toCells(row.players).join(", ")}} `,
            h(row.value > 0 ? "strong.pos" : "strong.neg", {}, fmtValue(row.value))));
      })));
    clear(body.querySelector("#gallery-title"), `Strongest interactions (${formatCount(top.total)} salient at τ = ${state2.tau})`);
  }

  // An error toast only for what is still on screen: not for a superseded selection's
  // requests nor for a page that was left.
  const fail = (error) => {
    if (state.alive && error.name !== "AbortError") toast(error.message, "error");
  };
  let selectionRequest = 0;
  let inFlight = null;

  async function select(cell) {
    const q = playerOf(cell);
    if (q < 0) {
      toast(`Patch ${cell} is not a player in this analysis.`);
      return;
    }
    if (state.i === null || state.j !== null || q === state.i) {
      state.i = q === state.i && state.j === null ? null : q;
      state.j = null;
    } else {
      state.j = q;
    }
    await showSelection();
  }

  /** Show the selection (state.i, state.j). Each call supersedes the previous one: its
   * requests are aborted and whatever answers late is ignored (a double click used to let
   * the first click's answers draw over the cleared selection). */
  async function showSelection() {
    const ticket = ++selectionRequest;
    inFlight?.abort();
    const controller = new AbortController();
    inFlight = controller;
    const { signal } = controller;
    const current = () => ticket === selectionRequest && state.alive;
    const { i, j } = state;
    grid.selected = [i, j].filter((x) => x !== null).map((x) => cells[x]);
    grid.highlights = [];
    grid.draw();
    if (i === null) {
      clear(selection, h("p.muted", {}, "No patch selected."));
      clear(heat, h("p.muted", {}, "Select a patch: its Shapley interaction with every other patch appears here."));
      clear(pairFig);
      shapleyNote.hidden = pairNote.hidden = true;
      return;
    }
    const list = await api(`${base}/interactions?contains=${i}&tau=${state2.tau}&top_k=${state2.k}`, { signal });
    if (!current()) return;
    clear(selection,
      h("h3", {}, `Patch ${cells[i]}: ${formatCount(list.total)} salient interactions contain it`),
      h("ol.sets", {}, list.data.map((row) => {
        const set = toCells(row.players);
        const li = h("li", { tabindex: 0 }, `{${set.join(", ")}} `,
          h(row.value > 0 ? "strong.pos" : "strong.neg", {}, fmtValue(row.value)),
          h("span.muted", {}, ` order ${row.order}`));
        const show = () => {
          grid.highlights = [{ cells: set, color: row.value > 0 ? POSITIVE : NEGATIVE }];
          grid.draw();
        };
        li.addEventListener("mouseenter", show);
        li.addEventListener("focus", show);
        return li;
      })));
    const shapley = await api(`${base}/figures/shapley?i=${i}`, { signal });
    if (!current()) return;
    heat.querySelector("p.muted")?.remove();
    plot(heat, shapley, { name: "shapley" });
    shapleyNote.hidden = false;
    pairNote.hidden = j === null;
    if (j !== null) {
      const pair = await api(`${base}/pair?i=${i}&j=${j}`, { signal });
      if (!current()) return;
      plot(pairFig, pair.figure, { name: "pair" });
    } else {
      clear(pairFig, h("p.muted", {}, "Click a second patch to see I(m)(i, j) against the order m."));
    }
  }

  // the keyboard, as on the New-analysis canvas: arrows move a cursor, Enter or Space selects
  let cursor = 0;
  canvas.addEventListener("click", (event) => {
    const cell = grid.cellAt(event);
    if (cell === null) return;
    cursor = cell;
    if (grid.cursor !== null) grid.cursor = cell;
    select(cell).catch(fail);
  });
  canvas.addEventListener("keydown", (event) => {
    const key = cursorKey(event, cursor, grid.grid);
    if (!key) return;
    cursor = key.cursor;
    grid.cursor = cursor;
    if (key.activate) select(cursor).catch(fail);
    else grid.draw();
  });
  canvas.addEventListener("focus", () => {
    grid.cursor = cursor;
    grid.draw();
  });
  canvas.addEventListener("blur", () => {
    grid.cursor = null;
    grid.draw();
  });
  patchInput.addEventListener("change", () => {
    const cell = Number(patchInput.value);
    if (Number.isInteger(cell)) select(cell).catch(fail);
  });
  let debounce = null;
  const onSlide = () => {
    state2.tau = Number(tau.value);
    state2.k = Number(topk.value);
    tauOut.value = tau.value;
    topkOut.value = topk.value;
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      Promise.all([drawFigures(), drawGallery(), showSelection(), andOr?.draw(state2.tau, state2.k)]).catch(fail);
    }, 150);
  };
  tau.addEventListener("input", onSlide);
  topk.addEventListener("input", onSlide);
  await Promise.all([drawFigures(), drawGallery(), andOr?.draw(state2.tau, state2.k)]);
}


/** What each chart of an exact result shows and how to read it (SCIENCE.md §1–§4): plain
 * words, the formula, the seed — the arguments of note(). */
const CHART_NOTES = {
  curve: ["How strongly pairs of patches cooperate when m other patches are present, relative to the average over all m. A U shape is the representation bottleneck: strong with few or almost all patches, weak in between. The shaded band is the same curve for the image's values shuffled among the subsets (averaging alone makes a U), so read how the model differs from it; F(m) dashed is the theory's shape.",
    "J(m) = E_x E_{i,j} |I^(m)(i,j)| / mean_m, I^(m)(i,j) = E_{|S|=m} Δv(i,j,S); F(m) ∝ (n−m−1)/√C(n−2,m)", "000"],
  salient: ["How many interactions are salient at each order (number of patches in the set), red positive, blue negative. A sparse model has few salient sets, mostly of low order.",
    "R^(k) = #{S : |S| = k, |I(S)| ≥ τ · max|I|}", "002"],
  sparsity: ["All interaction strengths sorted, strongest first, relative to the largest; the dotted line is τ. The sooner the curve falls below it, the fewer concepts explain the output.",
    "|I(S)| / max_T |I(T)|, I(S) = Σ_{T⊆S} (−1)^{|S|−|T|} v(T)", "002"],
  average_output: ["How much the output gains over the empty image, on average, when m patches are shown; the exponent p says how fast it builds up with more patches.",
    "ū(m) = E_{|S|=m} [v(S) − v(∅)]; p smallest with ū(m') ≥ (m'/m)^p ū(m) for m' ≤ m", "002"],
  shapley: ["How much each patch cooperates with the selected one, averaged over all context sizes: red, the pair adds more together than apart; blue, less.",
    "(1/(n−1)) Σ_m I^(m)(i, j)", "000"],
  pair: ["How strongly the two selected patches cooperate as the number m of other patches present grows: the bottleneck's U for one pair.",
    "I^(m)(i,j) = E_{|S|=m} [v(S∪{i,j}) − v(S∪{i}) − v(S∪{j}) + v(S)]", "000"],
  trust: ["Faithfulness: the interactions add back up to the model's output on every masked image; the residual is the largest violation and should be float round-off (about 1e-14).",
    "residual = max_S |v(S) − Σ_{T⊆S} I(T)|", "002"],
};

/** Over 20 % of sets salient: say what makes a result sparse, with one-click re-runs. */
const DENSE_SHARE = 0.2;

function denseNote(analysis, s, state) {
  const p = analysis.params;
  const total = s.salient_positive.reduce((a, b) => a + b, 0) + s.salient_negative.reduce((a, b) => a + b, 0);
  const share = total / (2 ** analysis.n_players - 1);
  if (share <= DENSE_SHARE) return null;
  const rerun = (label, id, changes) => button(label, id, async () => {
    const body = {
      model_id: analysis.model_id, image_ids: analysis.items.map((it) => it.image_id), grid: p.grid,
      players: p.players, others_present: p.others_present, baseline: p.baseline, target: p.target,
      output: p.output, tau: p.tau, top_k: p.top_k, and_or: p.and_or ?? null, ...changes,
    };
    body.learned_baseline = body.baseline === "learned" ? p.learned_baseline : null;
    const created = await api("/analyses", { method: "POST", body });
    state.go(`#/analyses/${created.id}`);
  });
  const options = [];
  if (p.baseline !== "zero") options.push(rerun("Re-run with the zero baseline", "#rerun-zero", { baseline: "zero" }));
  if (!p.and_or?.noise && analysis.n_players <= 16) options.push(rerun("Re-run with AND-OR + noise q", "#rerun-and-or", { and_or: { steps: 10000, noise: true } }));
  if (p.tau < 0.1) options.push(rerun("Re-run with τ = 0.1", "#rerun-tau", { tau: 0.1 }));
  return h("section.card.cl-notes#dense-note", { role: "note" },
    h("p", {}, h("strong", {}, `${(100 * share).toFixed(0)} % of all sets are salient`),
      " — a dense picture, unlike the sparse concepts of the papers. Sparsity depends on the setting: the baseline (what an absent patch shows: for the digits, black is their own background, while the mean colour paints grey squares the model never saw), ",
      "the AND-OR split with its small noise term q, and τ. On the built-in digits the zero baseline gives about 2.5 % salient sets against 43 % with the mean (docs/sparsity.md)."),
    options.length ? h("div.actions", {}, options) : null);
}

function fmtValue(v) {
  return `${v >= 0 ? "+" : ""}${v.toPrecision(3)}`;
}
