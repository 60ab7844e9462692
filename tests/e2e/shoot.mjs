// shoot.mjs: screenshots of the main views for a person to look at (not a test: tests/run runs test_*.mjs only).
//
// node tests/e2e/shoot.mjs OUTDIR [PREFIX]: starts `socklab serve`, runs the
// handshake, sticky and udp-ping labs once through the form, then reopens each
// run at 1280x720 and 1440x900 in English and Chinese and saves what a user
// sees (the viewport) and the whole page, plus a few states: a packet
// selected, a run stepped back, the first screen.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, RUN_WAIT, WAIT, startServer, stopServer } from './lib.mjs';

const out = path.resolve(process.argv[2] || 'shots');
const prefix = process.argv[3] || '';
fs.mkdirSync(out, { recursive: true });
const { chromium } = await import('playwright-core');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'socklab-shoot-'));
fs.mkdirSync(path.join(process.cwd(), 'build', 'test-logs'), { recursive: true });
const srv = await startServer(tmp, { log: 'shoot-server.log' });
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });

async function newPage(w, hgt, lang) {
	const ctx = await browser.newContext({ viewport: { width: w, height: hgt } });
	await ctx.addInitScript((l) => localStorage.setItem('socklab.lang', l), lang);
	const page = await ctx.newPage();
	page.setDefaultTimeout(WAIT);
	page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
	page.on('console', (m) => { if (m.type() === 'error') console.log(`console: ${m.text()}`); });
	return page;
}

async function run(lab, fill) {
	const page = await newPage(1440, 900, 'en');
	await page.goto(`${srv.base}/#/lab/${lab}`);
	await page.locator('#conn[data-state="open"]').waitFor();
	if (fill) await fill(page);
	await page.click('#run-btn');
	await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	const id = await page.getAttribute('.run-card', 'data-run');
	await page.context().close();
	return id;
}

async function save(page, name) {
	await page.screenshot({ path: path.join(out, `${prefix}${name}.png`) });
	await page.screenshot({ path: path.join(out, `${prefix}${name}-full.png`), fullPage: true });
}

const runs = {
	handshake: await run('handshake'),
	sticky: await run('sticky'),
	'udp-ping': await run('udp-ping'),
};
console.log(JSON.stringify(runs));
for (const [w, hgt] of [[1280, 720], [1440, 900]]) {
	for (const lang of ['en', 'zh-CN']) {
		const tag = `${w}x${hgt}-${lang}`;
		const page = await newPage(w, hgt, lang);
		await page.goto(`${srv.base}/#/lab/handshake`);
		await page.locator('#run-btn').waitFor();
		await page.screenshot({ path: path.join(out, `${prefix}first-${tag}.png`) });
		for (const [lab, id] of Object.entries(runs)) {
			await page.goto(`${srv.base}/#/run/${id}`);
			await page.reload();
			await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
			await page.locator('.player').first().scrollIntoViewIfNeeded();
			await page.evaluate(() => document.querySelector('#view').scrollIntoView());
			await save(page, `${lab}-${tag}`);
			if (lab === 'handshake') {
				await page.click('.hs-seg[data-n="1"] .hs-hit');
				await page.evaluate(() => document.querySelector('.hs-detail, .pv-detail')?.scrollIntoView());
				await save(page, `${lab}-detail-${tag}`);
				for (let i = 0; i < 8; i++) await page.click('.pl-back');
				await page.evaluate(() => document.querySelector('#view').scrollIntoView());
				await save(page, `${lab}-step-${tag}`);
			}
		}
		await page.context().close();
	}
}
await browser.close();
await stopServer(srv);
fs.rmSync(tmp, { recursive: true, force: true });
