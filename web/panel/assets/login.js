// Sign-in page: in the browser's language (no account yet to hold an override); posts the
// form as JSON, then goes to the panel. Errors are translated from their stable ids.
import { loadLanguage, t, tId, translatePage } from './i18n.js';

const form = document.getElementById('login-form');
const error = document.getElementById('login-error');

loadLanguage(null).then(() => {
  translatePage();
  document.title = t('login.title');
  document.body.dataset.lang = document.documentElement.lang;
});

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.hidden = true;
  const data = new FormData(form);
  const ext = String(data.get('extensions') || '').trim();
  const body = {
    username: String(data.get('username') || ''),
    password: String(data.get('password') || ''),
    extensions: ext ? ext.split(/[\s,]+/).filter(Boolean) : null,
  };
  const button = document.getElementById('login-button');
  button.disabled = true;
  try {
    const r = await fetch('/panel/api/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (r.ok) {
      window.location.assign('/panel/');
      return;
    }
    const doc = await r.json().catch(() => ({}));
    error.textContent = doc.error
      ? tId('error', doc.error.id, doc.error.message, doc.error.details || {})
      : t('error.request_failed', { status: r.status });
    error.hidden = false;
  } catch (e) {
    error.textContent = t('error.unreachable');
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});
