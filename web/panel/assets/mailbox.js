// "Mailbox (demo)": the e-mails the demo's campaigns sent, as its local SMTP sink received them
// (GET /panel/api/demo/mails, a route only `centralita demo` has). The view stays hidden when
// the server has no such route. A mail's HTML is shown in a frame sandboxed with no rights at
// all (no scripts, no forms, no navigation of the panel); its plain-text part is one toggle away.
import { api, clear, h } from './dom.js';
import { t, when } from './i18n.js';
import { errorText, toast } from './ui.js';
import { registerView, views } from './views.js';

const ROLES = ['supervisor', 'admin'];

export function installMailbox(app) {
  const state = { items: [], open: null, plain: false };
  let section = null;

  async function load({ focusId = null } = {}) {
    try {
      const doc = await api('/panel/api/demo/mails');
      state.items = doc.items || [];
      render();
      const el = focusId && document.getElementById(focusId);
      if (el) el.focus();
    } catch (e) { toast(errorText(e), 'error'); }
  }

  async function openMail(id) {
    try {
      state.open = await api(`/panel/api/demo/mails/${encodeURIComponent(id)}`);
      state.plain = !state.open.html;
      render();
      const heading = document.getElementById('mail-subject');
      if (heading) heading.focus();
    } catch (e) { toast(errorText(e), 'error'); }
  }

  function mailView(m) {
    const frame = h('iframe', { sandbox: '', class: 'mail-frame', id: 'mail-html', title: t('mailbox.html_of', { subject: m.subject }), srcdoc: m.html || '', hidden: state.plain });
    const text = h('pre', { class: 'mail-text', id: 'mail-text', hidden: !state.plain }, m.text || '');
    const toggle = h('button', { type: 'button', class: 'btn btn-secondary btn-small', id: 'mail-plain', 'aria-pressed': String(state.plain), 'aria-controls': 'mail-text', disabled: !m.html, onclick: () => {
      state.plain = !state.plain;
      text.hidden = !state.plain;
      frame.hidden = state.plain;
      toggle.setAttribute('aria-pressed', String(state.plain));
    } }, t('mailbox.plain_text'));
    const meta = [['mailbox.from', m.from], ['mailbox.to', (m.to || []).join(', ')], ['mailbox.date', when(m.received_at)]];
    for (const [k, v] of Object.entries(m.headers || {})) meta.push([null, v, k]);
    return h('article', { class: 'mail-open', 'aria-labelledby': 'mail-subject' },
      h('div', { class: 'camp-bar' },
        h('button', { type: 'button', class: 'btn btn-ghost btn-small', id: 'mail-back', onclick: () => { const id = m.id; state.open = null; load({ focusId: `mail-${id}` }); } }, '← ', t('mailbox.back')),
        toggle),
      h('h2', { class: 'camp-title', id: 'mail-subject', tabindex: '-1' }, m.subject || t('mailbox.no_subject')),
      h('dl', { class: 'mail-meta' }, meta.map(([k, v, raw]) => h('div', {}, h('dt', {}, k ? t(k) : raw), h('dd', {}, v || '—')))),
      frame, text);
  }

  function render() {
    if (!section) return;
    if (state.open) {
      clear(section).append(mailView(state.open));
      return;
    }
    const head = ['mailbox.date', 'mailbox.to', 'mailbox.subject'];
    const body = h('tbody', {});
    if (!state.items.length) body.append(h('tr', {}, h('td', { colspan: head.length, class: 'muted center' }, t('mailbox.none'))));
    for (const m of state.items) {
      body.append(h('tr', { dataset: { mailId: String(m.id) } },
        h('td', {}, when(m.received_at)),
        h('td', {}, (m.to || []).join(', ')),
        h('th', { scope: 'row' }, h('button', { type: 'button', class: 'link-button', id: `mail-${m.id}`, onclick: () => openMail(m.id) }, m.subject || t('mailbox.no_subject')))));
    }
    clear(section).append(
      h('div', { class: 'camp-bar' }, h('p', { class: 'muted' }, t('mailbox.intro')),
        h('button', { type: 'button', class: 'btn btn-secondary btn-small', id: 'mailbox-refresh', onclick: () => load({ focusId: 'mailbox-refresh' }) }, t('mailbox.refresh'))),
      h('div', { class: 'table-wrap' }, h('table', { class: 'calls', id: 'mailbox-table' },
        h('caption', { class: 'sr-only' }, t('nav.mailbox')),
        h('thead', {}, h('tr', {}, head.map((k) => h('th', { scope: 'col' }, t(k))))), body)));
  }

  // hidden (no role sees it) until the server shows it has a demo mailbox
  section = registerView('mailbox', { titleKey: 'nav.mailbox', roles: [], onShow: () => { render(); load(); } });
  const probe = async () => {
    const r = await fetch('/panel/api/demo/mails?limit=1', { headers: { Accept: 'application/json' } }).catch(() => null);
    if (!r || !r.ok) return;
    views.get('mailbox').roles = ROLES;
    const me = app.me;
    views.get('mailbox').button.hidden = !(me && ROLES.includes(me.role));
  };
  probe();
}
