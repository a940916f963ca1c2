// The worklist: the leads to call next, best score first, then (among equal scores) those
// whose best hour to call is now, then the earliest follow-up (GET /api/v1/worklist, read
// with the panel's session). One click calls (the panel's click-to-call); the name opens the
// record. "More" pages with the server's cursor. Filters keep an RFM segment, a churn risk
// floor or a next step (a campaign segment's conditions), and the order can put the highest
// churn risk or value first, as a revival of drifting customers would; each row shows the
// lead's segment (and value), churn risk and next step, or why there is no figure.
import { api, clear, h } from './dom.js';
import { number, relative, t, tId, when } from './i18n.js';
import { insightReason, insightValue } from './insight.js';
import { callButton, errorText, toast } from './ui.js';
import { registerView } from './views.js';

const MAX_PAGES = 10; // 500 leads on one page at most

// [value of the query parameter, catalog key]; '' is "any"
const SEGMENTS = [['', 'filters.any'], ['at_risk,about_to_sleep,hibernating', 'worklist.segment_drifting'],
  ...['champions', 'loyal', 'new_customer', 'promising', 'needs_attention', 'at_risk', 'about_to_sleep', 'hibernating', 'prospect']
    .map((s) => [s, `intel.segment.${s}`])];
const ACTIONS = [['', 'filters.any'],
  ...['call_back', 'send_offer', 'revive_lost_deal', 'update_data', 'no_action', 'none'].map((a) => [a, `intel.action.${a}`])];
const CHURN = [['', 'filters.any'], ['0.3', 'worklist.churn_medium'], ['0.6', 'worklist.churn_high']];
const SORTS = [['-score', 'worklist.sort_score'], ['-churn_risk', 'worklist.sort_churn'], ['-value', 'worklist.sort_value']];
const FILTERS = [['rfm_segments', 'intel.metric.rfm_segment', SEGMENTS], ['next_best', 'intel.metric.next_best', ACTIONS],
  ['churn_risk_min', 'worklist.churn_risk', CHURN], ['sort', 'worklist.sort', SORTS]];

