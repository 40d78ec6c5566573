// The agent view: a live call as it happens (#/agent?call=ID), or the live calls to pick one from (#/agent).
// Events come from the watch WebSocket /stream/{call_id}/watch?key=KEY (the events so far are replayed first;
// each carries a "seq", so a reconnect skips what was already shown).
import { api, explain, wsUrl } from "./api.js";
import { emotionTimeline } from "./charts.js";
import { LABELS, clock, duration, h, isMasked, mmss, pct, zh } from "./util.js";

const SLOT_ORDER = ["order_id", "phone", "amount", "product"];
const POLL_MS = 2000;

export function mount(container, ctx, params) {
  const call = params.get("call");
  return call ? callView(container, ctx, call) : pickView(container, ctx);
}

// -- no call chosen: the live calls -------------------------------------------------------------------------------
function pickView(container, ctx) {
  const list = h("div.live-list", "正在加载实时通话……");
  const form = h("form.inline", {
    onsubmit: (ev) => {
      ev.preventDefault();
      const id = ev.target.elements.call.value.trim();
      if (id) location.hash = `#/agent?call=${encodeURIComponent(id)}`;
    },
  }, h("label", { for: "call-id" }, "通话编号"), h("input#call-id", { name: "call", placeholder: "call_id" }),
  h("button", { type: "submit" }, "打开"));
  container.append(h("section.card", h("h2", "选择一通实时通话"), list, form));
  let timer = null, stopped = false;
  async function poll() {
    try {
      const calls = liveList(await api("/live"));
      list.replaceChildren(calls.length ? liveTable(calls) : h("p.muted", "当前没有进行中的通话。"));
    } catch (e) {
      list.replaceChildren(h("p.error", { role: "alert" }, e.status === 404
        ? `实时通话接口尚不可用（GET /live：${e.message}）` : explain(e)));
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}

// GET /live answers {"calls": [...]} (a bare list is taken too); dialect, emotion and intent are the last
// readings ({label|intent, confidence, ...}) or null.
export function liveList(body) { return Array.isArray(body) ? body : (body && body.calls) || []; }
const labelOf = (x) => (x && typeof x === "object" ? x.label ?? x.intent ?? null : x);

export function liveTable(calls) {
  return h("table.live",
    h("thead", h("tr", ["通话", "来电号码", "时长", "方言", "意图", "情绪", "告警"].map((t) => h("th", t)))),
    h("tbody", calls.map((c) => h("tr", { dataset: { call: c.call_id }, class: c.alerts && c.alerts.length ? "has-alert" : null },
      h("td", h("a", { href: `#/agent?call=${encodeURIComponent(c.call_id)}` }, c.call_id)),
      h("td", c.caller || "—"),
      h("td", mmss(c.seconds)),
      h("td", zh.dialect(labelOf(c.dialect))),
      h("td", zh.intent(labelOf(c.intent))),
      h("td", h("span.emotion", { dataset: { label: labelOf(c.emotion) || "" } }, zh.emotion(labelOf(c.emotion)))),
      h("td", (c.alerts || []).length
        ? (c.alerts || []).map((a) => h("span.chip.alert-chip", zh.alert(a.kind || a))) : h("span.muted", "无")),
    ))));
}

// -- one call -----------------------------------------------------------------------------------------------------
function callView(container, ctx, callId) {
  const st = {
    seq: -1, finals: [], partials: {}, slots: {}, fresh: new Set(), intent: null, dialect: null, emotions: [],
    cues: [], alerts: [], articles: [], ticket: null, created: null, errors: [], conn: "connecting", closedWhy: "",
    info: null, customer: null, customerNote: "", earlier: [], lastT: 0, absent: [],
  };
  const el = {
    conn: h("span.conn"), head: h("div.call-head"), alerts: h("div.alerts", { role: "alert" }),
    transcript: h("div.transcript"), slots: h("div"), missing: h("div"), intent: h("div"), emotion: h("div"),
    cues: h("div"), suggestions: h("div"), customer: h("div"), ticket: h("div"), errors: h("div.errors"),
  };
  container.append(h("div.agent",
    h("section.card.call-card", el.head, el.conn, el.errors),
    el.alerts,
    h("div.cols",
      h("section.card.col-main", h("h2", "实时转写"), el.transcript),
      h("div.col-side",
        h("section.card#slots-card", h("h2", "关键信息"), el.slots, el.missing),
        h("section.card#intent-card", h("h2", "来电意图"), el.intent, el.cues),
        h("section.card#emotion-card", h("h2", "情绪走势"), el.emotion),
        h("section.card#kb-card", h("h2", "知识库建议"), el.suggestions))),
    h("div.cols",
      h("section.card#customer-card", h("h2", "客户信息与历史工单"), el.customer),
      h("section.card#ticket-card", h("h2", "工单"), el.ticket))));

  let ws = null, stopped = false, frame = 0, retry = null;
  const render = () => {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = 0; draw(st, el, ctx, callId); });
  };

  function connect() {
    st.conn = "connecting";
    render();
    const url = wsUrl(`/stream/${encodeURIComponent(callId)}/watch?key=${encodeURIComponent(ctx.key)}`);
    ws = new WebSocket(url);
    ws.onopen = () => { st.conn = "open"; render(); };
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch { return; }
      if (typeof ev.seq === "number" && ev.type !== "error") {
        if (ev.seq <= st.seq) return; // replayed after a reconnect: already shown
        st.seq = ev.seq;
      }
      apply(st, ev, ctx, render);
      render();
    };
    ws.onclose = (e) => {
      if (stopped) return;
      st.conn = "closed";
      st.closedWhy = e.reason || (e.code === 1000 ? "" : `代码 ${e.code}`);
      render();
    };
    ws.onerror = () => { st.conn = "error"; render(); };
  }
  el.conn.addEventListener("click", (ev) => {
    if (ev.target.matches("button.reconnect")) connect();
  });

  loadCallInfo(st, ctx, callId, render);
  api("/readyz", { key: null }).then((r) => { st.absent = r.absent || []; render(); }).catch(() => {});
  connect();
  render();
  return () => {
    stopped = true;
    clearTimeout(retry);
    if (frame) cancelAnimationFrame(frame);
    if (ws) ws.close(1000);
  };
}

