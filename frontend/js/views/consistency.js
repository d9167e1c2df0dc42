// Knowledge consistency between two models (SCIENCE.md §8): start a job, watch it, read it.
// #/consistency — the form, the built-in example and the workspace's jobs;
// #/consistency/{id} — one job's results. A share link (/s/c/{token}) of a consistency job
// opens through the components view, which hands it to mountJob here.
import { api, isShared, url } from "../api.js";
import { badge, clear, errorBox, formatSeconds, h, plot, toast } from "../dom.js";
import { deleteButton, listedModel, note, sharePanel } from "./styles.js";

const POLL_MS = 700;
const SEED0 = "Demo digits CNN (PyTorch weights, seed 0)";
const SEED1 = "Demo digits CNN (PyTorch weights, seed 1)";

export async function mount(root, params, ctx) {
  if (isShared()) return mountJob(root, "");
  return params.id ? mountJob(root, `/components/${params.id}`) : mountList(root, ctx);
}

function field(label, control) {
  return h("label.field", {}, h("span", {}, label), control);
}

function option(value, text) {
  return h("option", { value }, text);
}

/** A model select and its layer select (shapes shown), the layer preset to relu2 if any. */
function modelAndLayer(usable, id, initial) {
  const model = h(`select#kc-${id}-model`, {}, usable.map((m) => option(m.id, m.name)));
  const layer = h(`select#kc-${id}-layer`);
  if (initial) model.value = initial;
  const fill = () => {
    const m = usable.find((x) => x.id === model.value);
    const layers = (m && m.layers) || [];
    const shapes = (m && m.layer_shapes) || {};
    clear(layer, layers.map((name) => option(name, shapes[name] ? `${name} · ${shapes[name].join("×")}` : name)));
    const preferred = layers.find((name) => name === "relu2" || name.startsWith("/relu2/"));
    layer.value = preferred || layers[Math.floor(layers.length / 2)] || "";
  };
  model.addEventListener("change", fill);
  fill();
  return { model, layer, fill };
}

async function mountList(root, ctx) {
  let alive = true;
  const [models, datasets, jobs] = await Promise.all([
    api("/models"), api("/datasets"), api("/consistency"),
  ]);
  const usable = models.data.filter((m) => listedModel(m) && m.status === "ready" && (m.layers || []).length);
  const byName = (name) => usable.find((m) => m.name === name);
  const seed0 = byName(SEED0);
  const seed1 = byName(SEED1);
  const a = modelAndLayer(usable, "a", seed0 && seed0.id);
  const b = modelAndLayer(usable, "b", seed1 && seed1.id);
  const dataset = h("select#kc-dataset", {}, datasets.data.map((d) => option(d.id, `${d.name} (${d.n_images} images)`)));
  const digits = datasets.data.find((d) => d.builtin && d.kind === "digits");
  if (digits) dataset.value = digits.id;
  // no max here: the server's caps are settings, and its refusal names them
  const epochs = h("input#kc-epochs", { type: "number", min: 1, value: 30 });
  const samples = h("input#kc-samples", { type: "number", min: 20, value: 600 });
  const error = h("div#kc-error", { "aria-live": "assertive" });

  const start = async (body, buttonEl) => {
    clear(error);
    buttonEl.disabled = true;
    try {
      const job = await api("/consistency", { method: "POST", body });
      ctx.navigate(`#/consistency/${job.id}`);
    } catch (e) {
      clear(error, errorBox(e.message));
    } finally {
      buttonEl.disabled = false;
    }
  };
  const settings = () => ({
    dataset_id: dataset.value, epochs: Number(epochs.value), max_samples: Number(samples.value),
  });
  const run = h("button.primary#kc-run", { type: "button" }, "Run knowledge consistency");
  run.addEventListener("click", () => start({
    model_id: a.model.value, layer: a.layer.value,
    compare_model_id: b.model.value, compare_layer: b.layer.value, ...settings(),
  }, run));
  const example = h("button#kc-example", { type: "button", disabled: !(seed0 && seed1 && digits) },
    "Run the built-in example: seed 0 against seed 1 at relu2, on the digits");
  example.addEventListener("click", () => start({
    model_id: seed0.id, layer: "relu2", compare_model_id: seed1.id, compare_layer: "relu2",
    ...settings(), dataset_id: digits.id,
  }, example));

  clear(root,
    h("h1", {}, "Knowledge consistency"),
    h("p.muted", {},
      "Do two models of the same task know the same things? The feature of model A at a layer is ",
      "reconstructed from the feature of model B by a linear map (order k = 0) and by small nets with ",
      "one and two ReLU layers (k = 1, 2) fitted to what the lower orders left; what no order reconstructs ",
      "is A's inconsistent part. Both directions are measured. ",
      h("a", { href: "#/components" }, "Back to feature components")),
    h("section.card", { "aria-labelledby": "kc-example-title" },
      h("h2#kc-example-title", {}, "Ready example"),
      h("p.muted", {}, "The two built-in PyTorch digits CNNs differ only in their random seed. ",
        "One click compares them at relu2 with the epochs and images set below."),
      example),
    h("section.card.comp-form", { "aria-labelledby": "kc-new" },
      h("h2#kc-new", {}, "New knowledge-consistency analysis"),
      usable.length ? null : errorBox("No model is ready yet: upload one on the Models page."),
      h("div.comp-grid", {},
        field("Model A", a.model), field("Layer of A", a.layer),
        field("Model B", b.model), field("Layer of B", b.layer),
        field("Image set", dataset), field("Epochs (k = 1, 2)", epochs), field("Images used", samples)),
      run, error),
    h("section.card", { "aria-labelledby": "kc-jobs" },
      h("h2#kc-jobs", {}, "Knowledge-consistency analyses"),
      jobs.data.length
        ? h("ul.comp-list#kc-list", {}, jobs.data.map((job) => h("li", {},
          h("a", { href: `#/consistency/${job.id}` }, jobName(job)),
          " ", badge(job.status), " ",
          deleteButton({
            what: "knowledge-consistency analysis", name: jobName(job), path: `/components/${job.id}`,
            className: "button.comp-delete", errorTarget: error, warning: "Its share links stop working.",
            isAlive: () => alive, onDeleted: () => mountList(root, ctx),
          }))))
        : h("p.muted", {}, "None yet.")));
  return () => { alive = false; };
}

