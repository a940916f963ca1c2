// The supervisors' reports page (issue 14): a date range (presets or two dates), a queue and an
// agent, and what the gateway computes for them: the key figures, the charts (SVG drawn by the
// server from the same query the JSON answers, inlined so each mark's <title> is a tooltip and
// the page's CSP stays strict), the table behind them, and CSV/XLSX downloads of each report.
// Names from the PBX (queues, agents) arrive as text or inside the server's escaped SVG.
import { api, clear, h } from './dom.js';
import { language, number, t, duration } from './i18n.js';
import { errorText } from './ui.js';
import { registerView } from './views.js';

const BASE = '/api/v1/reports';
const PRESETS = ['today', 'yesterday', 'last7', 'last30', 'this_month', 'last_month', 'custom'];
const PRESET_LABEL = {
  today: 'reports.preset_today', yesterday: 'reports.preset_yesterday', last7: 'reports.preset_last7', last30: 'reports.preset_last30',
  this_month: 'reports.preset_this_month', last_month: 'reports.preset_last_month', custom: 'reports.preset_custom',
};
const GROUPS = { day: 'reports.group_day', hour: 'reports.group_hour', weekday: 'reports.group_weekday' };
// the charts, in page order: the report each draws and the query it needs
const CHARTS = [
  { name: 'calls', titleKey: 'reports.chart_volume' },
  { name: 'heatmap', titleKey: 'reports.chart_heatmap' },
  { name: 'agents', titleKey: 'reports.chart_agents', group: 'agent' },
  { name: 'dispositions', titleKey: 'reports.chart_dispositions', group: 'disposition' },
  { name: 'funnel', titleKey: 'reports.chart_funnel' },
];

// literal keys (the catalog test finds them); durations show their unit, so no "(s)" here
const FIGURE_LABEL = {
  offered: 'reports.col_offered', answered: 'reports.col_answered', missed: 'reports.col_missed', abandoned: 'reports.col_abandoned',
  answer_rate: 'reports.col_answer_rate', service_level: 'reports.col_service_level', asa: 'reports.fig_asa', aht: 'reports.fig_aht',
  callbacks: 'reports.col_callbacks',
};

const iso = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
const addDays = (d, n) => new Date(d.getFullYear(), d.getMonth(), d.getDate() + n);
const pct = (x) => (x === null || x === undefined ? '—' : number(x, { style: 'percent', maximumFractionDigits: 1 }));
const secs = (x) => (x === null || x === undefined ? '—' : duration(x));

// [start, end] of a preset, in the browser's calendar (the server counts days in panel.timezone)
export function presetRange(preset, today = new Date()) {
  const d = new Date(today.getFullYear(), today.getMonth(), today.getDate());
  switch (preset) {
    case 'today': return [iso(d), iso(d)];
    case 'yesterday': return [iso(addDays(d, -1)), iso(addDays(d, -1))];
    case 'last30': return [iso(addDays(d, -29)), iso(d)];
    case 'this_month': return [iso(new Date(d.getFullYear(), d.getMonth(), 1)), iso(d)];
    case 'last_month': return [iso(new Date(d.getFullYear(), d.getMonth() - 1, 1)), iso(new Date(d.getFullYear(), d.getMonth(), 0))];
    default: return [iso(addDays(d, -6)), iso(d)];
  }
}

