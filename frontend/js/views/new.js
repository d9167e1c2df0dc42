// New analysis (#/new?model=…&images=a,b&grid=4x4&players=0-3,5…): choose a model, images,
// a patch grid and its players on the preprocessed image, see the cost, run. The form state
// lives in the URL query (history.replaceState), so a reload or a shared link keeps it.
import { api, url } from "../api.js";
import { clear, errorBox, formatCount, formatSeconds, h } from "../dom.js";
import { GridCanvas, cursorKey } from "../grid.js";
import { crispScale, ensureStyles, intValue, listedModel, loadPicture, newestFirst, thumbPath } from "./styles.js";

const MAX_PLAYERS = 20; // the server's default CONCEPTLENS_MAX_PLAYERS; it checks again
const MIN_PLAYERS = 2;
const MAX_IMAGES = 200; // the server's default CONCEPTLENS_MAX_ANALYSIS_IMAGES
const MAX_AND_OR_PLAYERS = 16; // CONCEPTLENS_MAX_AND_OR_PLAYERS
const MAX_STABILITY_PLAYERS = 12; // CONCEPTLENS_MAX_STABILITY_PLAYERS
const MAX_SAMPLED_PLAYERS = 1024; // CONCEPTLENS_MAX_SAMPLED_PLAYERS (32×32)
const PAPER_RATIOS = "0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1";
// bench/README.md: as accurate as the paper's estimator at about 0.3× its forward passes
const SUGGESTED = { contexts: 8, hybrid: true, hybridPairs: 400, hybridContexts: 40, radius: 2, randomPairs: "" };
const CANVAS_PX = 384; // the grid canvas is about this many pixels on its long side
const DEFAULT_GRID = 4;
const BASELINES = [
  ["mean", "Mean colour (per channel)"],
  ["zero", "Zero (black)"],
  ["blur", "Blurred image"],
  ["learned", "Learned (sparsest; PyTorch models, ≤ 12 players)"],
];
const MAX_LEARNED_PLAYERS = 12; // CONCEPTLENS_MAX_LEARNED_BASELINE_PLAYERS
const OUTPUTS = [
  ["log-odds", "Log-odds"],
  ["logit", "Logit"],
  ["prob", "Probability"],
  ["log-prob", "Log-probability"],
];
const DEFAULT_TAU = 0.05;

export async function mount(root, params, ctx) {
  ensureStyles();
  clear(root, h("div.cl-page", { "aria-busy": "true" }, h("h1", {}, "New analysis"), h("p.muted", {}, "Loading models and images…")));
  const [m, i, d, ser] = await Promise.allSettled([api("/models"), api("/images"), api("/datasets"), api("/model-series")]);
  if (m.status === "rejected" || i.status === "rejected") {
    clear(root, h("div.cl-page", {}, h("h1", {}, "New analysis"), errorBox((m.reason || i.reason).message)));
    return undefined;
  }
  const models = newestFirst(m.value.data).filter((x) => listedModel(x) && x.status === "ready" && x.input_shape && x.num_classes);
  const images = orderImages(i.value.data);
  if (!models.length) {
    clear(
      root,
      h(
        "div.cl-page",
        {},
        h("h1", {}, "New analysis"),
        h("div.cl-card.cl-empty", {}, h("p", {}, "No model is ready yet. Upload one and wait until its check has finished."), h("a.cl-btn.primary", { href: "#/models" }, "Upload a model")),
      ),
    );
    return undefined;
  }
  const datasets = d.status === "fulfilled" ? d.value.data : [];
  const series = ser.status === "fulfilled" ? ser.value.data.filter((x) => x.statuses.every((st) => st === "ready")) : [];
  const form = new NewAnalysisForm(root, models, images, params.query, ctx, datasets, series);
  return () => form.unmount();
}

/** Own images newest first, then the samples in name order. */
function orderImages(rows) {
  const own = newestFirst(rows.filter((x) => !x.builtin));
  const samples = rows.filter((x) => x.builtin).sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));
  return [...own, ...samples];
}

class NewAnalysisForm {
  constructor(root, models, images, query, ctx, datasets = [], series = []) {
    this.datasets = datasets;
    this.series = series;
    this.estimateToken = 0;
    this.estimateTimer = null;
    this.models = models;
    this.images = images;
    this.ctx = ctx;
    this.alive = true;
    this.previewToken = 0;
    this.cursor = 0; // the cell the keyboard is on
    this.playersError = null;
    this.tauValid = true;
    this.running = false;
    const notes = [];
    this.state = this.readQuery(query, notes);
    this.build(root, notes);
    this.applyModel({ keepGrid: true });
    this.loadPreview();
  }

  unmount() {
    this.alive = false;
  }

  get model() {
    return this.models.find((x) => x.id === this.state.model);
  }

  get cells() {
    return this.state.rows * this.state.cols;
  }

  get nPlayers() {
    return this.state.players ? this.state.players.length : this.cells;
  }

