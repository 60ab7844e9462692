// test_syn_flood.mjs: the syn-flood view in a real Chromium against a real `socklab serve` (TAP output).
//
// One run through the form (a spoofed flood with SYN cookies): the view must
// list exactly the run's connect events with their results, show the TcpExt
// counters the run ended with, draw one dot per sock_diag sample and show the
// cookie note. Screenshots at 1280x720 and 1440x900 in English and Chinese go
// to build/test-logs/e2e-syn-flood-*.png.

import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchPage, runTap, startServer, test, until,
} from './lib.mjs';

let srv;
let page;
let runId;
const problems = [];

async function events(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

test('a flood with cookies: connects, counters, samples and the cookie note as the run reported them', async () => {
	await page.goto(`${srv.base}/#/lab/syn-flood`);
	await page.locator('#conn[data-state="open"]').waitFor({ timeout: WAIT });
	await page.locator('#p-syncookies').waitFor({ timeout: WAIT });
	await page.fill('#p-syncookies', '1');
	await page.fill('#p-duration_ms', '2000');
	await page.fill('#p-rate', '300');
	await page.click('#run-btn');
	await page.locator('.run-card').first().waitFor({ state: 'visible', timeout: WAIT });
	await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	runId = await page.getAttribute('.run-card', 'data-run');
	assertEq(await page.getAttribute('.run-summary .pill', 'data-status'), 'ok', 'run status');
	const evs = await events(runId);
	const conns = evs.filter((e) => e.type === 'connect');
	assert(conns.length >= 3, `${conns.length} connects`);
	await until(async () => (await page.locator('.sf-conns li').count()) === conns.length, WAIT, 'one row per connect');
	const oks = await page.locator('.sf-conns li').evaluateAll((ls) => ls.map((l) => l.dataset.ok));
	assertEq(oks, conns.map((c) => (c.ok ? '1' : '0')), 'each connect result');
	const end = evs[evs.length - 1];
	for (const k of ['SyncookiesSent', 'SyncookiesRecv', 'TCPReqQFullDoCookies']) {
		const v = await page.locator(`.sf-counters tr[data-counter="${k}"] td.sf-num`).textContent();
		assertEq(v, String(end.summary.counters[k]), `counter ${k}`);
	}
	assert(end.summary.counters.SyncookiesSent > 0, 'cookies were sent');
	const samples = evs.filter((e) => e.type === 'queues').length;
	assertEq(await page.locator('.sf-chart circle.sf-dot').count(), samples, 'one dot per sock_diag sample');
	assertEq(await page.locator('.sf-chart rect.sf-ok').count(), conns.filter((c) => c.ok).length, 'a green bar per connected attempt');
	assert(await page.locator('.callout-note[data-key="synflood.cookies"]').count() === 1, 'the cookie note');
});

test('the stored run replays into the same view', async () => {
	const evs = await events(runId);
	await page.goto(`${srv.base}/#/run/${runId}`);
	await page.reload();
	const conns = evs.filter((e) => e.type === 'connect').length;
	await until(async () => (await page.locator('.sf-conns li').count()) === conns, WAIT, 'the connects replayed');
	await until(async () => (await page.locator('.sf-chart circle.sf-dot').count()) === evs.filter((e) => e.type === 'queues').length, WAIT, 'the samples replayed');
	const end = evs[evs.length - 1];
	const v = await page.locator('.sf-counters tr[data-counter="SyncookiesSent"] td.sf-num').textContent();
	assertEq(v, String(end.summary.counters.SyncookiesSent), 'the counters replayed');
});

test('screenshots at 1280x720 and 1440x900 in English and Chinese', async () => {
	for (const lang of ['en', 'zh-CN']) {
		await page.selectOption('#lang-select', lang);
		await until(async () => (await page.getAttribute('html', 'lang')) === lang, WAIT, `language ${lang}`);
		await page.locator('.sf-card').waitFor({ timeout: WAIT });
		for (const [w, hgt] of [[1280, 720], [1440, 900]]) {
			await page.setViewportSize({ width: w, height: hgt });
			await page.locator('.sf-card').evaluate((e) => {
				e.scrollIntoView({ block: 'start' });
				window.scrollBy(0, -170);
			});
			await page.screenshot({ path: path.join(LOGS, `e2e-syn-flood-${lang}-${w}x${hgt}.png`) });
			await page.locator('.sf-counters').evaluate((e) => {
				e.scrollIntoView({ block: 'start' });
				window.scrollBy(0, -160);
			});
			await page.screenshot({ path: path.join(LOGS, `e2e-syn-flood-${lang}-${w}x${hgt}-counters.png`) });
		}
	}
	if (await page.locator('.sf-card h3').textContent() === '') throw new Error('no heading');
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

runTap({
	tmpPrefix: 'socklab-e2e-syn-flood-',
	async setup(chromium, tmp) {
		srv = await startServer(tmp, { log: 'e2e-syn-flood-server.log' });
		page = await launchPage(chromium, tmp, problems);
		return 'socklab serve and Chromium';
	},
	failShots: (n) => [[page, `e2e-syn-flood-fail-${n}.png`]],
});
