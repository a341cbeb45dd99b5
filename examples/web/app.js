// The page: a join form, a grid of participant tiles, a participant list and the mute/leave
// controls. All protocol and WebRTC work happens in SfuClient; this file only renders its state.
//
// URL parameters: ?room=R&name=N fill the form; &autojoin=1 joins at once (used by the tests).
// Publishing: &simulcast=0 sends one video encoding instead of three; &media=0 joins as a viewer
// (no camera, no microphone); &mic=off / &cam=off join with that track turned off;
// &audioprocessing=0 turns off echo cancellation, noise suppression and gain control.
// &codec=vp8|vp9|av1|h264 prefers that video codec (vp9 and av1: each layer L1T3).
// Guests: ?code=abc-defg-hjk&invitation=…&name=N joins the meeting with that code as an invited
// guest (the room field is not used).
//
// The chat panel shows the meeting's chat (its history arrives on join) and sends to everyone
// or to one participant; it is read-only without the publish-data grant.
//
// Each remote video asks the server for the simulcast layer that fits the size it is shown at
// (`set_subscription` with `max_height` in device pixels), and pauses while it is off-screen or
// hidden with its tile's "Hide video" button. The active speaker's tile is highlighted.

import { SfuClient } from './client.js';

const client = new SfuClient();
window.sfuClient = client; // test hook: state, publishPc/subscribePc, stats(), setSubscription()

// How long a tile's size must stay put before the server is asked for another layer.
const RESIZE_DEBOUNCE_MS = 300;

const $ = (selector) => document.querySelector(selector);
const form = $('#join-form');
const controls = $('#controls');
const banner = $('#banner');
const tiles = $('#tiles');
const list = $('#participant-list');
const micButton = $('#mic');
const camButton = $('#cam');
const leaveButton = $('#leave');
const audioButton = $('#enable-audio');

// --- joining and leaving ------------------------------------------------------------------

const params = new URLSearchParams(location.search);
form.room.value = params.get('room') ?? '';
form.name.value = params.get('name') ?? '';

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  join(form.room.value.trim(), form.name.value.trim());
});

const guest = params.get('code') && params.get('invitation')
  ? { meetingCode: params.get('code'), invitation: params.get('invitation') }
  : null;
if (guest) form.room.required = false;

async function join(room, name) {
  if ((!room && !guest) || !name) return showError('Enter a room and a name.');
  hideBanner();
  form.join.disabled = true;
  try {
    await client.join({
      room,
      name,
      media: params.get('media') !== '0',
      simulcast: params.get('simulcast') !== '0',
      rawAudio: params.get('audioprocessing') === '0',
      muted: { audio: params.get('mic') === 'off', video: params.get('cam') === 'off' },
      codec: params.get('codec') || null,
      guest,
    });
    const url = new URL(location.href);
    url.searchParams.set('room', room);
    url.searchParams.set('name', name);
    url.searchParams.delete('autojoin');
    history.replaceState(null, '', url);
  } catch (err) {
    showError(`Could not join: ${err.message}`);
  } finally {
    form.join.disabled = false;
  }
}

leaveButton.addEventListener('click', () => client.leave());
micButton.addEventListener('click', () => client.setMuted('audio', !client.isMuted('audio')));
camButton.addEventListener('click', () => client.setMuted('video', !client.isMuted('video')));

// Browsers may refuse to start audio without a click on the page (autoplay policy).
audioButton.addEventListener('click', () => {
  for (const audio of tiles.querySelectorAll('audio')) audio.play().catch(() => {});
  audioButton.hidden = true;
});

if (params.get('autojoin') === '1') join(form.room.value.trim(), form.name.value.trim());

// --- client events --------------------------------------------------------------------------

client.addEventListener('change', render);
client.addEventListener('chat', renderChat);

const chatForm = $('#chat-form');
chatForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = chatForm.text.value;
  if (!text.trim()) return;
  try {
    await client.sendChat(text, chatForm.to.value || null);
    chatForm.text.value = '';
  } catch (err) {
    showError(`Chat: ${err.message}`);
  }
});

