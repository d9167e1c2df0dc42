// Overview (#/): the workspace's models, images, analyses and component analyses, newest first.
import { api, url } from "../api.js";
import { badge, clear, errorBox, formatCount, h } from "../dom.js";
import { ensureStyles, formatShape, listedModel, newestFirst, parseTime, thumbPath } from "./styles.js";

const POLL_MS = 2000; // while an analysis is queued or running
const MAX_IMAGES = 12; // thumbnails shown here; the rest on #/images

export async function mount(root, params, ctx) {
  ensureStyles();
  const demo = h("div.cl-actions");
  const models = h("div", { "aria-busy": "true" }, h("p.muted", {}, "Loading models…"));
  const images = h("div", { "aria-busy": "true" }, h("p.muted", {}, "Loading images…"));
  const analyses = h("div", { "aria-busy": "true" }, h("p.muted", {}, "Loading analyses…"));
  const components = h("div#home-component-list", { "aria-busy": "true" }, h("p.muted", {}, "Loading…"));
  clear(
    root,
    h(
      "div.cl-page.cl-home",
      {},
      h(
        "div.cl-intro",
        {},
        h("h1", {}, "Overview"),
        h(
          "p.muted",
          {},
          "Which interaction concepts between image patches does your network encode? " +
            "Upload a model and images, choose a patch grid, and ConceptLens computes every Harsanyi interaction.",
        ),
        demo,
      ),
      section("Models", "#/models", "Upload a model", models),
      section("Images", "#/images", "Upload images", images),
      section("Analyses", "#/new", "New analysis", analyses),
      section("Component analyses", "#/components", "New component analysis", components),
    ),
  );

  let timer = null;
  let alive = true;
  let modelRows = [];

  let modelTimer = null;
  // On a first start the built-in demos are still being made: poll until every model has
  // settled (and at least one exists), so the demo button appears without a reload.
  async function refreshModelsAndImages() {
    modelTimer = null;
    const [m, i] = await Promise.allSettled([api("/models"), api("/images")]);
    if (!alive) return;
    if (m.status === "fulfilled") {
      modelRows = m.value.data; // the API lists built-ins first (the demo CNN leads), then newest first
      renderModels(models, modelRows);
    } else fail(models, m.reason);
    if (i.status === "fulfilled") renderImages(images, newestFirst(i.value.data));
    else fail(images, i.reason);
    renderDemo(demo, modelRows, i.status === "fulfilled" ? i.value.data : [], ctx);
    const settling = !modelRows.length || modelRows.some((row) => row.status === "pending" || row.status === "validating");
    if (m.status === "fulfilled" && settling) modelTimer = setTimeout(refreshModelsAndImages, POLL_MS);
  }
  await refreshModelsAndImages();
  if (!alive) return undefined;

  const active = (row) => row.status === "queued" || row.status === "running";
  async function refreshAnalyses() {
    timer = null;
    const [a, c] = await Promise.allSettled([api("/analyses"), api("/components")]);
    if (!alive) return;
    const rows = a.status === "fulfilled" ? newestFirst(a.value.data) : [];
    const jobs = c.status === "fulfilled" ? newestFirst(c.value.data) : [];
    if (a.status === "fulfilled") renderAnalyses(analyses, rows, modelRows);
    else fail(analyses, a.reason);
    if (c.status === "fulfilled") renderComponents(components, jobs);
    else fail(components, c.reason);
    if (rows.some(active) || jobs.some(active)) timer = setTimeout(refreshAnalyses, POLL_MS);
  }
  await refreshAnalyses();

  return () => {
    alive = false;
    clearTimeout(timer);
    clearTimeout(modelTimer);
  };
}

function section(title, href, action, body) {
  const id = `home-${title.toLowerCase()}`;
  return h(
    "section.cl-card",
    { "aria-labelledby": id },
    h("div.cl-card-head", {}, h(`h2#${id}`, {}, title), h("a.cl-btn", { href }, action)),
    body,
  );
}

function fail(box, error) {
  box.removeAttribute("aria-busy");
  clear(box, errorBox(error.message));
}

function renderDemo(box, models, images, ctx) {
  const model = models.find((m) => m.builtin && listedModel(m) && m.status === "ready");
  const sample = [...images].filter((i) => i.builtin).sort((a, b) => parseTime(a.created_at) - parseTime(b.created_at))[0];
  if (!model || !sample) return;
  clear(
    box,
    h(
      "button.cl-btn.primary#try-demo",
      { type: "button", on: { click: () => ctx.navigate(`#/new?model=${model.id}&images=${sample.id}`) } },
      "Try the demo",
    ),
    h("span.muted", {}, `${model.name} on the sample “${sample.name}”.`),
  );
}