  /** The form state from the URL query; what cannot be used is said in `notes`. */
  readQuery(q, notes) {
    let model = this.models.find((x) => x.id === q.get("model"));
    if (q.get("model") && !model) notes.push("The model in the link is not in this workspace or not ready; the newest ready model is chosen instead.");
    model ||= this.models[0];
    const known = new Set(this.images.map((x) => x.id));
    const wanted = (q.get("images") || "").split(",").filter(Boolean);
    const chosen = [...new Set(wanted.filter((id) => known.has(id)))];
    if (chosen.length < wanted.length) notes.push(`${wanted.length - chosen.length} image(s) in the link are not in this workspace and were left out.`);
    const [, height, width] = model.input_shape;
    const grid = /^(\d+)x(\d+)$/.exec(q.get("grid") || "");
    const rows = clamp(grid ? Number(grid[1]) : DEFAULT_GRID, 1, height);
    const cols = clamp(grid ? Number(grid[2]) : DEFAULT_GRID, 1, width);
    let players = null;
    if (q.has("players") && q.get("players") !== "all") {
      const parsed = parseCells(q.get("players"), rows * cols);
      if (parsed.error) notes.push(`The players in the link were not used: ${parsed.error}`);
      else players = parsed.cells.length === rows * cols ? null : parsed.cells;
    }
    const target = q.get("target");
    const tau = Number(q.get("tau"));
    return {
      model: model.id,
      images: chosen,
      rows,
      cols,
      players,
      others: q.get("others") !== "absent",
      // the built-in digits: black is their background, the sparse regime of the papers (docs/sparsity.md)
      baseline: BASELINES.some(([v]) => v === q.get("baseline")) ? q.get("baseline") : model.builtin ? "zero" : "mean",
      target: /^\d+$/.test(target || "") && Number(target) < model.num_classes ? Number(target) : "predicted",
      output: OUTPUTS.some(([v]) => v === q.get("output")) ? q.get("output") : "log-odds",
      tau: q.has("tau") && tau > 0 && tau <= 1 ? tau : DEFAULT_TAU,
      mode: ["sampled", "stability", "dynamics"].includes(q.get("mode")) ? q.get("mode") : "exact",
      seriesName: this.series.some((x) => x.name === q.get("series")) ? q.get("series") : this.series[0]?.name ?? "",
      sigma: q.get("sigma") || "0.1",
      draws: q.get("draws") || "4",
      adversarial: q.get("adversarial") !== "0",
      epsilon: q.get("epsilon") || "0.05",
      pgdSteps: q.get("pgd_steps") || "10",
      ratios: q.get("ratios") || PAPER_RATIOS,
      radius: q.has("radius") ? q.get("radius") : "2",
      randomPairs: q.get("random_pairs") || "",
      contexts: q.get("contexts") || "10",
      seed: q.get("seed") || "0",
      hybrid: q.get("hybrid") === "1",
      hybridPairs: q.get("hybrid_pairs") || "400",
      hybridContexts: q.get("hybrid_contexts") || "40",
      dataset: this.datasets.some((x) => x.id === q.get("dataset")) ? q.get("dataset") : "",
      pick: q.get("pick") === "per_class" ? "per_class" : "first",
      k: q.get("k") || "10",
      learnedRadius: q.get("radius_b") || "0.5",
      learnedSteps: q.get("steps_b") || "100",
      andOr: q.get("and_or") === "1",
      andOrSteps: q.get("and_or_steps") || "10000",
      andOrNoise: q.get("and_or_noise") === "1",
    };
  }

  writeQuery() {
    const s = this.state;
    const q = new URLSearchParams();
    q.set("model", s.model);
    if (s.images.length) q.set("images", s.images.join(","));
    q.set("grid", `${s.rows}x${s.cols}`);
    if (s.players) q.set("players", formatCells(s.players).replace(/\s/g, ""));
    if (!s.others) q.set("others", "absent");
    q.set("baseline", s.baseline);
    if (s.target !== "predicted") q.set("target", String(s.target));
    if (s.output !== "log-odds") q.set("output", s.output);
    if (s.tau !== DEFAULT_TAU) q.set("tau", String(s.tau));
    if (s.mode === "sampled") {
      q.set("mode", "sampled");
      if (s.ratios !== PAPER_RATIOS) q.set("ratios", s.ratios);
      q.set("radius", s.radius);
      if (s.randomPairs) q.set("random_pairs", s.randomPairs);
      q.set("contexts", s.contexts);
      if (s.seed !== "0") q.set("seed", s.seed);
      if (s.hybrid) q.set("hybrid", "1"), q.set("hybrid_pairs", s.hybridPairs), q.set("hybrid_contexts", s.hybridContexts);
    }
    if (s.dataset) q.set("dataset", s.dataset), q.set("pick", s.pick), q.set("k", s.k);
    if (s.mode === "dynamics") q.set("mode", "dynamics"), q.set("series", s.seriesName);
    if (s.mode === "stability") {
      q.set("mode", "stability");
      q.set("sigma", s.sigma), q.set("draws", s.draws), q.set("epsilon", s.epsilon), q.set("pgd_steps", s.pgdSteps);
      if (!s.adversarial) q.set("adversarial", "0");
      if (s.seed !== "0") q.set("seed", s.seed);
    }
    if (s.baseline === "learned") q.set("radius_b", s.learnedRadius), q.set("steps_b", s.learnedSteps);
    if (s.andOr && s.mode === "exact") {
      q.set("and_or", "1");
      q.set("and_or_steps", s.andOrSteps);
      if (s.andOrNoise) q.set("and_or_noise", "1");
    }
    history.replaceState(history.state, "", `#/new?${q.toString().replace(/%2C/gi, ",")}`);
  }

  // ---------------------------------------------------------------- building the form

