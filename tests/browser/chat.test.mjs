// End-to-end test of the web client (gateway/web/) in a real browser.
//
// playwright-core drives Debian's Chromium (/usr/bin/chromium, headless; no
// browser is ever downloaded). Two separate browser contexts are two users
// who chat through a running gateway; every assertion is on what a page
// shows. Every wait is bounded (poll until true, at most WAIT_MS); nothing
// depends on a sleep.
//
//   CHAT_WEB_URL      the gateway's base URL, e.g. http://127.0.0.1:18081 (required)
//   CHROMIUM          the browser (default /usr/bin/chromium)
//   CHAT_SCREENSHOT   where the conversation screenshot goes ("" for none);
//                     by default docs/screenshot-chat.png when that file is
//                     missing or CHAT_UPDATE_SCREENSHOT=1, else a file in the
//                     temp folder (so a test run leaves the work tree alone)
//   CHAT_WAIT_MS      the bound of every wait (default 20000)

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.CHAT_WEB_URL || '').replace(/\/+$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const DOC_SHOT = path.resolve(HERE, '../../docs/screenshot-chat.png');
const TMP_SHOT = path.join(tmpdir(), `chat-screenshot-${process.pid}.png`);
const SHOT = process.env.CHAT_SCREENSHOT ??
  (process.env.CHAT_UPDATE_SCREENSHOT === '1' || !existsSync(DOC_SHOT) ? DOC_SHOT : TMP_SHOT);
const WAIT_MS = Number(process.env.CHAT_WAIT_MS || 20000);
const PASSWORD = 'correct horse battery staple';
const RUN = randomBytes(3).toString('hex'); // unique usernames per run

if (!BASE) throw new Error('set CHAT_WEB_URL to the gateway base URL, e.g. http://127.0.0.1:18081');
if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM} (apt-get install -y chromium)`);

// chromium.launch() starts the browser on a fresh temporary user-data-dir
// (Playwright makes one per launch and removes it on close).
const ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];

// Polls fn until it returns a truthy value; fails after WAIT_MS with what
// it saw last.
async function until(fn, what, timeout = WAIT_MS) {
  const end = Date.now() + timeout;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) { lastErr = e; }
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}` +
        (lastErr ? ` (last error: ${lastErr.message})` : ` (last value: ${JSON.stringify(last)})`));
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function newUserPage(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 680 }, locale: 'en-GB', timezoneId: 'UTC' });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (e) => { page.errors.push(String(e)); });
  page.on('console', (m) => { if (m.type() === 'error') page.consoleErrors.push(m.text()); });
  page.errors = [];
  page.consoleErrors = [];
  page.user = name;
  return { context, page };
}

async function register(page, name) {
  await page.goto(BASE + '/');
  await page.getByTestId('username').fill(name);
  await page.getByTestId('password').fill(PASSWORD);
  await page.getByTestId('register').click();
  await until(async () => (await page.getByTestId('me').textContent()) === name, `${name} to be signed in`);
  await waitOnline(page);
}

async function login(page, name) {
  await page.getByTestId('username').fill(name);
  await page.getByTestId('password').fill(PASSWORD);
  await page.getByTestId('login').click();
  await until(async () => (await page.getByTestId('me').textContent()) === name, `${name} to be logged in`);
  await waitOnline(page);
}

async function waitOnline(page) {
  await until(async () => (await page.getByTestId('conn-state').getAttribute('data-state')) === 'online',
    `${page.user}'s connection to be online`);
}

function messageWith(page, text) {
  return page.getByTestId('message').filter({ has: page.getByTestId('message-body').getByText(text, { exact: true }) });
}

async function send(page, text) {
  const box = page.getByTestId('composer');
  await box.fill(text);
  await box.press('Enter');
}

async function status(locator) {
  return locator.getAttribute('data-status');
}

