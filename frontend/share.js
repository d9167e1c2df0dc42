// Read-only view of one shared analysis: no workspace, no cookie (credentials omitted).
const SUMMARY = document.querySelector("#summary");
const CURVE = document.querySelector("#curve");
const ITEMS = document.querySelector("#items");
const ERROR = document.querySelector("#error");
const TOKEN = decodeURIComponent(location.pathname.split("/").pop());
const BASE = `/api/shared/${encodeURIComponent(TOKEN)}`;

async function api(path) {
  const response = await fetch(`${BASE}${path}`, { credentials: "omit" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function row(term, value) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = value;
  return [dt, dd];
}

function draw(div, figure) {
  window.Plotly.react(div, figure.data, figure.layout, { responsive: true, displaylogo: false });
}

async function showItem(item) {
  const box = document.createElement("article");
  box.className = "item";
  const title = document.createElement("h3");
  const s = item.summary || {};
  title.textContent = `Image ${item.image_id.slice(0, 8)} — ${item.status}`;
  box.append(title);
  if (item.status !== "done") {
    ITEMS.append(box);
    return;
  }
  const facts = document.createElement("dl");
  facts.append(
    ...row("prediction", `class ${s.prediction}`),
    ...row("v(N) − v(∅)", s.v_full_minus_empty.toFixed(4)),
    ...row("faithfulness residual", s.residual.toExponential(2)),
  );
  const top = document.createElement("ol");
  for (const set of s.top_sets.slice(0, 10)) {
    const li = document.createElement("li");
    li.textContent = `{${set.players.join(", ")}}  ${set.value >= 0 ? "+" : ""}${set.value.toFixed(3)}`;
    top.append(li);
  }
  const charts = document.createElement("div");
  charts.className = "charts";
  box.append(facts, top, charts);
  ITEMS.append(box);
  const figures = await api(`/items/${item.id}/figures`);
  for (const name of ["salient", "sparsity"]) {
    const div = document.createElement("div");
    div.className = "figure";
    charts.append(div);
    draw(div, figures[name]);
  }
}

async function main() {
  const analysis = await api("");
  const p = analysis.params;
  SUMMARY.replaceChildren(
    ...row("status", analysis.status),
    ...row("players", `${analysis.n_players} (${p.grid} grid)`),
    ...row("baseline", p.baseline),
    ...row("output", `${p.output} of ${p.target === "predicted" ? "the predicted class" : `class ${p.target}`}`),
    ...row("images", String(analysis.items.length)),
  );
  if (analysis.summary && analysis.summary.J) draw(CURVE, await api("/figures/curve"));
  for (const item of analysis.items) await showItem(item);
}

main().catch((error) => {
  ERROR.hidden = false;
  ERROR.textContent = error.message;
});
