// Drives examples/chat-web in headless Chromium: types a message, approves
// the tool call the agent asks about, sees the streamed answer, uploads a
// file and sends a turn carrying it, then saves a screenshot.
// Usage: node tests/node/chat_web.mjs <page URL> <screenshot path>
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync } from 'node:fs';
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
// A fresh profile each run (playwright takes it as the persistent context's directory).
const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'chat-web-chromium-')), {
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
  if (await page.locator('.error').count() > 0) {
    throw new Error('the page shows an error: ' + await page.locator('.error').first().textContent());
  }
  mkdirSync(dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  step('screenshot ' + shot);
} finally {
  await browser.close();
}
