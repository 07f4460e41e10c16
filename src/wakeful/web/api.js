// The JSON API, with the token on every call. Errors become ApiError with the
// server's one-line message, so every view can show it as it is.

const TOKEN_KEY = "wakeful.token";
const NAME_KEY = "wakeful.name";

export class ApiError extends Error {
  constructor(status, message, fields) {
    super(message);
    this.status = status;
    this.fields = fields || [];
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  get name() { return sessionStorage.getItem(NAME_KEY) || "operator"; },
  get me() { return `person:${this.name}`; },
  login(token, name) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(NAME_KEY, name);
  },
  logout() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

let onUnauthorized = () => {};
export function whenUnauthorized(handler) { onUnauthorized = handler; }

export async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${session.token}` } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `cannot reach the server: ${err.message}`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && data.error) || `${method} ${path}: HTTP ${response.status}`;
    const error = new ApiError(response.status, message, data && data.fields);
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  return data;
}

export const get = (path) => api("GET", path);

// Every item of a list, page by page: the API's `after` and `next` (see paging.py).
export async function getAll(path, key, start = "") {
  const items = [];
  let after = start;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await get(`${path}${sep}after=${encodeURIComponent(after)}`);
    items.push(...page[key]);
    after = page.next;
  } while (after !== null && after !== undefined);
  return items;
}
export const post = (path, body) => api("POST", path, body ?? {});
export const enc = encodeURIComponent;