// Records every data-status a message element of the page takes, in order.
async function recordStatuses(page) {
  await page.evaluate(() => {
    window.__statusLog = [];
    const rec = (n) => {
      if (n.nodeType === 1 && n.getAttribute('data-testid') === 'message' && n.hasAttribute('data-status'))
        window.__statusLog.push({ cid: n.getAttribute('data-cid'), status: n.getAttribute('data-status') });
    };
    new MutationObserver((muts) => {
      for (const m of muts) {
        if (m.type === 'attributes') rec(m.target);
        else for (const n of m.addedNodes) rec(n);
      }
    }).observe(document.getElementById('message-list'),
      { subtree: true, childList: true, attributes: true, attributeFilter: ['data-status'] });
  });
}

async function statusHistory(page, cid) {
  const log = await page.evaluate(() => window.__statusLog);
  const seq = [];
  for (const e of log) if (e.cid === cid && seq[seq.length - 1] !== e.status) seq.push(e.status);
  return seq;
}

describe('two users chat in the browser', () => {
  const a = `alice_${RUN}`;
  const b = `bob_${RUN}`;
  let browser;
  let A;
  let B;
  const text1 = `Hello Bob, this is Alice (${RUN})`;
  const reply = 'Hi Alice! Nice to hear from you.';
  const edited = `Hello Bob, this is Alice — edited (${RUN})`;
  const doomed = 'This one will be deleted';
  const whileAway = 'Sent while you were away';
  const replyEdited = 'Hi Alice! Nice to hear from you (edited while you were away).';

  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
    A = await newUserPage(browser, a);
    B = await newUserPage(browser, b);
  });

  after(async () => {
    for (const u of [A, B]) {
      if (u && u.page.errors.length) console.log(`# page errors of ${u.page.user}: ${u.page.errors.join(' | ')}`);
    }
    if (browser) await browser.close();
    if (SHOT === TMP_SHOT) rmSync(TMP_SHOT, { force: true });
  });

  it('both users register and connect', async () => {
    await register(A.page, a);
    await register(B.page, b);
    assert.equal(await A.page.getByTestId('auth-view').isVisible(), false);
  });

  it('A starts a direct chat with B by username and sees B online', async () => {
    await A.page.getByTestId('new-chat-user').fill(b);
    await A.page.getByTestId('new-chat').click();
    await until(async () => (await A.page.getByTestId('chat-title').textContent()) === b, 'the chat with B to open');
    const item = A.page.getByTestId('conv-item').filter({ hasText: b });
    await until(async () => (await item.getAttribute('data-online')) === 'true', 'B shown online in A\'s list');
    await until(async () => (await A.page.getByTestId('chat-presence').getAttribute('data-online')) === 'true',
      'B shown online in the chat header');
  });

  it('A\'s message shows at once, reaches B live, and ticks sent → delivered → read', async () => {
    const { page: pa } = A;
    const { page: pb } = B;
    await recordStatuses(pa);
    await send(pa, text1);
    const mine = messageWith(pa, text1);
    await mine.waitFor({ state: 'visible' });
    const cid = await mine.getAttribute('data-cid');
    assert.ok(cid, 'an own message carries its cid');

    // B has not opened the chat: it appears in B's list, unread, with the text.
    const bItem = pb.getByTestId('conv-item').filter({ hasText: a });
    await until(async () => Number(await bItem.getAttribute('data-unread')) >= 1, 'B\'s list to show one unread');
    await until(async () => (await bItem.getByTestId('conv-last').textContent()).includes(text1), 'B\'s list to show the last message');

    await until(async () => (await status(mine)) === 'delivered', 'A\'s message to be delivered');
    await pb.getByTestId('conv-item').filter({ hasText: a }).click();
    await messageWith(pb, text1).waitFor({ state: 'visible' });
    await until(async () => (await status(mine)) === 'read', 'A\'s message to be read');
    await until(async () => (await bItem.getAttribute('data-unread')) === '0', 'B\'s unread count to go to 0');

    const hist = await statusHistory(pa, cid);
    const rank = { pending: 0, sent: 1, delivered: 2, read: 3 };
    for (let i = 1; i < hist.length; i++) assert.ok(rank[hist[i]] > rank[hist[i - 1]], `ticks only move forward: ${hist}`);
    assert.deepEqual(hist.filter((s) => s !== 'pending'), ['sent', 'delivered', 'read'], `ticks went ${hist}`);
    assert.equal(await mine.getByTestId('ticks').textContent(), '✓✓');
  });

  it('B\'s reply reaches A live and is read at once since A has the chat open', async () => {
    await send(B.page, reply);
    await messageWith(A.page, reply).waitFor({ state: 'visible' });
    const theirs = messageWith(B.page, reply);
    await until(async () => (await status(theirs)) === 'read', 'B\'s reply to be read by A');
    // One element per message: the pending copy became the stored one.
    assert.equal(await messageWith(B.page, reply).count(), 1);
    assert.equal(await messageWith(A.page, reply).count(), 1);
  });

  it('B types and A sees the typing indicator, which goes away', async () => {
    const typing = A.page.getByTestId('typing');
    await B.page.getByTestId('composer').pressSequentially('I am wri', { delay: 30 });
    await until(async () => (await typing.isVisible()) && (await typing.textContent()) === `${b} is typing…`,
      'A to see "B is typing…"');
    await B.page.getByTestId('composer').fill('');
    await B.page.getByTestId('composer').blur();
    await until(async () => !(await typing.isVisible()), 'the typing indicator to go');
  });

  it('A edits a message and B sees the new text with "(edited)"', async () => {
    const mine = messageWith(A.page, text1);
    await mine.hover();
    await mine.getByTestId('edit').click();
    await until(async () => (await A.page.getByTestId('composer').inputValue()) === text1, 'the composer to hold the text');
    await A.page.getByTestId('edit-banner').waitFor({ state: 'visible' });
    await send(A.page, edited);
    const theirs = messageWith(B.page, edited);
    await theirs.waitFor({ state: 'visible' });
    await theirs.getByTestId('edited').waitFor({ state: 'visible' });
    assert.equal(await theirs.getByTestId('edited').textContent(), '(edited)');
    await messageWith(A.page, edited).getByTestId('edited').waitFor({ state: 'visible' });
    assert.equal(await messageWith(B.page, text1).count(), 0, 'the old text is gone');
  });

  it('A deletes a message and B sees a tombstone', async () => {
    await send(A.page, doomed);
    await messageWith(B.page, doomed).waitFor({ state: 'visible' });
    const mine = messageWith(A.page, doomed);
    await until(async () => (await mine.getAttribute('data-seq')) !== null, 'the message to get its seq');
    const seq = await mine.getAttribute('data-seq');
    await mine.hover();
    await mine.getByTestId('delete').click();
    await mine.getByTestId('delete').click(); // confirm
    const tomb = B.page.locator(`[data-testid="message"][data-seq="${seq}"]`);
    await until(async () => (await tomb.getAttribute('data-deleted')) === 'true', 'B to see the tombstone');
    assert.equal(await tomb.getByTestId('message-body').textContent(), 'message deleted');
    assert.equal(await messageWith(B.page, doomed).count(), 0);
    await until(async () => (await A.page.locator(`[data-testid="message"][data-seq="${seq}"]`).getAttribute('data-deleted')) === 'true',
      'A to see the tombstone');
  });

  it('A loses the connection, reconnects by itself and gets what it missed', async () => {
    const { page: pa, context: ca } = A;
    await ca.setOffline(true);
    await pa.evaluate(() => window.chatClient.dropConnection());
    await until(async () => (await pa.getByTestId('conn-state').getAttribute('data-state')) !== 'online', 'A to show it is disconnected');
    await send(B.page, whileAway);
    const theirs = messageWith(B.page, whileAway);
    await until(async () => ['sent', 'delivered', 'read'].includes(await status(theirs)), 'B\'s message to be sent');
    await until(async () => (await messageWith(B.page, whileAway).getAttribute('data-seq')) !== null, 'B\'s message to be stored');
    assert.notEqual(await pa.getByTestId('conn-state').getAttribute('data-state'), 'online', 'A is still away');
    assert.equal(await messageWith(pa, whileAway).count(), 0, 'A has not got it yet');
    // B also edits an older message meanwhile.
    const old = messageWith(B.page, reply);
    await old.hover();
    await old.getByTestId('edit').click();
    await send(B.page, replyEdited);
    await messageWith(B.page, replyEdited).getByTestId('edited').waitFor({ state: 'visible' });
    await ca.setOffline(false);
    await waitOnline(pa);
    await messageWith(pa, whileAway).waitFor({ state: 'visible' });
    await messageWith(pa, replyEdited).getByTestId('edited').waitFor({ state: 'visible' });
    await until(async () => (await status(theirs)) === 'read', 'B\'s message to be read after A is back');
  });

  it('a screenshot of the conversation is taken (docs/screenshot-chat.png)', async () => {
    if (!SHOT) return;
    mkdirSync(path.dirname(SHOT), { recursive: true });
    // A quiet view (no pointer over a message) while B is typing.
    await A.page.mouse.move(0, 0);
    await B.page.getByTestId('composer').pressSequentially('Sounds good', { delay: 20 });
    await A.page.getByTestId('typing').waitFor({ state: 'visible' });
    await A.page.screenshot({ path: SHOT });
    await B.page.getByTestId('composer').fill('');
    await B.page.getByTestId('composer').blur();
    await until(async () => !(await A.page.getByTestId('typing').isVisible()), 'the typing indicator to go');
    assert.ok(existsSync(SHOT));
  });

  it('user text is shown as text, never as markup', async () => {
    const evil = '<img src=x onerror="window.__xss=1"><b>not bold</b>';
    await send(B.page, evil);
    const shown = messageWith(A.page, evil);
    await shown.waitFor({ state: 'visible' });
    assert.equal(await shown.getByTestId('message-body').textContent(), evil);
    assert.equal(await A.page.locator('#message-list img, #message-list b, #conv-list img').count(), 0);
    assert.equal(await A.page.evaluate(() => window.__xss), undefined);
  });

  it('after a reload A sees the history again', async () => {
    const { page: pa } = A;
    await pa.reload();
    await waitOnline(pa);
    await messageWith(pa, edited).waitFor({ state: 'visible' });
    await messageWith(pa, edited).getByTestId('edited').waitFor({ state: 'visible' });
    await messageWith(pa, replyEdited).waitFor({ state: 'visible' });
    await messageWith(pa, whileAway).waitFor({ state: 'visible' });
    // The ticks come back too: sync ends with the other members' watermarks.
    await until(async () => (await status(messageWith(pa, edited))) === 'read', 'A\'s message to be ticked read again');
    assert.equal(await pa.locator('[data-testid="message"][data-deleted="true"]').count(), 1);
    assert.equal(await messageWith(pa, doomed).count(), 0);
  });

  it('in a new tab A logs in and the history is there', async () => {
    const page = await A.context.newPage();
    page.user = a;
    page.setDefaultTimeout(WAIT_MS);
    await page.goto(BASE + '/');
    await page.getByTestId('auth-view').waitFor({ state: 'visible' });
    await page.getByTestId('username').fill(a);
    await page.getByTestId('password').fill('not the password');
    await page.getByTestId('login').click();
    await until(async () => (await page.getByTestId('auth-error').textContent()) === 'Wrong username or password.',
      'a wrong password to be refused');
    await login(page, a);
    await page.getByTestId('conv-item').filter({ hasText: b }).click();
    await messageWith(page, edited).waitFor({ state: 'visible' });
    await messageWith(page, replyEdited).waitFor({ state: 'visible' });
    await page.locator('[data-testid="message"][data-deleted="true"]').waitFor({ state: 'visible' });
    await page.close();
  });

  it('when B leaves, A sees B go offline', async () => {
    await B.context.close();
    B = null;
    await until(async () => (await A.page.getByTestId('chat-presence').getAttribute('data-online')) === 'false',
      'B to be shown offline');
    assert.match(await A.page.getByTestId('chat-presence').textContent(), /last seen|offline/);
  });

  it('no page had a script error', () => {
    assert.deepEqual(A.page.errors, []);
  });
});

