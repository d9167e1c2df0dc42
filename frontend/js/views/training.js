// Training with the order losses L+ and L− (SCIENCE.md §5, seed 000).
// #/training — the form, the one-click experiment and the workspace's runs;
// #/training/{id} — one run: progress, loss and accuracy curves, what it produced;
// #/bottleneck/{experiment} or #/bottleneck?runs=a,b — runs side by side: J(m) of each final
// model, test and adversarial accuracy, accuracy during training.
import { api, url } from "../api.js";
import { badge, clear, errorBox, formatCount, formatSeconds, h, plot, toast } from "../dom.js";
import { deleteButton, fact, listedModel, note, uploadDatasetField } from "./styles.js";

const POLL_MS = 1000;
const PRESETS = ["normal", "encourage low", "encourage middle", "encourage high"];
// what each preset of conceptlens.training.PRESETS adds (tests/frontend/test_training.py
// checks these against it); tuned on the digits CNN at a 4x4 grid with the zero baseline
const PRESET_NOTES = {
  normal: "classification loss only",
  "encourage low": "0.01·L+(0, 0.25) + 0.01·L−(0.75, 1)",
  "encourage middle": "0.03·L+(0.25, 0.5)",
  "encourage high": "0.03·L+(0.75, 1) + 0.03·L−(0, 0.25) (the seed's “penalise low-order & boost high-order”)",
};
const COLORS = ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728"];
const ended = (run) => ["done", "failed", "cancelled"].includes(run.status);
const BELOW = { orientation: "h", y: -0.28, x: 0 };

/** The runs' names without the part all of them share ("Digits bottleneck · normal" → "normal"). */
function shortNames(runs) {
  const names = runs.map((r) => r.name);
  if (names.length < 2) return names;
  let cut = 0;
  const prefix = names.reduce((a, b) => { let i = 0; while (i < a.length && a[i] === b[i]) i++; return a.slice(0, i); });
  const at = prefix.lastIndexOf(" · ");
  if (at >= 0) cut = at + 3;
  return names.map((n) => n.slice(cut) || n);
}

export async function mount(root, params, ctx) {
  const path = location.hash.split("?")[0];
  if (path.startsWith("#/bottleneck")) return mountExperiment(root, params, ctx);
  return params.id ? mountRun(root, params.id, ctx) : mountList(root, ctx);
}

function field(label, control, hint) {
  return h("label.field", {}, h("span", {}, label), control, hint ? h("small.muted", {}, hint) : null);
}

const option = (value, text) => h("option", { value }, text);

function termText(term) {
  return term ? `λ ${term.weight} on orders [${term.r1}·n, ${term.r2}·n]` : "—";
}

function termsText(run) {
  const t = run.metrics?.order_terms || (run.params.plus || run.params.minus ? run.params : null);
  if (!t) return `preset “${run.params.preset}” (${PRESET_NOTES[run.params.preset]})`;
  const parts = [t.plus ? `L+: ${termText(t.plus)}` : null, t.minus ? `L−: ${termText(t.minus)}` : null].filter(Boolean);
  return parts.length ? parts.join("; ") : "classification loss only";
}

/** A term's λ, r1, r2 inputs; `value()` is null when λ is empty. */
function termInputs(prefix) {
  const weight = h(`input#${prefix}-weight`, { type: "number", min: 0, step: "any", placeholder: "off" });
  const r1 = h(`input#${prefix}-r1`, { type: "number", min: 0, max: 1, step: 0.05, value: 0 });
  const r2 = h(`input#${prefix}-r2`, { type: "number", min: 0, max: 1, step: 0.05, value: 0.5 });
  return {
    el: h("div.term", {}, field("λ", weight), field("r1", r1), field("r2", r2)),
    value: () => (weight.value === "" ? null : { weight: Number(weight.value), r1: Number(r1.value), r2: Number(r2.value) }),
  };
}