export function installWorklist(app) {
  const state = { cursor: null, pages: 0 };
  let section = null;
  let table = null;
  let more = null;
  let form = null;

  // a metric's short value, with its reason as a tooltip and for screen readers; a metric the
  // data cannot give (value and label null) shows a dash and says why
  function metricCell(m, extra) {
    if (!m) return h('div', { class: 'metric muted', title: t('worklist.not_computed') }, '—', h('span', { class: 'sr-only' }, ` (${t('worklist.not_computed')})`));
    const why = insightReason(m);
    const known = m.value !== null || m.label;
    const shown = m.name === 'churn_30' && m.value !== null
      ? h('span', { class: `metric-value badge risk-${m.label}` }, insightValue(m))
      : h('span', { class: known ? 'metric-value' : 'metric-value muted' }, insightValue(m));
    return h('div', { class: 'metric', title: why, dataset: { metric: m.name } }, shown, extra || '', h('span', { class: 'sr-only' }, ` (${why})`));
  }

  function segmentCell(metrics) {
    if (!metrics) return metricCell(null);
    const value = metrics.clv_historic;
    const money = value.value !== null ? h('div', { class: 'metric-money muted small num', title: insightReason(value) }, insightValue(value)) : '';
    return metricCell(metrics.rfm_segment, money);
  }

  // the hour they answer most (panel.timezone), marked when it is now; the title says why
  function bestHour(b) {
    if (!b) return '—';
    const why = t(b.source === 'everyone' ? 'worklist.best_hour_everyone' : 'worklist.best_hour_own', { percent: b.percent ?? '—' });
    return h('span', { class: 'best-hour', title: why, dataset: { hour: String(b.hour), now: String(b.now) } },
      h('span', { class: 'num' }, b.label), b.now ? [' ', h('span', { class: 'badge best-now' }, t('worklist.best_now'))] : '',
      h('span', { class: 'sr-only' }, ` (${why})`));
  }

  function row(item) {
    const p = item.person;
    const phone = (p.phones || []).find((x) => !x.do_not_call) || null;
    const name = p.name || p.company || `#${p.id}`;
    const f = item.next_follow_up;
    const overdue = f && f.due_at < Date.now() / 1000;
    const m = item.metrics;
    return h('tr', { dataset: { personId: String(p.id), segment: m ? m.rfm_segment.label || '' : '', nextBest: m ? m.next_best.label || '' : '' } },
      // the number and the status under the name: two columns less, so that the metrics'
      // columns fit beside the call button on a laptop's screen
      h('th', { scope: 'row' },
        h('button', { type: 'button', class: 'link-button', 'aria-label': t('records.open_named', { name }), onclick: () => app.openRecord && app.openRecord(p.kind, p.id) }, name),
        p.company && p.name ? h('div', { class: 'muted small' }, p.company) : '',
        h('div', { class: 'muted small' }, phone ? h('span', { class: 'num' }, phone.raw || phone.e164) : (p.do_not_call ? t('card.do_not_call') : t('worklist.no_phone')),
          p.status ? [' ', h('span', { class: `badge status-${p.status}`, title: t('card.status') }, tId('lead_status', p.status, p.status))] : '')),
      h('td', {}, item.score !== null && item.score !== undefined ? `★ ${number(item.score, { minimumFractionDigits: 1, maximumFractionDigits: 1 })}` : '—'),
      h('td', {}, segmentCell(m)),
      h('td', {}, metricCell(m && m.churn_30)),
      h('td', {}, metricCell(m && m.next_best)),
      h('td', {}, bestHour(item.best_hour)),
      h('td', {}, f ? [overdue ? h('span', { class: 'badge overdue' }, t('followups.overdue')) : '', ' ', f.title, h('div', { class: 'muted small' }, `${when(f.due_at)} (${relative(f.due_at)})`)] : '—',
        item.open_follow_ups > 1 ? h('div', { class: 'muted small' }, t('worklist.open_count', { count: item.open_follow_ups })) : ''),
      h('td', {}, phone && !p.do_not_call ? callButton(phone.e164, name) : ''));
  }

  async function load(next = false) {
    if (next && !state.cursor) return;
    const q = new URLSearchParams({ limit: '50' });
    let filtered = false;
    for (const [k, v] of new FormData(form).entries()) {
      if (!v) continue;
      q.set(k, String(v));
      filtered = filtered || k !== 'sort';
    }
    if (next) q.set('cursor', state.cursor);
    more.disabled = true;
    try {
      const doc = await api(`/api/v1/worklist?${q}`);
      const head = ['worklist.person', 'worklist.score', 'intel.metric.rfm_segment', 'worklist.churn_risk', 'intel.metric.next_best',
        'worklist.best_hour', 'worklist.next_follow_up', 'list.actions'];
      if (!next) {
        clear(table).append(h('caption', { class: 'sr-only' }, t('nav.worklist')),
          h('thead', {}, h('tr', {}, head.map((k) => h('th', { scope: 'col' }, t(k))))), h('tbody', {}));
        state.pages = 0;
      }
      const body = table.tBodies[0];
      if (!next && !doc.items.length) body.append(h('tr', {}, h('td', { colspan: head.length, class: 'muted center' }, t(filtered ? 'worklist.none_filtered' : 'worklist.none'))));
      for (const item of doc.items) body.append(row(item));
      state.pages += 1;
      state.cursor = doc.next_cursor;
      more.hidden = !state.cursor || state.pages >= MAX_PAGES;
    } catch (e) { toast(errorText(e), 'error'); } finally { more.disabled = false; }
  }

  section = registerView('worklist', { titleKey: 'nav.worklist', onShow: () => load(false) });
  table = h('table', { class: 'calls worklist', id: 'worklist-table' });
  more = h('button', { type: 'button', class: 'btn btn-secondary', id: 'worklist-more', hidden: true, 'data-i18n': 'list.more', onclick: () => load(true) }, t('list.more'));
  // each choice applies at once (the list below changes; focus stays on the control)
  form = h('form', { class: 'filters', id: 'worklist-filters', onsubmit: (e) => { e.preventDefault(); load(false); }, onchange: () => load(false) },
    FILTERS.map(([name, key, options]) => h('label', {},
      h('span', { 'data-i18n': key }, t(key)),
      h('select', { name }, options.map(([value, k]) => h('option', { value, 'data-i18n': k }, t(k)))))));
  section.append(h('p', { class: 'muted', 'data-i18n': 'worklist.intro' }, t('worklist.intro')), form,
    h('div', { class: 'table-wrap' }, table), h('div', { class: 'more-row' }, more));
}
