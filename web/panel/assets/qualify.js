// A lead's qualification script: the questions come from the server with their labels in
// Spanish and English; each answer is saved as soon as it changes (during a call the agent
// never has to remember a Save button). Used collapsed on the ringing/answered lead's card and
// open in the record view.
import { api, clear, h } from './dom.js';
import { language, t } from './i18n.js';
import { errorText } from './ui.js';

export function labelOf(label) {
  if (!label || typeof label !== 'object') return String(label || '');
  return label[language()] || label.en || label.es || '';
}

// { el, personId, doc, open } -- on a card: a <details> loaded the first time it opens.
export function buildQualification(personId, idPrefix, { collapsed = true, onChange } = {}) {
  const q = { personId, idPrefix, doc: null, onChange, loading: false };
  q.summary = h('summary', {});
  q.status = h('p', { class: 'qualify-status', role: 'status' });
  q.error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  q.fields = h('div', { class: 'qualify-fields' });
  q.body = h('div', { class: 'qualify-body' }, q.status, q.fields, q.error);
  if (collapsed) {
    q.el = h('details', { class: 'qualify' }, q.summary, q.body);
    q.el.addEventListener('toggle', () => { if (q.el.open && !q.doc) load(q); });
  } else {
    q.heading = h('h3', { id: `${idPrefix}-title` });
    q.el = h('section', { class: 'qualify', 'aria-labelledby': `${idPrefix}-title` }, q.heading, q.body);
    load(q);
  }
  relabelQualification(q);
  return q;
}

export function relabelQualification(q) {
  if (q.summary.textContent !== t('qualify.title')) q.summary.textContent = t('qualify.title');
  if (q.heading) q.heading.textContent = t('qualify.title');
  if (q.doc) render(q);
}

async function load(q) {
  if (q.loading) return;
  q.loading = true;
  try {
    q.doc = await api(`/panel/api/people/${encodeURIComponent(q.personId)}/qualification`);
    render(q);
  } catch (e) {
    q.error.textContent = errorText(e);
    q.error.hidden = false;
  } finally {
    q.loading = false;
  }
}

function statusText(doc) {
  const answered = Object.keys(doc.answers || {}).length;
  const parts = [t('qualify.progress', { n: answered, total: doc.questions.length })];
  if (doc.complete) parts.push(`✓ ${t('qualify.complete')}`);
  if (doc.score !== null && doc.score !== undefined) parts.push(t('card.score_of_ten', { score: Number(doc.score).toLocaleString(language(), { maximumFractionDigits: 1 }) }));
  return parts.join(' · ');
}

// Rebuilt only from the server's document; a field being typed in keeps its value and focus.
function render(q) {
  const doc = q.doc;
  q.status.textContent = statusText(doc);
  const focused = q.fields.contains(document.activeElement) ? document.activeElement.id : null;
  const typed = new Map([...q.fields.querySelectorAll('input, select, textarea')].map((el) => [el.id, el.value]));
  clear(q.fields);
  for (const question of doc.questions) {
    const id = `${q.idPrefix}-${question.id}`;
    const answer = (doc.answers || {})[question.id];
    const value = answer ? answer.value : null;
    let input;
    if (question.type === 'choice') {
      input = h('select', { id, name: question.id },
        h('option', { value: '' }, t('qualify.no_answer')),
        (question.options || []).map((o) => h('option', { value: o.id, selected: value === o.id }, labelOf(o.label))));
    } else if (question.type === 'scale') {
      input = h('select', { id, name: question.id }, h('option', { value: '' }, t('qualify.no_answer')),
        Array.from({ length: 11 }, (_, n) => h('option', { value: String(n), selected: value === n }, String(n))));
    } else if (question.type === 'number') {
      input = h('input', { id, name: question.id, type: 'number', inputmode: 'decimal', value: value ?? '' });
    } else {
      input = h('textarea', { id, name: question.id, rows: 2, maxlength: 2000 });
      input.value = value ?? '';
    }
    if (typed.has(id) && focused === id) input.value = typed.get(id);
    input.dataset.question = question.id;
    input.addEventListener('change', () => save(q, question, input));
    q.fields.append(h('div', { class: 'field' }, h('label', { for: id }, labelOf(question.label)), input));
  }
  if (focused) {
    const el = document.getElementById(focused);
    if (el) el.focus();
  }
}

async function save(q, question, input) {
  const raw = input.value.trim();
  let value = raw === '' ? null : raw;
  if (value !== null && (question.type === 'scale' || question.type === 'number')) value = Number(raw);
  q.error.hidden = true;
  try {
    q.doc = await api(`/panel/api/people/${encodeURIComponent(q.personId)}/qualification`, { answers: { [question.id]: value } }, 'PUT');
    render(q);
    q.status.textContent = `${t('qualify.saved')} · ${statusText(q.doc)}`;
    if (q.onChange) q.onChange(q.doc);
  } catch (e) {
    q.error.textContent = errorText(e);
    q.error.hidden = false;
  }
}
