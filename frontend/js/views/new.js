// New analysis (#/new?model=…&images=a,b&grid=4x4&players=0-3,5…): choose a model, images,
// a patch grid and its players on the preprocessed image, see the cost, run. The form state
// lives in the URL query (history.replaceState), so a reload or a shared link keeps it.
import { api, url } from "../api.js";
import { clear, errorBox, formatCount, formatSeconds, h } from "../dom.js";
import { GridCanvas, cursorKey } from "../grid.js";
import { crispScale, ensureStyles, intValue, loadPicture, newestFirst, thumbPath } from "./styles.js";

const MAX_PLAYERS = 20; // the server's default CONCEPTLENS_MAX_PLAYERS; it checks again
const MIN_PLAYERS = 2;
const MAX_IMAGES = 64;
const CANVAS_PX = 384; // the grid canvas is about this many pixels on its long side
const DEFAULT_GRID = 4;
const BASELINES = [
  ["mean", "Mean colour (per channel)"],
  ["zero", "Zero (black)"],
  ["blur", "Blurred image"],
];
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
  const [m, i] = await Promise.allSettled([api("/models"), api("/images")]);
  if (m.status === "rejected" || i.status === "rejected") {
    clear(root, h("div.cl-page", {}, h("h1", {}, "New analysis"), errorBox((m.reason || i.reason).message)));
    return undefined;
  }
  const models = newestFirst(m.value.data).filter((x) => x.status === "ready" && x.input_shape && x.num_classes);
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
  const form = new NewAnalysisForm(root, models, images, params.query, ctx);
  return () => form.unmount();
}

/** Own images newest first, then the samples in name order. */
function orderImages(rows) {
  const own = newestFirst(rows.filter((x) => !x.builtin));
  const samples = rows.filter((x) => x.builtin).sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));
  return [...own, ...samples];
}

class NewAnalysisForm {
  constructor(root, models, images, query, ctx) {
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
      baseline: BASELINES.some(([v]) => v === q.get("baseline")) ? q.get("baseline") : "mean",
      target: /^\d+$/.test(target || "") && Number(target) < model.num_classes ? Number(target) : "predicted",
      output: OUTPUTS.some(([v]) => v === q.get("output")) ? q.get("output") : "log-odds",
      tau: q.has("tau") && tau > 0 && tau <= 1 ? tau : DEFAULT_TAU,
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
    if (s.baseline !== "mean") q.set("baseline", s.baseline);
    if (s.target !== "predicted") q.set("target", String(s.target));
    if (s.output !== "log-odds") q.set("output", s.output);
    if (s.tau !== DEFAULT_TAU) q.set("tau", String(s.tau));
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
    );
    const playersCard = h(
      "section.cl-card.cl-step-players",
      { "aria-labelledby": "step-players" },
      h("h2#step-players", {}, "3. Patch grid and players"),
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
      h(
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
      ),
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
    s.target = this.target.value === "predicted" ? "predicted" : Number(this.target.value);
    const tau = Number(this.tau.value);
    this.tauValid = this.tau.value.trim() !== "" && tau > 0 && tau <= 1;
    if (this.tauValid) s.tau = tau;
    this.update();
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
    this.summary.textContent = `${n} of ${this.cells} patches ${n === 1 ? "is a player" : "are players"} on the ${s.rows}×${s.cols} grid.`;
    const k = s.images.length;
    this.imageCount.textContent = `${k} chosen`;
    this.renderCost(n, k);
    const reason = this.refusal(n, k);
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
    const [, height, width] = this.model.input_shape;
    if (intValue(this.rowsInput, 1, height) === null || intValue(this.colsInput, 1, width) === null)
      return `Rows and columns must be whole numbers (rows 1–${height}, columns 1–${width}).`;
    if (this.playersError) return `Players: ${this.playersError}`;
    if (!k) return "Choose at least one image.";
    if (k > MAX_IMAGES) return `At most ${MAX_IMAGES} images per analysis; ${k} are chosen.`;
    if (n < MIN_PLAYERS) return "Choose at least 2 players: interactions need two patches.";
    if (n > MAX_PLAYERS)
      return `${n} players would need 2^${n} forward passes per image; the limit is ${MAX_PLAYERS} players. Choose a coarser grid or fewer players.`;
    if (!this.tauValid) return "τ must be a number above 0 and at most 1.";
    return null;
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
    const body = {
      model_id: s.model,
      image_ids: s.images,
      grid: `${s.rows}x${s.cols}`,
      players: s.players,
      others_present: s.others,
      baseline: s.baseline,
      target: s.target,
      output: s.output,
      tau: s.tau,
    };
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
