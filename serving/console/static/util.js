// Small helpers: building DOM nodes, Chinese labels, times.

// h("div.card#x", {onclick}, child, ...) -> element (children: nodes, strings, arrays, null)
export function h(spec, attrs, ...children) {
  const m = /^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i.exec(spec) || [];
  const el = document.createElement(m[1] || "div");
  for (const part of (m[2] || "").match(/[.#][\w-]+/g) || []) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// Labels when the policy summary is not loaded (GET /policy fills the real ones in).
export const LABELS = {
  intents: { logistics_delay: "物流延误", product_quality: "产品质量", refund_dispute: "退款纠纷",
             billing_error: "计费错误", service_attitude: "服务态度", repair_aftersales: "维修售后",
             network_outage: "网络故障", booking_issue: "预订问题", order_inquiry: "订单查询",
             consultation: "业务咨询", praise: "表扬" },
  slots: { order_id: "订单号", phone: "手机号", amount: "金额", product: "产品" },
  emotions: { neutral: "平静", angry: "愤怒", anxious: "焦急", sad: "难过", happy: "高兴" },
  dialects: { mandarin: "普通话", cantonese: "粤语", southwestern: "西南官话", wu: "吴语", min: "闽语" },
  queues: {},
};
export const QUEUE_ZH = { complaint: "投诉", general: "综合", feedback: "反馈", specialist: "专家组" };
export const STATUS_ZH = { open: "待处理", assigned: "已分派", escalated: "已升级", resolved: "已解决", closed: "已关闭" };
export const ALERT_ZH = { sustained_anger: "持续愤怒", sustained_anxiety: "持续焦虑", regulator_threat: "扬言投诉监管部门",
                          media_threat: "扬言曝光媒体", manager_request: "要求找领导" };
export const SPEAKER_ZH = { customer: "客户", agent: "坐席", mono: "通话" };
export const EMOTION_COLOR = { neutral: "#8a94a6", angry: "#d93025", anxious: "#f29900", sad: "#5b6bd6",
                               happy: "#1e8e3e" };

export function setPolicy(p) {
  if (!p) return;
  for (const [k, v] of Object.entries(p.intents || {})) LABELS.intents[k] = v.zh || k;
  Object.assign(LABELS.slots, p.slots || {});
  Object.assign(LABELS.emotions, p.emotions || {});
  Object.assign(LABELS.dialects, p.dialects || {});
}

export const zh = {
  intent: (x) => (x ? LABELS.intents[x] || x : "—"),
  slot: (x) => LABELS.slots[x] || x,
  emotion: (x) => (x ? LABELS.emotions[x] || x : "—"),
  dialect: (x) => (x ? LABELS.dialects[x] || x : "—"),
  queue: (x) => (x ? QUEUE_ZH[x] || x : "—"),
  status: (x) => STATUS_ZH[x] || x,
  alert: (x) => ALERT_ZH[x] || x,
  speaker: (x) => SPEAKER_ZH[x] || x,
};

export function pct(p) { return p === null || p === undefined ? "" : `${Math.round(p * 100)}%`; }

// 125 -> "2分05秒"; negative -> "超时 2分05秒" (callers colour it)
export function duration(seconds) {
  const s = Math.abs(Math.round(seconds));
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  let out;
  if (d) out = `${d}天${hh}小时`;
  else if (hh) out = `${hh}小时${String(mm).padStart(2, "0")}分`;
  else out = `${mm}分${String(ss).padStart(2, "0")}秒`;
  return seconds < 0 ? `超时 ${out}` : out;
}

export function clock(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getMonth() + 1}月${d.getDate()}日 ${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function mmss(t) {
  const s = Math.max(0, Math.round(t || 0));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export function isMasked(phone) { return typeof phone === "string" && phone.includes("*"); }