async function mountList(root, ctx) {
  let alive = true;
  const [datasets, models, runs] = await Promise.all([api("/datasets"), api("/models"), api("/training-runs")]);
  const labelled = datasets.data.filter((d) => d.labelled);
  const digits = labelled.find((d) => d.builtin) || labelled[0];
  const dataset = h("select#train-dataset", {}, labelled.map((d) => option(d.id, `${d.name} (${d.n_images} images)`)));
  const architecture = h("select#train-arch", {},
    option("digit_cnn", "digits CNN (1×16×16)"), option("small_vgg", "small VGG-style CNN (3×32×32)"),
    option("small_resnet", "small ResNet-style CNN (3×32×32)"));
  const init = h("select#train-init", {}, option("", "from scratch"));
  const fillInit = () => clear(init, option("", "from scratch"),
    models.data.filter((m) => listedModel(m) && m.status === "ready" && m.format === "safetensors" && m.architecture === architecture.value)
      .map((m) => option(m.id, `fine-tune ${m.name}`)));
  architecture.addEventListener("change", fillInit);
  fillInit();
  const preset = h("select#train-preset", {}, PRESETS.map((p) => option(p, `${p} — ${PRESET_NOTES[p]}`)));
  const custom = h("input#train-custom", { type: "checkbox" });
  const plus = termInputs("train-plus");
  const minus = termInputs("train-minus");
  const customBox = h("div#train-terms", { hidden: true },
    h("p.muted", {}, "λ1·L+(r1, r2) encourages interactions of orders between r1·n and r2·n; λ2·L−(r1, r2) penalises them (n = patches of the grid). Leave λ empty to switch a term off."),
    h("h3", {}, "L+ (encourage)"), plus.el, h("h3", {}, "L− (penalise)"), minus.el);
  custom.addEventListener("change", () => { customBox.hidden = !custom.checked; preset.disabled = custom.checked; });
  const grid = h("input#train-grid", { value: "4x4" });
  const baseline = h("select#train-baseline", {}, option("zero", "zero"), option("mean", "image mean"));
  const epochs = h("input#train-epochs", { type: "number", min: 1, value: 8 });
  const batch = h("input#train-batch", { type: "number", min: 4, value: 32 });
  const lr = h("input#train-lr", { type: "number", min: 0, step: "any", value: 0.01 });
  const seed = h("input#train-seed", { type: "number", min: 0, value: 0 });
  const maxTrain = h("input#train-max", { type: "number", min: 10, placeholder: "all" });
  const every = h("input#train-every", { type: "number", min: 1, value: 1 });
  const eps = h("input#train-eps", { value: "0.02, 0.05, 0.1" });
  const evalGrid = h("input#train-eval-grid", { value: "4x4" });
  const evalImages = h("input#train-eval-images", { type: "number", min: 1, max: 50, value: 8 });
  const error = h("div", { "aria-live": "assertive" });

  const body = () => ({
    dataset_id: dataset.value,
    architecture: architecture.value,
    init_model_id: init.value || null,
    preset: custom.checked ? "normal" : preset.value,
    plus: custom.checked ? plus.value() : null,
    minus: custom.checked ? minus.value() : null,
    grid: grid.value,
    baseline: baseline.value,
    epochs: Number(epochs.value),
    batch_size: Number(batch.value),
    lr: Number(lr.value),
    seed: Number(seed.value),
    max_train: maxTrain.value === "" ? null : Number(maxTrain.value),
    checkpoint_every: Number(every.value),
    attack: { eps: eps.value.split(",").map((t) => t.trim()).filter(Boolean).map(Number) },
    evaluate: evalGrid.value.trim() ? { grid: evalGrid.value.trim(), images: Number(evalImages.value) } : null,
  });
  const submit = async (button, path, payload, go) => {
    clear(error);
    button.disabled = true;
    try {
      go(await api(path, { method: "POST", body: payload }));
    } catch (e) {
      clear(error, errorBox(e.message));
    } finally {
      button.disabled = false;
    }
  };
  const start = h("button.primary#train-run", { type: "button" }, "Train");
  start.addEventListener("click", () => submit(start, "/training-runs", body(), (run) => ctx.navigate(`#/training/${run.id}`)));
  const startAll = h("button#train-experiment", { type: "button" }, "Train the four presets with these settings");
  startAll.addEventListener("click", () => {
    const payload = { ...body(), plus: null, minus: null };
    submit(startAll, "/training-runs/experiment", payload, (out) => ctx.navigate(`#/bottleneck/${out.data[0].experiment}`));
  });
  const example = h("button.primary#train-example", { type: "button", disabled: !digits }, "Run the built-in bottleneck experiment");
  example.addEventListener("click", () => submit(example, "/training-runs/experiment",
    { dataset_id: digits.id, name: "Digits bottleneck", epochs: 6, evaluate: { grid: "4x4", images: 8 } },
    (out) => ctx.navigate(`#/bottleneck/${out.data[0].experiment}`)));

  const experiments = [...new Set(runs.data.map((r) => r.experiment).filter(Boolean))];
  clear(root,
    h("h1", {}, "Training with the order losses"),
    h("p.muted", {}, "Seed 000 does not only measure the representation bottleneck, it moves it: ",
      "training with λ1·L+(r1, r2) makes a network use interactions of orders between r1·n and r2·n, λ2·L−(r1, r2) makes it avoid them. ",
      "Networks trained this way reach similar accuracy but differ in robustness. Train runs here, then compare them on the bottleneck page."),
    h("section.card", { "aria-labelledby": "train-example-title" },
      h("h2#train-example-title", {}, "One click: the bottleneck experiment on the digits"),
      h("p", {}, "Trains the digits CNN four times (normal, encourage low, middle, high; 6 epochs each, seed 0), measures each final model's J(m) exactly on 8 held-out digits at a 4×4 grid, and its accuracy under a PGD attack. About 5 to 10 minutes on two CPU cores, most of it the 2 million forward passes of the four exact analyses."),
      example),
    h("section.card.train-form", { "aria-labelledby": "train-new" },
      h("h2#train-new", {}, "New training run"),
      labelled.length ? null : errorBox("No labelled image set: upload a zip with one folder per class on the Components page."),
      h("div.comp-grid", {},
        field("Image set", dataset, "labelled; the built-in digits keep their 1,500/297 split, an upload holds out one image in six"),
        uploadDatasetField(dataset, () => alive, "train", { labelledOnly: true }),
        field("Architecture", architecture), field("Start from", init),
        field("Preset", preset, "tuned on the digits CNN at a 4×4 grid with the zero baseline; other settings move them differently"),
        field("Custom terms", custom, "set λ, r1, r2 yourself")),
      customBox,
      h("div.comp-grid", {},
        field("Order-loss grid", grid, "patches = players n"), field("Baseline", baseline, "what a masked patch becomes"),
        field("Epochs", epochs), field("Batch size", batch), field("Learning rate", lr), field("Seed", seed),
        field("Training images", maxTrain, "the first N of the training split"), field("Checkpoint every", every, "epochs (a model series)"),
        field("PGD budgets L∞", eps, "comma-separated, in pixel units"),
        field("Evaluation grid", evalGrid, "exact J(m) of the final model; empty: none"),
        field("Evaluation images", evalImages)),
      h("div.row", {}, start, " ", startAll), error),
    experiments.length ? h("section.card", { "aria-labelledby": "train-exps" },
      h("h2#train-exps", {}, "Experiments"),
      h("ul", {}, experiments.map((id) => h("li", {}, h("a", { href: `#/bottleneck/${id}` },
        runs.data.filter((r) => r.experiment === id).map((r) => r.name).join(" · "))))) ) : null,
    h("section.card", { "aria-labelledby": "train-runs" },
      h("h2#train-runs", {}, "Training runs"),
      runs.data.length
        ? h("ul.comp-list#train-list", {}, runs.data.map((run) => h("li", {},
          h("a", { href: `#/training/${run.id}` }, run.name), ` · ${run.params.architecture} · ${run.params.epochs} epochs `,
          badge(run.status), " ",
          deleteButton({
            what: "training run", name: run.name, path: `/training-runs/${run.id}`, className: "button.comp-delete",
            errorTarget: error, warning: "The models it produced stay.", isAlive: () => alive,
            onDeleted: () => mountList(root, ctx),
          }))))
        : h("p.muted", {}, "None yet.")));
  return () => { alive = false; };
}