describe('history scrolls back and groups work', () => {
  const c = `carol_${RUN}`;
  const d = `dave_${RUN}`;
  const N = 75;
  let browser;
  let C;
  let D;

  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
    C = await newUserPage(browser, c);
    D = await newUserPage(browser, d);
  });

  after(async () => { if (browser) await browser.close(); });

  it(`C sends ${N} messages to D`, async () => {
    await register(C.page, c);
    // D registers through the API, then logs in through the page.
    const r = await fetch(BASE + '/v1/register', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: d, password: PASSWORD }),
    });
    assert.equal(r.status, 201);
    await C.page.getByTestId('new-chat-user').fill(d);
    await C.page.getByTestId('new-chat').click();
    await until(async () => (await C.page.getByTestId('chat-title').textContent()) === d, 'the chat with D to open');
    for (let i = 1; i <= N; i++) await send(C.page, `numbered ${i}`);
    await until(async () => (await messageWith(C.page, `numbered ${N}`).getAttribute('data-seq')) !== null, 'the last one to be stored');
  });

  it('D opens the chat: the newest page first, older ones on scrolling up', async () => {
    const { page } = D;
    await page.goto(BASE + '/');
    await login(page, d);
    const item = page.getByTestId('conv-item').filter({ hasText: c });
    await until(async () => Number(await item.getAttribute('data-unread')) >= N, `an unread count of ${N}`);
    await item.click();
    await messageWith(page, `numbered ${N}`).waitFor({ state: 'visible' });
    await until(async () => (await page.getByTestId('message').count()) >= 50, 'the first page');
    assert.ok((await page.getByTestId('message').count()) < N, 'not everything at once');
    assert.equal(await messageWith(page, 'numbered 1').count(), 0);
    await until(async () => {
      await page.getByTestId('messages').evaluate((box) => { box.scrollTop = 0; box.dispatchEvent(new Event('scroll')); });
      return (await page.getByTestId('message').count()) === N;
    }, 'all messages after scrolling up');
    await until(async () => (await page.getByTestId('history-state').getAttribute('data-state')) === 'done', 'the start of the conversation');
    const seqs = await page.getByTestId('message').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-seq'))));
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'oldest first on the page');
    assert.equal(new Set(seqs).size, N, 'one element per seq');
  });

  it('C makes a group; D gets it with its title when C writes', async () => {
    await C.page.locator('.group-box summary').click();
    await C.page.getByTestId('group-title').fill(`Trip ${RUN}`);
    await C.page.getByTestId('group-members').fill(d);
    await C.page.getByTestId('new-group').click();
    await until(async () => (await C.page.getByTestId('chat-title').textContent()) === `Trip ${RUN}`, 'the group to open');
    await send(C.page, 'hello group');
    const item = D.page.getByTestId('conv-item').filter({ hasText: `Trip ${RUN}` });
    await until(async () => (await item.getAttribute('data-kind')) === 'group', 'D to list the group');
    await item.click();
    await messageWith(D.page, 'hello group').waitFor({ state: 'visible' });
    assert.equal(await messageWith(D.page, 'hello group').getByTestId('message-author').textContent(), c);
  });
});

