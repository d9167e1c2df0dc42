// Small DOM helpers shared by every view.

/** h("div.card#id", {attrs, on: {click}}, ...children) → element. */
export function h(spec, attrs = {}, ...children) {
  const [tagAndClasses, id] = spec.split("#");
  const [tag, ...classes] = tagAndClasses.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (id) el.id = id;
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "on") for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren(...children.flat().filter(Boolean));
  return el;
}

const TOASTS = () => document.querySelector("#toasts");

/** A short message at the bottom of the screen; errors stay until dismissed. */
export function toast(message, kind = "info") {
  const close = h("button.toast-close", { "aria-label": "Dismiss", on: { click: () => item.remove() } }, "×");
  const item = h(`div.toast.${kind}`, { role: kind === "error" ? "alert" : "status" }, h("span", {}, message), close);
  TOASTS().append(item);
  if (kind !== "error") setTimeout(() => item.remove(), 4000);
}

/** An inline error box placed where the problem happened. */
export function errorBox(message) {
  return h("p.error", { role: "alert" }, message);
}

export function badge(status) {
  return h(`span.status.${status}`, {}, status);
}

export function formatCount(n) {
  return Number(n).toLocaleString("en-US");
}

export function formatSeconds(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "—";
  if (s < 1) return "< 1 s";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 2 ** 20) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 2 ** 20).toFixed(1)} MB`;
}

/** Plotly, once its script (loaded `async` beside the app, so the app's first requests do
 * not wait for its 4.8 MB to be parsed) has run. */
let plotlyLoaded = null;
export function plotlyReady() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!plotlyLoaded) {
    plotlyLoaded = new Promise((resolve, reject) => {
      const script = document.querySelector("#plotly-js");
      if (!script) {
        reject(new Error("The charting library is not on this page."));
        return;
      }
      script.addEventListener("load", () => resolve(window.Plotly));
      script.addEventListener("error", () => reject(new Error("The charting library could not be loaded; reload the page.")));
    });
  }
  return plotlyLoaded;
}

/** Draw Plotly figure JSON from the backend into a div (PNG/SVG export from the mode bar).
 * Returns a promise (Plotly may still be loading when a page first draws). */
export async function plot(div, figure, { name = "conceptlens" } = {}) {
  await plotlyReady();
  const config = {
    responsive: true,
    displaylogo: false,
    toImageButtonOptions: { format: "png", filename: name, scale: 2 },
    modeBarButtonsToAdd: [
      {
        name: "Download SVG",
        icon: window.Plotly.Icons.disk,
        click: (gd) => window.Plotly.downloadImage(gd, { format: "svg", filename: name }),
      },
    ],
  };
  return window.Plotly.react(div, figure.data, figure.layout, config);
}
