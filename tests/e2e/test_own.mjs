// test_own.mjs: the own lab's editor and view in a real Chromium against a real `socklab serve` (TAP output).
//
// The form holds the echo starter; Run uploads both programs; the trace shows
// as many socket-call rows per side as the run's own events have, the client's
// printed lines, and both programs' ends. In Chinese the starters carry
// Chinese comments. Screenshots at 1280x720 and 1440x900 in both languages go
// to build/test-logs/e2e-own-*.png.

import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchPage, runTap, startServer, test, until,
} from './lib.mjs';

let srv;
let page;
const problems = [];

async function events(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function shots(name) {
	for (const [w, hgt] of [[1280, 720], [1440, 900]]) {
		await page.setViewportSize({ width: w, height: hgt });
		await page.screenshot({ path: path.join(LOGS, `e2e-own-${name}-${w}x${hgt}.png`) });
	}
	await page.setViewportSize({ width: 1440, height: 1000 });
}

async function runAndWait() {
	await page.click('#run-btn');
	await page.locator('.run-card').first().waitFor({ state: 'visible', timeout: WAIT });
	await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	const id = await page.getAttribute('.run-card', 'data-run');
	return { id, status: await page.getAttribute('.run-summary .pill', 'data-status') };
}

test('the editors hold the echo starter and a run traces both programs', async () => {
	await page.goto(`${srv.base}/#/lab/own`);
	await page.locator('#conn[data-state="open"]').waitFor({ timeout: WAIT });
	await page.locator('#file-server').waitFor({ timeout: WAIT });
	const server = await page.inputValue('#file-server');
	const client = await page.inputValue('#file-client');
	assert(server.includes('srv.listen(5)') && client.includes('c.connect(("server", 8080))'),
		'the echo starter is loaded');
	await shots('form-en');
	const { id, status } = await runAndWait();
	assertEq(status, 'ok', 'run status');
	const evs = await events(id);
	for (const who of ['server', 'client']) {
		const want = evs.filter((e) => e.type === 'syscall' && e.who === who).length;
		assert(want > 0, `${who} calls in the events`);
		await until(async () => (await page.locator(`.own-trace .r-sc .c-${who}.cell-call, .own-trace .r-sc .c-${who}.cell-failed, .own-trace .r-sc .c-${who}.cell-eof`).count()) === want,
			WAIT, `${who}'s call rows`);
	}
	const printed = evs.filter((e) => e.type === 'output' && e.who === 'client').map((e) => e.text);
	assertEq(printed, ['hello -> HELLO', 'socket -> SOCKET', 'lab -> LAB'], 'the client printed the replies');
	const shown = await page.locator('.own-trace .c-client .own-out').allTextContents();
	assertEq(shown, printed, 'the printed lines in the client column');
	assertEq(await page.locator('.own-trace .r-prog').count(), 4, 'two starts and two ends');
	// The kernel's reports on each program's sockets, in its column: the
	// client socket's transitions as the tracepoint gave them.
	const conn = evs.find((e) => e.type === 'syscall' && e.who === 'client' && e.call === 'connect');
	const trans = evs.filter((e) => e.type === 'state' && e.program === 'client' && e.fd === conn.fd)
		.map((e) => `client socket (fd ${conn.fd}): ${e.from} → ${e.to}`);
	assert(trans.length >= 2, `client transitions in the events: ${trans.length}`);
	const rows = (await page.locator('.own-trace .r-state .c-client .ev-mark').allTextContents())
		.filter((x) => x.includes('→'));
	assertEq(rows, trans, 'the client socket\'s transitions in its column');
	const kernel = evs.filter((e) => ['state', 'observation', 'timer'].includes(e.type)).length;
	assertEq(await page.locator('.own-trace .r-state').count(), kernel, 'a row per kernel report');
	await page.locator('.own-trace .r-state').first().scrollIntoViewIfNeeded();
	await shots('states-en');
	await page.locator('.own-trace .r-sc').first().scrollIntoViewIfNeeded();
	await shots('run-en');
});

test('an upload that is too large is refused in the page, naming the program', async () => {
	await page.goto(`${srv.base}/#/lab/own`);
	await page.locator('#file-client').waitFor({ timeout: WAIT });
	await page.fill('#file-client', '#'.repeat(25 * 1024));
	const runId = await page.getAttribute('.run-card', 'data-run').catch(() => null);
	await page.click('#run-btn');
	await page.locator('.form-error:not([hidden])').waitFor({ timeout: WAIT });
	const msg = await page.locator('.form-error').textContent();
	assert(msg.includes('client') && msg.includes('24'), `the error names the program and the limit: ${msg}`);
	await page.locator('.form-error').waitFor({ state: 'visible', timeout: WAIT });
	assertEq(await page.getAttribute('.run-card', 'data-run').catch(() => null), runId, 'no run started');
});

test('in Chinese the starters carry Chinese comments', async () => {
	await page.goto(`${srv.base}/#/lab/own`);
	await page.locator('#lang-select').waitFor({ timeout: WAIT });
	await page.selectOption('#lang-select', 'zh-CN');
	await until(async () => (await page.getAttribute('html', 'lang')) === 'zh-CN', WAIT, 'Chinese');
	await page.selectOption('#starter', 'echo');
	await page.click('.starter-field button');
	const server = await page.inputValue('#file-server');
	assert(server.includes('回显服务器'), 'a Chinese comment in the server starter');
	await shots('form-zh');
	const { status } = await runAndWait();
	assertEq(status, 'ok', 'run status');
	await page.locator('.own-trace .r-sc').first().scrollIntoViewIfNeeded();
	await shots('run-zh');
	await page.locator('.own-trace .r-state').first().scrollIntoViewIfNeeded();
	await shots('states-zh');
	await page.selectOption('#lang-select', 'en');
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

runTap({
	tmpPrefix: 'socklab-e2e-own-',
	async setup(chromium, tmp) {
		srv = await startServer(tmp, { log: 'e2e-own-server.log' });
		page = await launchPage(chromium, tmp, problems);
		return 'socklab serve and Chromium';
	},
	failShots: (n) => [[page, `e2e-own-fail-${n}.png`]],
});