describe('the session lasts', () => {
  const e = `erin_${RUN}`;
  let browser;
  let E;

  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
    E = await newUserPage(browser, e);
  });

  after(async () => { if (browser) await browser.close(); });

  it('the token is refreshed before it expires, and the connection comes back', async () => {
    const { page } = E;
    await page.clock.install();
    await register(page, e);
    const before = await page.evaluate(() => JSON.parse(sessionStorage.getItem('chat.session')));
    const ttl = before.exp * 1000 - Date.now();
    assert.ok(ttl > 60000, 'a token that lives more than a minute');
    const refreshed = page.waitForResponse((r) => r.url().endsWith('/v1/token') && r.request().method() === 'POST');
    // Jump to shortly before the expiry: the refresh timer is due by then.
    await page.clock.fastForward(Math.round(ttl - 4000));
    const res = await refreshed;
    assert.equal(res.status(), 200);
    const fresh = await res.json();
    await until(async () => {
      const now = await page.evaluate(() => JSON.parse(sessionStorage.getItem('chat.session')));
      return now.token === fresh.token && now.exp === fresh.exp && now.exp >= before.exp;
    }, 'the refreshed token in sessionStorage');
    // A jump that long also looks like a dead connection: the client must
    // reconnect by itself, with the new token.
    await waitOnline(page);
    assert.equal(await page.getByTestId('auth-view').isVisible(), false);
  });
});
