// test_time_wait.mjs: the time-wait view in a real Chromium against a real `socklab serve` (TAP output).
//
// One who-closes run through the form (the client closes first): the client
// host's table must show the TIME_WAIT socket of the run's last sample with
// the time the kernel reported, the server host's none, and the call log
// every call event with its errno (the second bind's EADDRINUSE); in Chinese
// the note names the closer in Chinese (its role is an i18n param). Then a
// ports run: the ports card shows getsockname's port inside the range and
// each SO_REUSEPORT listener's accepts, counted from the accept() calls.
// Screenshots at 1280x720 and 1440x900 in English and Chinese go to
// build/test-logs/e2e-time-wait-*.png (ports: e2e-time-wait-ports-*).

import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchPage, runTap, startServer, test, until,
} from './lib.mjs';

let srv;
let page;
const problems = [];

// Knobs past a lab's main ones sit under "More knobs" (a closed details).
async function openMore() {
	await page.evaluate(() => { for (const d of document.querySelectorAll('#run-form details')) d.open = true; });
}

async function events(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

test('the client closes first: its TIME_WAIT socket with the kernel\'s time left, and every call', async () => {
	await page.goto(`${srv.base}/#/lab/time-wait`);
	await page.locator('#conn[data-state="open"]').waitFor({ timeout: WAIT });
	await page.locator('#p-observe_ms').waitFor({ state: 'attached', timeout: WAIT });
	await openMore();
	await page.fill('#p-observe_ms', '1500');
	await page.click('#run-btn');
	await page.locator('.run-card').first().waitFor({ state: 'visible', timeout: WAIT });
	await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	const id = await page.getAttribute('.run-card', 'data-run');
	assertEq(await page.getAttribute('.run-summary .pill', 'data-status'), 'ok', 'run status');
	const evs = await events(id);
	const last = (host) => evs.filter((e) => e.type === 'tw_list' && e.host === host).pop();
	const cl = last('client');
	assertEq(cl.count, 1, 'one TIME_WAIT socket on the client host');
	const row = page.locator('.tw-host[data-host="client"] tbody tr[data-sport]');
	await until(async () => (await row.count()) === 1, WAIT, 'the client row');
	assertEq(await row.getAttribute('data-sport'), String(cl.sockets[0].sport), 'its port');
	assertEq(await row.getAttribute('data-ms-left'), String(cl.sockets[0].ms_left), 'the kernel\'s time left');
	assertEq(await page.locator('.tw-host[data-host="server"] tbody tr[data-sport]').count(), 0, 'none on the server host');
	const calls = evs.filter((e) => e.type === 'call');
	assertEq(await page.locator('.tw-calls li').count(), calls.length, 'one line per call');
	assertEq(await page.locator('.tw-calls li[data-errno="EADDRINUSE"]').count(), calls.filter((c) => c.errno === 'EADDRINUSE').length, 'the EADDRINUSE lines');
	assert(await page.locator('.callout-note[data-key="timewait.sixty"]').count() === 1, 'the 60 s note');
});

async function shots(prefix, sel) {
	for (const lang of ['en', 'zh-CN']) {
		await page.selectOption('#lang-select', lang);
		await until(async () => (await page.getAttribute('html', 'lang')) === lang, WAIT, `language ${lang}`);
		await page.locator(sel).waitFor({ timeout: WAIT });
		await page.locator('.tw-calls li').last().waitFor({ state: 'visible', timeout: WAIT });
		for (const [w, hgt] of [[1280, 720], [1440, 900]]) {
			await page.setViewportSize({ width: w, height: hgt });
			await page.locator(sel).evaluate((e) => {
				e.scrollIntoView({ block: 'start' });
				window.scrollBy(0, -170);
			});
			await page.screenshot({ path: path.join(LOGS, `${prefix}-${lang}-${w}x${hgt}.png`) });
		}
	}
}

test('screenshots at 1280x720 and 1440x900 in English and Chinese', async () => {
	await shots('e2e-time-wait', '.tw-card');
});

test('in Chinese the note names the side that closed first in Chinese', async () => {
	await page.selectOption('#lang-select', 'zh-CN');
	await until(async () => (await page.getAttribute('html', 'lang')) === 'zh-CN', WAIT, 'Chinese');
	const note = page.locator('.callout-note[data-key="timewait.who"]');
	await until(async () => /先调用 close\(\) 的是客户端/.test(await note.textContent()), WAIT, 'the closer in Chinese');
	assert(!/client|server/.test(await note.textContent()), `no English role: ${await note.textContent()}`);
	await page.selectOption('#lang-select', 'en');
	await until(async () => (await page.getAttribute('html', 'lang')) === 'en', WAIT, 'English');
});

test('ports: port 0 inside the range, the busy port\'s EADDRINUSE, each SO_REUSEPORT listener\'s accepts', async () => {
	await page.selectOption('#p-scenario', 'ports');
	await openMore();
	await page.fill('#p-conns', '12');
	await page.fill('#p-observe_ms', '0');
	const before = await page.getAttribute('.run-card', 'data-run');
	await page.click('#run-btn');
	await until(async () => (await page.getAttribute('.run-card', 'data-run')) !== before, WAIT, 'a new run');
	await page.locator('.run-summary .pill[data-status="ok"]').waitFor({ state: 'visible', timeout: RUN_WAIT });
	const id = await page.getAttribute('.run-card', 'data-run');
	const evs = await events(id);
	const range = evs.find((e) => e.type === 'port_range');
	const got = evs.find((e) => e.type === 'call' && e.call === 'getsockname');
	assert(got.port >= range.low && got.port <= range.high, `port ${got.port} in ${range.low}-${range.high}`);
	await page.locator('.tw-ports').waitFor({ state: 'visible', timeout: WAIT });
	assertEq(await page.getAttribute('.tw-port0', 'data-port'), String(got.port), 'getsockname\'s port shown');
	assertEq(await page.locator('.tw-range-mark').isVisible(), true, 'marked on the range');
	const acc = evs.filter((e) => e.type === 'call' && e.call === 'accept');
	for (const n of [1, 2]) {
		assertEq(await page.getAttribute(`.tw-listeners tr[data-listener="${n}"]`, 'data-accepted'),
			String(acc.filter((a) => a.listener === n).length), `listener ${n}'s accepts`);
	}
	assertEq(acc.length, 12, 'twelve accepts');
	assertEq(await page.locator('.tw-calls li[data-errno="EADDRINUSE"]').count(), 2, 'the two refused binds in the call log');
	assertEq(await page.locator('.tw-calls li[data-listener="2"][data-call="bind"]').count(), 1, 'listener 2\'s bind');
	assert(await page.locator('.callout-note[data-key="timewait.ports_busy"]').count() === 1, 'the busy-port note');
});

test('ports screenshots at 1280x720 and 1440x900 in English and Chinese', async () => {
	await shots('e2e-time-wait-ports', '.tw-ports');
	await page.selectOption('#lang-select', 'en');
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

runTap({
	tmpPrefix: 'socklab-e2e-time-wait-',
	async setup(chromium, tmp) {
		srv = await startServer(tmp, { log: 'e2e-time-wait-server.log' });
		page = await launchPage(chromium, tmp, problems);
		return 'socklab serve and Chromium';
	},
	failShots: (n) => [[page, `e2e-time-wait-fail-${n}.png`]],
});
