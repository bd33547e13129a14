// The dashboard of `tide run --http` (docs/operate.md "Dashboard"): polls
// /api/status every second and draws it; rates come from counter deltas
// between two polls, and the charts from a ring of samples kept here.
// Every number shown goes into an element with a stable id and its raw
// value into data-value. Data is written with textContent only.
(function () {
  'use strict';

  var POLL_MS = 1000;
  var WINDOW_MS = 5 * 60 * 1000;      // what the charts show
  var SVG = 'http://www.w3.org/2000/svg';

  var ring = [];                      // { t, rin, rout, lat } samples
  var prev = null;                    // the previous status, for deltas
  var topoKey = '';                   // what the topology was drawn from
  var storesKey = '';

  function $(id) { return document.getElementById(id); }

  // An object keyed "1", "2" ... or a list, as a list (an empty list
  // comes as {} from the server).
  function list(x) {
    if (Array.isArray(x)) { return x; }
    if (!x) { return []; }
    return Object.keys(x).map(function (k) { return x[k]; });
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (attrs[k] !== undefined && attrs[k] !== null) { e.setAttribute(k, attrs[k]); }
    });
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }

  function isNum(v) { return typeof v === 'number' && isFinite(v); }
  function fmtInt(v) { return isNum(v) ? Math.round(v).toLocaleString('en-US') : '–'; }
  function fmtRate(v) {
    if (!isNum(v)) { return '–'; }
    return v >= 100 ? fmtInt(v) : v.toFixed(1);
  }
  function fmtMs(v) {
    if (!isNum(v)) { return '–'; }
    return v >= 100 ? fmtInt(v) : v >= 1 ? v.toFixed(1) : v.toFixed(3);
  }
  function fmtBytes(v) {
    if (!isNum(v)) { return '–'; }
    var u = ['B', 'KiB', 'MiB', 'GiB'], i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : v) + ' ' + u[i];
  }
  function fmtTime(ms) {
    if (!isNum(ms)) { return '–'; }
    var d = new Date(ms);
    function two(n) { return (n < 10 ? '0' : '') + n; }
    return two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds());
  }
  function fmtUptime(s) {
    if (!isNum(s)) { return '–'; }
    s = Math.floor(s);
    var h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
    return (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + s % 60 + 's';
  }

  // A cell (or any element) showing number `value` as `text`.
  function num(tag, id, value, text, cls) {
    return el(tag, { id: id, 'class': cls || 'n',
                     'data-value': isNum(value) ? String(value) : '' }, text);
  }
  function setNum(id, value, text) {
    var e = $(id);
    e.textContent = text;
    e.setAttribute('data-value', isNum(value) ? String(value) : '');
  }
  function pill(text, prefix) {
    return el('span', { 'class': 'pill ' + prefix + text }, text);
  }
  function fill(tbody, rows) {
    tbody.textContent = '';
    rows.forEach(function (r) { tbody.appendChild(r); });
  }

  // ---- rates ------------------------------------------------------------

  // Per second growth of counter `f` of task `t` since the last poll (null
  // when unknown or when the counter started again: the task moved).
  function rate(t, f, dt) {
    var p = prev && prev.byTask[t.task];
    if (!p || !isNum(t[f]) || !isNum(p[f]) || t[f] < p[f] || dt <= 0) { return null; }
    return (t[f] - p[f]) / dt;
  }

  // The mean in ms since the last poll, over all tasks, of the histogram
  // whose sum (seconds) and count are the tasks' fields `sum` and `count`:
  // batch process time, or end-to-end latency.
  function latency(tasks, sum, count) {
    var secs = 0, n = 0;
    tasks.forEach(function (t) {
      var p = prev && prev.byTask[t.task];
      if (p && isNum(t[count]) && isNum(p[count]) && t[count] >= p[count]) {
        n += t[count] - p[count];
        secs += t[sum] - p[sum];
      }
    });
    return n > 0 ? secs / n * 1000 : null;
  }

  // ---- the parts of the page ---------------------------------------------

  function renderSummary(s, tasks, rin, rout) {
    $('job').textContent = s.job;
    document.title = s.job + ' · tide';
    var st = $('status');
    st.textContent = s.status;
    st.className = 'badge ' + s.status;
    $('version').textContent = s.version;
    $('uptime').textContent = fmtUptime(s.uptime);
    $('updated').textContent = 'updated ' + fmtTime(s.now);
    var total = 0, lag = 0;
    tasks.forEach(function (t) {
      total += t.processed || 0;
      lag += t.lag || 0;
    });
    setNum('sum-tasks', s.ntasks, fmtInt(s.ntasks));
    var up = list(s.workers).filter(function (w) { return w.up; }).length;
    setNum('sum-workers', up, up + ' / ' + s.nworkers);
    setNum('sum-in', total, fmtInt(total));
    setNum('sum-rate-in', rin, fmtRate(rin));
    setNum('sum-rate-out', rout, fmtRate(rout));
    setNum('sum-lag', lag, fmtInt(lag));
    setNum('sum-commits', s.commits, fmtInt(s.commits));
    setNum('sum-reloads', s.reloads.ok, fmtInt(s.reloads.ok)
           + (s.reloads.refused + s.reloads.rolled_back
              ? ' (+' + (s.reloads.refused + s.reloads.rolled_back) + ' failed)' : ''));
  }

  function renderTasks(tasks, dt) {
    fill($('tasks').tBodies[0], tasks.map(function (t) {
      var id = 'task-' + t.task + '-';
      var tr = el('tr', { id: 'task-' + t.task, 'data-task': t.task });
      tr.appendChild(el('td', { id: id + 'task' }, String(t.task)));
      var state = el('td', { id: id + 'state', 'data-value': t.state });
      state.appendChild(pill(t.state, 's-'));
      tr.appendChild(state);
      tr.appendChild(num('td', id + 'worker', t.worker, isNum(t.worker) ? String(t.worker) : '–', ' '));
      tr.appendChild(num('td', id + 'processed', t.processed, fmtInt(t.processed)));
      tr.appendChild(num('td', id + 'sent', t.sent, fmtInt(t.sent)));
      var rin = rate(t, 'processed', dt), rout = rate(t, 'sent', dt);
      tr.appendChild(num('td', id + 'rate-in', rin, fmtRate(rin)));
      tr.appendChild(num('td', id + 'rate-out', rout, fmtRate(rout)));
      tr.appendChild(num('td', id + 'lag', t.lag, fmtInt(t.lag)));
      var ls = el('td', { id: id + 'lag-status', 'data-value': t.lag_status });
      ls.appendChild(pill(t.lag_status, 'l-'));
      tr.appendChild(ls);
      var mean = t.batches ? t.batch_seconds / t.batches * 1000 : null;
      tr.appendChild(num('td', id + 'batch-ms', mean, fmtMs(mean)));
      var parts = el('td', { 'class': 'parts' });
      list(t.inputs).forEach(function (i) {
        var pid = id + 'input-' + i.stream + '-' + i.partition;
        var line = el('div', { id: pid, 'data-next': i.next, 'data-end': i['end'],
                               'data-committed': i.committed, 'data-lag': i.lag });
        line.textContent = i.stream + '/' + i.partition + ' ' + fmtInt(i.next) + ' / '
          + fmtInt(i['end']) + ' / ' + fmtInt(i.committed);
        parts.appendChild(line);
      });
      tr.appendChild(parts);
      tr.appendChild(el('td', { id: id + 'watermark' },
                        isNum(t.watermark) ? new Date(t.watermark).toISOString() : '–'));
      return tr;
    }));
  }

  function renderWorkers(workers) {
    fill($('workers').tBodies[0], workers.map(function (w) {
      var id = 'worker-' + w.id + '-';
      var tr = el('tr', { id: 'worker-' + w.id });
      tr.appendChild(el('td', null, String(w.id)));
      tr.appendChild(num('td', id + 'pid', w.pid, isNum(w.pid) ? String(w.pid) : '–', ' '));
      var up = el('td');
      up.appendChild(pill(w.up ? 'RUNNING' : 'FAILED', 's-'));
      tr.appendChild(up);
      tr.appendChild(num('td', id + 'rss', w.rss, fmtBytes(w.rss)));
      tr.appendChild(el('td', { id: id + 'tasks' }, list(w.tasks).join(', ') || 'none'));
      return tr;
    }));
  }

  function renderRestore(tasks) {
    var box = $('restore');
    box.textContent = '';
    var any = false;
    tasks.forEach(function (t) {
      if (t.state !== 'RESTORING') { return; }
      any = true;
      var r = t.restore || {};
      var row = el('div', { 'class': 'row', id: 'restore-' + t.task });
      var frac = isNum(r.total) && r.total > 0 ? r.records / r.total : null;
      row.appendChild(el('div', null, 'task ' + t.task + (t.bootstrap ? ' (bootstrap inputs)' : '')
        + (r.store ? ' · store ' + r.store : '') + (isNum(r.total)
          ? ' · ' + fmtInt(r.records) + ' / ' + fmtInt(r.total) + ' records' : ' · starting')));
      var bar = el('div', { 'class': 'bar' });
      var span = el('span');
      span.style.width = (frac === null ? 0 : Math.min(frac, 1) * 100) + '%';
      bar.appendChild(span);
      row.appendChild(bar);
      box.appendChild(row);
    });
    if (!any) { box.appendChild(el('p', { 'class': 'muted' }, 'none under way')); }
  }

  function renderCommits(commits) {
    commits = commits.slice().reverse();
    $('commits-empty').hidden = commits.length > 0;
    fill($('commits').tBodies[0], commits.map(function (c, i) {
      var id = 'commit-' + i + '-';
      var tr = el('tr', { id: 'commit-' + i });
      tr.appendChild(el('td', null, fmtTime(c.at)));
      tr.appendChild(el('td', null, String(c.worker)));
      tr.appendChild(el('td', { id: id + 'tasks' }, list(c.tasks).join(', ')));
      tr.appendChild(num('td', id + 'ms', c.ms, fmtMs(c.ms)));
      tr.appendChild(num('td', id + 'save-ms', c.save_ms, fmtMs(c.save_ms)));
      tr.appendChild(num('td', id + 'bytes', c.bytes, fmtBytes(c.bytes)));
      tr.appendChild(num('td', id + 'messages', c.messages, fmtInt(c.messages)));
      tr.appendChild(num('td', id + 'changelog-records', c.changelog_records,
                         fmtInt(c.changelog_records)));
      tr.appendChild(el('td', { 'class': 'parts' }, list(c.changelogs).map(function (l) {
        return l.store + '/' + l.task + '@' + l.offset;
      }).join(' ') || '–'));
      return tr;
    }));
  }

  function renderReloads(reloads) {
    reloads = reloads.slice().reverse();
    $('reloads-empty').hidden = reloads.length > 0;
    fill($('reloads').tBodies[0], reloads.map(function (r, i) {
      var tr = el('tr', { id: 'reload-' + i });
      tr.appendChild(el('td', null, fmtTime(r.at)));
      tr.appendChild(el('td', null, r.trigger));
      tr.appendChild(el('td', null, (r.from || '?') + ' → ' + (r.to || '?')));
      var o = el('td', { id: 'reload-' + i + '-outcome', 'data-value': r.outcome });
      o.appendChild(el('span', { 'class': 'pill ' + (r.outcome === 'ok' ? 's-RUNNING' : 's-FAILED') },
                       r.outcome));
      tr.appendChild(o);
      tr.appendChild(num('td', null, r.ms, fmtMs(r.ms)));
      tr.appendChild(el('td', null, r.why || ''));
      return tr;
    }));
  }

  // ---- topology (inline SVG) ------------------------------------------------

  function svgEl(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function streamLabel(s) {
    var extra = [];
    if (s.bootstrap) { extra.push('bootstrap'); }
    if (s.broadcast) { extra.push('broadcast'); }
    return { name: s.name, sub: (s.serde || '') + (extra.length ? ' · ' + extra.join(', ') : '') };
  }

  // Inputs → tasks → outputs, with the stores under the tasks; a column
  // each on a wide card, rows on a narrow one.
  function renderTopology(s) {
    var topo = s.topology;
    var box = $('topology');
    var narrow = box.clientWidth < 560;
    var key = JSON.stringify([topo, s.ntasks, s.nworkers, narrow]);
    if (key === topoKey) { return; }
    topoKey = key;
    var ins = list(topo.inputs).map(streamLabel);
    var outs = list(topo.outputs).map(streamLabel);
    list(topo.stores).forEach(function (st) {
      if (st.changelog_stream) { outs.push({ name: st.changelog_stream, sub: 'changelog' }); }
    });
    if (topo.dead_letters) { outs.push({ name: topo.dead_letters, sub: 'dead letters' }); }
    var stores = list(topo.stores).map(function (st) {
      return { name: st.name, sub: st.engine + (st.changelog ? '' : ' · no changelog') };
    });
    var tasksBox = { name: s.ntasks + ' task' + (s.ntasks === 1 ? '' : 's'),
                     sub: s.nworkers + ' worker' + (s.nworkers === 1 ? '' : 's')
                          + ' · ' + topo.partitions + ' partitions' };
    var W = narrow ? 360 : 760, BW = narrow ? 160 : 200, BH = 40, GAP = 10;
    var svg = svgEl('svg', { id: 'topology-svg', role: 'img',
                             'aria-label': 'inputs, tasks, outputs and stores' });
    var edges = svgEl('g', {});
    svg.appendChild(edges);
    function node(x, y, w, item, cls) {
      var g = svgEl('g', { 'class': 'node', 'data-name': item.name });
      g.appendChild(svgEl('rect', { x: x, y: y, width: w, height: BH, rx: 6, 'class': cls }));
      var name = item.name.length > 26 ? item.name.slice(0, 25) + '…' : item.name;
      g.appendChild(svgEl('text', { x: x + 8, y: y + 17, 'class': cls === 'tasks' ? 'tasks-text' : '' }, name));
      g.appendChild(svgEl('text', { x: x + 8, y: y + 32, 'class': cls === 'tasks' ? 'tasks-text sub' : 'sub' }, item.sub));
      svg.appendChild(g);
      return { x: x, y: y, w: w };
    }
    function edge(a, b, vertical) {
      var d;
      if (vertical) {
        var x1 = a.x + a.w / 2, y1 = a.y + BH, x2 = b.x + b.w / 2, y2 = b.y, my = (y1 + y2) / 2;
        d = 'M' + x1 + ' ' + y1 + ' C' + x1 + ' ' + my + ' ' + x2 + ' ' + my + ' ' + x2 + ' ' + y2;
      } else {
        var sx = a.x + a.w, sy = a.y + BH / 2, ex = b.x, ey = b.y + BH / 2, mx = (sx + ex) / 2;
        d = 'M' + sx + ' ' + sy + ' C' + mx + ' ' + sy + ' ' + mx + ' ' + ey + ' ' + ex + ' ' + ey;
      }
      edges.appendChild(svgEl('path', { d: d, 'class': 'edge', 'marker-end': 'url(#arrow)' }));
    }
    var defs = svgEl('defs', {});
    var marker = svgEl('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5,
                                   markerWidth: 6, markerHeight: 6, orient: 'auto' });
    marker.appendChild(svgEl('path', { d: 'M0 0 L10 5 L0 10 z', fill: 'currentColor', 'class': 'sub' }));
    defs.appendChild(marker);
    svg.appendChild(defs);
    var H, t, i;
    if (!narrow) {
      var rows = Math.max(ins.length, outs.length, 1);
      var colH = rows * (BH + GAP);
      var storeH = stores.length * (BH + GAP);
      H = Math.max(colH, BH + GAP + storeH) + 10;
      var mid = (W - BW) / 2;
      t = node(mid, (colH - BH) / 2 - (storeH ? storeH / 2 : 0) + 5, BW, tasksBox, 'tasks');
      for (i = 0; i < ins.length; i++) {
        edge(node(5, 5 + i * (BH + GAP) + (colH - ins.length * (BH + GAP)) / 2, BW, ins[i], 'box'), t);
      }
      for (i = 0; i < outs.length; i++) {
        edge(t, node(W - BW - 5, 5 + i * (BH + GAP) + (colH - outs.length * (BH + GAP)) / 2, BW, outs[i], 'box'));
      }
      for (i = 0; i < stores.length; i++) {
        edge(t, node(mid + 20, t.y + BH + GAP + 10 + i * (BH + GAP), BW - 40, stores[i], 'store'), true);
      }
    } else {
      // Inputs, then the tasks with their stores beside them, then
      // outputs; streams hang off a rail on the left.
      var y = 5, half = (W - 30) / 2, RX = 15, IX = 32;
      var rail = function (y1, y2, arrow) {
        edges.appendChild(svgEl('path', { d: 'M' + RX + ' ' + y1 + ' V' + y2, 'class': 'edge',
                                          'marker-end': arrow ? 'url(#arrow)' : '' }));
      };
      var spur = function (b, arrow) {
        var my = b.y + BH / 2;
        edges.appendChild(svgEl('path', { d: arrow ? 'M' + RX + ' ' + my + ' H' + b.x : 'M' + b.x + ' ' + my + ' H' + RX,
                                          'class': 'edge', 'marker-end': arrow ? 'url(#arrow)' : '' }));
      };
      var ib = ins.map(function (s, k) { return node(IX, y + k * (BH + GAP), W - IX - 5, s, 'box'); });
      y += ins.length * (BH + GAP) + 14;
      var side = Math.max(stores.length, 1) * (BH + GAP) - GAP;
      t = node(5, y + (side - BH) / 2, stores.length ? half : W - 10, tasksBox, 'tasks');
      if (ib.length) {
        ib.forEach(function (b) { spur(b, false); });
        rail(ib[0].y + BH / 2, t.y, true);
      }
      stores.forEach(function (s, k) { edge(t, node(half + 25, y + k * (BH + GAP), half, s, 'store')); });
      y += side + GAP + 14;
      var ob = outs.map(function (s) {
        var b = node(IX, y, W - IX - 5, s, 'box');
        y += BH + GAP;
        return b;
      });
      if (ob.length) {
        rail(t.y + BH, ob[ob.length - 1].y + BH / 2, false);
        ob.forEach(function (b) { spur(b, true); });
      }
      H = y + 5;
    }
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.setAttribute('width', W);
    box.textContent = '';
    box.appendChild(svg);
  }

  // ---- charts (canvas) ---------------------------------------------------------

  function niceMax(v) {
    if (!(v > 0)) { return 1; }
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  // An axis label: at most three significant digits.
  function fmtTick(v) {
    return v >= 1000 ? fmtInt(v) : String(parseFloat(v.toPrecision(3)));
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  // Draws the series of `ring` named in `lines` ({ key, color, dash }) over the
  // last WINDOW_MS, a null value leaving a gap.
  function drawChart(canvas, lines) {
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || 300, h = 160;
    canvas.width = w * dpr;
    canvas.height = h * dpr;
    var c = canvas.getContext('2d');
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.clearRect(0, 0, w, h);
    var L = 48, R = 8, T = 10, B = 20;
    var now = ring.length ? ring[ring.length - 1].t : Date.now();
    // The last minute at least, growing to WINDOW_MS as samples come.
    var span = Math.min(WINDOW_MS, Math.max(60000, ring.length ? now - ring[0].t : 0));
    var max = 0;
    ring.forEach(function (s) {
      lines.forEach(function (l) { if (isNum(s[l.key]) && s[l.key] > max) { max = s[l.key]; } });
    });
    max = niceMax(max);
    var muted = cssVar('--muted') || '#888', grid = cssVar('--line') || '#ddd';
    c.font = '11px system-ui, sans-serif';
    c.fillStyle = muted;
    c.strokeStyle = grid;
    c.lineWidth = 1;
    c.textAlign = 'right';
    c.textBaseline = 'middle';
    for (var g = 0; g <= 4; g++) {
      var gy = T + (h - T - B) * (1 - g / 4);
      c.beginPath();
      c.moveTo(L, Math.round(gy) + 0.5);
      c.lineTo(w - R, Math.round(gy) + 0.5);
      c.stroke();
      c.fillText(fmtTick(max * g / 4), L - 6, gy);
    }
    c.textAlign = 'center';
    c.textBaseline = 'top';
    for (var m = 0; m <= 5; m++) {
      var gx = L + (w - L - R) * (m / 5);
      c.textAlign = m === 5 ? 'right' : 'center';
      var ago = span * (5 - m) / 5 / 1000;
      c.fillText(m === 5 ? 'now' : ago >= 120 ? '-' + Math.round(ago / 60) + 'm' : '-' + Math.round(ago) + 's',
                 gx, h - B + 5);
    }
    function X(t) { return L + (w - L - R) * (1 - (now - t) / span); }
    function Y(v) { return T + (h - T - B) * (1 - v / max); }
    lines.forEach(function (l) {
      c.strokeStyle = cssVar(l.color) || '#36c';
      c.lineWidth = 1.8;
      c.fillStyle = c.strokeStyle;
      c.setLineDash(l.dash || []);
      c.beginPath();
      var open = false;
      ring.forEach(function (s, i) {
        var v = s[l.key];
        if (!isNum(v)) { open = false; return; }
        if (open) { c.lineTo(X(s.t), Y(v)); } else { c.moveTo(X(s.t), Y(v)); open = true; }
        var next = ring[i + 1];
        if (!open || !next || !isNum(next[l.key])) {
          c.fillRect(X(s.t) - 1.5, Y(v) - 1.5, 3, 3);    // a lone sample shows too
        }
      });
      c.stroke();
    });
  }

  function drawCharts() {
    drawChart($('chart-rate'), [{ key: 'rin', color: '--in' }, { key: 'rout', color: '--out', dash: [5, 3] }]);
    drawChart($('chart-latency'), [{ key: 'lat', color: '--lat' }, { key: 'e2e', color: '--e2e' }]);
  }

  // ---- state browser -------------------------------------------------------------

  function renderStores(s) {
    var names = list(s.topology.stores).map(function (st) { return st.name; });
    var key = names.join('\n');
    if (key === storesKey) { return; }
    storesKey = key;
    var sel = $('state-store');
    var keep = sel.value;
    sel.textContent = '';
    names.forEach(function (n) { sel.appendChild(el('option', { value: n }, n)); });
    if (names.indexOf(keep) >= 0) { sel.value = keep; }
    $('state-form').querySelector('button').disabled = names.length === 0;
    if (!names.length) { $('state-result').textContent = 'this job has no stores'; }
  }

  function showValue(v) { return typeof v === 'string' ? v : JSON.stringify(v); }

  function stateRead(ev) {
    if (ev) { ev.preventDefault(); }
    var form = $('state-form');
    var out = $('state-result');
    var store = $('state-store').value;
    var range = form.elements.mode.value === 'range';
    var url = '/state/' + encodeURIComponent(store);
    if (range) {
      var q = [];
      ['from', 'to', 'limit'].forEach(function (k) {
        var v = $('state-' + k).value;
        if (v !== '') { q.push(k + '=' + encodeURIComponent(v)); }
      });
      if (q.length) { url += '?' + q.join('&'); }
    } else {
      url += '/' + encodeURIComponent($('state-key').value);
    }
    history.replaceState(null, '', '#' + url.slice(1));   // a link to this read
    out.textContent = 'reading…';
    fetch(url, { cache: 'no-store' }).then(function (r) {
      return r.json().then(function (doc) { return { code: r.status, doc: doc }; });
    }).then(function (res) {
      out.textContent = '';
      var doc = res.doc;
      if (res.code !== 200) {
        out.appendChild(el('p', { 'class': 'error', id: 'state-error' }, res.code + ': ' + doc.error));
        return;
      }
      if (!range) {
        out.appendChild(el('p', { 'class': 'muted' }, 'task ' + doc.task + ' (worker ' + doc.worker
          + '), input offsets ' + Object.keys(doc.offsets || {}).map(function (k) {
            return k + '=' + doc.offsets[k];
          }).join(', ')));
        out.appendChild(el('pre', { id: 'state-value' }, JSON.stringify(doc.value, null, 2)));
        return;
      }
      var entries = list(doc.entries);
      out.appendChild(el('p', { 'class': 'muted', id: 'state-count', 'data-value': doc.count },
        doc.count + ' entr' + (doc.count === 1 ? 'y' : 'ies') + (doc.more ? ' (more past the limit)' : '')));
      var wrap = el('div', { 'class': 'scroll' });
      var table = el('table', { id: 'state-entries' });
      var head = el('tr');
      ['key', 'value', 'task'].forEach(function (h) { head.appendChild(el('th', null, h)); });
      table.appendChild(el('thead')).appendChild(head);
      var body = table.appendChild(el('tbody'));
      entries.forEach(function (e) {
        var tr = el('tr');
        tr.appendChild(el('td', null, showValue(e.key)));
        tr.appendChild(el('td', null, showValue(e.value)));
        tr.appendChild(el('td', null, String(e.task)));
        body.appendChild(tr);
      });
      wrap.appendChild(table);
      out.appendChild(wrap);
    }).catch(function (err) {
      out.textContent = '';
      out.appendChild(el('p', { 'class': 'error' }, 'cannot read: ' + err));
    });
  }

  // A link to a read, #state/STORE/KEY or #state/STORE?from=A&to=B&limit=N,
  // fills the form and reads, once the stores are known.
  function readFromLink() {
    var m = /^#state\/([^\/?]*)(?:\/(.*)|\?(.*))?$/.exec(location.hash);
    if (!m) { return; }
    try {
      $('state-store').value = decodeURIComponent(m[1]);
      var range = m[2] === undefined;
      $('state-form').elements.mode.value = range ? 'range' : 'key';
      if (range) {
        $('state-limit').value = '';
        (m[3] || '').split('&').forEach(function (pair) {
          var kv = pair.split('=');
          var e = $('state-' + decodeURIComponent(kv[0]));
          if (e && ['from', 'to', 'limit'].indexOf(kv[0]) >= 0) {
            e.value = decodeURIComponent((kv[1] || '').replace(/\+/g, ' '));
          }
        });
      } else {
        $('state-key').value = decodeURIComponent(m[2]);
      }
    } catch (err) {
      return;                         // a bad %-escape: no read
    }
    modeChanged();
    stateRead();
  }

  function modeChanged() {
    var form = $('state-form');
    form.classList.toggle('range', form.elements.mode.value === 'range');
  }

  // ---- polling -----------------------------------------------------------------

  function render(s) {
    var tasks = list(s.tasks);
    var dt = prev ? (s.now - prev.now) / 1000 : 0;
    var rin = null, rout = null;
    tasks.forEach(function (t) {
      var a = rate(t, 'processed', dt), b = rate(t, 'sent', dt);
      if (a !== null) { rin = (rin || 0) + a; }
      if (b !== null) { rout = (rout || 0) + b; }
    });
    var lat = latency(tasks, 'batch_seconds', 'batches');
    var e2e = latency(tasks, 'e2e_seconds', 'e2e_count');
    renderSummary(s, tasks, rin, rout);
    renderTopology(s);
    renderTasks(tasks, dt);
    renderWorkers(list(s.workers));
    renderRestore(tasks);
    renderCommits(list(s.commit_log));
    renderReloads(list(s.reload_log));
    renderStores(s);
    if (!prev) { readFromLink(); }
    if (prev) {
      ring.push({ t: s.now, rin: rin, rout: rout, lat: lat, e2e: e2e });
      if (e2e !== null) { $('legend-e2e').hidden = false; }
      while (ring.length && ring[0].t < s.now - WINDOW_MS) { ring.shift(); }
    }
    drawCharts();
    var byTask = {};
    tasks.forEach(function (t) { byTask[t.task] = t; });
    prev = { now: s.now, byTask: byTask };
    document.body.setAttribute('data-polls', String(+(document.body.getAttribute('data-polls') || 0) + 1));
  }

  function poll() {
    fetch('/api/status', { cache: 'no-store' }).then(function (r) {
      if (!r.ok) { throw new Error('/api/status answered ' + r.status); }
      return r.json();
    }).then(render).catch(function (err) {
      var st = $('status');
      st.textContent = 'unreachable';
      st.className = 'badge DOWN';
      $('updated').textContent = String(err.message || err);
    }).then(function () { setTimeout(poll, POLL_MS); });
  }

  $('state-form').addEventListener('submit', stateRead);
  Array.prototype.forEach.call(document.querySelectorAll('input[name=mode]'), function (r) {
    r.addEventListener('change', modeChanged);
  });
  window.addEventListener('resize', function () { topoKey = ''; drawCharts(); });
  poll();
}());