  build(root, notes) {
    const s = this.state;
    this.modelSelect = h(
      "select#model-select",
      { on: { change: () => this.onModel() } },
      this.models.map((x) =>
        h(
          "option",
          { value: x.id, selected: x.id === s.model },
          `${x.name}${x.builtin ? " (demo)" : ""} — ${x.input_shape[1]}×${x.input_shape[2]}, ${x.num_classes} classes`,
        ),
      ),
    );
    this.modelInfo = h("p.cl-hint#model-info");
    this.imageCount = h("span.muted#image-count", { "aria-live": "polite" });
    this.rowsInput = numberInput("grid-rows", s.rows, () => this.onGrid());
    this.colsInput = numberInput("grid-cols", s.cols, () => this.onGrid());
    this.rowsLabel = h("label", { for: "grid-rows" }, "Rows");
    this.colsLabel = h("label", { for: "grid-cols" }, "Columns");
    this.canvas = h("canvas.cl-pixels.cl-grid-canvas#grid-canvas", {
      tabindex: "0",
      width: CANVAS_PX,
      height: CANVAS_PX,
      "aria-label": "Patch grid over the image: click a patch, or move with the arrow keys and press Space, to make it a player or not",
      "aria-describedby": "players-summary",
      on: {
        click: (event) => this.onCanvasClick(event),
        keydown: (event) => this.onCanvasKey(event),
        focus: () => this.showCursor(true),
        blur: () => this.showCursor(false),
      },
    });
    this.grid = new GridCanvas(this.canvas, { rows: s.rows, cols: s.cols, width: 1, height: 1 });
    this.previewCaption = h("p.cl-hint#preview-caption", { "aria-live": "polite" });
    this.previewError = h("div#preview-error", { "aria-live": "assertive" });
    this.playersInput = h("input#players-input", {
      type: "text",
      autocomplete: "off",
      spellcheck: "false",
      "aria-describedby": "players-hint players-error",
      on: { input: () => this.onPlayersText(false), change: () => this.onPlayersText(true) },
    });
    this.playersErrorBox = h("div#players-error", { "aria-live": "polite" });
    this.summary = h("p#players-summary", { "aria-live": "polite" });
    this.othersBox = h("input#others-present", { type: "checkbox", checked: s.others, on: { change: () => this.onOptions() } });
    this.baseline = select("baseline", BASELINES, s.baseline, () => this.onOptions());
    this.target = h("select#target", { "aria-describedby": "target-hint", on: { change: () => this.onOptions() } });
    this.output = select("output", OUTPUTS, s.output, () => this.onOptions());
    this.tau = h("input#tau", {
      type: "number",
      min: "0.001",
      max: "1",
      step: "0.01",
      value: String(s.tau),
      inputmode: "decimal",
      "aria-describedby": "tau-hint",
      on: { input: () => this.onOptions() },
    });
    const field = (id, text, value, hint, attrs = {}) => {
      const input = h(`input#${id}`, { type: "text", value, autocomplete: "off", "aria-describedby": `${id}-hint`, ...attrs, on: { input: () => this.onSampled() } });
      return [input, h("div.cl-field.cl-field-compact", {}, h("label", { for: id }, text), input, h("small.cl-hint", { id: `${id}-hint` }, hint))];
    };
    this.modeExact = h("input#mode-exact", { type: "radio", name: "mode", value: "exact", checked: s.mode === "exact", on: { change: () => this.onMode() } });
    this.modeStability = h("input#mode-stability", { type: "radio", name: "mode", value: "stability", checked: s.mode === "stability", on: { change: () => this.onMode() } });
    const stabilityField = (id, text, value, hint) => {
      const input = h(`input#${id}`, { type: "text", value, autocomplete: "off", "aria-describedby": `${id}-hint`, on: { input: () => this.onStability() } });
      return [input, h("div.cl-field.cl-field-compact", {}, h("label", { for: id }, text), input, h("small.cl-hint", { id: `${id}-hint` }, hint))];
    };
    const [sigma, sigmaField] = stabilityField("sigma", "Noise σ", s.sigma, "Gaussian noise SD, in input units after normalisation.");
    const [draws, drawsField] = stabilityField("draws", "Noisy copies", s.draws, "Per image (1–32).");
    const [epsilon, epsilonField] = stabilityField("epsilon", "PGD budget ε", s.epsilon, "L∞, input units.");
    const [pgdSteps, pgdField] = stabilityField("pgd-steps", "PGD steps", s.pgdSteps, "");
    this.adversarialBox = h("input#adversarial", { type: "checkbox", checked: s.adversarial, on: { change: () => this.onStability() } });
    Object.assign(this, { sigmaInput: sigma, drawsInput: draws, epsilonInput: epsilon, pgdStepsInput: pgdSteps });
    this.stabilityBox = h(
      "fieldset.cl-sampled#stability-settings",
      {},
      h("legend", {}, "Stability (seed 003)"),
      h("p.cl-hint", {}, "Each image is analysed exactly as it is, with Gaussian noise, and under a PGD attack; the page compares the interactions per order: consistency β over the images of a class, instability κ under noise, sensitivity α to the attack. Use an image set with several images per class."),
      h("div.cl-fields", {}, sigmaField, drawsField),
      h("div.cl-check", {}, this.adversarialBox, h("label", { for: "adversarial" }, "PGD attack (PyTorch models)")),
      h("div.cl-fields", {}, epsilonField, pgdField),
    );
    this.modeDynamics = h("input#mode-dynamics", { type: "radio", name: "mode", value: "dynamics", checked: s.mode === "dynamics", disabled: !this.series.length, on: { change: () => this.onMode() } });
    this.seriesSelect = h("select#series-select", { on: { change: () => { this.state.seriesName = this.seriesSelect.value; this.update(); } } },
      this.series.map((x) => h("option", { value: x.name, selected: x.name === s.seriesName }, `${x.name} (${x.steps.length} checkpoints, steps ${x.steps.join(", ")})`)));
    this.dynamicsBox = h(
      "fieldset.cl-sampled#dynamics-settings",
      {},
      h("legend", {}, "Learning dynamics (seed 003)"),
      h("div.cl-field", {}, h("label", { for: "series-select" }, "Model series (checkpoints)"), this.seriesSelect),
      h("p.cl-hint", {}, "Every checkpoint is analysed exactly on the same images, grid and baseline; the page shows how similar each one's interactions are to the final model's, per order. Upload a series on the Models page."),
    );
    this.modeSampled = h("input#mode-sampled", { type: "radio", name: "mode", value: "sampled", checked: s.mode === "sampled", on: { change: () => this.onMode() } });
    const [ratios, ratiosField] = field("ratios", "Orders as ratios r (m = ⌊(n−2)·r⌋)", s.ratios, "The paper's 13 ratios by default.");
    const [radius, radiusField] = field("radius", "Pairs within radius", s.radius, "Patches apart (Chebyshev); empty: all pairs.", { inputmode: "numeric" });
    const [randomPairs, randomField] = field("random-pairs", "Random pairs", s.randomPairs, "Draw this many of those pairs; empty: all of them.", { inputmode: "numeric" });
    const [contexts, contextsField] = field("contexts", "Contexts per order", s.contexts, "Samples of each pair at each order.", { inputmode: "numeric" });
    const [seed, seedField] = field("seed", "Seed", s.seed, "The same seed gives the same numbers on any number of workers.", { inputmode: "numeric" });
    const [hybridPairs, hybridPairsField] = field("hybrid-pairs", "Middle orders: random pairs", s.hybridPairs, "", { inputmode: "numeric" });
    const [hybridContexts, hybridContextsField] = field("hybrid-contexts", "Middle orders: contexts", s.hybridContexts, "", { inputmode: "numeric" });
    this.hybridBox = h("input#hybrid", { type: "checkbox", checked: s.hybrid, on: { change: () => this.onSampled() } });
    Object.assign(this, { ratiosInput: ratios, radiusInput: radius, randomInput: randomPairs, contextsInput: contexts, seedInput: seed, hybridPairsInput: hybridPairs, hybridContextsInput: hybridContexts });
    this.sampledBox = h(
      "fieldset.cl-sampled#sampled-settings",
      {},
      h("legend", {}, "Sampling"),
      h("p.cl-hint", {}, "Sampled analyses estimate I^(m)(i, j) for pairs of patches at chosen orders m by averaging over random contexts, so grids up to 32×32 are possible. Every patch is a player."),
      h("div.cl-fields", {}, ratiosField, radiusField, randomField, contextsField, seedField),
      h("div.cl-check", {}, this.hybridBox, h("label", { for: "hybrid" }, "Hybrid design: fewer pairs with more contexts at the noisy middle and high orders (r > 0.25)")),
      h("div.cl-fields", {}, hybridPairsField, hybridContextsField),
      h("div.cl-actions", {}, h("button.cl-btn#use-suggested", { type: "button", on: { click: () => this.useSuggested() } }, "Use the suggested setting")),
      h("small.cl-hint", {}, "Suggested: all local pairs (radius 2) with 8 contexts at the low orders, 400 random pairs with 40 contexts above r = 0.25 — on a test game with a known curve this matched the paper's estimator at about a third of its forward passes."),
    );
    this.datasetSelect = h(
      "select#dataset-select",
      { on: { change: () => this.onDataset() } },
      h("option", { value: "", selected: !s.dataset }, "— none —"),
      this.datasets.map((x) => h("option", { value: x.id, selected: x.id === s.dataset }, `${x.name} (${x.n_images} images${x.labelled ? `, ${x.class_names.length} classes` : ""})`)),
    );
    this.pickSelect = h("select#dataset-pick", { on: { change: () => this.onDataset() } },
      h("option", { value: "first", selected: s.pick === "first" }, "the first k images"),
      h("option", { value: "per_class", selected: s.pick === "per_class" }, "k images of each class"));
    this.kInput = h("input#dataset-k", { type: "number", min: "1", step: "1", value: s.k, inputmode: "numeric", on: { input: () => this.onDataset() } });
    this.learnedRadius = h("input#learned-radius", { type: "text", value: s.learnedRadius, inputmode: "decimal", on: { input: () => this.onOptions() } });
    this.learnedSteps = h("input#learned-steps", { type: "number", min: "1", max: "2000", step: "1", value: s.learnedSteps, inputmode: "numeric", on: { input: () => this.onOptions() } });
    this.learnedField = h(
      "div.cl-fields#learned-settings",
      {},
      h("div.cl-field.cl-field-compact", {}, h("label", { for: "learned-radius" }, "Learned: radius around the mean baseline"), this.learnedRadius),
      h("div.cl-field.cl-field-compact", {}, h("label", { for: "learned-steps" }, "Learned: steps"), this.learnedSteps),
      h("small.cl-hint", {}, "Each input value's baseline is learned within ± radius (input units after normalisation) to make Σ|I| as small as possible; it needs gradients, so PyTorch models only."),
    );
    this.andOrBox = h("input#and-or", { type: "checkbox", checked: s.andOr, on: { change: () => this.onAndOr() } });
    this.andOrSteps = h("input#and-or-steps", { type: "number", min: "1", max: "100000", step: "1", value: s.andOrSteps, inputmode: "numeric", on: { input: () => this.onAndOr() } });
    this.andOrNoise = h("input#and-or-noise", { type: "checkbox", checked: s.andOrNoise, on: { change: () => this.onAndOr() } });
    this.andOrField = h(
      "fieldset.cl-and-or#and-or-settings",
      {},
      h("legend", {}, "AND-OR split"),
      h("div.cl-check", {}, this.andOrBox, h("label", { for: "and-or" }, "Also split each result into AND and OR interactions")),
      h("div.cl-fields", {},
        h("div.cl-field.cl-field-compact", {}, h("label", { for: "and-or-steps" }, "Steps (at most)"), this.andOrSteps),
        h("div.cl-check", {}, this.andOrNoise, h("label", { for: "and-or-noise" }, "Remove a small noise term q (|q| ≤ 4 % of v(N) − v(∅))"))),
      h("small.cl-hint", {}, "Learns the sparsest split (exact interactions, at most 16 players); stops early once it has converged. The noise term usually makes the explanation much sparser."),
    );
    this.cost = h("div#cost", { "aria-live": "polite" });
    this.reason = h("p.cl-refuse#run-reason", { "aria-live": "polite" });
    this.runButton = h("button.cl-btn.primary.cl-btn-big#run", { type: "submit", "aria-describedby": "cost run-reason" }, "Run analysis");
    this.runError = h("div#run-error", { "aria-live": "assertive" });

    const modelCard = h(
      "section.cl-card.cl-step-model",
      { "aria-labelledby": "step-model" },
      h("h2#step-model", {}, "1. Model"),
      h("div.cl-field", {}, h("label", { for: "model-select" }, "Model"), this.modelSelect),
      this.modelInfo,
      h("p.cl-hint", {}, "Only models whose check has finished are listed. ", h("a", { href: "#/models" }, "Upload a model")),
    );
    const imagesCard = h(
      "section.cl-card.cl-step-images",
      { "aria-labelledby": "step-images" },
      h("div.cl-card-head", {}, h("h2#step-images", {}, "2. Images"), this.imageCount),
      h(
        "fieldset.cl-choices-set",
        {},
        h("legend.cl-visually-hidden", {}, "Images to analyse"),
        this.images.length
          ? h("ul.cl-choices", {}, this.images.map((image) => this.imageChoice(image)))
          : h("p.muted", {}, "No images yet. ", h("a", { href: "#/images" }, "Upload images")),
      ),
      h("p.cl-hint", {}, "The grid preview shows the first image you chose. ", h("a", { href: "#/images" }, "Upload images")),
      h(
        "div.cl-dataset",
        {},
        h("div.cl-field", {}, h("label", { for: "dataset-select" }, "…and/or images from an image set"), this.datasetSelect),
        h("div.cl-fields", {},
          h("div.cl-field.cl-field-compact", {}, h("label", { for: "dataset-pick" }, "Take"), this.pickSelect),
          h("div.cl-field.cl-field-compact", {}, h("label", { for: "dataset-k" }, "k"), this.kInput)),
        h("small.cl-hint", {}, "The curve J(m) is an average over images: an image set gives it over 100 images in one click. Per-class curves appear when the set is labelled. ", h("a", { href: "#/components" }, "Upload an image set (zip)")),
      ),
    );
    const playersCard = h(
      "section.cl-card.cl-step-players",
      { "aria-labelledby": "step-players" },
      h("h2#step-players", {}, "3. Patch grid and players"),
      h(
        "fieldset.cl-mode",
        {},
        h("legend", {}, "Method"),
        h("div.cl-check", {}, this.modeExact, h("label", { for: "mode-exact" }, "Exact — every coalition (2^n forward passes, up to 20 players)")),
        h("div.cl-check", {}, this.modeSampled, h("label", { for: "mode-sampled" }, "Sampled (large grids) — pairs and orders estimated from random contexts, up to 32×32")),
        h("div.cl-check", {}, this.modeStability, h("label", { for: "mode-stability" }, "Stability — exact interactions under noise and attack, up to 12 players")),
        h("div.cl-check", {}, this.modeDynamics, h("label", { for: "mode-dynamics" }, `Learning dynamics — the checkpoints of a model series, up to 12 players${this.series.length ? "" : " (no series uploaded yet)"}`)),
      ),
      h(
        "div.cl-grid-inputs",
        {},
        h("div.cl-field.cl-field-compact", {}, this.rowsLabel, this.rowsInput),
        h("span.cl-times", { "aria-hidden": "true" }, "×"),
        h("div.cl-field.cl-field-compact", {}, this.colsLabel, this.colsInput),
      ),
      h("div.cl-canvas-frame", {}, this.canvas),
      this.previewCaption,
      this.previewError,
      this.summary,
      this.sampledBox,
      this.stabilityBox,
      this.dynamicsBox,
      this.playersControls = h("div.cl-players-controls", {}, h(
        "div.cl-field",
        {},
        h("label", { for: "players-input" }, "Player patches"),
        this.playersInput,
        h("small.cl-hint#players-hint", {}, "Numbered row by row from 0 at the top left; ranges allowed, e.g. 0-3, 5, 9. Click the image to toggle patches."),
        this.playersErrorBox,
      ),
      h(
        "div.cl-actions",
        {},
        h("button.cl-btn#players-all", { type: "button", on: { click: () => this.setPlayers(null) } }, "All patches"),
        h("button.cl-btn#players-none", { type: "button", on: { click: () => this.setPlayers([]) } }, "None"),
      ),
      h(
        "div.cl-check",
        {},
        this.othersBox,
        h("label", { for: "others-present" }, "Patches that are not players stay present"),
        h("small.cl-hint", {}, "Unchecked, they are replaced by the baseline in every masked input. Only matters when some patches are not players."),
      )),
    );
    const measureCard = h(
      "section.cl-card.cl-step-measure",
      { "aria-labelledby": "step-measure" },
      h("h2#step-measure", {}, "4. What to measure"),
      h(
        "div.cl-fields",
        {},
        h(
          "div.cl-field",
          {},
          h("label", { for: "baseline" }, "Baseline for absent patches"),
          this.baseline,
          h("small.cl-hint#baseline-hint", {}, "What a patch shows when it is absent; blur is a Gaussian with σ = max(H, W)/8."),
        ),
        this.learnedField,
        h(
          "div.cl-field",
          {},
          h("label", { for: "target" }, "Target class"),
          this.target,
          h("small.cl-hint#target-hint", {}, "Predicted: the class the model predicts on the full image."),
        ),
        h(
          "div.cl-field",
          {},
          h("label", { for: "output" }, "Output"),
          this.output,
          h("small.cl-hint#output-hint", {}, "Log-odds: z_y − logsumexp of the other logits."),
        ),
        h(
          "div.cl-field",
          {},
          h("label", { for: "tau" }, "τ (salience threshold)"),
          this.tau,
          h("small.cl-hint#tau-hint", {}, "An interaction is salient when |I(S)| ≥ τ · max |I|."),
        ),
      ),
      this.andOrField,
    );
    const runCard = h(
      "section.cl-card.cl-step-run",
      { "aria-labelledby": "step-run" },
      h("h2#step-run", {}, "5. Cost and run"),
      this.cost,
      this.reason,
      h("div.cl-actions", {}, this.runButton),
      this.runError,
    );
    clear(
      root,
      h(
        "div.cl-page.cl-new",
        {},
        h("h1", {}, "New analysis"),
        notes.length ? h("div.cl-notes", { role: "status" }, notes.map((n) => h("p", {}, n))) : null,
        h(
          "form.cl-new-layout#analysis-form",
          { novalidate: true, on: { submit: (event) => this.run(event) } },
          h("div.cl-col", {}, modelCard, imagesCard, measureCard),
          h("div.cl-col", {}, playersCard, runCard),
        ),
      ),
    );
  }

