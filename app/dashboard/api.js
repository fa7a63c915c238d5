// The JSON API as the page uses it: the session's key, readable errors, ETags, uploads.
// The page calls the same routes as any REST client; nothing here is page-only.

const KEY_NAME = "crackscan-key";

export const session = {
  // sessionStorage: the key is forgotten when the browser tab closes.
  key: sessionStorage.getItem(KEY_NAME) || "",
  auth: "api-key", // from /healthz: "api-key" or "none"
};

export function setKey(key) {
  session.key = key.trim();
  if (session.key) sessionStorage.setItem(KEY_NAME, session.key);
  else sessionStorage.removeItem(KEY_NAME);
}

/** The page may call the API: it has a key, or the server needs none. */
export function canCall() {
  return session.auth === "none" || session.key !== "";
}

export class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

function headers(extra = {}) {
  return session.key ? { "X-API-Key": session.key, ...extra } : { ...extra };
}

function retryAfterOf(reply) {
  const value = Number(reply.getResponseHeader ? reply.getResponseHeader("Retry-After") : reply.headers.get("Retry-After"));
  return Number.isFinite(value) && value > 0 ? value : null;
}

/** The server's {"error": {...}} body as one readable sentence. */
export function messageOf(status, body, fallback) {
  const error = body && body.error;
  if (!error) return `${status} ${fallback || "error"}`;
  let text = error.message;
  if (error.field && !text.includes(error.field)) text += ` (field: ${error.field})`;
  if (status === 401) text += " — enter an API key at the top right";
  return text;
}

async function errorOf(reply) {
  let body = null;
  try {
    body = await reply.json();
  } catch {
    body = null;
  }
  return new ApiError(reply.status, messageOf(reply.status, body, reply.statusText), retryAfterOf(reply));
}

// What each polled URL answered last, by its ETag: a 304 reuses the body, and callers
// learn that nothing changed, so they need not redraw.
const tagged = new Map();
const MAX_TAGGED = 20; // a map with its tiles inline can be megabytes

/** GET a JSON route. With `poll`, send If-None-Match; returns {body, changed}. */
export async function getJson(path, { poll = false } = {}) {
  const held = poll ? tagged.get(path) : undefined;
  const extra = held ? { "If-None-Match": held.etag } : {};
  const reply = await fetch(path, { headers: headers(extra), cache: "no-store" });
  if (reply.status === 304 && held) return { body: held.body, changed: false };
  if (!reply.ok) throw await errorOf(reply);
  const body = await reply.json();
  const etag = reply.headers.get("ETag");
  if (poll && etag) {
    if (tagged.size >= MAX_TAGGED) tagged.delete(tagged.keys().next().value);
    tagged.set(path, { etag, body });
  }
  return { body, changed: true };
}

export async function get(path) {
  return (await getJson(path)).body;
}

/** POST (or another method) a JSON body; the reply's JSON, or null for a 204. */
export async function send(method, path, json) {
  const init = { method, headers: headers(json === undefined ? {} : { "Content-Type": "application/json" }) };
  if (json !== undefined) init.body = JSON.stringify(json);
  const reply = await fetch(path, init);
  if (!reply.ok) throw await errorOf(reply);
  return reply.status === 204 ? null : reply.json();
}

/** A binary route (image, file) as a Blob. */
export async function getBlob(path) {
  const reply = await fetch(path, { headers: headers() });
  if (!reply.ok) throw await errorOf(reply);
  return reply.blob();
}

/** Save a route's answer as a file: the key goes in a header, so a plain link cannot. */
export async function download(path, filename) {
  const url = URL.createObjectURL(await getBlob(path));
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * POST a multipart form with upload progress (fetch cannot report it).
 * Resolves to {status, body, retryAfter}; rejects only when the network fails.
 */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(headers())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      resolve({ status: xhr.status, body, retryAfter: retryAfterOf(xhr) });
    };
    xhr.onerror = () => reject(new ApiError(0, "the server could not be reached", null));
    xhr.send(form);
  });
}

/** The API's own description (/openapi.json): the enums a form offers. */
let schema = null;
export async function openapi() {
  if (!schema) {
    const reply = await fetch("/openapi.json");
    if (!reply.ok) throw await errorOf(reply);
    schema = await reply.json();
  }
  return schema;
}