/** Loss and accuracy against the epoch for one run (or several: `runs`). */
function historyFigures(runs) {
  const loss = [];
  const acc = [];
  runs.forEach((run, k) => {
    const hist = run.history || [];
    const x = hist.map((r) => r.epoch);
    const color = COLORS[k % COLORS.length];
    const tag = runs.length > 1 ? `${shortNames(runs)[k]}: ` : "";
    loss.push({ type: "scatter", mode: "lines+markers", name: `${tag}total`, x, y: hist.map((r) => r.loss), line: { color } });
    loss.push({ type: "scatter", mode: "lines", name: `${tag}classification`, x, y: hist.map((r) => r.loss_cls), line: { color, dash: "dot" } });
    if (runs.length === 1) {
      if (hist.some((r) => r.loss_plus != null)) loss.push({ type: "scatter", mode: "lines", name: "L+ (unweighted)", x, y: hist.map((r) => r.loss_plus), line: { dash: "dash" } });
      if (hist.some((r) => r.loss_minus != null)) loss.push({ type: "scatter", mode: "lines", name: "L− (unweighted)", x, y: hist.map((r) => r.loss_minus), line: { dash: "dashdot" } });
    }
    acc.push({ type: "scatter", mode: "lines+markers", name: `${tag}test`, x, y: hist.map((r) => r.test_accuracy), line: { color } });
    acc.push({ type: "scatter", mode: "lines", name: `${tag}train`, x, y: hist.map((r) => r.train_accuracy), line: { color, dash: "dot" } });
  });
  const axis = { title: { text: "epoch" }, dtick: 1 };
  return {
    loss: { data: loss, layout: { title: { text: "Loss during training" }, height: 400, margin: { t: 56 }, legend: BELOW, xaxis: axis, yaxis: { title: { text: "loss" } } } },
    acc: { data: acc, layout: { title: { text: "Accuracy during training" }, height: 400, margin: { t: 56 }, legend: BELOW, xaxis: axis, yaxis: { title: { text: "accuracy" }, range: [0, 1.02] } } },
  };
}

