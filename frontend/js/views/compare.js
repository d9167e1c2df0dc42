// Two interaction analyses side by side (issue 13 §2). Owner: #/compare?a={id}&b={id}&image=
// (a shareable URL of the workspace). A share link's page renders the same comparison inline
// with another share link (renderComparison, the other analysis by its token).
import { api, isShared } from "../api.js";
import { clear, errorBox, h, plot, toast } from "../dom.js";
import { GridCanvas, NEGATIVE, POSITIVE } from "../grid.js";
import { ensureStyles, note, tintLegend } from "./styles.js";

const CANVAS_PX = 288;
const USED = "rgba(255, 165, 0, 0.40)"; // a patch some salient set uses

/** What each chart and panel of the comparison shows and how to read it: plain words, the
 * formula, the seed — the arguments of note(). */
export const COMPARE_NOTES = {
  curve: ["How strongly pairs of patches cooperate with m other patches present, relative to the average over m, for each analysis, against m/n so grids of different sizes share one axis. Where the curves part, the two settings (model, baseline, grid or output) change which orders carry the interactions; F(m) dashed is the theory's shape.",
    "J(m) = E_x E_{i,j} |I^(m)(i,j)| / mean_m", "000"],
  sparsity: ["For the image shown: the share of all sets of each order that are salient, per analysis against m/n. Lower is sparser: fewer concepts explain the output.",
    "R^(k) / C(n, k), salient: |I(S)| ≥ τ · max|I|", "002"],
  sets: ["Orange patches are used by at least one of the strongest salient sets of that analysis; patches outlined in cyan are in common — salient in both, covering the same part of the image (with different grids, overlapping). Hover over or focus a set in the list to tint it.",
    "I(S) = Σ_{T⊆S} (−1)^{|S|−|T|} v(T)", "002"],
};

export async function mount(root, params, ctx) {
  ensureStyles();
  const a = params.query.get("a");
  const b = params.query.get("b");
  if (!a || !b) {
    clear(root, errorBox("A comparison needs two analyses: open one and choose “Compare with…”."));
    return undefined;
  }
  let alive = true;
  const show = async (image, tau) => {
    const query = new URLSearchParams({ with: b });
    if (image) query.set("image", image);
    if (tau) query.set("tau", tau);
    const data = await api(`/analyses/${a}/compare?${query}`);
    if (!alive) return;
    const section = h("div.compare-view");
    clear(root, h("div.head-line", {}, h("h1", {}, "Compare two analyses")), section);
    await renderComparison(section, data, {
      bases: [`/api/analyses/${a}`, `/api/analyses/${b}`],
      links: [`#/analyses/${a}`, `#/analyses/${b}`],
      tau,
      onChange: (next) => {
        const q = new URLSearchParams({ a, b });
        if (next.image) q.set("image", next.image);
        if (next.tau) q.set("tau", next.tau);
        history.replaceState(null, "", `#/compare?${q}`); // the URL says what is shown
        show(next.image, next.tau).catch((e) => toast(e.message, "error"));
      },
      swap: () => ctx.navigate(`#/compare?a=${b}&b=${a}`),
    });
  };
  clear(root, h("p.muted", { "aria-busy": "true" }, "Loading the comparison…"));
  // not awaited: the router gets the cleanup at once, so leaving early stops a late render
  show(params.query.get("image"), params.query.get("tau")).catch((error) => {
    if (alive) clear(root, errorBox(error.message));
  });
  return () => { alive = false; };
}

/**
 * Draw a comparison (the body of GET …/compare) into `box`. `bases` are the API roots of A
 * and B (for their images), `links` their pages (null in a share link's page), `onChange`
 * gets {image, tau} when the reader picks another image or τ.
 */