  imageChoice(image) {
    const id = `choose-${image.id}`;
    return h(
      "li.image-choice",
      {},
      h("input", {
        type: "checkbox",
        id,
        value: image.id,
        checked: this.state.images.includes(image.id),
        on: { change: (event) => this.onImage(image.id, event.target.checked) },
      }),
      h(
        "label",
        { for: id, title: image.name },
        h("img.cl-pixels", { src: url(thumbPath(image, 64)), alt: "", loading: "lazy", width: 56, height: 56 }),
        h("span.cl-choice-name", {}, image.label != null ? `${image.builtin ? "sample" : ""} ${image.label}`.trim() : image.name),
        h("span.cl-visually-hidden", {}, image.label != null ? ` (${image.name})` : ""),
      ),
    );
  }

  // ---------------------------------------------------------------- reacting to input

  onModel() {
    this.state.model = this.modelSelect.value;
    this.applyModel({ keepGrid: false });
    this.loadPreview();
  }

  /** Bounds, target classes and canvas size for the chosen model. */
  applyModel({ keepGrid }) {
    const s = this.state;
    const model = this.model;
    const [channels, height, width] = model.input_shape;
    this.rowsInput.max = String(height);
    this.colsInput.max = String(width);
    this.rowsLabel.textContent = `Rows (1–${height})`;
    this.colsLabel.textContent = `Columns (1–${width})`;
    const rows = clamp(s.rows, 1, height);
    const cols = clamp(s.cols, 1, width);
    if (!keepGrid && (rows !== s.rows || cols !== s.cols)) s.players = null;
    Object.assign(s, { rows, cols });
    this.rowsInput.value = String(rows);
    this.colsInput.value = String(cols);
    const pass = model.seconds_per_pass;
    this.modelInfo.textContent =
      `${model.format || "?"} · input ${height}×${width}, ${channels} channel${channels === 1 ? "" : "s"} · ${model.num_classes} classes` +
      (typeof pass === "number" && pass > 0 ? ` · ${formatPass(pass)} per forward pass` : "");
    if (typeof s.target === "number" && s.target >= model.num_classes) s.target = "predicted";
    clear(
      this.target,
      h("option", { value: "predicted", selected: s.target === "predicted" }, "Predicted class"),
      Array.from({ length: model.num_classes }, (_, k) => h("option", { value: String(k), selected: s.target === k }, classLabel(model, k))),
    );
    const k = crispScale(Math.max(height, width), CANVAS_PX).pixels;
    this.canvas.width = width * k;
    this.canvas.height = height * k;
    this.canvas.style.aspectRatio = `${width} / ${height}`;
    this.grid.setGrid({ rows, cols, width, height });
    this.update();
  }