const LOSS_NOTE = ["The loss after each epoch, averaged over its batches: the total that was minimised, its classification part (cross-entropy), and the order terms before their λ. L+ rewards an output that changes a lot between r1·n and r2·n present patches (more negative = stronger interactions in its range), L− one that stays flat there.",
  "Loss = Loss_cls + λ1·L+(r1,r2) + λ2·L−(r1,r2); L± = ∓E|Δu|, Δu = u(x_S2) − u(x_S1), u = log p(label)", "000"];
const ACC_NOTE = ["Accuracy on the training images (dotted) and on the held-out test split (solid) after each epoch. Seed 000's first table: networks pushed to different orders reach similar test accuracy.",
  "accuracy = share of images whose predicted class is the label", "000"];

async function mountRun(root, id, ctx) {
  let alive = true;
  let timer = null;
  const refresh = async () => {
    if (!alive) return;
    let run;
    try {
      run = await api(`/training-runs/${id}`);
    } catch (e) {
      clear(root, errorBox(e.message));
      return;
    }
    if (!alive) return;
    render(root, run, ctx, refresh);
    if (!ended(run)) timer = setTimeout(refresh, POLL_MS);
  };
  await refresh();
  return () => { alive = false; clearTimeout(timer); };
}

function render(root, run, ctx, refresh) {
  const pct = run.progress_total ? (100 * run.progress_done) / run.progress_total : 0;
  const act = async (path, method = "POST") => {
    try {
      await api(`/training-runs/${run.id}${path}`, { method });
      refresh();
    } catch (e) {
      toast(e.message, "error");
    }
  };
  const buttons = [];
  if (!ended(run)) buttons.push(h("button#train-cancel", { type: "button", on: { click: () => act("/cancel") } }, "Cancel"));
  if (["failed", "cancelled"].includes(run.status)) buttons.push(h("button#train-retry", { type: "button", on: { click: () => act("/retry") } }, "Retry"));
  const m = run.metrics;
  const facts = h("div.facts", {},
    fact("Status", badge(run.status)),
    fact("Image set", `${run.dataset_name} (${formatCount(run.params.n_train)} train / ${formatCount(run.params.n_test)} test)`),
    fact("Architecture", run.params.architecture),
    fact("Order losses", termsText(run)),
    fact("Grid · baseline", `${run.params.grid} · ${run.params.baseline}`),
    fact("Epochs · batch · lr · seed", `${run.params.epochs} · ${run.params.batch_size} · ${run.params.lr} · ${run.params.seed}`),
    m ? fact("Test accuracy", (100 * m.test_accuracy).toFixed(1) + " %") : null,
    m ? fact("Forward passes", `${formatCount(m.passes)} in ${formatSeconds(m.seconds)}`) : null);
  const figures = historyFigures([run]);
  const lossDiv = h("div.figure#train-loss");
  const accDiv = h("div.figure#train-acc");
  const produced = [];
  if (run.series && (run.history || []).length) produced.push(h("li", {}, `Checkpoints: the model series “${run.series}” — `,
    h("button#train-dynamics", { type: "button", on: { click: () => dynamics(run, ctx) } }, "Learning dynamics of this run")));
  if (run.model_id) produced.push(h("li", {}, "The final model: ", h("a#train-model", { href: `#/new?model=${run.model_id}` }, `${run.name} (trained)`),
    " — analyse it like any model; download it as ", h("a#train-safetensors", { href: url(`/training-runs/${run.id}/model.safetensors`), download: "" }, "safetensors"),
    " (weights with their architecture; fine-tune it here) or ", h("a#train-onnx", { href: url(`/training-runs/${run.id}/model.onnx`), download: "" }, "ONNX"), "."));
  if (run.evaluation_id) produced.push(h("li", {}, h("a#train-evaluation", { href: `#/analyses/${run.evaluation_id}` }, "Interactions of the trained model"), ` (exact, ${run.params.evaluate.grid}, ${run.params.evaluate.images} test images)`));
  if (run.experiment) produced.push(h("li", {}, h("a", { href: `#/bottleneck/${run.experiment}` }, "Compare with the other runs of its experiment")));
  clear(root,
    h("h1", {}, `Training run: ${run.name}`),
    h("section.card", {}, facts, h("div.row", {}, buttons)),
    run.error ? errorBox(run.error) : null,
    ended(run) ? null : h("section.card", { "aria-labelledby": "train-progress-title" },
      h("h2#train-progress-title", {}, run.status === "queued" ? "Queued" : pct >= 100 ? "Finishing" : "Training"),
      h("progress#train-progress", { max: 100, value: pct, "aria-label": "training progress" }),
      h("p", {}, `${formatCount(run.progress_done)} / ${formatCount(run.progress_total)} batches and attacks`,
        pct >= 100 ? " — storing the model and starting its analysis." : ` · time left ${run.eta_seconds == null ? "estimating…" : formatSeconds(run.eta_seconds)}`)),
    h("div.charts", {},
      h("div.card", {}, lossDiv, note(...LOSS_NOTE)),
      h("div.card", {}, accDiv, note(...ACC_NOTE))),
    m ? adversarialTable([run]) : null,
    produced.length ? h("section.card", {}, h("h2", {}, "What it produced"), h("ul", {}, produced)) : null,
    h("p", {}, h("a", { href: "#/training" }, "← all training runs")));
  if ((run.history || []).length) {
    plot(lossDiv, figures.loss, { name: "training-loss" });
    plot(accDiv, figures.acc, { name: "training-accuracy" });
  } else {
    lossDiv.append(h("p.muted", {}, "The curves appear after the first epoch."));
  }
}

