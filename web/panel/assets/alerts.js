// Ringing while the agent looks at another tab: a desktop notification and a ring tone made
// with WebAudio (no sound file to fetch). Both can be turned off in the settings; neither
// fires while the panel's tab is visible, where the card itself is the alert.
let ctx = null;
let ringTimer = null;
let shown = null; // the notification of the call ringing now, closed when it stops ringing

export const alerts = { notifications: true, ringSound: true, rang: 0, notified: 0 };

// Browsers start an AudioContext only after the user touched the page: made (and resumed)
// on the agent's first click or key, so the ring can sound later in a background tab.
export function unlockAudio() {
  try {
    ctx = ctx || new AudioContext();
    if (ctx.state === 'suspended') ctx.resume();
  } catch (e) { /* no audio device */ }
}

function beep() {
  try {
    ctx = ctx || new AudioContext();
    if (ctx.state === 'suspended') ctx.resume();
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = 480;
    gain.gain.setValueAtTime(0.0001, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.2, ctx.currentTime + 0.05);
    gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.9);
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 1);
    alerts.rang += 1;
    document.body.dataset.rang = String(alerts.rang);
  } catch (e) { /* no audio device: the notification still tells */ }
}

// Called whenever the desk changes: ring while some call rings for us in a hidden tab.
export function ringWhile(ringing) {
  const should = ringing > 0 && document.hidden && alerts.ringSound;
  if (should && !ringTimer) {
    beep();
    ringTimer = window.setInterval(beep, 3000);
  } else if (!should && ringTimer) {
    window.clearInterval(ringTimer);
    ringTimer = null;
  }
  document.body.dataset.ringTone = ringTimer ? 'on' : 'off';
  if (shown && (ringing === 0 || !alerts.notifications)) {
    shown.close();
    shown = null;
  }
}

export function notifyRinging(title, body) {
  if (!document.hidden || !alerts.notifications || !('Notification' in window)) return;
  if (Notification.permission !== 'granted') return;
  const n = new Notification(title, { body, tag: 'centralita-ringing' });
  shown = n;
  alerts.notified += 1;
  document.body.dataset.notified = String(alerts.notified);
  n.onclick = () => { window.focus(); n.close(); };
}

// The prompt needs a user gesture: asked on the agent's first click or key when the setting
// is on and the browser has not been asked yet (and the ring tone is unlocked at the same time).
export function onFirstGesture() {
  const once = () => {
    document.removeEventListener('pointerdown', once, true);
    document.removeEventListener('keydown', once, true);
    unlockAudio();
    if (alerts.notifications && 'Notification' in window && Notification.permission === 'default') askPermission();
  };
  document.addEventListener('pointerdown', once, true);
  document.addEventListener('keydown', once, true);
}

// Asked from a click in the settings (browsers want a user gesture for the prompt).
export async function askPermission() {
  if (!('Notification' in window)) return 'unsupported';
  if (Notification.permission === 'default') return Notification.requestPermission();
  return Notification.permission;
}
