import { createHash } from 'node:crypto';
import { ANOMALY_BODY, ANOMALY_SCRIPT, ANOMALY_STYLE } from './anomaly-page';
import { CONDITION_BODY, CONDITION_SCRIPT, CONDITION_STYLE } from './condition-page';
import { DOM_HELPERS } from './dom-helpers';

/*
 * The dashboard page: one HTML document with its CSS and JS inline, so it needs no build step and no network
 * (no CDN, no web fonts). The script polls the JSON APIs every second and builds the DOM with textContent only,
 * so frame ids and labels are never parsed as HTML. It is kept free of template literals so it can live in
 * this TypeScript string as is.
 */

const STYLE = `
:root { --bg: #0f1419; --panel: #171e26; --line: #263140; --text: #d8dee6; --muted: #8b97a6; --accent: #5fb3f9; --bad: #ff6b6b; --ok: #4cc38a; --warn: #f0b429; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 16px; padding: 12px 20px; border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 13px; margin: 0 0 10px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); font-weight: 600; }
h2.spaced { margin-top: 16px; }
.model { font-weight: 600; color: var(--accent); }
.muted { color: var(--muted); }
#status { margin-left: auto; font-size: 12px; }
#status.down { color: var(--bad); }
input { background: var(--bg); color: var(--text); border: 1px solid var(--line); border-radius: 4px; padding: 2px 6px; margin: 0 0 8px 6px; }
#token-field input { margin-bottom: 0; }
main { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; padding: 14px 20px; }
.cards { grid-column: 1 / -1; display: grid; grid-template-columns: repeat(6, minmax(0, 1fr)); gap: 14px; }
.card, .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card .value { font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .sub { font-size: 12px; color: var(--muted); }
.wide { grid-column: 1 / -1; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
td.num, th.num { text-align: right; }
/* One share per expert: wrapped, or a package of many experts widens the page past the viewport. */
#windows td:last-child { white-space: normal; }
#decisions-panel { max-height: 620px; overflow: auto; }
#decisions img, .thumb-none { width: 40px; height: 40px; image-rendering: pixelated; border-radius: 3px; background: #000; display: block; }
.thumb-none { background: var(--line); }
tr.rejected td { color: var(--bad); }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 12px; color: #0f1419; font-weight: 600; }
.alarm { padding: 6px 8px; border-left: 3px solid var(--bad); margin-bottom: 6px; background: rgba(255, 107, 107, .08); }
.none { color: var(--ok); }
.notice { padding: 6px 8px; border-left: 3px solid var(--warn); margin-bottom: 6px; }
ul { list-style: none; margin: 0; padding: 0; }
#alarm-history li { font-size: 12px; color: var(--muted); }
.legend { display: flex; flex-wrap: wrap; gap: 12px; font-size: 12px; margin-top: 6px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
.share { display: flex; align-items: center; gap: 8px; font-size: 12px; margin-top: 4px; }
.share .bar { height: 8px; border-radius: 4px; }
svg text { fill: var(--muted); font-size: 11px; }
svg line { stroke: var(--line); }
`;