async function loadCallInfo(st, ctx, callId, render) {
  try {
    const calls = liveList(await api("/live"));
    st.info = calls.find((c) => c.call_id === callId) || null;
  } catch (e) {
    st.errors.push(e.status === 404 ? `实时通话列表不可用（${e.message}）` : explain(e));
  }
  render();
  const phone = st.info && st.info.caller;
  if (st.info && st.info.customer) { st.customer = st.info.customer; loadEarlier(st, render); return; }
  if (!phone) { st.customerNote = "来电号码未知：挂机后随工单显示客户信息。"; render(); return; }
  if (isMasked(phone)) { st.customerNote = `号码 ${phone} 已按角色脱敏：客户档案随工单显示。`; render(); return; }
  try {
    st.customer = await api(`/customers/${encodeURIComponent(phone)}`);
    loadEarlier(st, render);
  } catch (e) {
    st.customerNote = e.status === 404 ? `号码 ${phone} 没有客户档案（新客户）。` : explain(e);
  }
  render();
}

async function loadEarlier(st, render) {
  const ids = ((st.customer && st.customer.recent_ticket_ids) || []).slice(0, 5);
  const got = [];
  for (const id of ids) {
    try { got.push(await api(`/tickets/${encodeURIComponent(id)}`)); } catch { got.push({ id, missing: true }); }
  }
  st.earlier = got;
  render();
}

function apply(st, ev, ctx, render) {
  st.lastT = Math.max(st.lastT, ev.end || ev.start || 0);
  switch (ev.type) {
    case "ready": st.conn = "open"; break;
    case "partial": st.partials[ev.channel] = { start: ev.start, text: ev.text }; break;
    case "final":
      delete st.partials[ev.channel];
      st.finals.push({ channel: ev.channel, start: ev.start, end: ev.end, text: ev.text, segment: ev.segment });
      st.finals.sort((a, b) => a.start - b.start);
      break;
    case "dialect": st.dialect = ev; break;
    case "slots":
      Object.assign(st.slots, ev.slots || {});
      st.fresh = new Set(Array.isArray(ev.new) ? ev.new : Object.keys(ev.new || {}));
      break;
    case "intent": st.intent = ev; break;
    case "emotion": st.emotions.push(ev); break;
    case "cue": if (!st.cues.includes(ev.cue)) st.cues.push(ev.cue); break;
    case "alert": st.alerts.push(ev); break;
    case "suggestion": st.articles = ev.articles || []; break;
    case "ticket":
      st.ticket = ev.ticket; st.created = ev.created;
      if (ev.ticket && ev.ticket.customer && !st.customer) { st.customer = ev.ticket.customer; loadEarlier(st, render); }
      break;
    case "error": st.errors.push(ev.error); break;
    default: break;
  }
}