async function dynamics(run, ctx) {
  try {
    const analysis = await api("/analyses", {
      method: "POST",
      body: { mode: "dynamics", series: run.series, dataset_id: run.dataset_id, dataset_pick: "first", dataset_k: 4, grid: "3x3", baseline: run.params.baseline, target: "predicted" },
    });
    ctx.navigate(`#/analyses/${analysis.id}`);
  } catch (e) {
    toast(e.message, "error");
  }
}

function adversarialTable(runs) {
  const budgets = [...new Set(runs.flatMap((r) => Object.keys(r.metrics?.adversarial || {})))].sort((a, b) => a - b);
  return h("section.card", { "aria-labelledby": "adv-title" },
    h("h2#adv-title", {}, "Accuracy and robustness"),
    h("table#adv-table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "run"), h("th", {}, "test accuracy"), budgets.map((b) => h("th", {}, `PGD L∞ ${b}`)))),
      h("tbody", {}, runs.map((r) => h("tr", {}, h("td", {}, r.name),
        h("td", {}, r.metrics ? (100 * r.metrics.test_accuracy).toFixed(1) + " %" : "—"),
        budgets.map((b) => h("td", {}, r.metrics?.adversarial?.[b] != null ? (100 * r.metrics.adversarial[b]).toFixed(1) + " %" : "—")))))),
    note("Test accuracy, and accuracy when each test image is first attacked by projected gradient descent on the cross-entropy, every pixel moved at most the budget (L∞; pixels in [0, 1]). Seed 000's second table: models pushed to high-order interactions lose more accuracy under attack.",
      "x + δ, ‖δ‖∞ ≤ ε, δ by signed-gradient steps that raise CE; robust = correct both clean and attacked", "000"));
}