const SCRIPT = `
(function () {
  'use strict';
${DOM_HELPERS}  var COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#b07aa1', '#76b7b2', '#edc948', '#ff9da7', '#9c755f', '#bab0ac'];
  var NO_EXPERT = '#5c6776';
  var rows = new Map();

  // The page's one token field, shown by a refused request (dom-helpers.ts): typed once, kept for this tab.
  $('token').addEventListener('change', function () {
    try { sessionStorage.setItem(TOKEN_KEY, $('token').value); } catch (e) { /* storage off: asked again */ }
    $('token').value = '';
    $('token-field').hidden = true;
    delete $('token-field').dataset.refused;
  });

  function color(expert) { return COLORS[expert % COLORS.length]; }
  function ms(us) { return (us / 1000).toFixed(2) + ' ms'; }

  // An anomaly package's early-exit threshold is often the factory's -1e9 "never": the anomaly threshold is the one
  // an operator moves, with the share of good frames it flags (both in the snapshot; server.ts adds the early exit in words).
  function thresholds(s) {
    if (s.anomalyThreshold === undefined) return 'threshold ' + s.settings.threshold;
    var rate = s.falseAlarmRate === undefined ? '' : ' (false-alarm rate ' + +(s.falseAlarmRate * 100).toPrecision(3) + ' %)';
    return 'anomaly threshold ' + +s.anomalyThreshold.toPrecision(4) + rate + ' \\u00b7 ' + s.earlyExit;
  }

  function renderSnapshot(s) {
    $('model-name').textContent = s.model.name;
    $('model-version').textContent = s.model.version;
    $('providers').textContent = 'on ' + Array.from(new Set(Object.values(s.providers))).join(', ') + ' \\u00b7 up ' + Math.round(s.uptimeS) + ' s';
    $('fps').textContent = s.framesPerSecond.toFixed(1);
    $('early-exit').textContent = pct(s.earlyExitRate);
    $('threshold').textContent = 'since the current model \\u00b7 ' + thresholds(s);
    $('p50').textContent = s.latencyUs ? ms(s.latencyUs.p50) : '\\u2013';
    $('p99').textContent = (s.latencyUs ? 'p99 ' + ms(s.latencyUs.p99) : 'p99 \\u2013') + ' \\u00b7 since the current model';
    $('outbox').textContent = s.outboxDepth === null ? 'no MQTT' : s.outboxDepth;
    $('outbox-sub').textContent = 'waiting for the broker' + (s.outboxDropped ? ' \\u00b7 ' + s.outboxDropped + ' dropped (outbox full)' : '');
    $('decided').textContent = s.totals.decided;
    $('totals').textContent = 'of ' + s.totals.ingested + ' in \\u00b7 ' + s.totals.rejected + ' rejected \\u00b7 ' + s.totals.dropped + ' dropped';
    var raised = s.alarms.length + s.conditionAlarms.length + s.faults.length;
    $('alarm-count').textContent = raised;
    $('alarm-count').className = 'value ' + (raised ? '' : 'none');

    var body = $('sources').tBodies[0];
    body.replaceChildren();
    s.sources.forEach(function (src) {
      var tr = el('tr');
      tr.appendChild(el('td', '', src.name));
      tr.appendChild(el('td', '', src.kind));
      ['ingested', 'decided', 'rejected', 'dropped', 'pending', 'errors'].forEach(function (k) { tr.appendChild(el('td', 'num', src[k])); });
      var last = el('td', 'muted', src.lastError ? time(src.lastError.at) + ' ' + src.lastError.code : '');
      if (src.lastError) last.title = src.lastError.message;
      tr.appendChild(last);
      body.appendChild(tr);
    });

    // The same figures over both labelled spans, side by side: never one span's shares beside another's rate.
    var spans = $('windows').tBodies[0];
    spans.replaceChildren();
    [s.windows.sinceStart, s.windows.sinceModel].forEach(function (w) {
      var tr = el('tr');
      tr.appendChild(el('td', '', w.label + (w.model ? ' (' + w.model.version + ')' : '')));
      tr.appendChild(el('td', 'muted', time(w.since)));
      tr.appendChild(el('td', 'num', w.decided));
      tr.appendChild(el('td', 'num', pct(w.earlyExitRate)));
      tr.appendChild(el('td', 'num', w.latencyUs ? ms(w.latencyUs.p50) + ' / ' + ms(w.latencyUs.p99) : '\\u2013'));
      tr.appendChild(el('td', '', w.routed === 0 ? 'none routed' : w.expertShares.map(function (x, i) { return '#' + i + ' ' + pct(x); }).join('  ')));
      spans.appendChild(tr);
    });

    var shares = $('shares');
    shares.replaceChildren();
    s.expertShares.forEach(function (share, i) {
      var line = el('div', 'share');
      line.appendChild(el('span', '', 'expert ' + i));
      var bar = el('span', 'bar');
      bar.style.width = Math.max(2, share * 300) + 'px';
      bar.style.background = color(i);
      line.appendChild(bar);
      line.appendChild(el('span', 'muted', pct(share)));
      shares.appendChild(line);
    });
  }

  function thumb(entry) {
    if (!entry.thumbnail) return el('span', 'thumb-none');
    var img = el('img');
    img.src = entry.thumbnail;
    img.alt = entry.frameId;
    return img;
  }

  function row(e) {
    var tr = el('tr', e.status === 'rejected' ? 'rejected' : '');
    tr.dataset.seq = e.seq;
    tr.dataset.frameId = e.frameId;
    tr.dataset.status = e.status;
    var cell = el('td', 'thumb');
    cell.appendChild(thumb(e));
    tr.appendChild(cell);
    tr.appendChild(el('td', 'frame', e.frameId));
    tr.appendChild(el('td', 'source muted', e.source));
    if (e.status === 'decided') {
      tr.appendChild(el('td', 'label', e.label));
      tr.appendChild(el('td', 'score num', e.score.toFixed(3)));
      var route = el('td', 'route');
      var badge = el('span', 'badge', e.earlyExit ? 'early exit' : e.expert === null ? 'base only' : 'expert ' + e.expert);
      badge.style.background = e.expert === null ? NO_EXPERT : color(e.expert);
      if (e.expert === null) badge.style.color = '#d8dee6';
      route.appendChild(badge);
      tr.appendChild(route);
      tr.appendChild(el('td', 'num muted', ms(e.latencyUs)));
    } else {
      tr.appendChild(el('td', 'label', 'rejected'));
      tr.appendChild(el('td', 'score num', ''));
      var reason = el('td', 'route', e.error.code);
      reason.title = e.error.message;
      tr.appendChild(reason);
      tr.appendChild(el('td', 'num', ''));
    }
    tr.appendChild(el('td', 'muted', time(e.at)));
    return tr;
  }

  function renderDecisions(list) {
    var body = $('decisions').tBodies[0];
    var keep = new Map();
    list.slice().reverse().forEach(function (e) {
      var tr = rows.get(e.seq);
      if (!tr) tr = row(e);
      else if (e.thumbnail && !tr.querySelector('img')) tr.querySelector('td.thumb').replaceChildren(thumb(e));
      keep.set(e.seq, tr);
      body.appendChild(tr);
    });
    rows.forEach(function (tr, seq) { if (!keep.has(seq)) tr.remove(); });
    rows = keep;
    $('decisions-empty').hidden = list.length > 0;
  }

  function renderUsage(u) {
    var W = 900, H = 190, left = 48, bottom = 20, top = 8; // left: room for a five-digit scale label
    var chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, width: '100%', role: 'img', 'aria-label': 'expert usage over time' });
    var totals = u.buckets.map(function (b) { return b.noExpert + b.experts.reduce(function (a, n) { return a + n; }, 0); });
    var max = Math.max(1, Math.max.apply(null, totals));
    var slot = (W - left) / u.buckets.length, y = function (n) { return (H - bottom - top) * n / max; };
    chart.appendChild(svg('line', { x1: left, x2: W, y1: H - bottom, y2: H - bottom }));
    chart.appendChild(svg('line', { x1: left, x2: W, y1: top, y2: top }));
    var label = svg('text', { x: left - 6, y: top + 10, 'text-anchor': 'end' });
    label.textContent = max;
    chart.appendChild(label);
    u.buckets.forEach(function (b, i) {
      var base = H - bottom;
      var parts = [{ n: b.noExpert, fill: NO_EXPERT, name: 'no expert (early exit)' }].concat(b.experts.map(function (n, e) { return { n: n, fill: color(e), name: 'expert ' + e }; }));
      parts.forEach(function (p) {
        if (!p.n) return;
        var h = y(p.n);
        base -= h;
        var rect = svg('rect', { x: left + i * slot + 1, y: base, width: Math.max(1, slot - 2), height: h, fill: p.fill });
        var tip = svg('title', {});
        tip.textContent = time(b.t) + ' \\u00b7 ' + p.name + ': ' + p.n;
        rect.appendChild(tip);
        chart.appendChild(rect);
      });
    });
    [0, Math.floor(u.buckets.length / 2), u.buckets.length - 1].forEach(function (i, k) {
      var t = svg('text', { x: left + i * slot + (k === 2 ? slot : 0), y: H - 5, 'text-anchor': k === 0 ? 'start' : k === 1 ? 'middle' : 'end' });
      t.textContent = time(u.buckets[i].t);
      chart.appendChild(t);
    });
    $('usage-chart').replaceChildren(chart);
    $('usage-origin').textContent = (u.origin === 'audit' ? 'from the audit log' : 'from the recent decisions') + ', ' + u.bucketMs / 1000 + ' s per bar';

    var legend = $('usage-legend');
    legend.replaceChildren();
    [{ fill: NO_EXPERT, name: 'no expert (early exit)' }].concat(u.buckets[0].experts.map(function (_, e) { return { fill: color(e), name: 'expert ' + e }; })).forEach(function (p) {
      var item = el('span');
      var sw = el('span', 'swatch');
      sw.style.background = p.fill;
      item.appendChild(sw);
      item.appendChild(document.createTextNode(p.name));
      legend.appendChild(item);
    });
  }

  function renderAlarms(a) {
    var list = $('alarms');
    list.replaceChildren();
    if (a.active.length + a.condition.length + a.faults.length === 0) list.appendChild(el('li', 'none', 'no alarm raised'));
    a.faults.forEach(function (fault) {
      var li = el('li', 'alarm');
      li.dataset.code = fault.code;
      li.appendChild(el('strong', '', fault.code + (fault.source ? ' \u00b7 ' + fault.source : '')));
      li.appendChild(el('div', '', fault.message));
      li.appendChild(el('div', 'muted', 'since ' + time(fault.since)));
      list.appendChild(li);
    });
    a.active.forEach(function (alarm) {
      var li = el('li', 'alarm');
      li.appendChild(el('strong', '', alarm.kind.replace(/_/g, ' ')));
      li.appendChild(el('div', '', alarm.message));
      li.appendChild(el('div', 'muted', 'value ' + alarm.value.toFixed(3) + ', bound ' + alarm.bound));
      list.appendChild(li);
    });
    a.condition.forEach(function (alarm) {
      var li = el('li', 'alarm');
      li.dataset.machine = alarm.machine;
      li.appendChild(el('strong', '', alarm.kind.replace(/_/g, ' ') + ' \u00b7 ' + alarm.machine));
      li.appendChild(el('div', '', alarm.message));
      li.appendChild(el('div', 'muted', 'since ' + time(alarm.since)));
      list.appendChild(li);
    });
    // What the node could not keep, or moved aside: no alarm to clear, yet an operator must see it.
    a.notices.forEach(function (n) {
      var li = el('li', 'notice');
      li.appendChild(el('strong', '', n.part));
      li.appendChild(el('div', '', n.text));
      list.appendChild(li);
    });
    var history = $('alarm-history');
    history.replaceChildren();
    a.history.slice(-10).reverse().forEach(function (e) {
      history.appendChild(el('li', '', time(e.ts) + ' \\u00b7 ' + e.kind.replace('alarm_', '') + ' \\u00b7 ' + e.message));
    });
  }

  // 60 bars of a round size that covers the node's uptime (up to 10 min), so a young node fills the chart.
  var BAR_SECONDS = [1, 2, 5, 10];
  var barSeconds = 1;

  function poll() {
    var usage = 'windowS=' + 60 * barSeconds + '&buckets=60';
    Promise.all([get('/api/snapshot'), get('/api/decisions?limit=50'), get('/api/usage?' + usage), get('/api/alarms')])
      .then(function (r) {
        barSeconds = BAR_SECONDS.find(function (s) { return s * 60 >= r[0].uptimeS; }) || BAR_SECONDS[BAR_SECONDS.length - 1];
        renderSnapshot(r[0]);
        renderDecisions(r[1].decisions);
        renderUsage(r[2]);
        renderAlarms(r[3]);
        $('status').textContent = 'live \\u00b7 ' + time(Date.now());
        $('status').className = '';
      })
      .catch(function (err) {
        $('status').textContent = (err.unauthorised ? '' : 'node unreachable: ') + err.message;
        $('status').className = 'down';
      })
      .then(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
`;

