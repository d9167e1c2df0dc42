// Minimal page for the service milestone: lists the workspace's models and analyses.
const MODELS = document.querySelector("#models");
const ANALYSES = document.querySelector("#analyses");
const ERROR = document.querySelector("#error");

async function api(path) {
  const response = await fetch(`/api${path}`, { credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function item(text, status) {
  const li = document.createElement("li");
  li.textContent = text + " ";
  const badge = document.createElement("span");
  badge.className = `status ${status}`;
  badge.textContent = status;
  li.append(badge);
  return li;
}

async function main() {
  await api("/workspace");
  const models = await api("/models");
  MODELS.replaceChildren(
    ...models.data.map((m) => {
      const shape = m.input_shape ? ` — input ${m.input_shape.join("×")}, ${m.num_classes} classes` : "";
      return item(`${m.name} (${m.format || "unknown format"})${shape}`, m.status);
    }),
  );
  if (!models.data.length) MODELS.replaceChildren(item("No models yet.", "none"));
  const analyses = await api("/analyses");
  ANALYSES.replaceChildren(
    ...analyses.data.map((a) => item(`${a.params.grid} grid, ${a.items.length} image(s)`, a.status)),
  );
  if (!analyses.data.length) ANALYSES.replaceChildren(item("No analyses yet.", "none"));
}

main().catch((error) => {
  ERROR.hidden = false;
  ERROR.textContent = error.message;
});