export function installReports(app) {
  const [start, end] = presetRange('last7');
  const state = { preset: 'last7', start, end, queue: '', agent: '', group_by: 'day', seq: 0, queues: [], agents: [] };
  document.head.append(h('link', { rel: 'stylesheet', href: '/panel/assets/reports.css' }));
  let section = null;

  function query(extra = {}) {
    const p = new URLSearchParams({ start: state.start, end: state.end });
    if (state.queue) p.set('queue', state.queue);
    if (state.agent) p.set('agent', state.agent);
    for (const [k, v] of Object.entries(extra)) if (v) p.set(k, v);
    return p;
  }
  const url = (name, ext, extra) => `${BASE}/${name}${ext ? `.${ext}` : ''}?${query(extra)}`;

  // -- the filters ----------------------------------------------------------------------------

  function select(id, labelKey, options, value, onChange) {
    return h('label', { for: id }, h('span', {}, t(labelKey)),
      h('select', { id, name: id, onchange: (e) => onChange(e.target.value) },
        options.map(([v, text]) => h('option', { value: v, selected: v === value }, text))));
  }

  function dateInput(id, labelKey, value, onChange) {
    return h('label', { for: id }, h('span', {}, t(labelKey)),
      h('input', { type: 'date', id, name: id, value, required: true, onchange: (e) => onChange(e.target.value) }));
  }

  function filters() {
    const set = (patch) => { Object.assign(state, patch); load(); };
    const queues = [['', t('reports.all_queues')], ...state.queues.map((q) => [q.key, q.label || q.key])];
    const agents = [['', t('reports.all_agents')], ...state.agents.map((a) => [a.key, a.label && a.label !== a.key ? `${a.label} (${a.key})` : a.key])];
    for (const [v, list] of [[state.queue, queues], [state.agent, agents]]) if (v && !list.some(([k]) => k === v)) list.push([v, v]);
    return h('form', { class: 'filters reports-filters', id: 'reports-filters', onsubmit: (e) => { e.preventDefault(); load(); } },
      select('reports-preset', 'reports.range_label', PRESETS.map((p) => [p, t(PRESET_LABEL[p])]), state.preset, (p) => {
        if (p === 'custom') { state.preset = p; return; }
        const [s, e] = presetRange(p);
        set({ preset: p, start: s, end: e });
      }),
      dateInput('reports-start', 'reports.from', state.start, (v) => set({ preset: 'custom', start: v })),
      dateInput('reports-end', 'reports.to', state.end, (v) => set({ preset: 'custom', end: v })),
      select('reports-queue', 'reports.queue', queues, state.queue, (v) => set({ queue: v })),
      select('reports-agent', 'reports.agent', agents, state.agent, (v) => set({ agent: v })),
      select('reports-group', 'reports.group_by', Object.entries(GROUPS).map(([k, key]) => [k, t(key)]), state.group_by, (v) => set({ group_by: v })));
  }

  // -- what is shown --------------------------------------------------------------------------

  function downloads(name, extra) {
    return h('div', { class: 'report-downloads' },
      h('a', { class: 'btn btn-secondary btn-small', href: url(name, 'csv', extra), download: '', id: `reports-${name}-csv`, 'aria-label': t('reports.download_csv_of', { name: t(CHARTS.find((c) => c.name === name).titleKey) }) }, t('reports.download_csv')),
      h('a', { class: 'btn btn-secondary btn-small', href: url(name, 'xlsx', extra), download: '', id: `reports-${name}-xlsx`, 'aria-label': t('reports.download_xlsx_of', { name: t(CHARTS.find((c) => c.name === name).titleKey) }) }, t('reports.download_xlsx')));
  }

  function tiles(totals) {
    const items = [
      ['offered', number(totals.offered)], ['answered', number(totals.answered)], ['answer_rate', pct(totals.answer_rate)],
      ['service_level', pct(totals.service_level)], ['missed', number(totals.missed)], ['abandoned', number(totals.abandoned)],
      ['asa', secs(totals.asa)], ['aht', secs(totals.aht)], ['callbacks', number(totals.callbacks)],
    ];
    return h('ul', { class: 'report-tiles', id: 'reports-tiles', 'aria-label': t('reports.key_figures') },
      items.map(([k, v]) => h('li', { class: 'report-tile', dataset: { figure: k } }, h('span', { class: 'tile-label' }, t(FIGURE_LABEL[k])), h('span', { class: 'tile-value' }, v))));
  }

  function summaryTable(doc) {
    const cols = ['offered', 'answered', 'missed', 'abandoned', 'answer_rate', 'service_level', 'asa', 'aht'];
    const cell = (r, k) => (k === 'answer_rate' || k === 'service_level' ? pct(r[k]) : k === 'asa' || k === 'aht' ? secs(r[k]) : number(r[k] || 0));
    const head = h('tr', {}, h('th', { scope: 'col' }, t(GROUPS[state.group_by])), cols.map((k) => h('th', { scope: 'col', class: 'figure' }, t(FIGURE_LABEL[k]))));
    const rows = doc.rows.filter((r) => r.offered || r.outbound).map((r) => h('tr', { dataset: { key: r.key } },
      h('th', { scope: 'row' }, groupText(r)), cols.map((k) => h('td', { class: 'figure' }, cell(r, k)))));
    const total = h('tr', { class: 'report-total' }, h('th', { scope: 'row' }, t('reports.total')), cols.map((k) => h('td', { class: 'figure' }, cell(doc.totals, k))));
    return h('div', { class: 'table-wrap' }, h('table', { class: 'calls report-table', id: 'reports-table' },
      h('caption', {}, t('reports.table_caption')), h('thead', {}, head), h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: cols.length + 1 }, t('reports.no_data')))), h('tfoot', {}, total)));
  }

  function dayText(isoDay) {
    const [y, m, d] = isoDay.split('-').map(Number);
    return new Intl.DateTimeFormat(language(), { day: 'numeric', month: 'short', year: 'numeric' }).format(new Date(y, m - 1, d));
  }

  function groupText(r) {
    if (state.group_by === 'day') {
      const [y, m, d] = r.key.split('-').map(Number);
      return new Intl.DateTimeFormat(language(), { weekday: 'short', day: 'numeric', month: 'short' }).format(new Date(y, m - 1, d));
    }
    if (state.group_by === 'hour') return `${String(r.key).padStart(2, '0')}:00`;
    if (state.group_by === 'weekday') return new Intl.DateTimeFormat(language(), { weekday: 'long' }).format(new Date(2024, 0, 1 + Number(r.key)));
    return r.label || r.key;
  }

  // the server's SVG, parsed as XML (never as HTML) and adopted into the page
  async function chart(figure, name, extra) {
    const r = await fetch(url(name, 'svg', { ...extra, lang: language() }), { headers: { Accept: 'image/svg+xml' } });
    if (r.status === 401) { window.location.assign('/panel/login'); return; }
    if (!r.ok) throw new Error(`${r.status}`);
    const doc = new DOMParser().parseFromString(await r.text(), 'image/svg+xml');
    const svg = doc.documentElement;
    if (svg.nodeName !== 'svg' || doc.getElementsByTagName('parsererror').length) throw new Error('not SVG');
    for (const s of svg.querySelectorAll('script, foreignObject')) s.remove(); // never sent; never run
    const box = figure.querySelector('.report-chart');
    clear(box).append(document.importNode(svg, true));
    figure.dataset.loaded = 'true';
  }

  async function load() {
    if (!section || app.view !== 'reports') return;
    const seq = ++state.seq;
    section.setAttribute('aria-busy', 'true');
    let doc;
    try {
      const [calls, byQueue, byAgent] = await Promise.all([
        api(`${url('calls')}&group_by=${state.group_by}`),
        api(`${BASE}/calls?${new URLSearchParams({ start: state.start, end: state.end, group_by: 'queue' })}`).catch(() => ({ rows: [] })),
        api(`${BASE}/calls?${new URLSearchParams({ start: state.start, end: state.end, group_by: 'agent' })}`).catch(() => ({ rows: [] })),
      ]);
      doc = calls;
      state.queues = byQueue.rows.filter((r) => r.key);
      state.agents = byAgent.rows.filter((r) => r.key);
    } catch (e) {
      if (seq !== state.seq) return;
      section.removeAttribute('aria-busy');
      clear(section).append(filters(), h('p', { class: 'report-error', role: 'alert', id: 'reports-error' }, errorText(e)));
      return;
    }
    if (seq !== state.seq) return; // a newer range was asked meanwhile
    const focused = document.activeElement && document.activeElement.id;
    const figures = CHARTS.map((c) => h('figure', { class: 'report-figure', id: `reports-${c.name}`, dataset: { chart: c.name } },
      h('div', { class: 'report-chart', 'aria-live': 'off' }, h('p', { class: 'muted' }, t('reports.loading'))),
      h('figcaption', {}, downloads(c.name, { group_by: c.name === 'calls' ? state.group_by : c.group }))));
    clear(section).append(
      filters(),
      h('p', { class: 'muted small', id: 'reports-range', role: 'status', dataset: { offered: doc.totals.offered } },
        t('reports.showing', { start: dayText(state.start), end: dayText(state.end), tz: doc.timezone || '' })),
      tiles(doc.totals),
      h('div', { class: 'report-grid' }, figures),
      summaryTable(doc));
    if (focused) { const el = document.getElementById(focused); if (el) el.focus(); }
    await Promise.all(CHARTS.map((c, i) => chart(figures[i], c.name, { group_by: c.name === 'calls' ? state.group_by : c.group }).catch((e) => {
      clear(figures[i].querySelector('.report-chart')).append(h('p', { class: 'report-error' }, t('reports.chart_failed', { name: t(c.titleKey) })));
      figures[i].dataset.loaded = 'error';
      return e;
    })));
    if (seq === state.seq) section.removeAttribute('aria-busy');
  }

  section = registerView('reports', {
    titleKey: 'nav.reports',
    roles: ['supervisor', 'admin'],
    onShow: () => load(),
  });
  return { load };
}