const BODY = `
<header>
  <h1>sgmoe-edge</h1>
  <span class="model"><span id="model-name">&hellip;</span> <span id="model-version"></span></span>
  <span id="providers" class="muted"></span>
  <span id="status">connecting&hellip;</span>
  <label id="token-field" hidden>operator token<input id="token" type="password" autocomplete="off" placeholder="asked once per tab"></label>
</header>
<main>
  <section class="cards">
    <div class="card"><h2>Frames / s</h2><div class="value" id="fps">&ndash;</div><div class="sub">over the last 1000 decisions</div></div>
    <div class="card"><h2>Decided</h2><div class="value" id="decided">&ndash;</div><div class="sub" id="totals"></div></div>
    <div class="card"><h2>Early exit</h2><div class="value" id="early-exit">&ndash;</div><div class="sub" id="threshold"></div></div>
    <div class="card"><h2>Latency p50</h2><div class="value" id="p50">&ndash;</div><div class="sub" id="p99"></div></div>
    <div class="card"><h2>Outbox</h2><div class="value" id="outbox">&ndash;</div><div class="sub" id="outbox-sub">waiting for the broker</div></div>
    <div class="card"><h2>Alarms</h2><div class="value" id="alarm-count">&ndash;</div><div class="sub">routing health and condition</div></div>
  </section>
${ANOMALY_BODY}
  <section class="panel wide">
    <h2>Expert usage over time <span class="muted" id="usage-origin"></span></h2>
    <div id="usage-chart"></div>
    <div class="legend" id="usage-legend"></div>
  </section>
  <section class="panel">
    <h2>Expert shares <span class="muted">since the current model</span></h2>
    <div id="shares"></div>
    <h2 class="spaced">Alarms</h2>
    <ul id="alarms"></ul>
    <ul id="alarm-history"></ul>
  </section>
  <section class="panel wide">
    <h2>Since start and since the current model</h2>
    <table id="windows">
      <thead><tr><th>span</th><th>since</th><th class="num">decided</th><th class="num">early exit</th><th class="num">latency p50 / p99</th><th>expert shares</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section class="panel">
    <h2>Sources</h2>
    <table id="sources">
      <thead><tr><th>source</th><th>kind</th><th class="num">ingested</th><th class="num">decided</th><th class="num">rejected</th><th class="num">dropped</th><th class="num">pending</th><th class="num">errors</th><th>last error</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
${CONDITION_BODY}
  <section class="panel wide" id="decisions-panel">
    <h2>Live decisions</h2>
    <table id="decisions">
      <thead><tr><th></th><th>frame</th><th>source</th><th>label</th><th class="num">score</th><th>route</th><th class="num">latency</th><th>time</th></tr></thead>
      <tbody></tbody>
    </table>
    <p class="muted" id="decisions-empty">no decision yet</p>
  </section>
</main>
`;

const hash = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>sgmoe-edge dashboard</title>
<style>${STYLE}${ANOMALY_STYLE}${CONDITION_STYLE}</style>
</head>
<body>${BODY}<script>${SCRIPT}</script><script>${ANOMALY_SCRIPT}</script><script>${CONDITION_SCRIPT}</script>
</body>
</html>
`;

/** Only this page's own script and style may run, and it may talk to this server only. */
export const PAGE_CSP = [
  "default-src 'none'",
  `script-src ${hash(SCRIPT)} ${hash(ANOMALY_SCRIPT)} ${hash(CONDITION_SCRIPT)}`,
  `style-src ${hash(STYLE + ANOMALY_STYLE + CONDITION_STYLE)}`,
  'img-src data:',
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
