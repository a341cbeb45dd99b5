// d. Muting: Alice's mute buttons disable her tracks and send `mute`; the others' clients get
//    `track_muted` and show it (state and the tile's badges); unmuting reverses it. Someone
//    joining while Alice's camera is off learns it is muted from `joined`, and gets her video
//    as soon as she turns the camera back on.

import { test } from 'node:test';
import { waitForMediaFrom } from '../lib/media.mjs';
import { withRoom } from '../lib/room.mjs';

test('muting on one page shows as muted on the others', { timeout: 150_000 }, () =>
  withRoom(async (room) => {
    const alice = await room.join('Alice');
    const bob = await room.join('Bob');
    const ids = await waitForMediaFrom(bob, alice);

    const shownMuted = (viewer, id, muted, attr) =>
      viewer.waitFor(
        ({ id, muted, sid, attr }) =>
          window.sfuClient.publishedTracks[id]?.muted === muted &&
          (window.sfuClient.remoteTracks[id]?.muted ?? muted) === muted &&
          document.querySelector(`.tile.remote[data-sid="${sid}"]`)?.dataset[attr] === String(muted),
        { arg: { id, muted, sid: alice.sid, attr }, what: `Alice's track ${id} to show muted=${muted}` },
      );
    const mutedOnAlice = (kind, muted) =>
      alice.waitFor(
        ({ kind, muted }) => {
          const c = window.sfuClient;
          const local = Object.values(c.localTracks).find((t) => t.kind === kind);
          const track = c.localStream.getTracks().find((t) => t.kind === kind);
          return local?.muted === muted && track.enabled === !muted && c.lastError === null;
        },
        { arg: { kind, muted }, what: `Alice's own ${kind} to be muted=${muted} without error` },
      );

    await alice.page.click('#cam');
    await mutedOnAlice('video', true);
    await shownMuted(bob, ids.video, true, 'videoMuted');

    const carol = await room.join('Carol');
    await shownMuted(carol, ids.video, true, 'videoMuted');

    await alice.page.click('#cam');
    await mutedOnAlice('video', false);
    await shownMuted(bob, ids.video, false, 'videoMuted');
    await shownMuted(carol, ids.video, false, 'videoMuted');
    await waitForMediaFrom(carol, alice);
    const framesNow = (await bob.stats())[ids.video].framesDecoded;
    await bob.waitFor(({ id, before }) => window.sfuClient.stats().then((s) => s[id].framesDecoded > before + 20), {
      arg: { id: ids.video, before: framesNow },
      what: "Alice's video to flow again after unmuting",
    });

    await alice.page.click('#mic');
    await mutedOnAlice('audio', true);
    await shownMuted(bob, ids.audio, true, 'audioMuted');
    await shownMuted(carol, ids.audio, true, 'audioMuted');

    await alice.page.click('#mic');
    await mutedOnAlice('audio', false);
    await shownMuted(bob, ids.audio, false, 'audioMuted');
    await shownMuted(carol, ids.audio, false, 'audioMuted');
  }));
