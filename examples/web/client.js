// SfuClient: one participant's session with the SFU (signaling protocol v1, docs/protocol.md).
//
// It owns the WebSocket, the two RTCPeerConnections (publish: we offer; subscribe: the server
// offers) and the room state. It does not touch the DOM: the page listens to its events
// ('change', 'track-added', 'track-removed', 'error', 'closed') and renders. Its plain-object
// state is what the end-to-end tests read through `window.sfuClient`.

import { ConnectionClosed, Signaling } from './signaling.js';

const PING_INTERVAL_MS = 20_000;
const ICE_GATHERING_WAIT_MS = 1_000;

// Loopback-only rule and ICE-lite server: no STUN/TURN servers. The client needs none to reach
// the server's host candidates.
const RTC_CONFIG = { iceServers: [] };

const AUDIO_CONSTRAINTS = true;
// Raw microphone: no echo cancellation, noise suppression or gain control (a steady tone stays
// steady; the tests use it to make a speaker).
const RAW_AUDIO_CONSTRAINTS = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
const VIDEO_CONSTRAINTS = {
  width: { ideal: 1280 },
  height: { ideal: 720 },
  frameRate: { ideal: 20 },
};
// Simulcast: three encodings, lowest quality first (the server numbers the layers in this order:
// 0 = q). From a 1280x720 capture they are 320x180, 640x360 and 1280x720.
const SIMULCAST_ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4 },
  { rid: 'h', scaleResolutionDownBy: 2 },
  { rid: 'f' },
];
// Video codecs the page can be asked to prefer (`join({codec})`, URL `?codec=`): name -> mimeType.
// Chrome sends VP9 and AV1 as three simulcast layers only when each encoding has a
// scalabilityMode (without one it falls back to a single SVC stream): L1T3, one spatial layer
// per encoding with three temporal layers, as Chrome's VP8 simulcast has.
const VIDEO_CODECS = { vp8: 'video/VP8', vp9: 'video/VP9', av1: 'video/AV1', h264: 'video/H264' };
const SCALABILITY_MODE = { vp9: 'L1T3', av1: 'L1T3' };
// Where Chrome's bandwidth estimate for the publish connection starts, in kbit/s (the answer's
// video codecs get `x-google-start-bitrate`). Chrome otherwise starts near 300 kbit/s: with no
// congestion-control feedback from the server it then grows by about 8 % a second (the 720p
// layer, which needs about 1.4 Mbit/s in all, came after about 20 s); with transport-cc
// feedback it was seen taking 6 to 21 s. Congestion control still lowers it when needed.
const START_BITRATE_KBPS = 2_000;
/** The fields of a `set_subscription` request, besides `track`. */
const SUBSCRIPTION_FIELDS = ['max_spatial', 'max_temporal', 'max_height', 'paused'];

export class SfuClient extends EventTarget {
  constructor() {
    super();
    // Kept across sessions, for debugging: a session the server closed can still be read.
    /** The last signaling frames in both directions: [{t, dir: 'in'|'out', frame}]. */
    this.frameLog = [];
    /** Full SDPs of the latest exchanges. */
    this.sdp = { publishOffer: null, publishAnswer: null, subscribeOffer: null, subscribeAnswer: null };
    /** The last error: an `error` frame from the server or a local failure, as {code, message, id?}. */
    this.lastError = null;
    /** Every error reported, oldest first. */
    this.errors = [];
    this.#reset();
  }