async function mountExperiment(root, params, ctx) {
  let alive = true;
  let timer = null;
  const refresh = async () => {
    if (!alive) return;
    let runs;
    try {
      if (params.id) runs = (await api(`/training-runs?experiment=${encodeURIComponent(params.id)}`)).data;
      else runs = await Promise.all((params.query.get("runs") || "").split(",").filter(Boolean).map((id) => api(`/training-runs/${id}`)));
    } catch (e) {
      clear(root, errorBox(e.message));
      return;
    }
    if (!runs.length) {
      clear(root, errorBox("No training runs to compare: start an experiment on the Training page."));
      return;
    }
    runs.sort((a, b) => PRESETS.indexOf(a.params.preset) - PRESETS.indexOf(b.params.preset));
    const evaluations = await Promise.all(runs.map((r) => (r.evaluation_id ? api(`/analyses/${r.evaluation_id}`).catch(() => null) : null)));
    if (!alive) return;
    renderExperiment(root, runs, evaluations, ctx);
    const pending = runs.some((r) => !ended(r)) || evaluations.some((a, k) => runs[k].status === "done" && runs[k].params.evaluate && (!a || !ended(a)));
    if (pending) timer = setTimeout(refresh, 2 * POLL_MS);
  };
  await refresh();
  return () => { alive = false; clearTimeout(timer); };
}

