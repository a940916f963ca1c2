// Sign-in page: posts the form as JSON, then goes to the panel.
const form = document.getElementById('login-form');
const error = document.getElementById('login-error');

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
    error.textContent = doc.error ? doc.error.message : `Sign-in failed (${r.status}).`;
    error.hidden = false;
  } catch (e) {
    error.textContent = 'The gateway cannot be reached. Check your connection.';
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});