  #reset() {
    /** True between the `joined` answer and leaving (or losing the connection). */
    this.joined = false;
    this.room = null;
    /** Ourselves: {sid, identity, name}. */
    this.self = null;
    /** The other participants: sid -> {sid, identity, name}. */
    this.participants = {};
    /** Every track the others have published: id -> {id, participant, kind, source, muted}. */
    this.publishedTracks = {};
    /** Tracks we are receiving now: id -> {id, participant, kind, source, mid, muted}. */
    this.remoteTracks = {};
    /** Our published tracks: id -> {id, mid, kind, source, muted}. */
    this.localTracks = {};
    /** The participant the server says is speaking (`active_speaker`): a sid, or null. */
    this.activeSpeaker = null;
    /** What we may do here (`joined.grants`, then `grants_changed`). */
    this.grants = null;
    /** The room's meeting code, when it is stored (give it to guests). */
    this.meetingCode = null;
    /**
     * The meeting's chat we may read, oldest first: {id, participant, identity, name, to?, text,
     * sent_at}. Delivered on join (`chat_history`) and as it is said (`chat`); the server keeps
     * it for the meeting only.
     */
    this.chat = [];
    /**
     * What we ask the server for each received video track (`set_subscription`):
     * id -> {auto, manual, sent}. `auto` is the page's choice (shown height, paused when not
     * shown), `manual` overrides it field by field (setSubscription), `sent` is the last
     * request the server accepted.
     */
    this.subscriptions = {};
    /** Version of the last subscribe_offer answered. */
    this.subscribeVersion = 0;
    this.publishPc = null;
    this.subscribePc = null;
    this.localStream = null;
    this.signaling = null;
    this.pingTimer = null;
    this.receivers = new Map(); // track id -> MediaStreamTrack being rendered
  }

  /**
   * Fetches a development token, connects, joins `room` and publishes camera + microphone.
   * With `guest: {meetingCode, invitation}` it joins as an invited guest instead (no token is
   * fetched; the room is the one the meeting code names, the grants those of the invitation's
   * role); a viewer guest publishes nothing.
   * Options: `media: false` joins as a viewer; `simulcast: false` publishes one video encoding
   * instead of three; `rawAudio: true` turns off echo cancellation, noise suppression and gain
   * control; `muted: {audio, video}` starts with that track turned off; `codec` ('vp8', 'vp9',
   * 'av1' or 'h264') puts that video codec first in the publish offer (setCodecPreferences) and,
   * for vp9 and av1, gives every simulcast encoding `scalabilityMode: 'L1T3'`.
   */
  async join({
    room,
    name,
    identity = makeIdentity(name),
    media = true,
    simulcast = true,
    rawAudio = false,
    muted = {},
    codec = null,
    guest = null,
  }) {
    if (this.signaling) throw new Error('already joined');
    if (codec && !VIDEO_CODECS[codec]) throw new Error(`unknown codec ${codec} (one of ${Object.keys(VIDEO_CODECS).join(', ')})`);
    this.lastError = null;
    let token;
    try {
      if (!guest) token = await fetchDevToken(room, identity, name);
    } catch (err) {
      this.#fail(err);
      throw err;
    }

    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const signaling = new Signaling(
      `${scheme}://${location.host}/ws`,
      (frame) => this.signaling === signaling && this.#onEvent(frame),
      (info) => this.#onClosed(signaling, info),
      this.frameLog,
    );
    this.signaling = signaling;
    try {
      await signaling.open();
      this.subscribePc = new RTCPeerConnection(RTC_CONFIG);
      this.publishPc = new RTCPeerConnection(RTC_CONFIG);

      const joined = guest
        ? await signaling.request('join_guest', {
            meeting_code: guest.meetingCode,
            invitation: guest.invitation,
            name,
            protocol: 1,
          })
        : await signaling.request('join', { token, protocol: 1, room });
      this.joined = true;
      this.grants = joined.grants ?? null;
      this.meetingCode = joined.meeting_code ?? null;
      this.room = joined.room;
      this.self = joined.participant;
      for (const p of joined.participants ?? []) this.participants[p.sid] = p;
      for (const t of joined.tracks ?? []) this.publishedTracks[t.id] = t;
      this.pingTimer = setInterval(() => this.#ping(), PING_INTERVAL_MS);
      this.#changed();
    } catch (err) {
      // A closed connection is reported (with the server's reason) and torn down by #onClosed.
      if (!(err instanceof ConnectionClosed)) {
        this.#fail(err);
        if (this.signaling === signaling) this.#teardown();
      }
      throw err;
    }

    // A failure to publish leaves us in the room as a viewer.
    if (media && this.grants?.publish !== false) {
      await this.#publishCameraAndMicrophone({ simulcast, rawAudio, muted, codec }).catch((err) => this.#fail(err));
    }
  }

  /** Asks the server to let us go, then tears everything down. */
  async leave() {
    if (!this.signaling) return;
    try {
      if (this.signaling.isOpen) await this.signaling.request('leave', {}, 3_000);
    } catch (err) {
      console.warn('leave:', err.message);
    }
    this.#teardown();
  }

  /** Mutes or unmutes our own 'audio' or 'video': disables the track and tells the server. */
  async setMuted(kind, muted) {
    const local = Object.values(this.localTracks).find((t) => t.kind === kind);
    for (const track of this.localStream?.getTracks() ?? []) {
      if (track.kind === kind) track.enabled = !muted;
    }
    if (!local) return;
    local.muted = muted;
    this.#changed();
    try {
      await this.signaling.request('mute', { track: local.id, muted });
    } catch (err) {
      this.#fail(err);
    }
  }

  /**
   * Stops publishing our 'audio' or 'video' for good: the server ends the track for everyone.
   * The publish connection is not renegotiated; its sender just stops sending.
   */
  async unpublish(kind) {
    const local = Object.values(this.localTracks).find((t) => t.kind === kind);
    if (!local) return;
    try {
      await this.signaling.request('unpublish', { track: local.id });
    } catch (err) {
      this.#fail(err);
      return;
    }
    delete this.localTracks[local.id];
    for (const track of this.localStream?.getTracks() ?? []) {
      if (track.kind !== kind) continue;
      track.stop();
      this.localStream.removeTrack(track);
    }
    this.#changed();
  }

  isMuted(kind) {
    const track = this.localStream?.getTracks().find((t) => t.kind === kind);
    return track ? !track.enabled : true;
  }

  /**
   * Test hook and override of the page's choice: asks the server for a layer of the received
   * video track `trackId` with `set_subscription`. The given fields (`max_spatial`,
   * `max_temporal`, `max_height`, `paused`) override what the page asks for by itself (see
   * `autoSubscription`) until the next call; `null` as the options gives the choice back to the
   * page. Resolves with the server's `ok`, rejects with its `error`.
   */
  async setSubscription(trackId, options) {
    if (!this.remoteTracks[trackId]) {
      // Not one we receive: the server answers unknown_track (kept out of `subscriptions`).
      if (!this.signaling) throw new Error('not joined');
      return this.signaling.request('set_subscription', { track: trackId, ...pickSubscriptionFields(options ?? {}) });
    }
    const sub = this.#subscription(trackId);
    sub.manual = options === null ? null : pickSubscriptionFields(options);
    return this.#sendSubscription(trackId, { force: true });
  }

  /**
   * The page's own wish for a received video track: `{max_height}` (the height it is shown at,
   * in device pixels) and/or `{paused}` (not shown). Merged into what was asked before; sent
   * only when the resulting request differs from the last one sent. Errors are reported as
   * warnings only (the track may just have ended).
   */
  autoSubscription(trackId, wish) {
    if (!this.remoteTracks[trackId]) return;
    const sub = this.#subscription(trackId);
    Object.assign(sub.auto, pickSubscriptionFields(wish));
    this.#sendSubscription(trackId).catch((err) => console.warn(`set_subscription ${trackId}:`, err.message));
  }

  #subscription(trackId) {
    // The server's default: the best layer, not paused.
    this.subscriptions[trackId] ??= { auto: {}, manual: null, sent: subscriptionKey({ paused: false }), pending: null };
    return this.subscriptions[trackId];
  }

  async #sendSubscription(trackId, { force = false } = {}) {
    const sub = this.#subscription(trackId);
    // The server replaces its preferences with each request: always send the whole wish.
    const fields = { ...sub.auto, ...sub.manual };
    if (fields.paused === undefined) fields.paused = false;
    const key = subscriptionKey(fields);
    if (!force && (sub.sent === key || sub.pending === key)) return null;
    if (!this.signaling) throw new Error('not joined');
    sub.pending = key;
    try {
      const answer = await this.signaling.request('set_subscription', { track: trackId, ...fields });
      if (this.subscriptions[trackId] === sub) sub.sent = key;
      return answer;
    } finally {
      if (sub.pending === key) sub.pending = null;
    }
  }

  /** The MediaStreamTrack we receive for a remote track id, if any. */
  mediaTrack(id) {
    return this.receivers.get(id) ?? null;
  }

  /**
   * A plain-object summary of inbound-rtp per received track:
   * track id -> {participant, name, kind, source, mid, muted, framesDecoded, frameWidth,
   * frameHeight, framesPerSecond, bytesReceived, packetsReceived, packetsLost,
   * totalSamplesReceived, audioLevel, freezeCount, codec (mimeType of what is received)}.
   */
  async stats() {
    const out = {};
    const transceivers = new Map((this.subscribePc?.getTransceivers() ?? []).map((t) => [t.mid, t]));
    for (const info of Object.values(this.remoteTracks)) {
      const transceiver = transceivers.get(info.mid);
      let inbound = null;
      let report = null;
      if (transceiver) {
        report = await transceiver.receiver.getStats();
        report.forEach((s) => {
          if (s.type === 'inbound-rtp') inbound = s;
        });
      }
      out[info.id] = {
        participant: info.participant,
        name: this.participants[info.participant]?.name ?? null,
        kind: info.kind,
        source: info.source,
        mid: info.mid,
        muted: info.muted,
        inbound: inbound !== null,
        framesDecoded: inbound?.framesDecoded ?? 0,
        frameWidth: inbound?.frameWidth ?? 0,
        frameHeight: inbound?.frameHeight ?? 0,
        framesPerSecond: inbound?.framesPerSecond ?? 0,
        bytesReceived: inbound?.bytesReceived ?? 0,
        packetsReceived: inbound?.packetsReceived ?? 0,
        packetsLost: inbound?.packetsLost ?? 0,
        totalSamplesReceived: inbound?.totalSamplesReceived ?? 0,
        audioLevel: inbound?.audioLevel ?? 0,
        freezeCount: inbound?.freezeCount ?? 0,
        codec: (inbound?.codecId && report.get(inbound.codecId)?.mimeType) || null,
      };
    }
    return out;
  }

  /**
   * outbound-rtp per published mid and simulcast rid ("1/q", "1/h", "1/f"; just the mid for a
   * single encoding): {kind, rid, active, bytesSent, packetsSent, framesEncoded, frameWidth,
   * frameHeight, framesPerSecond, keyFramesEncoded, pliCount, nackCount, scalabilityMode,
   * qualityLimitationReason, codec (mimeType, e.g. 'video/VP9')}.
   */
  async publishStats() {
    const out = {};
    for (const transceiver of this.publishPc?.getTransceivers() ?? []) {
      const rtps = [];
      const report = await transceiver.sender.getStats();
      report.forEach((s) => {
        if (s.type === 'outbound-rtp') rtps.push(s);
      });
      // Lowest layer first, as published.
      const order = (s) => SIMULCAST_ENCODINGS.findIndex((e) => e.rid === s.rid);
      rtps.sort((a, b) => order(a) - order(b));
      for (const s of rtps) {
        out[`${transceiver.mid}${s.rid ? `/${s.rid}` : ''}`] = {
          kind: s.kind,
          rid: s.rid ?? null,
          active: s.active,
          bytesSent: s.bytesSent,
          packetsSent: s.packetsSent,
          framesEncoded: s.framesEncoded,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          framesPerSecond: s.framesPerSecond,
          keyFramesEncoded: s.keyFramesEncoded,
          pliCount: s.pliCount,
          nackCount: s.nackCount,
          scalabilityMode: s.scalabilityMode,
          qualityLimitationReason: s.qualityLimitationReason,
          codec: (s.codecId && report.get(s.codecId)?.mimeType) || null,
        };
      }
    }
    return out;
  }

  /** Everything worth printing when something went wrong, as a plain object. */
  snapshot() {
    const pcState = (pc) =>
      pc && {
        connectionState: pc.connectionState,
        iceConnectionState: pc.iceConnectionState,
        signalingState: pc.signalingState,
        transceivers: pc.getTransceivers().map((t) => ({
          mid: t.mid,
          direction: t.direction,
          currentDirection: t.currentDirection,
          kind: t.receiver.track.kind,
        })),
      };
    return {
      joined: this.joined,
      room: this.room,
      self: this.self,
      participants: this.participants,
      publishedTracks: this.publishedTracks,
      remoteTracks: this.remoteTracks,
      localTracks: this.localTracks,
      activeSpeaker: this.activeSpeaker,
      subscriptions: this.subscriptions,
      lastError: this.lastError,
      subscribeVersion: this.subscribeVersion,
      publishPc: pcState(this.publishPc),
      subscribePc: pcState(this.subscribePc),
      errors: this.errors,
      frames: this.frameLog,
      sdp: this.sdp,
    };
  }

  // --- publishing -------------------------------------------------------------------------

  async #publishCameraAndMicrophone({ simulcast, rawAudio, muted, codec }) {
    const stream = await getMedia(rawAudio ? RAW_AUDIO_CONSTRAINTS : AUDIO_CONSTRAINTS);
    if (!stream) {
      this.#fail(new Error('no camera or microphone available: joined without publishing'));
      return;
    }
    for (const track of stream.getTracks()) if (muted[track.kind]) track.enabled = false;
    this.localStream = stream;
    this.#changed();

    const pc = this.publishPc;
    const published = [];
    for (const track of stream.getAudioTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      published.push({ transceiver, source: 'microphone' });
    }
    for (const track of stream.getVideoTracks()) {
      const transceiver = pc.addTransceiver(track, {
        direction: 'sendonly',
        streams: [stream],
        // A copy: Chrome keeps (and may change) the objects it is given.
        sendEncodings: simulcast
          ? SIMULCAST_ENCODINGS.map((e) => ({ ...e, ...(SCALABILITY_MODE[codec] && { scalabilityMode: SCALABILITY_MODE[codec] }) }))
          : undefined,
      });
      if (codec) preferCodec(transceiver, VIDEO_CODECS[codec]);
      published.push({ transceiver, source: 'camera' });
    }

    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringDone(pc, ICE_GATHERING_WAIT_MS);
    this.sdp.publishOffer = pc.localDescription.sdp;

    const answer = await this.signaling.request('publish', {
      sdp: pc.localDescription.sdp,
      tracks: published.map(({ transceiver, source }) => ({ mid: transceiver.mid, source })),
    });
    this.sdp.publishAnswer = answer.sdp;
    await pc.setRemoteDescription({ type: 'answer', sdp: withStartBitrate(answer.sdp) });

    for (const t of answer.tracks ?? []) {
      const transceiver = published.find((p) => p.transceiver.mid === String(t.mid))?.transceiver;
      const muted = transceiver ? !transceiver.sender.track?.enabled : false;
      this.localTracks[t.id] = { id: t.id, mid: String(t.mid), kind: t.kind, source: t.source, muted };
      // A track muted before the answer arrived: tell the server now that it has an id.
      if (muted) this.signaling.request('mute', { track: t.id, muted: true }).catch((e) => this.#fail(e));
    }

    // Keep the resolution; let the frame rate drop under congestion. (An encoding starts at a
    // quarter of its size otherwise and takes many seconds to climb.)
    for (const { transceiver } of published) {
      if (transceiver.sender.track?.kind !== 'video') continue;
      try {
        const params = transceiver.sender.getParameters();
        params.degradationPreference = 'maintain-resolution';
        await transceiver.sender.setParameters(params);
      } catch (err) {
        console.warn('degradationPreference not applied:', err.message);
      }
    }
    this.#changed();
  }

  // --- server events ----------------------------------------------------------------------

  async #onEvent(frame) {
    switch (frame.type) {
      case 'subscribe_offer':
        return this.#onSubscribeOffer(frame);
      case 'participant_joined':
        this.participants[frame.participant.sid] = frame.participant;
        break;
      case 'participant_left':
        this.#removeParticipant(frame.participant);
        break;
      case 'track_published': {
        const t = frame.track;
        if (t.participant === this.self?.sid) return;
        this.publishedTracks[t.id] = t;
        // Should the subscribe_offer carrying it have come first.
        if (this.remoteTracks[t.id]) Object.assign(this.remoteTracks[t.id], { source: t.source, muted: t.muted });
        break;
      }
      case 'track_unpublished':
        delete this.publishedTracks[frame.track];
        this.#removeRemoteTrack(frame.track);
        break;
      case 'track_muted':
        this.#onTrackMuted(frame.track, frame.muted);
        break;
      case 'active_speaker':
        this.activeSpeaker = frame.participant ?? null;
        break;
      case 'chat_history':
        this.chat = [...frame.messages, ...this.chat.filter((m) => !frame.messages.some((h) => h.id === m.id))];
        this.#emit('chat', {});
        break;
      case 'chat':
        this.chat.push(frame.message);
        this.#emit('chat', { message: frame.message });
        break;
      case 'grants_changed':
        this.grants = frame.grants;
        break;
      case 'error':
        this.#fail(frame);
        return;
      case 'closing':
        return; // the socket closes next: #onClosed reports it with this reason
      default:
        console.warn('ignoring server frame', frame);
        return;
    }
    this.#changed();
  }

  async #onSubscribeOffer(frame) {
    const pc = this.subscribePc;
    this.sdp.subscribeOffer = frame.sdp;
    try {
      await pc.setRemoteDescription({ type: 'offer', sdp: frame.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
    } catch (err) {
      // The protocol has no way to refuse an offer: report it and keep the session.
      this.#fail({ code: 'subscribe_offer_rejected', message: `version ${frame.version}: ${err.message}` });
      return;
    }
    await iceGatheringDone(pc, ICE_GATHERING_WAIT_MS);
    this.sdp.subscribeAnswer = pc.localDescription.sdp;
    this.signaling
      .request('subscribe_answer', { sdp: pc.localDescription.sdp, version: frame.version })
      .catch((err) => this.#fail(err));
    this.subscribeVersion = frame.version;

    // The offer's `tracks` is the complete mapping of receiving mids to tracks. A mid may be
    // reused for another track later (then the same MediaStreamTrack object carries it), so
    // tracks are identified by their id, never by the MediaStreamTrack.
    const wanted = new Map();
    for (const t of frame.tracks ?? []) wanted.set(String(t.mid), t);
    const receiving = new Map();
    for (const transceiver of pc.getTransceivers()) {
      const t = wanted.get(transceiver.mid);
      const dir = transceiver.currentDirection;
      if (t && (dir === 'recvonly' || dir === 'sendrecv')) receiving.set(t.id, { ...t, transceiver });
    }
    for (const [id, info] of Object.entries(this.remoteTracks)) {
      const now = receiving.get(id);
      if (!now || now.transceiver.mid !== info.mid) this.#removeRemoteTrack(id);
    }
    for (const [id, t] of receiving) {
      if (this.remoteTracks[id]) continue;
      const published = this.publishedTracks[id];
      const track = t.transceiver.receiver.track;
      this.remoteTracks[id] = {
        id,
        participant: t.participant,
        kind: track.kind,
        source: published?.source ?? (track.kind === 'audio' ? 'microphone' : 'camera'),
        mid: t.transceiver.mid,
        muted: published?.muted ?? false,
      };
      this.receivers.set(id, track);
      this.#emit('track-added', { id, info: this.remoteTracks[id], track });
    }
    this.#changed();
  }

  #onTrackMuted(id, muted) {
    if (this.publishedTracks[id]) this.publishedTracks[id].muted = muted;
    if (this.remoteTracks[id]) this.remoteTracks[id].muted = muted;
    if (this.localTracks[id]) this.localTracks[id].muted = muted;
  }

  #removeParticipant(sid) {
    for (const [id, t] of Object.entries(this.publishedTracks)) {
      if (t.participant === sid) delete this.publishedTracks[id];
    }
    for (const [id, t] of Object.entries(this.remoteTracks)) {
      if (t.participant === sid) this.#removeRemoteTrack(id);
    }
    delete this.participants[sid];
    if (this.activeSpeaker === sid) this.activeSpeaker = null;
  }

  #removeRemoteTrack(id) {
    const info = this.remoteTracks[id];
    if (!info) return;
    delete this.remoteTracks[id];
    delete this.subscriptions[id];
    this.receivers.delete(id);
    this.#emit('track-removed', { id, info });
  }

  // --- connection lifecycle ---------------------------------------------------------------

  #ping() {
    this.signaling?.request('ping').catch((err) => console.warn('ping:', err.message));
  }

  #onClosed(signaling, { code, closing }) {
    if (this.signaling !== signaling) return; // an earlier session, already torn down
    const message = closing ? `the server closed the session: ${closing}` : `connection lost (${code})`;
    this.#fail({ code: 'disconnected', message });
    this.#teardown();
  }

  /**
   * Sends a chat message to everyone, or only to the participant `to` (a sid). Resolves when
   * the server accepted it (it arrives as a `chat` event too); rejects with the server's error
   * (`permission_denied` without the publish-data grant, `chat_too_long`, `chat_full`, …).
   */
  async sendChat(text, to = null) {
    if (!this.signaling) throw new Error('not joined');
    await this.signaling.request('chat', to ? { text, to } : { text });
  }

  #teardown() {
    clearInterval(this.pingTimer);
    for (const id of Object.keys(this.remoteTracks)) this.#removeRemoteTrack(id);
    for (const track of this.localStream?.getTracks() ?? []) track.stop();
    this.publishPc?.close();
    this.subscribePc?.close();
    const signaling = this.signaling;
    this.#reset();
    signaling?.close();
    this.#emit('closed', {});
    this.#changed();
  }

  #fail(err) {
    if (err instanceof ConnectionClosed) return; // #onClosed reports the disconnection once
    this.lastError = { code: err.code ?? 'client', message: err.message ?? String(err) };
    if (err.id !== undefined) this.lastError.id = err.id;
    this.errors.push(this.lastError);
    console.error('sfu:', this.lastError.code, this.lastError.message);
    this.#emit('error', this.lastError);
  }

  #changed() {
    this.#emit('change', {});
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** A development token from the server (`sfu-server --dev`), see docs/protocol.md. */
async function fetchDevToken(room, identity, name) {
  const res = await fetch(`/dev/token?${new URLSearchParams({ room, identity, name })}`);
  if (!res.ok) {
    const body = await res.text();
    let reason = body;
    try {
      reason = JSON.parse(body).error ?? body;
    } catch {}
    throw new Error(`no token (GET /dev/token answered ${res.status}: ${reason})`);
  }
  return (await res.json()).token;
}