  onGrid() {
    const [, height, width] = this.model.input_shape;
    const rows = intValue(this.rowsInput, 1, height);
    const cols = intValue(this.colsInput, 1, width);
    if (rows === null || cols === null) {
      this.update();
      return;
    }
    if (rows !== this.state.rows || cols !== this.state.cols) {
      this.state.players = null; // cell numbers mean other patches on another grid
      this.cursor = 0;
    }
    Object.assign(this.state, { rows, cols });
    this.grid.setGrid({ ...this.grid.grid, rows, cols });
    this.update();
  }

  onImage(id, checked) {
    const list = this.state.images.filter((x) => x !== id);
    if (checked) list.push(id);
    const previewChanged = list[0] !== this.state.images[0];
    this.state.images = list;
    this.update();
    if (previewChanged) this.loadPreview();
  }

  onCanvasClick(event) {
    const cell = this.grid.cellAt(event);
    if (cell === null) return;
    this.cursor = cell;
    this.toggle(cell);
  }

  onCanvasKey(event) {
    const key = cursorKey(event, this.cursor, this.state);
    if (!key) return;
    this.cursor = key.cursor;
    if (key.activate) this.toggle(this.cursor);
    else this.showCursor(true);
  }

  showCursor(on) {
    this.cursor = clamp(this.cursor, 0, this.cells - 1);
    this.grid.selected = on ? [this.cursor] : [];
    this.grid.draw();
  }

