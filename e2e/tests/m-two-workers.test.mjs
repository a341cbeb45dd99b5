// m. A room larger than one worker: the server runs two media workers and takes one participant
//    per worker (`--workers 2 --room-participants-per-worker 1`). Alice lands on the room's home
//    worker, Bob on the other one, Carol (no third worker) back on the home worker. Each
//    participant's media really goes through its own worker's UDP port (the selected ICE pair of
//    both its connections), and all six directions decode video and receive audio for 5 s: Bob's
//    tracks reach Alice and Carol, and theirs reach Bob, only through pipes between the workers.
//    Then, in a room of two, the one on the second worker speaks: the room takes speaker events
//    from its home worker only, whose detector hears the speaker through its copy of the audio
//    (a producer id of the home worker, which the room maps back to the track): both pages name
//    the speaker.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allPairs, expectMediaFlowing } from '../lib/media.mjs';
import { withRoom } from '../lib/room.mjs';
import { writeToneWav } from '../lib/tone.mjs';

const SERVER = { args: ['--workers', '2', '--room-participants-per-worker', '1'] };

test('a room spread over two workers: everyone receives everyone', { timeout: 150_000 }, () =>
  withRoom(
    async (room) => {
      const alice = await room.join('Alice');
      const bob = await room.join('Bob');
      const carol = await room.join('Carol');
      room.addDiagnostics('server UDP port of each page (publish, subscribe)', async () =>
        JSON.stringify(await Promise.all([alice, bob, carol].map(async (p) => [p.name, await serverPorts(p)]))),
      );

      await expectMediaFlowing(allPairs([alice, bob, carol]));
      for (const [me, other] of allPairs([alice, bob, carol])) await me.waitUntilShows(other);

      const [a, b, c] = await Promise.all([alice, bob, carol].map(serverPorts));
      for (const [name, ports] of [['Alice', a], ['Bob', b], ['Carol', c]]) {
        assert.equal(ports.publish, ports.subscribe, `${name}'s two connections use one worker: ${JSON.stringify(ports)}`);
      }
      assert.notEqual(a.subscribe, b.subscribe, `Alice and Bob are on different workers: ${a.subscribe}, ${b.subscribe}`);
      assert.equal(c.subscribe, a.subscribe, 'Carol fills the home worker (the pool has no third)');
      const log = room.server.output.join('\n');
      assert.match(log, /room extended to another worker/, 'the server says the room took a second worker');
    },
    { server: SERVER },
  ));

test('the active speaker is found on the second worker too', { timeout: 120_000 }, async () => {
  const tone = await writeToneWav({ frequency: 440, amplitude: 0.5, seconds: 5 });
  try {
    await withRoom(
      async (room) => {
        const query = { audioprocessing: '0', mic: 'off' };
        const quiet = await room.join('Quiet', { query });
        const speaker = await room.join('Speaker', { query });
        await Promise.all([quiet.waitUntilShows(speaker), speaker.waitUntilShows(quiet)]);
        await quiet.waitFor(() => Object.values(window.sfuClient.remoteTracks).some((t) => t.kind === 'audio'), {
          what: "Speaker's audio track",
        });
        const [q, s] = await Promise.all([quiet, speaker].map(serverPorts));
        assert.notEqual(q.subscribe, s.subscribe, `Speaker is on the other worker: ${q.subscribe}, ${s.subscribe}`);

        await speaker.page.click('#mic');
        for (const p of [quiet, speaker]) {
          await p.waitFor((sid) => window.sfuClient.activeSpeaker === sid, {
            arg: speaker.sid,
            what: 'Speaker (on the second worker) to be the active speaker',
            timeout: 15_000,
          });
        }
      },
      { server: SERVER, chromiumArgs: [`--use-file-for-fake-audio-capture=${tone.file}`] },
    );
  } finally {
    await tone.remove();
  }
});

/**
 * The server's UDP port on the selected ICE candidate pair of the page's publish and subscribe
 * connections (each worker has a port of its own). Waits until both have a selected pair.
 */
function serverPorts(participant) {
  return participant.waitFor(
    async () => {
      const c = window.sfuClient;
      const port = async (pc) => {
        if (!pc) return null;
        const stats = [...(await pc.getStats()).values()];
        const byId = new Map(stats.map((s) => [s.id, s]));
        const transport = stats.find((s) => s.type === 'transport' && s.selectedCandidatePairId);
        const pair = transport && byId.get(transport.selectedCandidatePairId);
        return (pair && byId.get(pair.remoteCandidateId)?.port) ?? null;
      };
      const [publish, subscribe] = await Promise.all([port(c.publishPc), port(c.subscribePc)]);
      return publish && subscribe && { publish, subscribe };
    },
    { what: 'a selected ICE candidate pair on both connections' },
  );
}
