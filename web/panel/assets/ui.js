// Small shared pieces of the panel: toasts, the screen-reader announcer, call buttons and the
// translation of server errors. Views import these; app.js wires the click-to-call handler.
import { h } from './dom.js';
import { t, tId } from './i18n.js';

const MAX_TOASTS = 3; // older ones leave: a burst of errors must not pile up over the desk
let dialHandler = () => {};

export function onDial(handler) {
  dialHandler = handler;
}

export function toast(text, kind = 'info', ms = 6000) {
  const box = document.getElementById('toasts');
  const el = h('div', { class: `toast toast-${kind}` }, text);
  box.append(el);
  while (box.children.length > MAX_TOASTS) box.firstElementChild.remove();
  window.setTimeout(() => el.remove(), ms);
}

// Screen readers hear `text` at once (a call ringing); one shared assertive live region.
export function announce(text) {
  const el = document.getElementById('announcer');
  if (!el) return;
  el.textContent = '';
  // a fresh text node after a tick is announced even when the same words repeat
  window.setTimeout(() => { el.textContent = text; }, 30);
}

// An error from the server in the user's language: its stable id translated, the server's
// message as the fallback.
export function errorText(e) {
  const params = { ...(e.details || {}), retry_after: (e.details && e.details.retry_after) || '' };
  return e.id ? tId('error', e.id, e.message, params) : (e.message || t('error.generic'));
}

// A "Call" button named for whom it calls: screen readers hear "Call Lucía Martín", not "Call".
export function callButton(number, name, labelKey = 'action.call') {
  if (!number) return null;
  const who = name || number;
  return h('button', {
    class: 'btn btn-call btn-small', type: 'button', 'aria-label': t('action.call_person', { name: who }),
    dataset: { number }, onclick: () => dialHandler(number),
  }, t(labelKey));
}