function renderExperiment(root, runs, evaluations, ctx) {
  const curve = h("div.figure#bottleneck-curve");
  const accDiv = h("div.figure#bottleneck-acc");
  const status = h("ul#bottleneck-runs", {}, runs.map((r, k) => {
    const a = evaluations[k];
    const what = !ended(r) ? `training ${r.progress_total ? Math.round((100 * r.progress_done) / r.progress_total) : 0} %`
      : r.status !== "done" ? r.status
        : !r.params.evaluate ? "done (no evaluation asked)"
          : !a ? "done; its analysis is starting"
            : a.status === "done" ? "done" : `measuring interactions ${a.progress_total ? Math.round((100 * a.progress_done) / a.progress_total) : 0} %`;
    return h("li", {}, h("a", { href: `#/training/${r.id}` }, r.name), ` — ${termsText(r)} — ${what}`,
      a ? [" · ", h("a", { href: `#/analyses/${a.id}` }, "its interactions")] : null,
      r.status === "done" ? [" · ", h("button.run-dynamics", { type: "button", on: { click: () => dynamics(r, ctx) } }, "learning dynamics")] : null);
  }));
  clear(root,
    h("h1", {}, "Bottleneck experiment"),
    h("p.muted", {}, "Runs trained with different order losses, side by side. Read the curves first (did each model move its interactions where its loss pushed them?), then the accuracies (similar on clean images?) and the robustness (lower for the high-order model?)."),
    h("section.card", {}, h("h2", {}, "Runs"), status),
    h("div.charts", {},
      h("div.card", {}, curve, note(
        "How strongly pairs of patches cooperate with m other patches present, relative to the average over m, for each trained model on held-out images; the x axis is m/n so grids of different sizes line up. A model pushed to low orders should rise on the left, one pushed to high orders on the right; a normal model usually shows the bottleneck's U. The dashed line (right axis) is the theory's F(m), the shape seed 000 derives for a network's interactions.",
        "J(m) = E_x E_{i,j} |I^(m)(i,j)| / mean_m", "000")),
      h("div.card", {}, accDiv, note(...ACC_NOTE))),
    runs.some((r) => r.metrics) ? adversarialTable(runs) : null);
  const data = [];
  runs.forEach((r, k) => {
    const a = evaluations[k];
    if (!a?.summary?.J) return;
    const n = a.n_players;
    data.push({ type: "scatter", mode: "lines+markers", name: shortNames(runs)[k], x: a.summary.J.map((_, m) => m / n), y: a.summary.J,
      line: { color: COLORS[k % COLORS.length] }, hovertemplate: "m = %{customdata}<br>J = %{y:.3f}<extra></extra>", customdata: a.summary.J.map((_, m) => m) });
  });
  // the theory's F(m) (the same for every model on a grid) on its own axis, once per grid
  const grids = new Set();
  evaluations.forEach((a) => {
    if (!a?.summary?.F?.length || grids.has(a.n_players)) return;
    grids.add(a.n_players);
    data.push({ type: "scatter", mode: "lines", name: `theory F(m), n = ${a.n_players}`, yaxis: "y2",
      x: a.summary.F.map((_, m) => m / a.n_players), y: a.summary.F, line: { color: "#888", dash: "dash", width: 1.5 } });
  });
  if (data.length) {
    plot(curve, { data, layout: { title: { text: "J(m) of each trained model" }, height: 400, margin: { t: 56 }, legend: BELOW,
      xaxis: { title: { text: "order m / n" }, range: [0, 1] }, yaxis: { title: { text: "J(m)" }, rangemode: "tozero" },
      yaxis2: { title: { text: "F(m)" }, overlaying: "y", side: "right", showgrid: false, rangemode: "tozero" } } }, { name: "bottleneck-j" });
  } else {
    curve.append(h("p.muted", {}, "The curves appear as each run's interactions are measured."));
  }
  if (runs.some((r) => (r.history || []).length)) plot(accDiv, historyFigures(runs).acc, { name: "bottleneck-accuracy" });
}