  toggle(cell) {
    const set = new Set(this.state.players ?? range(this.cells));
    if (set.has(cell)) set.delete(cell);
    else set.add(cell);
    this.setPlayers([...set].sort((a, b) => a - b));
  }

  setPlayers(players) {
    this.state.players = players && players.length === this.cells ? null : players;
    this.playersError = null;
    this.update();
  }

  onPlayersText(final) {
    const parsed = parseCells(this.playersInput.value, this.cells);
    if (parsed.error) {
      this.playersError = parsed.error;
      this.update({ fromText: true });
      return;
    }
    this.playersError = null;
    this.state.players = parsed.cells.length === this.cells ? null : parsed.cells;
    this.update({ fromText: !final });
  }

  onOptions() {
    const s = this.state;
    s.others = this.othersBox.checked;
    s.baseline = this.baseline.value;
    s.output = this.output.value;
    s.learnedRadius = this.learnedRadius.value.trim();
    s.learnedSteps = this.learnedSteps.value.trim();
    s.target = this.target.value === "predicted" ? "predicted" : Number(this.target.value);
    const tau = Number(this.tau.value);
    this.tauValid = this.tau.value.trim() !== "" && tau > 0 && tau <= 1;
    if (this.tauValid) s.tau = tau;
    this.update();
  }

  onStability() {
    Object.assign(this.state, {
      sigma: this.sigmaInput.value.trim(), draws: this.drawsInput.value.trim(), epsilon: this.epsilonInput.value.trim(),
      pgdSteps: this.pgdStepsInput.value.trim(), adversarial: this.adversarialBox.checked,
    });
    this.update();
  }

  onMode() {
    this.state.mode = this.modeSampled.checked ? "sampled" : this.modeStability.checked ? "stability" : this.modeDynamics.checked ? "dynamics" : "exact";
    if (this.state.mode === "sampled") this.state.players = null; // every patch is a player
    this.update();
  }

  onSampled() {
    const s = this.state;
    Object.assign(s, {
      ratios: this.ratiosInput.value, radius: this.radiusInput.value.trim(), randomPairs: this.randomInput.value.trim(),
      contexts: this.contextsInput.value.trim(), seed: this.seedInput.value.trim(), hybrid: this.hybridBox.checked,
      hybridPairs: this.hybridPairsInput.value.trim(), hybridContexts: this.hybridContextsInput.value.trim(),
    });
    this.update();
  }

  useSuggested() {
    this.radiusInput.value = String(SUGGESTED.radius);
    this.randomInput.value = SUGGESTED.randomPairs;
    this.contextsInput.value = String(SUGGESTED.contexts);
    this.hybridBox.checked = SUGGESTED.hybrid;
    this.hybridPairsInput.value = String(SUGGESTED.hybridPairs);
    this.hybridContextsInput.value = String(SUGGESTED.hybridContexts);
    this.onSampled();
  }

  onAndOr() {
    Object.assign(this.state, { andOr: this.andOrBox.checked, andOrSteps: this.andOrSteps.value.trim(), andOrNoise: this.andOrNoise.checked });
    this.update();
  }

  onDataset() {
    Object.assign(this.state, { dataset: this.datasetSelect.value, pick: this.pickSelect.value, k: this.kInput.value.trim() });
    this.update();
  }

  /** The sampling settings as the API takes them, or {error} in words. */
  sampledSpec() {
    const s = this.state;
    const whole = (text, what, { optional = false } = {}) => {
      if (optional && text === "") return null;
      if (!/^\d+$/.test(text) || Number(text) < 1) throw new Error(`${what} must be a whole number of at least 1.`);
      return Number(text);
    };
    try {
      const ratios = s.ratios.split(/[\s,;]+/).filter(Boolean).map(Number);
      if (!ratios.length || ratios.some((r) => !(r >= 0 && r <= 1))) throw new Error("Ratios must be numbers from 0 to 1, separated by commas.");
      const spec = {
        ratios,
        radius: whole(s.radius, "The radius", { optional: true }),
        random_pairs: whole(s.randomPairs, "Random pairs", { optional: true }),
        contexts: whole(s.contexts, "Contexts"),
        seed: /^\d+$/.test(s.seed) ? Number(s.seed) : (() => { throw new Error("The seed must be a whole number."); })(),
        hybrid: s.hybrid ? { pairs: whole(s.hybridPairs, "Middle-order pairs"), contexts: whole(s.hybridContexts, "Middle-order contexts") } : null,
      };
      return { spec };
    } catch (error) {
      return { error: error.message };
    }
  }

  /** The request as the API takes it (also for the estimate). */
  body() {
    const s = this.state;
    const body = {
      model_id: s.model,
      image_ids: s.images,
      grid: `${s.rows}x${s.cols}`,
      players: s.mode === "sampled" ? null : s.players,
      others_present: s.others,
      baseline: s.baseline,
      target: s.target,
      output: s.output,
      tau: s.tau,
      mode: s.mode,
    };
    if (s.mode === "sampled") body.sampled = this.sampledSpec().spec;
    else if (s.mode === "dynamics") body.series = s.seriesName;
    else if (s.mode === "stability") {
      body.stability = { sigma: Number(s.sigma), draws: Number(s.draws), adversarial: s.adversarial, epsilon: Number(s.epsilon), pgd_steps: Number(s.pgdSteps), seed: Number(s.seed) || 0 };
    }
    else if (s.andOr) body.and_or = { steps: Number(s.andOrSteps), noise: s.andOrNoise };
    if (s.baseline === "learned") body.learned_baseline = { radius: Number(s.learnedRadius), steps: Number(s.learnedSteps) };
    if (s.dataset) Object.assign(body, { dataset_id: s.dataset, dataset_pick: s.pick, dataset_k: Number(s.k) });
    return body;
  }

