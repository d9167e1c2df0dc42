// Fetch wrapper: JSON in and out, errors as ApiError with the server's sentence.
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

let base = "/api";
let credentials = "same-origin";

/** Read-only mode for share links: every call goes to /api/shared/{token} (an analysis) or
 * /api/shared-components/{token} (a component analysis), without cookies. */
export function useShareToken(token, kind = "analysis") {
  const root = kind === "components" ? "shared-components" : "shared";
  base = `/api/${root}/${encodeURIComponent(token)}`;
  credentials = "omit";
}

export function isShared() {
  return credentials === "omit";
}

/** Call the API. `body` is sent as JSON, `form` (FormData) as multipart. */
export async function api(path, { method = "GET", body, form, signal } = {}) {
  const options = { method, credentials, signal, headers: {} };
  if (form) options.body = form;
  else if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["content-type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(`${base}${path}`, options);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("The server cannot be reached. Is ConceptLens still running?", 0);
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    // the server's sentence; never a raw object (e.g. a proxy's or a framework's error body)
    const detail = typeof data.detail === "string" ? data.detail : "";
    throw new ApiError(detail || `${response.status} ${response.statusText}`, response.status);
  }
  return data;
}

/** Resource URLs that are not JSON (image files, exports), relative to the API base. */
export function url(path) {
  return `${base}${path}`;
}
