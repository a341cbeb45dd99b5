// l. The chat panel: Alice types a message to everyone and Bob's panel shows it; Alice sends
//    Bob a private message that only Bob's panel shows; Carol, joining later, sees the public
//    history on join and not the private message. Chat text is rendered as text, never HTML.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withRoom } from '../lib/room.mjs';

/** The texts in a page's chat panel, in order. */
function panelTexts(p) {
  return p.page.evaluate(() => [...document.querySelectorAll('#chat-log li p')].map((el) => el.textContent));
}

async function type(p, text, toSid = '') {
  await p.page.selectOption('#chat-form select[name="to"]', toSid);
  await p.page.fill('#chat-form input[name="text"]', text);
  await p.page.click('#chat-form button[type="submit"]');
}

test('chat to everyone, to one, and history for a late joiner', { timeout: 120_000 }, () =>
  withRoom(async (room) => {
    const alice = await room.join('Alice', { query: { media: '0' } });
    const bob = await room.join('Bob', { query: { media: '0' } });
    await alice.waitUntilShows(bob);

    const markup = '<img src=x onerror="window.pwned=1"> hello everyone';
    await type(alice, markup);
    await bob.waitFor((text) => [...document.querySelectorAll('#chat-log li p')].some((el) => el.textContent === text), {
      arg: markup,
      what: 'the public message in the panel',
    });
    assert.equal(await bob.page.evaluate(() => window.pwned), undefined, 'chat is shown as text');

    await type(alice, 'for Bob only', bob.sid);
    await bob.waitFor(() => [...document.querySelectorAll('#chat-log li.private p')].some((el) => el.textContent === 'for Bob only'), {
      what: 'the private message in the panel',
    });
    await alice.waitFor(() => window.sfuClient.chat.length === 2, { what: 'Alice sees both (her own echo)' });

    const carol = await room.join('Carol', { query: { media: '0' } });
    await carol.waitFor((text) => window.sfuClient.chat.some((m) => m.text === text), {
      arg: markup,
      what: 'the history on join',
    });
    assert.deepEqual(await panelTexts(carol), [markup], 'Carol sees the public history only');
    assert.deepEqual(await panelTexts(bob), [markup, 'for Bob only']);
  }));
