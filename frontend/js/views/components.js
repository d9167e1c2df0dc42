// Feature components of different complexity (SCIENCE.md §7): start a job, watch it, read it.
// #/components — the form and the workspace's jobs; #/components/{id} — one job's results.
// Share link (/s/c/{token}): one job's results, read-only (api.js in share mode).
import { api, isShared } from "../api.js";
import { badge, clear, errorBox, formatSeconds, h, plot, toast } from "../dom.js";
import { deleteButton, listedModel, note, sharePanel, uploadDatasetField } from "./styles.js";
import { labelsPanel } from "./runlabels.js";

const POLL_MS = 700;

export async function mount(root, params, ctx) {
  if (isShared()) return mountJob(root, "");
  return params.id ? mountJob(root, `/components/${params.id}`) : mountList(root, ctx);
}

/** "0, 1, 2" → [0, 1, 2]; anything that is not a whole number is sent as typed, so the
 * server's refusal names it ("orders[2] must be a whole number."). */
function parseOrders(text) {
  return text.split(",").map((t) => t.trim()).filter(Boolean)
    .map((t) => (/^-?\d+$/.test(t) ? Number(t) : t));
}

function field(label, control) {
  return h("label.field", {}, h("span", {}, label), control);
}

async function mountList(root, ctx) {
  let alive = true;
  const [models, datasets, jobs] = await Promise.all([
    api("/models"), api("/datasets"), api("/components"),
  ]);
  const usable = models.data.filter((m) => listedModel(m) && m.status === "ready" && (m.layers || []).length);
  const option = (value, text) => h("option", { value }, text);
  const model = h("select#comp-model", {}, usable.map((m) => option(m.id, m.name)));
  const compare = h("select#comp-compare", {}, option("", "none (no reliability)"),
    usable.map((m) => option(m.id, m.name)));
  // seed 001 measures reliability against two exemplary models
  const compare2 = h("select#comp-compare-2", {}, option("", "none"),
    usable.map((m) => option(m.id, m.name)));
  const estimator = h("select#comp-estimator", {},
    option("cycle", "cycle (the paper's: parallel heads, cycle maps)"),
    option("preview", "preview (fast closed form)"));
  const layer = h("select#comp-layer");
  const dataset = h("select#comp-dataset", {}, datasets.data.map((d) => option(d.id, `${d.name} (${d.n_images} images)`)));
  const orders = h("input#comp-orders", { value: "0, 1, 2, 4, 8" });
  // no max here: the server's caps are settings, and its refusal names them
  const epochs = h("input#comp-epochs", { type: "number", min: 1, value: 30 });
  const samples = h("input#comp-samples", { type: "number", min: 20, value: 600 });
  const error = h("div", { "aria-live": "assertive" });
  const datasetUpload = uploadDatasetField(dataset, () => alive, "comp");

  const fillLayers = () => {
    const m = usable.find((x) => x.id === model.value);
    const layers = (m && m.layers) || [];
    const shapes = (m && m.layer_shapes) || {};
    // the shape a layer returns per image, e.g. "relu2 · 32×8×8"
    clear(layer, layers.map((name) => option(name, shapes[name] ? `${name} · ${shapes[name].join("×")}` : name)));
    // the demo CNN's second conv block (torch name or ONNX node output), else a middle layer
    const preferred = layers.find((name) => name === "relu2" || name.startsWith("/relu2/"));
    layer.value = preferred || layers[Math.floor(layers.length / 2)] || "";
  };
  model.addEventListener("change", fillLayers);
  fillLayers();

  const run = h("button.primary#comp-run", { type: "button" }, "Run component analysis");
  run.addEventListener("click", async () => {
    clear(error);
    run.disabled = true;
    try {
      const job = await api("/components", {
        method: "POST",
        body: {
          model_id: model.value,
          compare_model_ids: [compare.value, compare2.value].filter(Boolean),
          reliability: estimator.value,
          dataset_id: dataset.value,
          layer: layer.value,
          orders: parseOrders(orders.value),
          epochs: Number(epochs.value),
          max_samples: Number(samples.value),
        },
      });
      ctx.navigate(`#/components/${job.id}`);
    } catch (e) {
      clear(error, errorBox(e.message));
    } finally {
      run.disabled = false;
    }
  });

  clear(root,
    h("h1", {}, "Feature components"),
    h("p.muted", {}, "Disentangle the feature at a layer into components of increasing complexity: ",
      "nets with l ReLU layers learn to mimic it; ρ(l) says how much of its variance each order explains."),
    h("p#kc-link", {}, "Two models of the same task: ",
      h("a", { href: "#/consistency" }, "knowledge consistency between them"),
      " (how much of one model's feature the other's reconstructs, by order)."),
    h("section.card.comp-form", { "aria-labelledby": "comp-new" },
      h("h2#comp-new", {}, "New component analysis"),
      usable.length ? null : errorBox("No model is ready yet: upload one on the Models page."),
      h("div.comp-grid", {},
        field("Model", model), field("Layer", layer), field("Image set", dataset), datasetUpload,
        field("Exemplar (reliability)", compare), field("Second exemplar", compare2),
        field("Reliability estimator", estimator), field("Orders l", orders),
        field("Epochs", epochs), field("Images used", samples)),
      run, error),
    h("section.card", { "aria-labelledby": "comp-jobs" },
      h("h2#comp-jobs", {}, "Component analyses"),
      jobs.data.length
        ? h("ul.comp-list", {}, jobs.data.map((job) => h("li", {},
          h("a", { href: `#/components/${job.id}` }, jobName(job), ` · orders ${job.params.orders.join(", ")}`),
          " ", badge(job.status), " ",
          deleteButton({
            what: "component analysis", name: jobName(job), path: `/components/${job.id}`,
            className: "button.comp-delete", errorTarget: error, warning: "Its share links stop working.",
            isAlive: () => alive, onDeleted: () => mountList(root, ctx),
          }))))
        : h("p.muted", {}, "None yet.")));
  return () => { alive = false; };
}


