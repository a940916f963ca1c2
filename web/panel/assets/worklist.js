// The worklist: the leads to call next, best score first, then (among equal scores) those
// whose best hour to call is now, then the earliest follow-up (GET /api/v1/worklist, read
// with the panel's session). One click calls (the panel's click-to-call); the name opens the
// record. "More" pages with the server's cursor.
import { api, clear, h } from './dom.js';
import { number, relative, t, tId, when } from './i18n.js';
import { callButton, errorText, toast } from './ui.js';
import { registerView } from './views.js';

const MAX_PAGES = 10; // 500 leads on one page at most

export function installWorklist(app) {
  const state = { cursor: null, pages: 0 };
  let section = null;
  let table = null;
  let more = null;

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
    return h('tr', { dataset: { personId: String(p.id) } },
      h('th', { scope: 'row' },
        h('button', { type: 'button', class: 'link-button', 'aria-label': t('records.open_named', { name }), onclick: () => app.openRecord && app.openRecord(p.kind, p.id) }, name),
        p.company && p.name ? h('div', { class: 'muted small' }, p.company) : ''),
      h('td', {}, item.score !== null && item.score !== undefined ? `★ ${number(item.score, { minimumFractionDigits: 1, maximumFractionDigits: 1 })}` : '—'),
      h('td', {}, p.status ? h('span', { class: `badge status-${p.status}` }, tId('lead_status', p.status, p.status)) : '—'),
      h('td', {}, bestHour(item.best_hour)),
      h('td', {}, f ? [overdue ? h('span', { class: 'badge overdue' }, t('followups.overdue')) : '', ' ', f.title, h('div', { class: 'muted small' }, `${when(f.due_at)} (${relative(f.due_at)})`)] : '—',
        item.open_follow_ups > 1 ? h('div', { class: 'muted small' }, t('worklist.open_count', { count: item.open_follow_ups })) : ''),
      h('td', {}, phone ? h('span', { class: 'num' }, phone.raw || phone.e164) : h('span', { class: 'muted' }, p.do_not_call ? t('card.do_not_call') : t('worklist.no_phone'))),
      h('td', {}, phone && !p.do_not_call ? callButton(phone.e164, name) : ''));
  }

  async function load(next = false) {
    if (next && !state.cursor) return;
    const q = new URLSearchParams({ limit: '50' });
    if (next) q.set('cursor', state.cursor);
    more.disabled = true;
    try {
      const doc = await api(`/api/v1/worklist?${q}`);
      const head = ['worklist.person', 'worklist.score', 'card.status', 'worklist.best_hour', 'worklist.next_follow_up', 'card.number', 'list.actions'];
      if (!next) {
        clear(table).append(h('caption', { class: 'sr-only' }, t('nav.worklist')),
          h('thead', {}, h('tr', {}, head.map((k) => h('th', { scope: 'col' }, t(k))))), h('tbody', {}));
        state.pages = 0;
      }
      const body = table.tBodies[0];
      if (!next && !doc.items.length) body.append(h('tr', {}, h('td', { colspan: head.length, class: 'muted center' }, t('worklist.none'))));
      for (const item of doc.items) body.append(row(item));
      state.pages += 1;
      state.cursor = doc.next_cursor;
      more.hidden = !state.cursor || state.pages >= MAX_PAGES;
    } catch (e) { toast(errorText(e), 'error'); } finally { more.disabled = false; }
  }

  section = registerView('worklist', { titleKey: 'nav.worklist', onShow: () => load(false) });
  table = h('table', { class: 'calls worklist', id: 'worklist-table' });
  more = h('button', { type: 'button', class: 'btn btn-secondary', id: 'worklist-more', hidden: true, 'data-i18n': 'list.more', onclick: () => load(true) }, t('list.more'));
  section.append(h('p', { class: 'muted', 'data-i18n': 'worklist.intro' }, t('worklist.intro')),
    h('div', { class: 'table-wrap' }, table), h('div', { class: 'more-row' }, more));
}
