/*
 * The anomaly panel of the dashboard page (anomaly packages): the anomaly rate over time, the latest anomalies with
 * their heatmap over the thumbnail, the recent frames passed as good, and the operator's good/defect verdict on any
 * of them. Its own script polls /api/anomalies and stays hidden for packages of other tasks. Same rules as page.ts:
 * DOM built with textContent only, no template literals inside.
 */
import { DOM_HELPERS } from './dom-helpers';

export const ANOMALY_STYLE = `
.overlay { position: relative; width: 64px; height: 64px; background: #000; border-radius: 3px; }
.overlay img { position: absolute; left: 0; top: 0; width: 64px; height: 64px; image-rendering: pixelated; }
/* The gray heatmap tinted from dark red (low) to yellow (high), over the frame seen through it. */
.overlay img.heat { opacity: .55; filter: sepia(1) saturate(6) hue-rotate(-35deg); }
button.verdict { background: var(--line); color: var(--text); border: 1px solid var(--line); border-radius: 4px; padding: 2px 10px; margin-right: 6px; cursor: pointer; }
button.verdict:hover { border-color: var(--accent); }
td.review.good { color: var(--ok); }
td.review.defect { color: var(--bad); }
.review-tables { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; }
.review-tables > div { overflow-x: auto; }
/* Each table fits its half of the page at 1280 px: cells wrap, and the frame shows its file's base name (title: the id). */
.review-tables th, .review-tables td { white-space: normal; }
.review-tables td.frame { overflow-wrap: break-word; }
td.marks button.verdict { margin: 0 4px 4px 0; }
input.kind { width: 7em; margin: 0; }
`;

export const ANOMALY_BODY = `
  <section class="panel wide" id="anomaly-panel" hidden>
    <h2>Anomaly rate over time <span class="muted" id="anomaly-origin"></span></h2>
    <div id="anomaly-chart"></div>
    <p class="muted spaced">Mark frames good or defect for the next training set.
      <label>operator<input id="reviewer" maxlength="100" placeholder="dashboard"></label></p>
    <div class="review-tables">
      <div>
        <h2>Latest anomalies <span class="muted">&middot; heatmap over the frame</span></h2>
        <table id="anomalies">
          <thead><tr><th></th><th>frame</th><th class="num">score</th><th class="num">threshold</th><th>operator verdict</th><th>mark</th><th>time</th></tr></thead>
          <tbody></tbody>
        </table>
        <p class="muted" id="anomalies-empty">no anomaly yet</p>
        <p class="muted" id="anomalies-more" hidden><span></span> <button type="button" class="verdict">show all</button></p>
      </div>
      <div>
        <h2>Recent frames passed as good <span class="muted">&middot; mark a missed defect</span></h2>
        <table id="passed">
          <thead><tr><th></th><th>frame</th><th class="num">score</th><th class="num">threshold</th><th>operator verdict</th><th>mark</th><th>time</th></tr></thead>
          <tbody></tbody>
        </table>
        <p class="muted" id="passed-empty">no frame passed yet</p>
        <p class="muted" id="passed-more" hidden><span></span> <button type="button" class="verdict">show all</button></p>
      </div>
    </div>
  </section>
`;