function jobName(job) {
  return job.name || `${job.model_name || "model"} · ${job.layer}`;
}

async function mountJob(root, prefix) {
  let timer = null;
  let shown = false;
  let inner = null; // the consistency view's unmount, when it shows the job
  async function refresh() {
    const job = await api(prefix);
    if (job.kind === "consistency") { // e.g. a share link of a knowledge-consistency job
      const view = await import("./consistency.js");
      inner = await view.mountJob(root, prefix);
      return;
    }
    const active = job.status === "queued" || job.status === "running";
    if (active) {
      const pct = job.progress_total ? (100 * job.progress_done) / job.progress_total : 0;
      clear(root, head(job),
        h("section.card", {},
          h("h2", {}, "Training the disentanglers"),
          h("progress#comp-progress", { max: 100, value: pct, "aria-label": "epochs done" }),
          h("p", {}, `${job.progress_done} / ${job.progress_total} epochs (${pct.toFixed(0)}%)`,
            job.eta_seconds === null ? "" : ` · about ${formatSeconds(job.eta_seconds)} left`),
          isShared() ? null : cancelButton(prefix, refresh)));
      timer = setTimeout(() => refresh().catch((e) => toast(e.message, "error")), POLL_MS);
      return;
    }
    if (shown) return;
    shown = true;
    clear(root, head(job),
      isShared() ? null : labelsPanel({ path: prefix, run: job, onSaved: (updated) => clear(root.querySelector("h1"), `Components of ${jobName(updated)}`) }),
      job.error ? errorBox(job.error) : null);
    if (job.status === "done") await results(root, job, prefix);
  }
  await refresh();
  return () => { clearTimeout(timer); if (inner) inner(); };
}

