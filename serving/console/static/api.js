// The service's API as the console uses it: the key from sessionStorage, JSON in and out, the API's own error
// text on failure (ApiError.message is exactly what the service answered in {"error": ...}).

const KEY = "hotline.key";

export function getKey() { return sessionStorage.getItem(KEY); }
export function setKey(k) { sessionStorage.setItem(KEY, k); }
export function clearKey() { sessionStorage.removeItem(KEY); }

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, { method = "GET", body, key = getKey(), signal } = {}) {
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, `无法连接服务（${e.message}）`, null);
  }
  let data = null;
  const text = await resp.text();
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (!resp.ok) {
    const msg = (data && data.error) || `HTTP ${resp.status}`;
    throw new ApiError(resp.status, msg, data);
  }
  return data;
}

// A WebSocket URL of this service for a path (ws:// or wss:// as the page was loaded).
export function wsUrl(path) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}${path}`;
}

// "不允许" / "未登录" etc. in front of the API's own words.
export function explain(err) {
  if (!(err instanceof ApiError)) return String(err && err.message || err);
  const lead = { 401: "密钥无效", 403: "不允许", 404: "未找到", 409: "冲突", 422: "请求有误", 429: "服务繁忙",
                 503: "服务未就绪" }[err.status];
  return lead ? `${lead}：${err.message}` : err.message;
}
