/*
 * The condition panel of the dashboard page (condition packages: predictive maintenance): per machine, the latest
 * window's spectrum and a condition and regime timeline. Its own script polls /api/condition and stays hidden for
 * packages of other tasks. Same rules as page.ts: DOM built with textContent only, no template literals inside.
 */
import { DOM_HELPERS } from './dom-helpers';

export const CONDITION_STYLE = `
#condition-panel[hidden] { display: none; }
.machine { border-top: 1px solid var(--line); padding: 10px 0; }
.machine:first-of-type { border-top: 0; }
.machine-head { display: flex; flex-wrap: wrap; gap: 14px; align-items: baseline; margin-bottom: 6px; }
.machine-head .name { font-weight: 600; }
.machine-head .unknown { color: var(--bad); font-weight: 600; }
.machine-body { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); gap: 14px; }
svg .trace { fill: none; stroke-width: 1.2; }
`;

export const CONDITION_BODY = `
  <section class="panel wide" id="condition-panel" hidden>
    <h2>Machines <span class="muted">latest spectrum, condition and regime per source</span></h2>
    <div id="machines"></div>
    <div class="legend" id="condition-legend"></div>
  </section>
`;

export const CONDITION_SCRIPT = `
(function () {
  'use strict';
${DOM_HELPERS}  var CONDITION = ['#59a14f', '#e15759', '#f28e2b', '#b07aa1', '#edc948', '#76b7b2', '#ff9da7', '#9c755f'];
  // Regimes in blues, teals and sands, so a regime colour is never taken for a condition.
  var REGIME = ['#4e79a7', '#76b7b2', '#edc948', '#9c755f', '#a0cbe8', '#86bcb6', '#d7b5a6', '#bab0ac'];
  var UNKNOWN = '#ff6b6b';
  var AXES = ['#5fb3f9', '#f2c14e', '#b8e07a', '#e58fd8'];

  function text(x, y, anchor, value) {
    var t = svg('text', { x: x, y: y, 'text-anchor': anchor });
    t.textContent = value;
    return t;
  }
  // Healthy-like labels green; the others in a fixed order, so a colour always means the same condition.
  function conditionColor(labels, label) {
    var faults = labels.filter(function (l) { return l !== 'healthy'; });
    return label === 'healthy' ? CONDITION[0] : CONDITION[1 + (faults.indexOf(label) % (CONDITION.length - 1))];
  }
  function regimeName(s, e) { return e === null ? 'no regime' : 'expert ' + e + (s.regimes[e] ? ' (' + s.regimes[e] + ' rpm)' : ''); }

  function spectrumChart(sp) {
    var W = 520, H = 170, left = 46, bottom = 18, top = 6;
    var chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, width: '100%', role: 'img', 'aria-label': 'latest spectrum', 'class': 'spectrum' });
    var all = [].concat.apply([], sp.db);
    var hi = Math.ceil(Math.max.apply(null, all) / 10) * 10, lo = Math.max(hi - 80, Math.floor(Math.min.apply(null, all) / 10) * 10);
    var n = sp.db[0].length;
    var x = function (i) { return left + (W - left) * i / (n - 1); };
    var y = function (v) { return top + (H - bottom - top) * (hi - Math.max(lo, v)) / (hi - lo); };
    chart.appendChild(svg('line', { x1: left, x2: W, y1: H - bottom, y2: H - bottom }));
    chart.appendChild(text(left - 4, top + 9, 'end', hi + ' dB'));
    chart.appendChild(text(left - 4, H - bottom, 'end', lo));
    chart.appendChild(text(left, H - 4, 'start', '0 Hz'));
    chart.appendChild(text(W, H - 4, 'end', Math.round(sp.hzPerPoint * n / 1000 * 10) / 10 + ' kHz'));
    sp.db.forEach(function (line, c) {
      var d = line.map(function (v, i) { return (i ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(v).toFixed(1); }).join(' ');
      chart.appendChild(svg('path', { d: d, 'class': 'trace', stroke: AXES[c % AXES.length], 'data-channel': c }, 'channel ' + c));
    });
    return chart;
  }

  function timelineChart(s, m) {
    var W = 760, H = 74, left = 70, row = 22, top = 4;
    var chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, width: '100%', role: 'img', 'aria-label': 'condition and regime timeline', 'class': 'timeline' });
    chart.appendChild(text(left - 6, top + 15, 'end', 'condition'));
    chart.appendChild(text(left - 6, top + row + 19, 'end', 'regime'));
    var pts = m.timeline, slot = (W - left) / Math.max(pts.length, 60);
    pts.forEach(function (p, i) {
      var x = left + i * slot, w = Math.max(1, slot - 1);
      chart.appendChild(svg('rect', { x: x, y: top, width: w, height: row - 2, fill: conditionColor(s.labels, p.condition), 'class': 'condition', 'data-condition': p.condition }, time(p.at) + ' \\u00b7 ' + p.condition + ' ' + p.score.toFixed(3)));
      chart.appendChild(svg('rect', { x: x, y: top + row + 4, width: w, height: row - 2, fill: p.unknownRegime ? UNKNOWN : REGIME[(p.regimeExpert || 0) % REGIME.length], 'class': 'regime', 'data-regime': p.unknownRegime ? 'unknown' : p.regimeExpert }, time(p.at) + ' \\u00b7 ' + (p.unknownRegime ? 'unknown regime (nearest ' + regimeName(s, p.regimeExpert) + ')' : regimeName(s, p.regimeExpert))));
    });
    chart.appendChild(text(left, H - 2, 'start', time(pts[0].at)));
    chart.appendChild(text(W, H - 2, 'end', time(pts[pts.length - 1].at)));
    return chart;
  }

  function render(s) {
    $('condition-panel').hidden = !s.condition;
    if (!s.condition) return;
    var list = $('machines');
    list.replaceChildren();
    s.machines.forEach(function (m) {
      var box = el('div', 'machine');
      box.dataset.source = m.source;
      var head = el('div', 'machine-head');
      head.appendChild(el('span', 'name', m.source));
      head.appendChild(el('span', 'now-condition', m.latest.condition));
      head.appendChild(el('span', m.latest.unknownRegime ? 'now-regime unknown' : 'now-regime muted', m.latest.unknownRegime ? 'unknown regime' : regimeName(s, m.latest.regimeExpert)));
      head.appendChild(el('span', 'muted', m.timeline.length + ' windows \\u00b7 last ' + time(m.latest.at)));
      box.appendChild(head);
      var body = el('div', 'machine-body');
      var left = el('div');
      if (m.spectrum) left.appendChild(spectrumChart(m.spectrum));
      else left.appendChild(el('p', 'muted', 'no spectrum (the window kept no samples)'));
      body.appendChild(left);
      var right = el('div');
      right.appendChild(timelineChart(s, m));
      body.appendChild(right);
      box.appendChild(body);
      list.appendChild(box);
    });
    if (!s.machines.length) list.appendChild(el('p', 'muted', 'no window decided yet'));
    var legend = $('condition-legend');
    legend.replaceChildren();
    legend.appendChild(el('span', 'muted', 'condition:'));
    s.labels.map(function (l) { return { fill: conditionColor(s.labels, l), name: l }; })
      .concat([{ label: 'regime:' }])
      .concat(s.regimes.map(function (_, e) { return { fill: REGIME[e % REGIME.length], name: regimeName(s, e) }; }))
      .concat([{ fill: UNKNOWN, name: 'unknown regime' }, { label: 'spectrum:' }])
      .concat(s.machines.length && s.machines[0].spectrum ? s.machines[0].spectrum.db.map(function (_, c) { return { fill: AXES[c % AXES.length], name: 'channel ' + c }; }) : [])
      .forEach(function (p) {
        if (p.label) { legend.appendChild(el('span', 'muted', p.label)); return; }
        var item = el('span');
        var sw = el('span', 'swatch');
        sw.style.background = p.fill;
        item.appendChild(sw);
        item.appendChild(document.createTextNode(p.name));
        legend.appendChild(item);
      });
  }

  function poll() {
    get('/api/condition')
      .then(render)
      .catch(function () { /* the main script reports an unreachable node */ })
      .then(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
`;