function renderChat() {
  const log = $('#chat-log');
  const names = (sid) => (sid === client.self?.sid ? 'you' : client.participants[sid]?.name ?? 'someone who left');
  log.replaceChildren(
    ...client.chat.map((m) => {
      const li = document.createElement('li');
      li.className = m.to ? 'private' : '';
      const who = document.createElement('strong');
      who.textContent = m.to ? `${m.name} → ${names(m.to)}` : m.name;
      const time = document.createElement('time');
      time.textContent = new Date(m.sent_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      const text = document.createElement('p');
      text.textContent = m.text; // never innerHTML: chat is untrusted input
      li.append(who, ' ', time, text);
      return li;
    }),
  );
  log.scrollTop = log.scrollHeight;
}
client.addEventListener('error', (ev) => showError(`${ev.detail.code}: ${ev.detail.message}`));
client.addEventListener('closed', () => {
  for (const id of [...watched.keys()]) unwatchVideo(id);
  tiles.replaceChildren();
  audioButton.hidden = true;
});

client.addEventListener('track-added', ({ detail: { id, info, track } }) => {
  const tile = ensureTile(info.participant);
  const el = document.createElement(info.kind === 'video' ? 'video' : 'audio');
  el.dataset.trackId = id;
  el.dataset.source = info.source;
  el.autoplay = true;
  if (info.kind === 'video') {
    el.playsInline = true;
    el.muted = true; // the sound comes from the <audio> element
    tile.querySelector('.media').append(el);
    watchVideo(id, el, tile);
  } else {
    tile.append(el);
  }
  el.srcObject = new MediaStream([track]);
  el.play().catch((err) => {
    if (info.kind === 'audio' && err.name === 'NotAllowedError') audioButton.hidden = false;
  });
  render();
});

client.addEventListener('track-removed', ({ detail: { id } }) => {
  unwatchVideo(id);
  for (const el of tiles.querySelectorAll(`[data-track-id="${CSS.escape(id)}"]`)) {
    el.srcObject = null;
    el.remove();
  }
  render();
});

// --- which layer each remote video asks for -------------------------------------------------

/** Received video track id -> {el, tile, height, visible, timer}. */
const watched = new Map();

// The rendered size of each remote <video>: the layer asked for follows it (debounced).
const resizeObserver = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const w = watched.get(entry.target.dataset.trackId);
    if (!w) continue;
    w.height = Math.round(entry.contentRect.height * devicePixelRatio);
    clearTimeout(w.timer);
    w.timer = setTimeout(() => askForLayer(entry.target.dataset.trackId), RESIZE_DEBOUNCE_MS);
  }
});

// Whether each remote <video> is on screen: one that is not is paused (at once: it saves the
// bandwidth, and resuming waits for a keyframe anyway).
const visibilityObserver = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const w = watched.get(entry.target.dataset.trackId);
    if (!w) continue;
    w.visible = entry.isIntersecting;
    askForLayer(entry.target.dataset.trackId);
  }
});

function watchVideo(id, el, tile) {
  watched.set(id, { el, tile, height: 0, visible: true, timer: null });
  resizeObserver.observe(el);
  visibilityObserver.observe(el);
}

function unwatchVideo(id) {
  const w = watched.get(id);
  if (!w) return;
  clearTimeout(w.timer);
  resizeObserver.unobserve(w.el);
  visibilityObserver.unobserve(w.el);
  watched.delete(id);
}

/** Tells the client what the page wants of track `id` now; it sends only what changed. */
function askForLayer(id) {
  const w = watched.get(id);
  if (!w) return;
  const hidden = w.tile.classList.contains('viewer-hidden');
  const wish = { paused: hidden || !w.visible };
  if (w.height > 0) wish.max_height = w.height;
  client.autoSubscription(id, wish);
}

tiles.addEventListener('click', (ev) => {
  const button = ev.target.closest('button.hide-video');
  if (!button) return;
  const tile = button.closest('.tile');
  const hidden = !tile.classList.contains('viewer-hidden');
  tile.classList.toggle('viewer-hidden', hidden);
  button.textContent = hidden ? 'Show video' : 'Hide video';
  button.setAttribute('aria-pressed', String(hidden));
  for (const el of tile.querySelectorAll('video[data-track-id]')) askForLayer(el.dataset.trackId);
});

// --- rendering ------------------------------------------------------------------------------

