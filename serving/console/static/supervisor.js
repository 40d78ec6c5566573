// The supervisor view: live calls with their emotion and alerts (GET /live every 2 s), the ticket queue with SLA
// timers (time left to sla.due_at and to the next escalation; red when overdue), overdue tickets
// (GET /tickets?overdue=true, checked against due_at here too) and hotspots (GET /analytics/hotspots) as charts.
import { api, explain } from "./api.js";
import { liveList, liveTable } from "./agent.js";
import { barChart } from "./charts.js";
import { clock, duration, h, zh } from "./util.js";

const LIVE_MS = 2000, QUEUE_MS = 10000, HOTSPOT_MS = 60000;
const FINISHED = new Set(["resolved", "closed"]);

export function mount(container, ctx) {
  const el = {
    live: h("div#live-calls", "正在加载……"), queue: h("div#ticket-queue", "正在加载……"),
    overdue: h("div#overdue", "正在加载……"), hotspots: h("div#hotspots", "正在加载……"),
    queueNote: h("p.muted"),
  };
  container.append(h("div.supervisor",
    h("section.card", h("h2", "实时通话"), el.live),
    h("div.cols",
      h("section.card.col-main", h("h2", "工单队列与处理时限"), el.queueNote, h("div.scroll-x", el.queue)),
      h("div.col-side",
        h("section.card", h("h2", "超时工单"), el.overdue),
        h("section.card", h("h2", "今日热点"), el.hotspots)))));

  const timers = [];
  let stopped = false;
  let tickets = [], overdue = null;

  function every(ms, fn) {
    const run = async () => {
      await fn();
      if (!stopped) timers.push(setTimeout(run, ms));
    };
    run();
  }

  every(LIVE_MS, async () => {
    try {
      const calls = liveList(await api("/live"));
      el.live.replaceChildren(calls.length ? liveTable(calls) : h("p.muted", "当前没有进行中的通话。"));
    } catch (e) {
      el.live.replaceChildren(h("p.error", { role: "alert" },
        e.status === 404 ? `实时通话接口尚不可用（GET /live：${e.message}）` : explain(e)));
    }
  });

  every(QUEUE_MS, async () => {
    try {
      const page = await api("/tickets?limit=100");
      tickets = page.tickets.filter((t) => !FINISHED.has(t.status));
      el.queueNote.textContent = `未完结 ${tickets.length} 张（最近 100 张工单中）`;
    } catch (e) {
      tickets = null;
      el.queue.replaceChildren(h("p.error", { role: "alert" }, explain(e)));
    }
    try {
      const page = await api("/tickets?overdue=true&limit=200");
      // the service's answer checked against due_at and the escalations here (a service that does not know the
      // filter answers every ticket)
      overdue = page.tickets.filter(isOverdue);
    } catch (e) {
      overdue = tickets ? tickets.filter(isOverdue) : [];
    }
    draw();
  });

  every(HOTSPOT_MS, async () => {
    try {
      const hs = await api("/analytics/hotspots?window=1d");
      el.hotspots.replaceChildren(hotspots(hs));
    } catch (e) {
      el.hotspots.replaceChildren(h("p.note#hotspots-unavailable", e.status === 404
        ? `热点分析暂不可用（服务尚未提供 GET /analytics/hotspots：${e.message}）` : explain(e)));
    }
  });

  function draw() {
    if (tickets) el.queue.replaceChildren(tickets.length ? queueTable(tickets) : h("p.muted", "队列为空。"));
    if (overdue) el.overdue.replaceChildren(overdue.length ? h("ul.overdue-list", overdue.map((t) => h("li",
      h("code", { title: t.id }, shortId(t.id)), ` ${zh.intent(t.intent)} ${t.priority} `, h("span.overdue", duration(secondsLeft(t.sla.due_at))))))
      : h("p.ok", "没有超时工单。"));
  }
  const tick = setInterval(() => { if (!stopped) draw(); }, 1000);

  return () => { stopped = true; clearInterval(tick); timers.forEach(clearTimeout); };
}

// "T-01a23aee9fa48369069c0dd24da1a206" -> "T-…24da1a206" (the full id in the cell's title)
function shortId(id) { return id && id.length > 14 ? `${id.slice(0, 2)}…${id.slice(-9)}` : id; }

function secondsLeft(iso) { return (new Date(iso) - Date.now()) / 1000; }

function isOverdue(t) {
  if (FINISHED.has(t.status) || !t.sla) return false;
  if (secondsLeft(t.sla.due_at) < 0) return true;
  return t.status === "escalated" || (t.sla.escalations || []).some((e) => secondsLeft(e.at) < 0);
}

function nextEscalation(t) {
  return (t.sla && t.sla.escalations || []).find((e) => secondsLeft(e.at) >= 0) || null;
}

function queueTable(tickets) {
  return h("table.queue",
    h("thead", h("tr", ["工单号", "创建时间", "来电号码", "意图", "优先级", "队列", "状态", "剩余时限", "下次升级"]
      .map((t) => h("th", t)))),
    h("tbody", tickets.map((t) => {
      const left = secondsLeft(t.sla.due_at);
      const next = nextEscalation(t);
      const late = isOverdue(t);
      return h("tr", { dataset: { ticket: t.id }, class: late ? "overdue-row" : null },
        h("td", h("code", { title: t.id }, shortId(t.id))), h("td", clock(t.created_at)), h("td", t.caller || "—"),
        h("td", zh.intent(t.intent)), h("td", h("span", { class: `prio ${t.priority}` }, t.priority)),
        h("td", zh.queue(t.queue)), h("td", zh.status(t.status)),
        h("td", { class: left < 0 ? "overdue timer" : "timer" }, duration(left)),
        h("td", next ? `${duration(secondsLeft(next.at))} 后升级至${next.to === "supervisor" ? "班长" : next.to === "director" ? "主管" : next.to}`
          : (t.sla.escalations || []).length ? h("span.overdue", "已过全部升级节点") : "—"));
    })));
}

function hotspots(hs) {
  const counts = hs.counts || {};
  const box = h("div.hotspots", h("p.muted", `时间窗：${hs.window || "1d"}`),
    h("h3", "按意图"), barChart(counts.intent, { labelOf: zh.intent, title: "按意图" }),
    h("h3", "按产品"), barChart(counts.product, { color: "#8e5bd6", title: "按产品" }),
    h("h3", "按地区"), barChart(counts.region, { color: "#1e8e3e", title: "按地区" }));
  if ((hs.alerts || []).length) {
    box.append(h("h3", "告警"), h("ul", hs.alerts.map((a) => h("li", typeof a === "string" ? a
      : `${zh.alert(a.kind) || ""} ${a.message || ""} ${a.count ? `×${a.count}` : ""}`.trim()))));
  }
  if ((hs.repeat_complainants || []).length) {
    box.append(h("h3", "重复投诉客户"), h("ul", hs.repeat_complainants.map((r) => h("li", typeof r === "string" ? r
      : `${r.caller || r.phone || ""} ${r.count ? `${r.count} 次` : ""}`.trim()))));
  }
  return box;
}