function renderModels(box, rows) {
  box.removeAttribute("aria-busy");
  if (!rows.length) {
    clear(box, empty("No models yet. Upload an ONNX, TorchScript or safetensors model to see what it encodes.", "#/models", "Upload a model"));
    return;
  }
  clear(
    box,
    h(
      "ul.cl-rows",
      {},
      rows.map((m) =>
        h(
          "li.cl-row",
          {},
          h("div.cl-row-main", {}, h("strong", {}, m.name), m.builtin ? h("span.cl-tag", {}, "demo") : null),
          h(
            "div.cl-row-meta.muted",
            {},
            [m.format || "format not known yet", formatShape(m.input_shape), m.num_classes ? `${m.num_classes} classes` : null]
              .filter(Boolean)
              .join(" · "),
          ),
          h("div.cl-row-side", {}, badge(m.status)),
        ),
      ),
    ),
  );
}

function renderImages(box, rows) {
  box.removeAttribute("aria-busy");
  if (!rows.length) {
    clear(box, empty("No images yet. Upload PNG or JPEG images to analyse them.", "#/images", "Upload images"));
    return;
  }
  const shown = rows.slice(0, MAX_IMAGES);
  clear(
    box,
    h(
      "ul.cl-thumbs",
      {},
      shown.map((image) =>
        h(
          "li.cl-thumb",
          {},
          h("img", { src: url(thumbPath(image)), alt: image.name, loading: "lazy", width: 72, height: 72 }),
          h("span.cl-thumb-name", { title: image.name }, image.label != null ? `label ${image.label}` : image.name),
        ),
      ),
    ),
    rows.length > shown.length ? h("p", {}, h("a", { href: "#/images" }, `All ${formatCount(rows.length)} images →`)) : null,
  );
}

function renderAnalyses(box, rows, models) {
  box.removeAttribute("aria-busy");
  if (!rows.length) {
    clear(
      box,
      empty("No analyses yet. Choose a model, images and a patch grid to see which patches interact.", "#/new", "Start an analysis"),
    );
    return;
  }
  const names = new Map(models.map((m) => [m.id, m.name]));
  clear(
    box,
    h(
      "ul.cl-rows",
      {},
      rows.map((a) => {
        const pct = a.progress_total ? Math.floor((100 * a.progress_done) / a.progress_total) : 0;
        const images = a.items.length;
        return h(
          "li.cl-row",
          {},
          h(
            "div.cl-row-main",
            {},
            h("a", { href: `#/analyses/${a.id}` }, `${names.get(a.model_id) || "Model"} · grid ${a.params.grid}`),
          ),
          h(
            "div.cl-row-meta.muted",
            {},
            `${images} image${images === 1 ? "" : "s"} · ${a.n_players} players · ${parseTime(a.created_at).toLocaleString()}`,
          ),
          h(
            "div.cl-row-side",
            {},
            badge(a.status),
            a.status === "running" || a.status === "queued"
              ? h("progress", { max: 100, value: pct, "aria-label": `Progress of analysis ${a.id}` })
              : null,
            h("span.cl-pct", {}, `${pct}%`),
          ),
        );
      }),
    ),
  );
}

function renderComponents(box, rows) {
  box.removeAttribute("aria-busy");
  if (!rows.length) {
    clear(
      box,
      empty("No component analyses yet. Split a layer's feature into components of different complexity.", "#/components", "Start one"),
    );
    return;
  }
  clear(
    box,
    h(
      "ul.cl-rows",
      {},
      rows.map((job) => {
        const pct = job.progress_total ? Math.floor((100 * job.progress_done) / job.progress_total) : 0;
        return h(
          "li.cl-row",
          {},
          h("div.cl-row-main", {}, h("a", { href: `#/components/${job.id}` }, `${job.model_name || "Model"} · ${job.layer}`)),
          h(
            "div.cl-row-meta.muted",
            {},
            `${job.dataset_name || "image set"} · orders ${job.params.orders.join(", ")} · ${parseTime(job.created_at).toLocaleString()}`,
          ),
          h("div.cl-row-side", {}, badge(job.status), h("span.cl-pct", {}, `${pct}%`)),
        );
      }),
    ),
  );
}

function empty(sentence, href, action) {
  return h("div.cl-empty", {}, h("p", {}, sentence), h("a.cl-btn.primary", { href }, action));
}
