// Customer metrics (gateway/intel): how a metric's value and reason read in the agent's language.
// The server sends stable codes and parameters ({name, value, label, reason, params}); the words
// are the catalogs' intel.* keys. Used by the caller card (the few that matter) and the record
// view (all of them). Everything is returned as text for textContent.
import { h } from './dom.js';
import { date, number, t, tId } from './i18n.js';

// a label of one of the intel.<group>.<id> families (segment, risk, quality, channel, action...)
const word = (group, id) => tId(`intel.${group}`, id, id);

const SCORES = new Set(['last_activity', 'marketing', 'engagement', 'satisfaction']);
const MONEY = new Set(['monetary', 'clv_historic', 'clv_projected']);
const ISO_DAY = /^\d{4}-\d{2}-\d{2}$/;  // a day the server sends as text ("since")

function money(value, currency) {
  try {
    return number(value, { style: 'currency', currency: currency || 'EUR', maximumFractionDigits: 0 });
  } catch (e) {
    return `${number(value)} ${currency || ''}`.trim();
  }
}

// The value as a short text: "Loyal", "1.250 €", "78 % · High", "80/100 · Good", "Call back".
export function insightValue(m) {
  const { name, value, label } = m;
  if (value === null && !label) return '—';
  if (name === 'rfm_segment') return word('segment', label);
  if (MONEY.has(name)) return value === null ? '—' : money(value, label);
  if (name === 'churn_30' || name === 'churn_60') {
    return `${t('intel.unit.percent', { value: Math.round(value * 100) })} · ${word('risk', label)}`;
  }
  if (name === 'recency') return t('intel.unit.days', { days: value });
  if (name === 'frequency') return number(value);
  if (name === 'data_quality') return `${t('intel.unit.score', { value })} · ${word('quality', label)}`;
  if (SCORES.has(name)) return t('intel.unit.score', { value });
  if (name === 'best_channel') return word('channel', label);
  if (name === 'best_hour') return label || '—';
  if (name === 'next_best') return word('action', label);
  return label || number(value);
}

// The reason as a sentence; list parameters (what a record lacks) are translated item by item.
export function insightReason(m) {
  const params = {};
  const currency = (m.params || {}).currency;
  for (const [k, v] of Object.entries(m.params || {})) {
    if (Array.isArray(v)) params[k] = v.map((x) => word('missing', x)).join(', ');
    else if ((k === 'amount' || k === 'average') && typeof v === 'number') params[k] = money(v, currency);
    else if (typeof v === 'string' && ISO_DAY.test(v)) params[k] = date(Date.parse(`${v}T12:00:00Z`) / 1000);
    else if (k === 'channel' && v) params[k] = word('channel', v);
    else if (k === 'kind' && v) params[k] = word('kind', v);
    else if (k === 'stage' && v) params[k] = tId('stage', v, v);
    else params[k] = v;
  }
  return t(`intel.reason.${m.reason}`, params);
}

// A <dl> of metrics: the title, the value, and the reason underneath (for screen readers too).
export function insightList(metrics, id) {
  return h('dl', { class: 'facts insight', id },
    metrics.map((m) => h('div', { dataset: { metric: m.name } },
      h('dt', {}, t(`intel.metric.${m.name}`)),
      h('dd', {}, h('span', { class: 'insight-value' }, insightValue(m)),
        h('div', { class: 'muted small insight-reason' }, insightReason(m))))));
}