function head(job) {
  return h("section.card", {},
    h("div.head-line", {}, h("h1", {}, `Components of ${jobName(job)}`), badge(job.status)),
    h("p.muted", {}, `${job.dataset_name || "image set"}; orders ${job.params.orders.join(", ")}; `,
      `${job.params.epochs} epochs; ${job.params.max_samples} images`,
      job.compare_model_name
        ? `; reliability against ${(job.compare_model_names || []).join(" and ") || job.compare_model_name}`
        : ""));
}

function cancelButton(prefix, refresh) {
  const button = h("button#comp-cancel", { type: "button" }, "Cancel");
  button.addEventListener("click", async () => {
    await api(`${prefix}/cancel`, { method: "POST" }).catch((e) => toast(e.message, "error"));
    refresh();
  });
  return button;
}

async function results(root, job, prefix) {
  const figures = await api(`${prefix}/figures`);
  const m = job.metrics;
  const notes = Object.values(m.notes || {});
  const charts = h("section.charts#comp-charts");
  const drawn = ["significance", "reliability", "effects"].filter((name) => figures[name]);
  const divs = drawn.map((name) => h(`div.figure#comp-${name}`));
  charts.append(...divs.map((div, k) => h("div.card", {}, div, note(...COMPONENT_NOTES[drawn[k]]))));
  const mapsDiv = h("div.figure#comp-maps");
  const picker = h("input#comp-image", { type: "number", min: 0, value: 0, "aria-label": "test image" });
  const channel = h("input#comp-channel", { type: "number", min: 0, placeholder: "most activated",
    "aria-label": "channel (empty: the most activated)" });
  const showMap = async () => {
    const query = new URLSearchParams({ index: Number(picker.value) || 0 });
    if (channel.value !== "") query.set("channel", Number(channel.value));
    try {
      const maps = await api(`${prefix}/maps?${query}`);
      picker.max = maps.count - 1;
      channel.max = maps.channels - 1;
      channel.disabled = maps.channels < 2;
      plot(mapsDiv, maps.figure, { name: "component-maps" });
    } catch (e) {
      clear(mapsDiv, errorBox(e.message));
    }
  };
  picker.addEventListener("change", showMap);
  channel.addEventListener("change", showMap);
  const owner = isShared() ? [] : [await comparePanel(job), sharePanel(prefix, "component analysis")];
  const warning = poorFit(m);
  root.append(
    ...(warning ? [warning] : []),
    h("section.card.trust", {},
      note(...COMPONENT_NOTES.fit, "p.cl-hint.trust-note"),
      h("div.fact", {}, h("span.muted", {}, "held-out R² by order"),
        h("strong", {}, m.test_r2.map((r) => (r === null ? "—" : r.toFixed(3))).join(" · "))),
      m.train_split ? h("div.fact", {}, h("span.muted", {}, "over-fitting measured on"), h("strong", {}, m.train_split)) : null,
      h("div.fact", {}, h("span.muted", {}, "residual share"),
        h("strong", {}, m.significance.residual === null ? "—" : m.significance.residual.toFixed(3))),
      m.reliability ? reliabilityNote(m) : null,
      notes.length ? h("ul.muted", {}, notes.map((n) => h("li", {}, n))) : null),
    charts,
    h("section.card", {}, h("h2", {}, "Component maps by order"),
      h("div.comp-map-controls", {}, h("label", {}, "Test image ", picker),
        h("label", {}, "Channel ", channel)), h("div.scroll-x", {}, mapsDiv), note(...COMPONENT_NOTES.maps)),
    ...owner);
  // drawn once attached, so Plotly sizes each chart to its card
  drawn.forEach((name, k) => plot(divs[k], figures[name], { name: `components-${name}` }));
  await showMap();
}