export async function renderComparison(box, data, { bases, links, tau, onChange, swap }) {
  const runs = [data.a, data.b];
  const heading = (run, k) => h("div.compare-run", {},
    h("strong", {}, `${"AB"[k]}: `),
    links?.[k] ? h("a", { href: links[k] }, run.label) : run.label,
    h("div.muted", {}, `${run.model_name} · ${run.grid} grid (${run.n_players} players) · baseline ${run.baseline} · ${run.output}${run.mode !== "exact" ? ` · ${run.mode}` : ""}`));
  const curve = h("div.figure#compare-curve");
  const parts = [
    h("section.card.compare-head", { "aria-label": "The two analyses" },
      h("div.compare-runs", {}, runs.map(heading)),
      swap ? h("div.actions", {}, h("button#compare-swap", { type: "button", on: { click: swap } }, "Swap A and B"),
        isShared() ? null : copyLink()) : null),
    h("section.card", { "aria-labelledby": "compare-curve-title" },
      h("h2#compare-curve-title", {}, "Order-strength curves"), curve, note(...COMPARE_NOTES.curve)),
  ];
  if (data.note) parts.push(h("p.cl-notes#compare-note", { role: "note" }, data.note));
  const setsCard = h("section.card#compare-sets", { "aria-labelledby": "compare-sets-title" });
  let sparsity = null;
  if (data.images.length) {
    const picker = h("select#compare-image", { "aria-label": "image both analysed" },
      data.images.map((img, k) => h("option", { value: img.image_id, selected: img.image_id === data.image_id },
        `Image ${k + 1}${img.label != null ? ` (label ${img.label})` : ""}`)));
    picker.addEventListener("change", () => onChange({ image: picker.value, tau }));
    const tauInput = h("input#compare-tau", { type: "number", min: 0.01, max: 1, step: 0.01, value: tau || "", placeholder: "each its own" });
    tauInput.addEventListener("change", () => onChange({ image: picker.value, tau: tauInput.value }));
    setsCard.append(h("h2#compare-sets-title", {}, "Salient sets side by side"),
      h("div.comp-map-controls", {}, h("label", {}, "Image ", picker), h("label", {}, "τ ", tauInput)));
    if (data.figures.sparsity?.data.length) {
      sparsity = h("div.figure#compare-sparsity");
      parts.push(h("section.card", { "aria-labelledby": "compare-sparsity-title" },
        h("h2#compare-sparsity-title", {}, "Sparsity on this image"), sparsity, note(...COMPARE_NOTES.sparsity)));
    }
    parts.splice(2, 0, setsCard);
  }
  clear(box, ...parts);
  plot(curve, data.figures.curve, { name: "compare-curves" });
  if (sparsity) plot(sparsity, data.figures.sparsity, { name: "compare-sparsity" });
  if (!data.salient) return;
  const columns = await Promise.all(runs.map((run, k) => salientColumn(
    run, data.salient["ab"[k]], `${bases[k]}/items/${data.images.find((i) => i.image_id === data.image_id)[k ? "b_item" : "a_item"]}/image`, k)));
  setsCard.append(h("div.compare-columns", {}, columns), note(...COMPARE_NOTES.sets),
    tintLegend([h("span.cl-swatch.cl-swatch-used", { "aria-hidden": "true" }), " orange: used by a salient set"]));
}

async function salientColumn(run, salient, imageUrl, k) {
  const canvas = h(`canvas#compare-canvas-${"ab"[k]}`, { width: CANVAS_PX, height: CANVAS_PX,
    "aria-label": `The image with the patches of ${"AB"[k]}'s salient sets tinted and those in common outlined` });
  const grid = new GridCanvas(canvas, { rows: salient.grid_rows, cols: salient.grid_cols, width: CANVAS_PX, height: CANVAS_PX });
  const base = [{ cells: salient.cells, color: USED }];
  grid.highlights = base;
  grid.selected = salient.common;
  try {
    await grid.load(`${imageUrl}?scale=4`);
  } catch {
    grid.draw(); // the grid without its image
  }
  const tint = (set) => { grid.highlights = set ? [{ cells: set.cells, color: set.value > 0 ? POSITIVE : NEGATIVE }] : base; grid.draw(); };
  const list = h(`ol.sets#compare-sets-${"ab"[k]}`, {}, salient.sets.map((set) => {
    const li = h("li", { tabindex: 0 }, `{${set.cells.join(", ")}} `,
      h(set.value > 0 ? "strong.pos" : "strong.neg", {}, `${set.value >= 0 ? "+" : ""}${set.value.toPrecision(3)}`),
      h("span.muted", {}, ` order ${set.order}`));
    li.addEventListener("mouseenter", () => tint(set));
    li.addEventListener("focus", () => tint(set));
    li.addEventListener("mouseleave", () => tint(null));
    li.addEventListener("blur", () => tint(null));
    return li;
  }));
  return h("div.compare-column", {},
    h("h3", {}, `${"AB"[k]}: ${run.label}`),
    canvas,
    h("p.muted", {}, `${salient.total} salient sets at τ = ${salient.tau}; ${salient.cells.length} patches used, `,
      h(`strong#compare-common-${"ab"[k]}`, {}, `${salient.common.length} in common`), "."),
    salient.sets.length ? list : h("p.muted", {}, "No set reaches τ."));
}