function jobName(job) {
  return `A: ${job.model_name || "model"} · ${job.layer} — B: ${job.compare_model_name || "model"} · ${job.compare_layer}`;
}

/** One job: its progress while it runs (with Cancel), then its results. `prefix` is the API
 * path of the job ("" under a share link). */
export async function mountJob(root, prefix) {
  let timer = null;
  let shown = false;
  async function refresh() {
    const job = await api(prefix);
    const active = job.status === "queued" || job.status === "running";
    if (active) {
      const pct = job.progress_total ? (100 * job.progress_done) / job.progress_total : 0;
      clear(root, head(job),
        h("section.card", {},
          h("h2", {}, "Fitting the reconstructions"),
          h("progress#kc-progress", { max: 100, value: pct, "aria-label": "steps done" }),
          h("p", {}, `${job.progress_done} / ${job.progress_total} steps (${pct.toFixed(0)}%)`,
            job.eta_seconds === null ? "" : ` · about ${formatSeconds(job.eta_seconds)} left`),
          isShared() ? null : actionButton(prefix, "cancel", "Cancel", refresh)));
      timer = setTimeout(() => refresh().catch((e) => toast(e.message, "error")), POLL_MS);
      return;
    }
    if (shown) return;
    shown = true;
    const retry = !isShared() && (job.status === "failed" || job.status === "cancelled")
      ? actionButton(prefix, "retry", "Run again", () => { shown = false; return refresh(); })
      : null;
    clear(root, head(job), job.error ? errorBox(job.error) : null, retry);
    if (job.status === "done") await results(root, job, prefix);
  }
  await refresh();
  return () => clearTimeout(timer);
}

function head(job) {
  const p = job.params;
  return h("section.card", {},
    h("div.head-line", {}, h("h1", {}, "Knowledge consistency"), badge(job.status)),
    h("p", {}, h("strong", {}, "A"), `: ${job.model_name || "model"} at ${job.layer}; `,
      h("strong", {}, "B"), `: ${job.compare_model_name || "model"} at ${job.compare_layer}`),
    h("p.muted", {}, `${job.dataset_name || "image set"}; orders ${p.orders.join(", ")}; `,
      `${p.epochs} epochs for k ≥ 1; width ${p.width}; ${p.max_samples} images; seed ${p.seed}`));
}