/** Which reliability estimator ran, and how to read its numbers. */
function reliabilityNote(m) {
  const cycle = m.reliability_estimator === "cycle";
  return h("div.fact#comp-reliability-note", {},
    h("span.muted", {}, "reliability estimator"),
    h("strong", {}, cycle ? "cycle (the paper's)" : "preview (fast closed form)"),
    h("p.muted", {},
      "Reliability is the share of each component that the exemplary models reproduce through linear maps there and back: ",
      "near 1, they learned that part of the feature too; low, it is this model's own. ",
      cycle
        ? "Measured as seed 001 does: one net per order with a head for each model, then cycle maps between the heads."
        : "A fast preview: cycle maps between separately trained disentanglers, which adds their refitting noise; run the cycle estimator for the paper's measure."));
}

/** Below this held-out R² (of the best order) the components are mostly residual. */
const POOR_FIT_R2 = 0.5;

/** A warning when the disentanglers explain little of the feature on held-out images. */
function poorFit(m) {
  const fits = m.test_r2.filter((r) => r !== null);
  const best = fits.length ? Math.max(...fits) : null;
  if (best !== null && best >= POOR_FIT_R2) return null;
  return h("section.card.cl-notes#poor-fit", { role: "note" },
    h("p", {}, h("strong", {}, `The fit is poor: held-out R² is at most ${best === null ? "—" : best.toFixed(2)}.`),
      " The disentanglers reproduce little of the feature on images they did not train on, so most of it is unexplained residual and the shares by order say little. ",
      "Train longer or wider (on the demo the default 30 epochs reach R² 0.6–0.9), or use more images."));
}

/** What each chart of a component analysis shows and how to read it (SCIENCE.md §7, seed
 * 001): plain words, the formula, the seed — the arguments of note(). */
const COMPONENT_NOTES = {
  significance: ["How much of the feature's variance each component carries: the part that a net with l ReLU layers adds over the simpler one. Bars are the components, the dashed line the share the net of order l explains in all; what no order explains is the residual.",
    "ρ^(l) = Var[c^(l)] / Var[f], c^(l) = Φ^(l) − Φ^(l_prev)", "001"],
  reliability: ["The share of each component that the exemplary models reproduce (linear maps there and back): near 1, they learned that part of the feature too; low, it is this model's own.",
    "reliability^(l) = Var[ĝ^(l) − ĝ^(l_prev)] / Var[g^(l) − g^(l_prev)], ĝ = g·K_1·K_2", "001"],
  effects: ["Each component as a player in the rest of the network: effectiveness is its Shapley value on the training loss (negative = it lowers the loss), over-fitting its Shapley value on the gap between test and training loss (positive = it widens the gap).",
    "φ_l(Loss_train), φ_l(Loss_test − Loss_train) over the players c^(0), …, residual", "001"],
  maps: ["One channel of the feature on a test image and its components by order, on one colour scale: where each order's part of the feature lies in the image. The maps add up to the feature exactly.",
    "f = Σ_l c^(l) + residual", "001"],
  compare: ["Where the two analyses' bars differ, the models spread their feature over simpler or more complex components.",
    "ρ^(l) = Var[c^(l)] / Var[f]", "001"],
  fit: ["Held-out R²: how much of the feature each order's disentangler reproduces on test images (1 = all of it). The residual share is what even the most complex one leaves unexplained.",
    "R² = 1 − Var[f − Φ^(l)] / Var[f]; residual = Var[f − Φ^(l_max)] / Var[f]", "001"],
};