function copyLink() {
  const button = h("button#compare-copy", { type: "button" }, "Copy link");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(location.href);
      toast("Link copied: it opens this comparison in this browser's workspace.");
    } catch {
      toast(`Link: ${location.href}`);
    }
  });
  return button;
}

/** The analysis page's "Compare with…": another analysis of the workspace that has a curve
 * (those on the same images first), then the comparison's own page. */
export function compareEntry(analysis, go) {
  const pick = h("select#compare-with", { "aria-label": "analysis to compare with" },
    h("option", { value: "" }, "Compare with…"));
  let loaded = false;
  const load = async () => {
    if (loaded) return;
    loaded = true;
    const mine = new Set(analysis.items.map((it) => it.image_id));
    const others = (await api("/analyses")).data
      .filter((a) => a.id !== analysis.id && a.summary?.J)
      .map((a) => ({ a, shared: a.items.filter((it) => mine.has(it.image_id)).length }))
      .sort((x, y) => y.shared - x.shared);
    if (!others.length) pick.append(h("option", { value: "", disabled: true }, "no other analysis with results yet"));
    for (const { a, shared } of others) {
      pick.append(h("option", { value: a.id },
        `${a.name || `${a.model_name} · ${a.params.grid} · ${a.params.baseline}`} (${shared ? `${shared} image${shared === 1 ? "" : "s"} in common` : "other images"})`));
    }
  };
  pick.addEventListener("focus", () => load().catch((e) => toast(e.message, "error")));
  pick.addEventListener("pointerdown", () => load().catch((e) => toast(e.message, "error")));
  pick.addEventListener("change", () => {
    if (pick.value) go(`#/compare?a=${analysis.id}&b=${pick.value}`);
  });
  load().catch(() => { loaded = false; });
  return pick;
}

/** A share link's page: compare with the analysis of another share link (pasted). */
export function sharedCompareSection(selfBase) {
  const input = h("input#compare-link", { type: "text", placeholder: "paste another share link (…/s/…)", size: 48 });
  const out = h("div.compare-view#shared-compare");
  const go = h("button#compare-go", { type: "button" }, "Compare");
  const show = async (tau, image) => {
    const token = input.value.trim().split("/").filter(Boolean).pop() || "";
    const query = new URLSearchParams({ with: token });
    if (image) query.set("image", image);
    if (tau) query.set("tau", tau);
    try {
      const data = await api(`/compare?${query}`);
      await renderComparison(out, data, {
        bases: [selfBase, `/api/shared/${encodeURIComponent(token)}`], links: null, tau,
        onChange: (next) => show(next.tau, next.image),
      });
    } catch (error) {
      clear(out, errorBox(error.message));
    }
  };
  go.addEventListener("click", () => show());
  return h("section.card", { "aria-labelledby": "shared-compare-title" },
    h("h2#shared-compare-title", {}, "Compare with another shared analysis"),
    h("p.muted", {}, "Both analyses must be shared: paste the other's link to see the two side by side."),
    h("div.actions", {}, input, go), out);
}
