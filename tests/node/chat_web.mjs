// Drives examples/chat-web in headless Chromium: types a message, approves
// the tool call the agent asks about, sees the streamed answer, uploads a
// file and sends a turn carrying it, stops a long turn while it streams,
// edits a message and reruns it, then saves a screenshot. The server spaces
// its events out (the Rust driver sets that) so a click lands mid-turn.
// Usage: node tests/node/chat_web.mjs <page URL> <screenshot path>
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error('usage: chat_web.mjs <url> <screenshot>');
  process.exit(2);
}
const step = (s) => console.log('chat-web: ' + s);
// Without the background-networking flags Chromium waits on refused
// connections to Google services on a closed network.
// A fresh profile each run (playwright takes it as the persistent context's
// directory), removed when the run ends.
const profile = mkdtempSync(join(tmpdir(), 'chat-web-chromium-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 900, height: 760 },
  timeout: 60_000,
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(30_000);
  page.on('console', (m) => step('console: ' + m.text()));
  await page.goto(url);
  step('page loaded');

  await page.fill('#message', 'Look this up, it needs approval');
  await page.click('#send');
  await page.waitForSelector('.approval button.approve');
  step('approval asked');
  await page.click('.approval button.approve');
  await page.waitForSelector('.approval:has-text("approved")');
  const first = page.locator('.assistant').nth(0);
  await page.waitForFunction(() => document.querySelector('.assistant')?.dataset.done === 'true');
  const text = await first.textContent();
  if (!text.includes('Here is what I found')) throw new Error('no streamed answer: ' + text);
  step('streamed answer: ' + text);
  if (await page.locator('.tool').count() < 1) throw new Error('no tool call shown');

  await page.setInputFiles('#file', {
    name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('Platos notes\n'.repeat(100)),
  });
  await page.waitForSelector('#files:has-text("uploaded (1300 bytes)")');
  step('file uploaded');
  await page.fill('#message', 'Summarize the attached notes');
  await page.click('#send');
  await page.waitForFunction(() => [...document.querySelectorAll('.assistant')][1]?.dataset.done === 'true');
  const second = await page.locator('.assistant').nth(1).textContent();
  if (!second.includes('Summarize the attached notes')) throw new Error('second answer: ' + second);
  step('second turn answered');

  // Stop: a long answer (2000 tokens), stopped once its first words show.
  await page.fill('#message', 'Tell me everything [tokens=2000]');
  await page.click('#send');
  const long = page.locator('.assistant').nth(2);
  await page.waitForFunction(() => ([...document.querySelectorAll('.assistant')][2]?.textContent ?? '').includes('w1 '));
  await page.click('#stop');
  await page.waitForFunction(() => [...document.querySelectorAll('.assistant')][2]?.dataset.done === 'true');
  const stopped = await long.textContent();
  if (stopped.includes('w2000')) throw new Error('the turn ran to its end: ' + stopped.slice(-80));
  if (await page.locator('.tool:has-text("(stopped)")').count() !== 1) throw new Error('no "(stopped)" shown');
  if (!(await page.locator('#stop').isDisabled())) throw new Error('stop still enabled after the turn');
  step('turn stopped after ' + stopped.trim().split(/\s+/).length + ' of 2000 words');

  // Edit and rerun: the second question, rephrased; the page runs the turn again.
  const edit = page.locator('.user').nth(1).locator('button.edit');
  await edit.waitFor();
  await edit.click();
  if (await page.inputValue('#message') !== 'Summarize the attached notes') throw new Error('edit did not load the message');
  await page.fill('#message', 'Summarize the notes in one line');
  await page.click('#send');
  await page.waitForSelector('.tool:has-text("(edited; running the turn again)")');
  await page.waitForFunction(() => [...document.querySelectorAll('.assistant')][3]?.dataset.done === 'true');
  const rerun = await page.locator('.assistant').nth(3).textContent();
  if (!rerun.includes('Summarize the notes in one line')) throw new Error('rerun answer: ' + rerun);
  // (An `edit` button follows each finished user line.)
  const shown = await page.locator('.user').nth(3).textContent();
  if (!shown.startsWith('You: Summarize the notes in one line')) throw new Error('the edited message is not shown: ' + shown);
  // The thread itself holds the edited message now.
  const stored = await page.evaluate(async () =>
    (await (await fetch('/api/messages?threadId=' + encodeURIComponent(threadId))).json())
      .filter((m) => m.role === 'user').map((m) => m.content));
  if (!stored.includes('Summarize the notes in one line') || stored.includes('Summarize the attached notes')) {
    throw new Error('stored user messages: ' + JSON.stringify(stored));
  }
  step('edited and rerun');
  if (await page.locator('.error').count() > 0) {
    throw new Error('the page shows an error: ' + await page.locator('.error').first().textContent());
  }
  mkdirSync(dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  step('screenshot ' + shot);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
