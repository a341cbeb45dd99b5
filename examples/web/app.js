// The page: a join form, a grid of participant tiles, a participant list and the mute/leave
// controls. All protocol and WebRTC work happens in SfuClient; this file only renders its state.
//
// URL parameters: ?room=R&name=N fill the form; &autojoin=1 joins at once (used by the tests).

import { SfuClient } from './client.js';

const client = new SfuClient();
window.sfuClient = client; // test hook: state, publishPc/subscribePc, stats()

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

async function join(room, name) {
  if (!room || !name) return showError('Enter a room and a name.');
  hideBanner();
  form.join.disabled = true;
  try {
    await client.join({ room, name });
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
client.addEventListener('error', (ev) => showError(`${ev.detail.code}: ${ev.detail.message}`));
client.addEventListener('closed', () => {
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
  for (const el of tiles.querySelectorAll(`[data-track-id="${CSS.escape(id)}"]`)) {
    el.srcObject = null;
    el.remove();
  }
  render();
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
  }

  list.replaceChildren(
    ...(client.self ? [listItem(`${client.self.name} (you)`)] : []),
    ...Object.values(client.participants).map((p) => listItem(p.name, p.sid)),
  );
  $('#participant-count').textContent = inRoom ? `(${1 + Object.keys(client.participants).length})` : '';
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