// -- drawing ------------------------------------------------------------------------------------------------------
function draw(st, el, ctx, callId) {
  const info = st.info || {};
  el.head.replaceChildren(
    h("h2", `通话 ${callId}`),
    h("div.meta",
      h("span", `来电：${info.caller || (st.ticket && st.ticket.caller) || "未知"}`),
      h("span#dialect", `方言：${st.dialect ? `${zh.dialect(st.dialect.label)} ${pct(st.dialect.confidence)}${st.dialect.sure ? "" : "（待确认）"}`
        : st.absent.includes("dialect") ? "方言模型未部署" : "识别中"}`),
      h("span", `通话时长：${mmss(st.lastT)}`)));
  const connText = { connecting: "正在连接……", open: st.ticket ? "通话已结束，工单已生成" : "实时接收中",
                     closed: st.ticket ? "通话已结束" : `连接已断开${st.closedWhy ? `（${st.closedWhy}）` : ""}`,
                     error: "连接出错" }[st.conn];
  el.conn.replaceChildren(h("span", { class: `state-${st.conn}` }, connText),
    ...(st.conn === "closed" && !st.ticket ? [h("button.reconnect", { type: "button" }, "重新连接")] : []));
  el.errors.replaceChildren(...st.errors.map((e) => h("p.error", e)));

  el.alerts.replaceChildren(...st.alerts.map((a) => h("div.alert", { dataset: { kind: a.kind } },
    h("strong", zh.alert(a.kind)), h("span", a.message || ""), h("span.when", `${mmss(a.start)}`))));

  const lines = st.finals.map((s) => line(s, false));
  for (const [ch, p] of Object.entries(st.partials)) lines.push(line({ channel: ch, start: p.start, text: p.text }, true));
  const stick = el.transcript.scrollTop + el.transcript.clientHeight >= el.transcript.scrollHeight - 20;
  el.transcript.replaceChildren(...(lines.length ? lines : [h("p.muted", "等待双方说话……")]));
  if (stick) el.transcript.scrollTop = el.transcript.scrollHeight;

  el.slots.replaceChildren(h("dl.slots", SLOT_ORDER.map((k) => [
    h("dt", zh.slot(k)),
    h("dd", { dataset: { slot: k }, class: st.slots[k] ? (st.fresh.has(k) ? "filled fresh" : "filled") : "empty" },
      st.slots[k] || "—"),
  ])));
  const missing = missingSlots(st, ctx);
  el.missing.replaceChildren(missing === null ? h("p.muted", "意图明确后列出还需询问的信息。")
    : missing.length ? h("div.missing", h("strong", "还需询问："), missing.map((s) => h("span.chip.ask", zh.slot(s))))
      : h("p.ok", "所需信息已齐全。"));

  const it = st.intent;
  el.intent.replaceChildren(it ? h("p.intent",
    h("strong", zh.intent(it.intent)), ` ${pct(it.confidence)} `, it.is_complaint ? h("span.chip.complaint", "投诉") : null)
    : h("p.muted", "识别中……"));
  el.cues.replaceChildren(st.cues.length ? h("div", "投诉线索：", st.cues.map((c) => h("span.chip", c))) : "");

  const last = st.emotions[st.emotions.length - 1];
  el.emotion.replaceChildren(
    h("p", "当前情绪：", h("span.emotion#emotion-now", { dataset: { label: last ? last.label : "" } },
      last ? `${zh.emotion(last.label)} ${pct(last.confidence)}` : "—")),
    st.emotions.length || !st.absent.includes("emotion") ? emotionTimeline(st.emotions)
      : h("p.note", "情绪模型未部署（见 GET /readyz）：本通话没有情绪读数。"),
    h("div.legend", Object.keys(LABELS.emotions).map((k) => h("span", h("i", { dataset: { label: k } }), zh.emotion(k)))));

  el.suggestions.replaceChildren(...(st.articles.length ? st.articles.map((a) => h("article.kb",
    h("h3", a.title || a.id), h("p", a.snippet || ""), h("small.muted", `相关度 ${Number(a.score || 0).toFixed(2)} · ${a.id}`)))
    : [h("p.muted", "识别出意图或投诉线索后推荐知识库文章。")]));

  drawCustomer(st, el.customer);
  drawTicket(st, el.ticket, ctx, missing);
}