export const ANOMALY_SCRIPT = `
(function () {
  'use strict';
${DOM_HELPERS}

  function renderAnomalyRate(r) {
    var W = 900, H = 120, left = 60, bottom = 20, top = 8; // left: room for the scale's widest label, '100.0 %'
    var chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, width: '100%', role: 'img', 'aria-label': 'anomaly rate over time' });
    var rates = r.buckets.map(function (b) { return b.decided ? b.anomalous / b.decided : 0; });
    var max = Math.max(0.01, Math.max.apply(null, rates));
    var slot = (W - left) / r.buckets.length;
    chart.appendChild(svg('line', { x1: left, x2: W, y1: H - bottom, y2: H - bottom }));
    var label = svg('text', { x: left - 6, y: top + 10, 'text-anchor': 'end' });
    label.textContent = pct(max);
    chart.appendChild(label);
    r.buckets.forEach(function (b, i) {
      if (!b.decided) return;
      var h = (H - bottom - top) * rates[i] / max;
      var rect = svg('rect', { x: left + i * slot + 1, y: H - bottom - h, width: Math.max(1, slot - 2), height: Math.max(h, 1), fill: rates[i] > 0 ? '#ff6b6b' : '#263140' });
      rect.dataset.anomalous = b.anomalous;
      rect.dataset.decided = b.decided;
      var tip = svg('title', {});
      tip.textContent = time(b.t) + ' \u00b7 ' + b.anomalous + ' of ' + b.decided + ' anomalous (' + pct(rates[i]) + ')';
      rect.appendChild(tip);
      chart.appendChild(rect);
    });
    $('anomaly-chart').replaceChildren(chart);
    $('anomaly-origin').textContent = (r.origin === 'audit' ? 'from the audit log' : 'from the recent decisions') + ', ' + r.bucketMs / 1000 + ' s per bar';
  }

  function showReview(tr, review) {
    var cell = tr.querySelector('td.review');
    cell.className = 'review' + (review ? ' ' + review.verdict : '');
    cell.textContent = review ? review.verdict + (review.kind && review.kind !== 'defect' ? ' (' + review.kind + ')' : '') + ' \u00b7 ' + review.reviewer : 'not reviewed';
    // Said once, by the answer to the click: this verdict has no pixels, so the export lists it as missing.
    if (review && tr.dataset.noPixels === String(review.id)) cell.textContent += ' \u00b7 no pixels kept: not exported';
    // Said once too: the same image under another frame id was judged otherwise, so neither is exported yet.
    var contradicts = (tr.dataset.contradicts || '').split(' ');
    if (review && contradicts[0] === String(review.id)) cell.textContent += ' \u00b7 the same image is ' + contradicts.slice(1).join(' ') + ': not exported until they agree';
  }

  function sendReview(tr, verdict) {
    var cell = tr.querySelector('td.review');
    var body = { frameId: tr.dataset.frameId, verdict: verdict };
    // The kind is checked by the API (the audit module's one validation): a refused one says why in the verdict cell.
    var kind = tr.querySelector('input.kind').value.trim();
    if (verdict === 'defect' && kind) body.kind = kind;
    if (tr.dataset.sha256) body.inputSha256 = tr.dataset.sha256;
    if ($('reviewer').value) body.reviewer = $('reviewer').value;
    request('/api/review', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      .then(function (r) {
        return r.json().then(function (answer) {
          if (!r.ok) throw new Error(answer.error.message);
          if (answer.bytes === null) tr.dataset.noPixels = String(answer.id);
          if (answer.contradicts.length > 0) {
            tr.dataset.contradicts = answer.id + ' ' + answer.contradicts.map(function (c) { return baseName(c.frameId) + ' judged ' + (c.verdict === 'good' ? 'good' : c.kind) + ' by ' + c.reviewer; }).join(', ');
          }
          showReview(tr, answer);
        });
      })
      .catch(function (err) { cell.textContent = 'not recorded: ' + err.message; });
  }

  // A hot folder's frame id is the file's absolute path and arrival time (path@ms): its file name says which frame.
  // Other ids keep what follows their last slash whole: a camera's (name#session-run@pts) and a recording's
  // (video:PATH@pts) frames differ only in their @pts.
  function baseName(id) {
    var file = /^([\\\\/]|[A-Za-z]:[\\\\/])/.test(id);
    var name = (file ? id.replace(/@\\d+$/, '') : id).split(/[\\\\/]/).pop();
    return name || id;
  }

  function anomalyRow(e, reviewable) {
    var tr = el('tr');
    tr.dataset.frameId = e.frameId;
    if (e.inputSha256) tr.dataset.sha256 = e.inputSha256;
    var view = el('div', 'overlay');
    if (e.thumbnail) { var img = el('img', 'thumb'); img.src = e.thumbnail; img.alt = e.frameId; view.appendChild(img); }
    if (e.anomaly.heatmap) { var heat = el('img', 'heat'); heat.src = e.anomaly.heatmap; heat.alt = 'heatmap of ' + e.frameId; view.appendChild(heat); }
    var cell = el('td', 'view');
    cell.appendChild(view);
    tr.appendChild(cell);
    var frame = el('td', 'frame', baseName(e.frameId));
    frame.title = e.frameId;
    tr.appendChild(frame);
    tr.appendChild(el('td', 'score num', e.anomaly.score.toFixed(3)));
    // Rows seeded after a restart from audit rows older than schema 4 have no threshold.
    tr.appendChild(el('td', 'num muted', e.anomaly.threshold === null ? '\u2013' : e.anomaly.threshold.toFixed(3)));
    tr.appendChild(el('td', 'review', ''));
    var marks = el('td', 'marks');
    if (reviewable) {
      ['good', 'defect'].forEach(function (verdict) {
        var b = el('button', 'verdict', verdict);
        b.type = 'button';
        b.dataset.verdict = verdict;
        b.addEventListener('click', function () { sendReview(tr, verdict); });
        marks.appendChild(b);
      });
      var kind = el('input', 'kind');
      kind.placeholder = 'defect kind';
      kind.setAttribute('aria-label', 'defect kind, sent with defect');
      marks.appendChild(kind);
    } else marks.textContent = 'needs the audit log';
    tr.appendChild(marks);
    tr.appendChild(el('td', 'muted', time(e.at)));
    return tr;
  }

  // One table of reviewable frames (the latest anomalies, or the latest frames passed as good), kept row by row.
  function reviewTable(id) {
    var rowsBySeq = new Map();
    return function (list, reviewable) {
      var body = $(id).tBodies[0];
      var shown = new Set(list.map(function (e) { return e.seq; }));
      rowsBySeq.forEach(function (tr, seq) { if (!shown.has(seq)) tr.remove(); });
      var keep = new Map();
      list.forEach(function (e, i) {
        var tr = rowsBySeq.get(e.seq) || anomalyRow(e, reviewable);
        if (e.thumbnail && !tr.querySelector('img.thumb')) {
          var img = el('img', 'thumb'); img.src = e.thumbnail; img.alt = e.frameId;
          tr.querySelector('.overlay').prepend(img);
        }
        if (!tr.querySelector('td.review').textContent.startsWith('not recorded')) showReview(tr, e.review);
        keep.set(e.seq, tr);
        // Moved only when out of place: moving a row takes the focus from a kind being typed in it.
        if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
      });
      rowsBySeq = keep;
      $(id + '-empty').hidden = list.length > 0;
    };
  }
  var renderLatest = reviewTable('anomalies');
  var renderPassed = reviewTable('passed');

  // The latest 20 (the API's default) of each, or all the node holds: an operator may review every one.
  var LATEST = 20;
  var limit = LATEST;
  var capacity = LATEST;
  // The next poll shows them.
  function toggleAll() { limit = limit === LATEST ? capacity : LATEST; }
  ['anomalies', 'passed'].forEach(function (id) { $(id + '-more').querySelector('button').addEventListener('click', toggleAll); });

  function showMore(id, shown, held) {
    var more = $(id + '-more');
    more.hidden = held <= LATEST;
    more.querySelector('span').textContent = shown < held ? 'the latest ' + shown + ' of the ' + held + ' the node holds' : 'all ' + held + ' the node holds';
    more.querySelector('button').textContent = limit === LATEST ? 'show all' : 'show the latest ' + LATEST;
  }

  function renderAnomalies(a) {
    var panel = $('anomaly-panel');
    panel.hidden = a.task !== 'anomaly';
    if (panel.hidden) return;
    renderAnomalyRate(a.rate);
    // A named operator's token says who reviews: the name is the token's, not one to type.
    var reviewer = $('reviewer');
    if (a.operator) reviewer.value = a.operator;
    else if (reviewer.disabled) reviewer.value = '';
    reviewer.disabled = !!a.operator;
    renderLatest(a.latest, a.reviewable);
    renderPassed(a.passed, a.reviewable);
    capacity = a.capacity;
    showMore('anomalies', a.latest.length, a.held.latest);
    showMore('passed', a.passed.length, a.held.passed);
  }

  // 60 bars of a round size that covers the node's uptime (up to 10 min), as the expert-usage chart has.
  var BAR_SECONDS = [1, 2, 5, 10];
  var barSeconds = 1;

  function poll() {
    Promise.all([get('/api/snapshot'), get('/api/anomalies?windowS=' + 60 * barSeconds + '&buckets=60&limit=' + limit)])
      .then(function (r) {
        barSeconds = BAR_SECONDS.find(function (s) { return s * 60 >= r[0].uptimeS; }) || BAR_SECONDS[BAR_SECONDS.length - 1];
        renderAnomalies(r[1]);
      })
      // The page's status line already says when the node is unreachable.
      .catch(function () { return undefined; })
      .then(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
`;