function makeIdentity(name) {
  // Identities are 1-64 of [A-Za-z0-9_.-] on the server; the suffix keeps tabs apart.
  const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'guest';
  return `${slug}-${Math.random().toString(36).slice(2, 8)}`;
}

/** The known `set_subscription` fields of `options` that are set (null and undefined are left out). */
function pickSubscriptionFields(options = {}) {
  const out = {};
  for (const k of SUBSCRIPTION_FIELDS) if (options[k] !== undefined && options[k] !== null) out[k] = options[k];
  return out;
}

/**
 * Puts `mimeType` first in the transceiver's codec preferences (the order of the offer), the
 * other codecs (and RTX/RED/FEC) after it. Throws if the browser cannot send it.
 */
function preferCodec(transceiver, mimeType) {
  const codecs = RTCRtpSender.getCapabilities(transceiver.sender.track?.kind ?? 'video')?.codecs ?? [];
  const wanted = codecs.filter((c) => c.mimeType.toLowerCase() === mimeType.toLowerCase());
  if (!wanted.length) throw new Error(`this browser cannot send ${mimeType}`);
  transceiver.setCodecPreferences([...wanted, ...codecs.filter((c) => !wanted.includes(c))]);
}

/** The publish answer with `x-google-start-bitrate` on every video codec (see START_BITRATE_KBPS). */
function withStartBitrate(sdp) {
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const param = `x-google-start-bitrate=${START_BITRATE_KBPS}`;
  const out = [];
  const sections = sdp.split(/\r?\n(?=m=)/);
  for (const section of sections) {
    const lines = section.split(/\r?\n/);
    if (!lines[0].startsWith('m=video')) {
      out.push(section);
      continue;
    }
    const codecs = lines
      .map((l) => /^a=rtpmap:(\d+) (\S+)\//.exec(l))
      .filter((m) => m && !/^(rtx|red|ulpfec|flexfec-03)$/i.test(m[2]))
      .map((m) => m[1]);
    const munged = lines.map((l) => {
      const fmtp = /^a=fmtp:(\d+) /.exec(l);
      return fmtp && codecs.includes(fmtp[1]) && !l.includes('x-google-start-bitrate') ? `${l};${param}` : l;
    });
    for (const pt of codecs) {
      if (!lines.some((l) => l.startsWith(`a=fmtp:${pt} `))) {
        const at = munged.findIndex((l) => l.startsWith(`a=rtpmap:${pt} `));
        munged.splice(at + 1, 0, `a=fmtp:${pt} ${param}`);
      }
    }
    out.push(munged.join(eol));
  }
  return out.join(eol);
}

function subscriptionKey(fields) {
  return JSON.stringify(SUBSCRIPTION_FIELDS.map((k) => fields[k] ?? null));
}

/** Camera and microphone, or whichever of them exists; null if neither. */
async function getMedia(audio) {
  for (const constraints of [
    { audio, video: VIDEO_CONSTRAINTS },
    { video: VIDEO_CONSTRAINTS },
    { audio },
  ]) {
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (err) {
      console.warn('getUserMedia', JSON.stringify(constraints), 'failed:', err.name, err.message);
    }
  }
  return null;
}

/**
 * Waits until the connection has gathered its candidates, at most `ms`. The server is ICE-lite
 * and learns our address from our connectivity checks, so this only makes the SDP complete.
 */
function iceGatheringDone(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => pc.iceGatheringState === 'complete' && done();
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}