  /** Redraw the grid, sync the players text, the cost, the refusal and the URL. */
  update({ fromText = false } = {}) {
    const s = this.state;
    this.grid.players = s.players;
    this.grid.selected = document.activeElement === this.canvas ? [clamp(this.cursor, 0, this.cells - 1)] : [];
    this.grid.draw();
    if (!fromText) this.playersInput.value = formatCells(s.players ?? range(this.cells));
    this.playersInput.setAttribute("aria-invalid", this.playersError ? "true" : "false");
    clear(this.playersErrorBox, this.playersError ? h("p.cl-field-error", {}, this.playersError) : null);
    const n = this.nPlayers;
    const sampled = s.mode === "sampled";
    this.sampledBox.hidden = !sampled;
    this.stabilityBox.hidden = s.mode !== "stability";
    this.dynamicsBox.hidden = s.mode !== "dynamics";
    this.epsilonInput.disabled = this.pgdStepsInput.disabled = !s.adversarial;
    this.playersControls.hidden = sampled;
    this.hybridPairsInput.disabled = this.hybridContextsInput.disabled = !s.hybrid;
    this.pickSelect.disabled = this.kInput.disabled = !s.dataset;
    this.andOrField.hidden = sampled;
    this.learnedField.hidden = s.baseline !== "learned";
    this.andOrSteps.disabled = this.andOrNoise.disabled = !s.andOr;
    this.summary.textContent = `${n} of ${this.cells} patches ${n === 1 ? "is a player" : "are players"} on the ${s.rows}×${s.cols} grid.`;
    const k = s.images.length;
    this.imageCount.textContent = s.dataset ? `${k} chosen + from the image set` : `${k} chosen`;
    this.serverRefusal = null; // the inputs changed: ask again
    const reason = this.refusal(n, k);
    const serverCost = sampled || s.dataset || s.mode === "stability" || s.mode === "dynamics";
    if (!reason && serverCost) this.estimate();
    else if (!serverCost) this.renderCost(n, k);
    else clear(this.cost);
    this.reason.textContent = reason || "";
    this.reason.hidden = !reason;
    this.runButton.disabled = Boolean(reason) || this.running;
    this.writeQuery();
  }

  renderCost(n, k) {
    const perImage = 2 ** n;
    const total = perImage * k;
    const big = n > 40;
    const passes = big ? `2^${n}` : `2^${n} = ${formatCount(perImage)}`;
    const pass = this.model.seconds_per_pass;
    const known = typeof pass === "number" && pass > 0;
    clear(
      this.cost,
      h(
        "p.cl-cost-line",
        {},
        h("strong", {}, `${n} player${n === 1 ? "" : "s"}`),
        ` → ${passes} forward passes per image × ${k} image${k === 1 ? "" : "s"}`,
        big || !k ? "." : ` = ${formatCount(total)} forward passes.`,
      ),
      h(
        "p.cl-cost-line",
        {},
        "Estimated time: ",
        h("strong", {}, known && k && !big ? `about ${formatSeconds(total * pass)}` : known ? "—" : "time unknown until the first run"),
        known ? ` (${formatPass(pass)} per pass, measured on this model).` : ".",
      ),
      h("p.cl-hint", {}, "Tables already computed for the same model, image and masking are reused and cost nothing."),
    );
  }

  refusal(n, k) {
    const s = this.state;
    const [, height, width] = this.model.input_shape;
    if (intValue(this.rowsInput, 1, height) === null || intValue(this.colsInput, 1, width) === null)
      return `Rows and columns must be whole numbers (rows 1–${height}, columns 1–${width}).`;
    if (s.dataset && !(/^\d+$/.test(s.k) && Number(s.k) >= 1)) return "k must be a whole number of at least 1.";
    if (!k && !s.dataset) return "Choose at least one image, or an image set.";
    if (k > MAX_IMAGES) return `At most ${MAX_IMAGES} images per analysis; ${k} are chosen.`;
    if (s.mode === "sampled") {
      if (n > MAX_SAMPLED_PLAYERS) return `A sampled analysis takes at most ${MAX_SAMPLED_PLAYERS} patches (32×32); this grid has ${n}.`;
      if (n < 4) return "A sampled analysis needs a grid of at least 4 patches.";
      const { error } = this.sampledSpec();
      if (error) return error;
    } else {
      if (this.playersError) return `Players: ${this.playersError}`;
      if (n < MIN_PLAYERS) return "Choose at least 2 players: interactions need two patches.";
      if (n > MAX_PLAYERS)
        return `${n} players would need 2^${n} forward passes per image; the limit is ${MAX_PLAYERS} players. Choose a coarser grid or fewer players, or a sampled analysis.`;
      if (s.baseline === "learned") {
        if (this.model.format === "onnx") return "A learned baseline needs gradients through the model: choose a PyTorch model (TorchScript or safetensors); ONNX graphs give none here.";
        if (n > MAX_LEARNED_PLAYERS) return `A learned baseline takes at most ${MAX_LEARNED_PLAYERS} players; ${n} are chosen.`;
        if (!(Number(s.learnedRadius) > 0 && Number(s.learnedRadius) <= 100)) return "The learned baseline's radius must be a number above 0 (at most 100).";
        if (!(/^\d+$/.test(s.learnedSteps) && Number(s.learnedSteps) >= 1 && Number(s.learnedSteps) <= 2000)) return "The learned baseline's steps must be a whole number from 1 to 2,000.";
      }
      if (s.andOr && n > MAX_AND_OR_PLAYERS) return `The AND-OR split takes at most ${MAX_AND_OR_PLAYERS} players; ${n} are chosen.`;
      if (s.andOr && !(/^\d+$/.test(s.andOrSteps) && Number(s.andOrSteps) >= 1 && Number(s.andOrSteps) <= 100000)) return "AND-OR steps must be a whole number from 1 to 100,000.";
    }
    if (s.mode === "dynamics" && n > MAX_STABILITY_PLAYERS) return `A dynamics analysis takes at most ${MAX_STABILITY_PLAYERS} players; ${n} are chosen.`;
    if (s.mode === "stability") {
      if (n > MAX_STABILITY_PLAYERS) return `A stability analysis takes at most ${MAX_STABILITY_PLAYERS} players; ${n} are chosen.`;
      if (!(Number(s.sigma) > 0)) return "σ must be a number above 0.";
      if (!(/^\d+$/.test(s.draws) && Number(s.draws) >= 1 && Number(s.draws) <= 32)) return "Noisy copies must be a whole number from 1 to 32.";
      if (s.adversarial && !(Number(s.epsilon) > 0)) return "ε must be a number above 0.";
      if (s.adversarial && this.model.format === "onnx") return "The PGD attack needs gradients: choose a PyTorch model, or untick the attack.";
    }
    if (!this.tauValid) return "τ must be a number above 0 and at most 1.";
    return this.serverRefusal || null;
  }