/** ρ(l) of this job beside another finished one (e.g. a CNN trained on 200 samples vs all). */
async function comparePanel(job) {
  let others;
  let models;
  try {
    [others, models] = await Promise.all([api("/components"), api("/models")]);
  } catch (e) {
    return h("section.card", {}, h("h2", {}, "Compare with another model"), errorBox(e.message));
  }
  others = others.data.filter((j) => j.status === "done" && j.id !== job.id);
  const div = h("div.figure#comp-compare-figure");
  const drawWith = async (otherId) => {
    plot(div, await api(`/components/compare/significance?ids=${job.id},${otherId}`),
      { name: "components-compare" });
  };
  const pick = h("select#comp-compare-with", { "aria-label": "analysis to compare with" },
    h("option", { value: "" }, others.length ? "choose an analysis…" : "no other finished analysis yet"),
    others.map((j) => h("option", { value: j.id }, `${jobName(j)} · orders ${j.params.orders.join(", ")}`)));
  pick.disabled = !others.length;
  pick.addEventListener("change", async () => {
    if (!pick.value) return clear(div);
    try {
      await drawWith(pick.value);
    } catch (e) {
      clear(div, errorBox(e.message));
    }
  });

  // or run this analysis again, same layer and settings, on another model, then compare;
  // the same layer in another format (relu2 in PyTorch is /relu2/Relu_output_0 in ONNX) counts
  const candidates = models.data.filter((m) => listedModel(m) && m.id !== job.model_id && m.status === "ready" &&
    sameLayer(m, job.layer));
  const model = h("select#comp-rerun-model", { "aria-label": "model to run the same analysis on" },
    candidates.map((m) => h("option", { value: m.id }, m.name)));
  const none = candidates.length ? null : h("p.muted#comp-rerun-none", {},
    `No other ready model has the layer ${job.layer} (under this name, or as the same module ` +
    "in another format), so there is none to run the same analysis on.");
  const status = h("span.muted#comp-rerun-status", { "aria-live": "polite" });
  const rerun = h("button#comp-rerun", { type: "button", disabled: !candidates.length }, "Run and compare");
  rerun.addEventListener("click", async () => {
    rerun.disabled = true;
    try {
      const p = job.params;
      const target = candidates.find((m) => m.id === model.value);
      let other = await api("/components", { method: "POST", body: {
        model_id: model.value, dataset_id: job.dataset_id, layer: sameLayer(target, job.layer), orders: p.orders,
        epochs: p.epochs, width: p.width, max_samples: p.max_samples, seed: p.seed } });
      while ((other.status === "queued" || other.status === "running") && div.isConnected) {
        clear(status, `training: ${other.progress_done} / ${other.progress_total} epochs`);
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        other = await api(`/components/${other.id}`);
      }
      if (other.status !== "done") throw new Error(other.error || `the analysis ended ${other.status}`);
      clear(status, h("a", { href: `#/components/${other.id}` }, "its own results"));
      await drawWith(other.id);
    } catch (e) {
      clear(status);
      clear(div, errorBox(e.message));
    } finally {
      rerun.disabled = false;
    }
  });
  return h("section.card", { "aria-labelledby": "comp-compare-title" },
    h("h2#comp-compare-title", {}, "Compare with another model"),
    h("p.muted", {}, "Significance by order of two analyses on one chart, e.g. the demo CNN trained on ",
      "200 samples against the one trained on all (the paper's experiment 2)."),
    h("div.comp-map-controls", {}, h("label", {}, "Compare with ", pick),
      h("label", {}, "or run the same on ", model), rerun, status), none, div, note(...COMPONENT_NOTES.compare));
}

/** The module path a layer name stands for: a PyTorch name as it is; an ONNX node output
 * ("/layer1/layer1.0/conv1/Conv_output_0", scopes that repeat their parent's path or add to
 * it) as the dotted path of its scopes ("layer1.0.conv1"). */
export function layerKey(name) {
  const m = /^\/(.+)\/[^/]+_output_\d+$/.exec(name);
  if (!m) return name;
  let path = "";
  for (const scope of m[1].split("/")) {
    path = path && !scope.startsWith(`${path}.`) ? `${path}.${scope}` : scope;
  }
  return path;
}

/** `model`'s name for `layer` (the same name, or the same module in its format), or undefined. */
export function sameLayer(model, layer) {
  const layers = model.layers || [];
  if (layers.includes(layer)) return layer;
  return layers.find((l) => layerKey(l) === layerKey(layer));
}
