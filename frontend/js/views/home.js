// Overview (#/): the workspace's models, images, analyses and component analyses, newest first.
import { api, url } from "../api.js";
import { badge, clear, errorBox, formatCount, h } from "../dom.js";
import { ensureStyles, formatShape, listedModel, newestFirst, parseTime, thumbPath } from "./styles.js";
import { tagChips } from "./runlabels.js";

const MODES = ["exact", "sampled", "stability", "dynamics"];

const POLL_MS = 2000; // while an analysis is queued or running
const MAX_IMAGES = 12; // thumbnails shown here; the rest on #/images

export async function mount(root, params, ctx) {
  ensureStyles();
  const demo = h("div.cl-actions");
  const models = h("div", { "aria-busy": "true" }, h("p.muted", {}, "Loading models…"));
  const images = h("div", { "aria-busy": "true" }, h("p.muted", {}, "Loading images…"));
  const analyses = h("div", { "aria-busy": "true" }, h("p.muted", {}, "Loading analyses…"));
  const components = h("div#home-component-list", { "aria-busy": "true" }, h("p.muted", {}, "Loading…"));
  // filters of both run lists, kept in the URL (#/?model=&dataset=&tag=&kind=)
  const filters = Object.fromEntries(["model", "dataset", "tag", "kind"].map((k) => [k, params.query.get(k) || ""]));
  const filterBar = h("form.run-filters#run-filters", { "aria-label": "Filter analyses and component analyses" });
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
      filterBar,
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
  const filterBy = (tag) => setFilters({ ...filters, tag });
  function setFilters(next) {
    Object.assign(filters, next);
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", query.size ? `#/?${query}` : "#/"); // a shareable, reloadable list
    renderFilters();
    clearTimeout(timer);
    refreshAnalyses();
  }
  async function renderFilters() {
    let sets = [];
    try {
      sets = (await api("/datasets")).data;
    } catch {
      // the image-set filter stays empty
    }
    if (!alive) return;
    const select = (id, label, value, options) => h("label", {}, `${label} `,
      h(`select#${id}`, { on: { change: (e) => setFilters({ [id.replace("filter-", "")]: e.target.value }) } },
        options.map(([v, text]) => h("option", { value: v, selected: v === value }, text))));
    const tag = h("input#filter-tag", { type: "search", value: filters.tag, placeholder: "any tag", size: 12 });
    tag.addEventListener("change", () => setFilters({ tag: tag.value.trim() }));
    const any = Object.values(filters).some(Boolean);
    clear(filterBar,
      h("strong", {}, "Show "),
      select("filter-kind", "kind", filters.kind, [["", "all kinds"], ...MODES.map((m) => [m, `${m} analyses`]), ["components", "component analyses"]]),
      select("filter-model", "model", filters.model, [["", "any model"], ...modelRows.filter(listedModel).map((m) => [m.id, m.name])]),
      select("filter-dataset", "image set", filters.dataset, [["", "any image set"], ...sets.map((d) => [d.id, d.name])]),
      h("label", {}, "tag ", tag),
      any ? h("button#filter-clear", { type: "button", on: { click: () => setFilters({ model: "", dataset: "", tag: "", kind: "" }) } }, "Clear filters") : null);
  }
  filterBar.addEventListener("submit", (e) => e.preventDefault());
  await renderFilters();

  async function refreshAnalyses() {
    timer = null;
    const query = (extra) => {
      const q = new URLSearchParams(extra);
      if (filters.model) q.set("model_id", filters.model);
      if (filters.dataset) q.set("dataset_id", filters.dataset);
      if (filters.tag) q.set("tag", filters.tag);
      return q.size ? `?${q}` : "";
    };
    const showAnalyses = filters.kind !== "components";
    const showJobs = !filters.kind || filters.kind === "components";
    const none = Promise.resolve({ data: [] });
    const [a, c] = await Promise.allSettled([
      showAnalyses ? api(`/analyses${query(MODES.includes(filters.kind) ? { mode: filters.kind } : {})}`) : none,
      showJobs ? api(`/components${query({})}`) : none,
    ]);
    if (!alive) return;
    const rows = a.status === "fulfilled" ? newestFirst(a.value.data) : [];
    const jobs = c.status === "fulfilled" ? newestFirst(c.value.data) : [];
    const filtered = Object.values(filters).some(Boolean);
    if (!showAnalyses) clear(analyses, h("p.muted", {}, "Hidden: the list shows component analyses only."));
    else if (a.status === "fulfilled") renderAnalyses(analyses, rows, modelRows, filtered, filterBy);
    else fail(analyses, a.reason);
    if (!showJobs) clear(components, h("p.muted", {}, `Hidden: the list shows ${filters.kind} analyses only.`));
    else if (c.status === "fulfilled") renderComponents(components, jobs, filtered, filterBy);
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

function renderModels(box, all) {
  box.removeAttribute("aria-busy");
  // a built-in (or training-run) series is one line, not one per checkpoint
  const rows = all.filter(listedModel);
  const series = new Map();
  for (const m of all.filter((x) => !listedModel(x))) series.set(m.series, [...(series.get(m.series) || []), m]);
  const seriesRows = [...series].map(([name, members]) =>
    h("li.cl-row.series-row", {},
      h("div.cl-row-main", {}, h("strong", {}, name), members[0].builtin ? h("span.cl-tag", {}, "demo") : null),
      h("div.cl-row-meta.muted", {}, `a series of ${members.length} checkpoints, for learning-dynamics analyses`),
      h("div.cl-row-side", {}, badge(members.every((x) => x.status === "ready") ? "ready" : "pending"))));
  if (!rows.length && !seriesRows.length) {
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
      seriesRows,
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

function renderAnalyses(box, rows, models, filtered, filterBy) {
  box.removeAttribute("aria-busy");
  if (!rows.length && filtered) {
    clear(box, h("p.muted#no-matching-analyses", {}, "No analysis matches these filters."));
    return;
  }
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
            h("a", { href: `#/analyses/${a.id}` }, a.name || `${names.get(a.model_id) || "Model"} · grid ${a.params.grid}`),
            a.params.mode && a.params.mode !== "exact" ? h("span.cl-tag", {}, a.params.mode) : null,
            tagChips(a.tags, filterBy),
          ),
          h(
            "div.cl-row-meta.muted",
            {},
            [a.name ? `${names.get(a.model_id) || "Model"} · grid ${a.params.grid}` : null, a.dataset_name,
              `${images} image${images === 1 ? "" : "s"} · ${a.n_players} players · ${parseTime(a.created_at).toLocaleString()}`].filter(Boolean).join(" · "),
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

function renderComponents(box, rows, filtered, filterBy) {
  box.removeAttribute("aria-busy");
  if (!rows.length && filtered) {
    clear(box, h("p.muted#no-matching-components", {}, "No component analysis matches these filters."));
    return;
  }
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
          h("div.cl-row-main", {}, h("a", { href: `#/components/${job.id}` }, job.name || `${job.model_name || "Model"} · ${job.layer}`), tagChips(job.tags, filterBy)),
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