  /** Ask the server what the request costs (debounced); its refusal becomes the form's. */
  estimate() {
    clearTimeout(this.estimateTimer);
    const token = ++this.estimateToken;
    this.estimateTimer = setTimeout(async () => {
      let cost;
      try {
        cost = await api("/analyses/estimate", { method: "POST", body: this.body() });
      } catch (error) {
        if (!this.alive || token !== this.estimateToken) return;
        this.showEstimate(null, error.message);
        return;
      }
      if (!this.alive || token !== this.estimateToken) return;
      this.showEstimate(cost, null);
    }, 250);
  }

  showEstimate(cost, refusal) {
    this.serverRefusal = refusal;
    this.reason.textContent = refusal || "";
    this.reason.hidden = !refusal;
    this.runButton.disabled = Boolean(refusal) || this.running;
    if (!cost) {
      clear(this.cost);
      return;
    }
    const pass = cost.seconds_per_pass;
    const known = typeof pass === "number" && pass > 0;
    const sampled = this.state.mode === "sampled";
    clear(
      this.cost,
      h("p.cl-cost-line", {}, h("strong", {}, `${formatCount(cost.images)} image${cost.images === 1 ? "" : "s"}`),
        ` × about ${formatCount(cost.passes_per_image)} forward passes = ${formatCount(cost.forward_passes)} forward passes.`),
      sampled ? h("p.cl-cost-line", {}, `Orders m: ${cost.orders.join(", ")}; pairs: ${cost.pairs.join(" and ")}.`) : null,
      h("p.cl-cost-line", {}, "Estimated time: ", h("strong", {}, known ? `about ${formatSeconds(cost.forward_passes * pass)}` : "time unknown until the first run"),
        known ? ` on one worker (${formatPass(pass)} per pass); more workers share the work.` : "."),
      h("p.cl-hint", {}, "Results already computed for the same model, image and settings are reused and cost nothing."),
    );
  }

  async loadPreview() {
    const token = ++this.previewToken;
    const first = this.images.find((x) => x.id === this.state.images[0]);
    clear(this.previewError);
    if (!first) {
      this.grid.image = null;
      this.grid.draw();
      this.previewCaption.textContent = "Choose an image to see it under the grid.";
      return;
    }
    const model = this.model;
    const [, height, width] = model.input_shape;
    const { scale } = crispScale(Math.max(height, width), CANVAS_PX);
    this.previewCaption.textContent = `Loading ${first.name} as ${model.name} sees it…`;
    const scratch = new GridCanvas(document.createElement("canvas"), this.grid.grid);
    try {
      await loadPicture(scratch, url(`/images/${first.id}/preview?model_id=${encodeURIComponent(model.id)}&scale=${scale}`));
      if (!this.alive || token !== this.previewToken) return;
      this.grid.image = scratch.image;
      this.grid.draw();
      this.previewCaption.textContent = `${first.name}, as ${model.name} sees it (${height}×${width}).`;
    } catch (error) {
      if (!this.alive || token !== this.previewToken) return;
      this.grid.image = null;
      this.grid.draw();
      this.previewCaption.textContent = "";
      clear(this.previewError, errorBox(error.message));
    }
  }

  async run(event) {
    event.preventDefault();
    const s = this.state;
    if (this.refusal(this.nPlayers, s.images.length) || this.running) return;
    const body = this.body();
    this.running = true;
    this.runButton.disabled = true;
    this.runButton.textContent = "Starting…";
    this.runButton.setAttribute("aria-busy", "true");
    clear(this.runError);
    let analysis;
    try {
      analysis = await api("/analyses", { method: "POST", body });
    } catch (error) {
      if (!this.alive) return;
      this.running = false;
      this.runButton.textContent = "Run analysis";
      this.runButton.removeAttribute("aria-busy");
      clear(this.runError, errorBox(error.message));
      this.update();
      return;
    }
    if (!this.alive) return;
    this.alive = false; // no more URL writes: the route is about to change
    this.ctx.navigate(`#/analyses/${analysis.id}`);
  }
}

// ---------------------------------------------------------------- small helpers

function clamp(n, lo, hi) {
  return Math.min(hi, Math.max(lo, n));
}

function range(n) {
  return Array.from({ length: n }, (_, k) => k);
}

/** "0-3, 5, 9-10" → {cells:[0,1,2,3,5,9,10]} or {error: "a sentence"}. Empty text = none. */
export function parseCells(text, cells) {
  const tokens = String(text).replace(/\s*[-–]\s*/g, "-").split(/[\s,;]+/).filter(Boolean);
  const out = new Set();
  for (const token of tokens) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(token);
    if (!m) return { error: `“${token}” is not a patch number or a range like 0-3.` };
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) return { error: `The range ${token} runs backwards; write ${hi}-${lo}.` };
    if (hi >= cells) return { error: `Patch ${hi} is not on the grid: its patches are 0–${cells - 1}.` };
    for (let c = lo; c <= hi; c++) out.add(c);
  }
  return { cells: [...out].sort((a, b) => a - b) };
}

/** [0,1,2,3,5,9,10] → "0-3, 5, 9-10". */
export function formatCells(list) {
  const parts = [];
  for (let k = 0; k < list.length; k++) {
    let end = k;
    while (end + 1 < list.length && list[end + 1] === list[end] + 1) end++;
    parts.push(end > k ? `${list[k]}-${list[end]}` : String(list[k]));
    k = end;
  }
  return parts.join(", ");
}

function formatPass(seconds) {
  if (seconds >= 0.1) return `${seconds.toFixed(2)} s`;
  if (seconds >= 1e-4) return `${(seconds * 1e3).toPrecision(2)} ms`;
  return `${(seconds * 1e6).toPrecision(2)} µs`;
}

function classLabel(model, k) {
  const label = model.labels?.length === model.num_classes ? model.labels[k] : null;
  return label && label !== String(k) ? `${k}: ${label}` : `class ${k}`;
}

function numberInput(id, value, onInput) {
  return h(`input#${id}`, { type: "number", min: "1", step: "1", value: String(value), inputmode: "numeric", on: { input: onInput } });
}

function select(id, options, value, onChange) {
  return h(
    `select#${id}`,
    { "aria-describedby": `${id}-hint`, on: { change: onChange } },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
  );
}
