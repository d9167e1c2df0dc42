// The dashboard: hash routes (deep links survive a reload), one module per view.
import { api } from "./api.js";
import { clear, errorBox } from "./dom.js";

const VIEW = document.querySelector("#view");

const ROUTES = [
  [/^#?\/?$/, () => import("./views/home.js")],
  [/^#\/models$/, () => import("./views/models.js")],
  [/^#\/images$/, () => import("./views/images.js")],
  [/^#\/new$/, () => import("./views/new.js")],
  [/^#\/analyses\/([0-9a-f]+)$/, () => import("./views/analysis.js")],
  [/^#\/compare$/, () => import("./views/compare.js")],
  [/^#\/components$/, () => import("./views/components.js")],
  [/^#\/components\/([0-9a-f]+)$/, () => import("./views/components.js")],
  [/^#\/consistency$/, () => import("./views/consistency.js")],
  [/^#\/consistency\/([0-9a-f]+)$/, () => import("./views/consistency.js")],
  [/^#\/training$/, () => import("./views/training.js")],
  [/^#\/training\/([0-9a-f]+)$/, () => import("./views/training.js")],
  [/^#\/bottleneck$/, () => import("./views/training.js")],
  [/^#\/bottleneck\/([0-9a-f]+)$/, () => import("./views/training.js")],
];

let unmount = null;

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  const [path, query] = location.hash.split("?");
  const match = ROUTES.map(([re, load]) => [path.match(re), load]).find(([m]) => m);
  if (unmount) unmount();
  unmount = null;
  // a page's messages, errors too, belong to that page: a new page starts without them
  for (const note of document.querySelectorAll("#toasts .toast")) note.remove();
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === (path || "#/"));
  }
  if (!match) {
    clear(VIEW, errorBox(`There is no page at ${location.hash}.`));
    return;
  }
  const [m, load] = match;
  // each page gets a container of its own: a page left before it finished loading (its mount
  // still awaiting) draws, or fails, into its detached container, never over the next page
  const root = document.createElement("div");
  VIEW.replaceChildren(root);
  const current = () => root.isConnected;
  try {
    const view = await load();
    const params = { id: m[1], query: new URLSearchParams(query || "") };
    const stop = (await view.mount(root, params, { navigate })) || null;
    if (current()) unmount = stop;
    else if (stop) stop(); // left while loading: stop it now
  } catch (error) {
    if (current()) clear(root, errorBox(error.message));
  }
}

async function main() {
  const workspace = api("/workspace"); // a first visit gets its workspace (cookie)
  // meanwhile fetch the page's module (and what it imports): a cold page otherwise waited
  // for the workspace answer before it asked for any of them
  const first = ROUTES.find(([re]) => location.hash.split("?")[0].match(re));
  if (first) first[1]().catch(() => {}); // a failure shows when the route loads it again
  await workspace;
  window.addEventListener("hashchange", route);
  await route();
}

main().catch((error) => clear(VIEW, errorBox(error.message)));