function actionButton(prefix, action, text, refresh) {
  const button = h(`button#kc-${action}`, { type: "button" }, text);
  button.addEventListener("click", async () => {
    button.disabled = true;
    await api(`${prefix}/${action}`, { method: "POST" }).catch((e) => toast(e.message, "error"));
    refresh();
  });
  return button;
}

const percent = (share) => (share > 0 && share < 0.001 ? "<0.1%" : `${(100 * share).toFixed(1)}%`);
const fmt = (x) => (x === null || x === undefined ? "—" : Number(x).toPrecision(3));

/** The variance of each part, both directions, on held-out (and fitting) images. */
function varianceTable(m) {
  const parts = [...m.orders.map((k) => `k = ${k}`), "inconsistent", "whole feature"];
  const cells = (v) => [...v.consistent, v.inconsistent, v.feature];
  const rows = [
    ["A from B · held-out", m.a_from_b.test], ["A from B · fitting", m.a_from_b.train],
    ["B from A · held-out", m.b_from_a.test], ["B from A · fitting", m.b_from_a.train],
  ];
  return h("table.kc-table#kc-table", {},
    h("caption.muted", {}, "Var of each part (in brackets: its share of the feature's variance)"),
    h("thead", {}, h("tr", {}, h("th", {}, ""), parts.map((p) => h("th", { scope: "col" }, p)))),
    h("tbody", {}, rows.map(([name, v]) => h("tr", {}, h("th", { scope: "row" }, name),
      cells(v).map((x) => h("td", {}, fmt(x),
        v.feature && x !== null ? h("span.muted", {}, ` (${percent(x / v.feature)})`) : null))))));
}

async function results(root, job, prefix) {
  const figures = await api(`${prefix}/figures`);
  const m = job.metrics;
  const charts = [
    ["parts", "Variance of each part",
      "Each bar is the variance of one part as a share of the feature's, on held-out images (a log scale, so small parts stay visible), " +
      "blue for A's feature rebuilt from B's and red for B's from A's. Knowledge the two models share sits in k = 0 (a linear map of the other's feature) " +
      "and in k = 1, 2 (one and two ReLU layers more); a tall \"inconsistent\" bar is knowledge the other model lacks.",
      "f_A = x^(0) + x^(1) + x^(2) + ε, x^(k) = g_k(f_B); bar = Var[x^(k)] / Var[f_A]"],
    ["cumulative", "Reconstructed share by order",
      "How much of each feature the orders up to k reproduce together (R², 1 = all of it), solid on held-out images and dashed on the images the maps were fitted on. " +
      "A flat line after k = 0 means the non-linear orders add nothing; a gap between dashed and solid means the reconstruction over-fits.",
      "R²(≤k) = 1 − Var[f_A − Σ_{j≤k} x^(j)] / Var[f_A]"],
  ];
  const divs = charts.map(([name]) => h(`div.figure#kc-${name}`));
  const exportLinks = h("p#kc-exports", {}, "Download: ",
    ["json", "csv", "npz"].flatMap((f, i) => [i ? " · " : "",
      h("a", { href: url(`${prefix}/export.${f}`), download: "" }, f.toUpperCase())]),
    h("span.muted", {}, " — JSON: every number; CSV: the table above; npz: the variances per channel."));
  root.append(
    h("section.card", { "aria-labelledby": "kc-summary" },
      h("h2#kc-summary", {}, "Variances"),
      h("p.muted", {}, `Fitted on ${m.n_train} images, measured on ${m.n_train} and on ${m.n_test} held-out images. `,
        "The parts add up to the feature; their variances need not, as the parts may be correlated."),
      m.cached ? h("p.muted", {}, "These results were reused from an identical earlier analysis.") : null,
      h("div.scroll-x", {}, varianceTable(m)), exportLinks),
    h("section.charts#kc-charts", {}, charts.map(([, title, text, formula], k) =>
      h("div.card", {}, h("h2", {}, title), note(text, formula, "004", "p.muted.kc-explain.cl-hint"), divs[k]))),
    ...(isShared() ? [] : [sharePanel(prefix, "knowledge-consistency analysis")]));
  charts.forEach(([name], k) => plot(divs[k], figures[name], { name: `consistency-${name}` }));
}