function line(s, partial) {
  return h("div", { class: `line ${s.channel}${partial ? " partial" : ""}`, dataset: { channel: s.channel } },
    h("span.who", zh.speaker(s.channel)), h("span.t", mmss(s.start)), h("span.text", s.text));
}

function missingSlots(st, ctx) {
  if (st.ticket) return st.ticket.missing_slots || [];
  if (!st.intent) return null;
  const rule = ctx.policy && ctx.policy.intents && ctx.policy.intents[st.intent.intent];
  if (!rule) return [];
  return rule.required_slots.filter((s) => !st.slots[s]);
}

function drawCustomer(st, box) {
  const c = st.customer;
  if (!c) { box.replaceChildren(h("p.muted", st.customerNote || "正在查询客户档案……")); return; }
  box.replaceChildren(
    h("dl.profile",
      h("dt", "姓名"), h("dd", c.name || "—"), h("dt", "号码"), h("dd", c.phone || "—"),
      h("dt", "会员等级"), h("dd", c.vip_level ? `VIP ${c.vip_level}` : "普通"),
      h("dt", "地区"), h("dd", c.region || "—"),
      h("dt", "历史工单"), h("dd", `${c.ticket_count} 张（投诉 ${c.complaint_count} 张）`)),
    st.earlier.length ? h("ul.earlier", st.earlier.map((t) => h("li", t.missing ? `${t.id}（无法读取）`
      : [h("code", t.id), ` ${clock(t.created_at)} ${zh.intent(t.intent)} · ${zh.status(t.status)} · ${t.priority}`]))) : null);
}

function prio(a, b) { return [a, b].filter(Boolean).sort()[0]; } // "P1" < "P2": the more urgent

function drawTicket(st, box, ctx, missing) {
  const t = st.ticket;
  if (t) {
    const due = t.sla && t.sla.due_at ? (new Date(t.sla.due_at) - Date.now()) / 1000 : null;
    box.replaceChildren(h("div.final-ticket#final-ticket", { dataset: { ticket: t.id } },
      h("p.badge", st.created === false ? "工单已存在（同一通话）" : "工单已创建"),
      h("dl.kv",
        h("dt", "工单号"), h("dd", h("code", t.id)),
        h("dt", "意图"), h("dd#ticket-intent", zh.intent(t.intent)),
        h("dt", "优先级"), h("dd", h("span", { class: `prio ${t.priority}` }, t.priority)),
        h("dt", "队列"), h("dd", `${zh.queue(t.queue)} / ${t.skill_group}`),
        h("dt", "状态"), h("dd", zh.status(t.status)),
        h("dt", "处理时限"), h("dd", due === null ? "—" : h("span", { class: due < 0 ? "overdue" : "" }, duration(due))),
        h("dt", "待补信息"), h("dd", (t.missing_slots || []).map(zh.slot).join("、") || "无"),
        h("dt", "摘要"), h("dd.summary", t.summary))));
    return;
  }
  const it = st.intent;
  if (!it) { box.replaceChildren(h("p.muted", "通话结束时自动生成工单；识别出意图后在此预览。")); return; }
  const rule = (ctx.policy && ctx.policy.intents && ctx.policy.intents[it.intent]) || {};
  const complaint = it.is_complaint;
  const queue = complaint ? (ctx.policy && ctx.policy.complaint_queue) || rule.queue : rule.queue;
  const priority = complaint ? prio(rule.priority, ctx.policy && ctx.policy.complaint_min_priority) : rule.priority;
  const said = st.finals.filter((s) => s.channel !== "agent").map((s) => s.text).join(" ");
  const slots = SLOT_ORDER.filter((k) => st.slots[k]).map((k) => `${zh.slot(k)}${st.slots[k]}`).join("，");
  box.replaceChildren(h("div.preview#ticket-preview",
    h("p.badge.muted", "预览（按策略估算，挂机后以正式工单为准）"),
    h("dl.kv",
      h("dt", "意图"), h("dd", zh.intent(it.intent)),
      h("dt", "起始优先级"), h("dd", priority ? h("span", { class: `prio ${priority}` }, priority) : "—"),
      h("dt", "队列"), h("dd", `${zh.queue(queue)}${rule.skill ? ` / ${rule.skill}` : ""}`),
      h("dt", "待补信息"), h("dd", (missing || []).map(zh.slot).join("、") || "无"),
      h("dt", "摘要"), h("dd.summary", `${zh.intent(it.intent)}${complaint ? "投诉" : ""}${slots ? `（${slots}）` : ""}：${said.slice(0, 80) || "—"}`))));
}