function render() {
  const inRoom = client.joined;
  form.hidden = inRoom;
  controls.hidden = !inRoom;
  $('#room-name').textContent = client.room ?? '';
  micButton.textContent = client.isMuted('audio') ? 'Unmute mic' : 'Mute mic';
  camButton.textContent = client.isMuted('video') ? 'Start camera' : 'Stop camera';
  micButton.classList.toggle('off', client.isMuted('audio'));
  camButton.classList.toggle('off', client.isMuted('video'));
  micButton.disabled = !client.localStream?.getAudioTracks().length;
  camButton.disabled = !client.localStream?.getVideoTracks().length;

  renderLocalTile();

  // A tile per participant, and per owner of a track we receive (should its participant_joined
  // be late).
  const sids = new Set(Object.keys(client.participants));
  for (const t of Object.values(client.remoteTracks)) sids.add(t.participant);
  for (const tile of tiles.querySelectorAll('.tile.remote')) {
    if (!sids.has(tile.dataset.sid)) tile.remove();
  }
  for (const sid of sids) {
    const tile = ensureTile(sid);
    const name = client.participants[sid]?.name ?? '…';
    tile.querySelector('.name').textContent = name;
    tile.querySelector('.placeholder').textContent = initials(name);
    const mine = Object.values(client.publishedTracks).filter((t) => t.participant === sid);
    const receiving = Object.values(client.remoteTracks).filter((t) => t.participant === sid);
    const audioOff = !mine.some((t) => t.kind === 'audio' && !t.muted);
    const videoOff = !receiving.some((t) => t.kind === 'video' && !t.muted);
    setBadges(tile, audioOff, mine.some((t) => t.kind === 'video' && t.muted));
    tile.classList.toggle('video-off', videoOff);
    tile.classList.toggle('speaking', client.activeSpeaker === sid);
    tile.querySelector('.hide-video').hidden = !receiving.some((t) => t.kind === 'video');
  }

  list.replaceChildren(
    ...(client.self ? [listItem(`${client.self.name} (you)`)] : []),
    ...Object.values(client.participants).map((p) => listItem(p.name, p.sid)),
  );
  $('#participant-count').textContent = inRoom ? `(${1 + Object.keys(client.participants).length})` : '';

  $('#chat').hidden = !inRoom;
  const canChat = client.grants?.publish_data !== false;
  for (const el of chatForm.elements) el.disabled = !canChat;
  const to = chatForm.to.value;
  chatForm.to.replaceChildren(
    new Option('Everyone', ''),
    ...Object.values(client.participants).map((p) => new Option(p.name, p.sid)),
  );
  chatForm.to.value = client.participants[to] ? to : '';
  $('#meeting-code').hidden = !client.meetingCode;
  $('#meeting-code strong').textContent = client.meetingCode ?? '';
  if (!inRoom) $('#chat-log').replaceChildren();
}

function renderLocalTile() {
  let tile = tiles.querySelector('.tile.local');
  if (!client.joined) {
    tile?.remove();
    return;
  }
  if (!tile) {
    tile = newTile();
    tile.classList.add('local');
    tile.querySelector('.hide-video').remove(); // our own preview costs no bandwidth
    tiles.prepend(tile);
  }
  const name = `${client.self.name} (you)`;
  tile.querySelector('.name').textContent = name;
  tile.querySelector('.placeholder').textContent = initials(client.self.name);
  const stream = client.localStream;
  let video = tile.querySelector('video');
  if (stream?.getVideoTracks().length && !video) {
    video = document.createElement('video');
    video.autoplay = video.muted = video.playsInline = true;
    video.srcObject = new MediaStream(stream.getVideoTracks());
    tile.querySelector('.media').append(video);
  }
  tile.classList.toggle('video-off', !video || client.isMuted('video'));
  tile.classList.toggle('speaking', client.activeSpeaker !== null && client.activeSpeaker === client.self.sid);
  setBadges(tile, client.isMuted('audio'), client.isMuted('video') && !!video);
}

function ensureTile(sid) {
  let tile = tiles.querySelector(`.tile.remote[data-sid="${CSS.escape(sid)}"]`);
  if (!tile) {
    tile = newTile();
    tile.classList.add('remote');
    tile.dataset.sid = sid;
    tiles.append(tile);
  }
  return tile;
}

function newTile() {
  return $('#tile-template').content.firstElementChild.cloneNode(true);
}

function setBadges(tile, audioOff, videoMuted) {
  tile.querySelector('.badge.mic').hidden = !audioOff;
  tile.querySelector('.badge.cam').hidden = !videoMuted;
  tile.dataset.audioMuted = audioOff;
  tile.dataset.videoMuted = videoMuted;
}

function listItem(text, sid) {
  const li = document.createElement('li');
  li.textContent = text;
  if (sid) li.dataset.sid = sid;
  return li;
}

function initials(name) {
  return name
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0].toUpperCase())
    .join('');
}

function showError(message) {
  banner.textContent = message;
  banner.hidden = false;
}

function hideBanner() {
  banner.hidden = true;
}

render();
