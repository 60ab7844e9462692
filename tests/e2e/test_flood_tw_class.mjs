// test_flood_tw_class.mjs: syn-flood and time-wait in a class, in real Chromium: an instructor and a student in two browser contexts (TAP).
//
// The instructor runs syn-flood (cookies on) and then time-wait's ports
// scenario for the class; the student's view follows each live and ends
// showing what the instructor's shows: the same stage, the wire's SYN-ACK
// cookie marks and the counters as the run's summary has them, each
// SO_REUSEPORT listener's accepts as its accept() calls count them. The
// exported time-wait run, opened from the file by the student after the
// class, shows the same view again (a recorded run replayed). Screenshots go
// to build/test-logs/e2e-flood-tw-class-*.png.

import fs from 'node:fs';
import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchBrowser, playerPos, runTap, stageText, startServer, test, until,
	watchPage,
} from './lib.mjs';

const SECRET = 'e2e-flood-tw-class-secret';

let srv;
let teacher;
let student;
let tmp;
let twRun = '';
let twEvs = [];
const problems = [];

async function events(id) {
	return (await (await fetch(`${srv.base}/api/runs/${id}/events`)).text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// Start a class run from the instructor's form and wait until both pages show
// its end; returns the run's id and events.
async function classRun(lab, fill) {
	const before = await teacher.$eval('#pane-main .player', (el) => el.dataset.run).catch(() => '');
	await teacher.click(`.lab-item[data-lab="${lab}"]`);
	await teacher.locator('#run-btn').waitFor({ timeout: WAIT });
	await fill();
	await teacher.click('#run-btn');
	await until(async () => (await teacher.$eval('#pane-main .player', (el) => el.dataset.run).catch(() => before)) !== before,
		WAIT, 'the class run starts');
	await teacher.waitForSelector('#pane-main .pill[data-status="ok"]', { timeout: RUN_WAIT });
	const id = await teacher.$eval('#pane-main .player', (el) => el.dataset.run);
	await until(async () => (await student.$eval('#pane-main .player', (el) => el.dataset.run).catch(() => '')) === id,
		RUN_WAIT, 'the student shows the class run');
	await student.waitForSelector('#pane-main .pill[data-status="ok"]', { timeout: RUN_WAIT });
	const evs = await events(id);
	await until(async () => (await playerPos(student)) === evs.length, WAIT, 'the student at the last event');
	return [id, evs];
}

test('the instructor opens a class and a student joins', async () => {
	await teacher.goto(`${srv.base}/`);
	await teacher.waitForSelector('body.ready');
	await teacher.click('#class-panel summary');
	await teacher.fill('#class-secret', SECRET);
	await teacher.click('#class-signin');
	await teacher.click('#class-open');
	const code = (await (await teacher.waitForSelector('#class-code-big')).textContent()).replace(' ', '');
	await student.goto(`${srv.base}/`);
	await student.waitForSelector('body.ready');
	await student.fill('#class-code', code);
	await student.fill('#class-name', 'Mei');
	await student.click('#class-join');
	await teacher.waitForFunction(() => document.getElementById('class-count').textContent === '1 student(s)');
});

test('a syn-flood class run: the student sees the flood, the counters and each SYN-ACK\'s cookie mark', async () => {
	const [, evs] = await classRun('syn-flood', async () => {
		await teacher.evaluate(() => { for (const d of document.querySelectorAll('#run-form details')) d.open = true; });
		await teacher.fill('#p-syncookies', '1');
		await teacher.fill('#p-duration_ms', '1000');
		await teacher.fill('#p-rate', '300');
	});
	const s = evs[evs.length - 1].summary;
	assert(s.counters.SyncookiesSent > 0, 'cookies were sent');
	for (const k of ['SyncookiesSent', 'TCPReqQFullDoCookies']) {
		assertEq(await student.locator(`#pane-main .sf-counters tr[data-counter="${k}"] td.sf-num`).textContent(),
			String(s.counters[k]), `the student's ${k}`);
	}
	const marks = s.wire.synack_marks;
	assert(marks.cookie > 0, `marked cookies ${JSON.stringify(marks)}`);
	for (const [key, v] of [['sf.synack_cookie', marks.cookie], ['sf.synack_undecided', marks.undecided], ['sf.synack_not_cookie', marks.not_cookie]]) {
		assertEq(await student.locator(`#pane-main .sf-wire div[data-wire="${key}"] dd`).textContent(), String(v), `the student's ${key}`);
	}
	assertEq(await student.locator('#pane-main .callout-note[data-key="synflood.cookie_marks"]').count(), 1, 'the marks note');
	assertEq(await stageText(student), await stageText(teacher), 'the same view');
});

test('a time-wait ports class run: the student sees port 0\'s port and each listener\'s accepts', async () => {
	[twRun, twEvs] = await classRun('time-wait', async () => {
		await teacher.selectOption('#p-scenario', 'ports');
		await teacher.evaluate(() => { for (const d of document.querySelectorAll('#run-form details')) d.open = true; });
		await teacher.fill('#p-conns', '10');
		await teacher.fill('#p-observe_ms', '0');
	});
	const acc = twEvs.filter((e) => e.type === 'call' && e.call === 'accept');
	assertEq(acc.length, 10, 'ten accepts');
	for (const n of [1, 2]) {
		assertEq(await student.getAttribute(`#pane-main .tw-listeners tr[data-listener="${n}"]`, 'data-accepted'),
			String(acc.filter((a) => a.listener === n).length), `the student's listener ${n}`);
	}
	const got = twEvs.find((e) => e.type === 'call' && e.call === 'getsockname');
	assertEq(await student.getAttribute('#pane-main .tw-port0', 'data-port'), String(got.port), 'port 0\'s port');
	assertEq(await student.locator('#pane-main .tw-calls li[data-errno="EADDRINUSE"]').count(), 2, 'the refused binds');
	assertEq(await stageText(student), await stageText(teacher), 'the same view');
	await student.locator('#pane-main .tw-ports').scrollIntoViewIfNeeded();
	await student.screenshot({ path: path.join(LOGS, 'e2e-flood-tw-class-student.png') });
});

test('the exported time-wait run opened from its file shows the same view', async () => {
	const [dl] = await Promise.all([teacher.waitForEvent('download'), teacher.click('#pane-main .pl-export')]);
	const file = path.join(tmp, 'time-wait.json');
	await dl.saveAs(file);
	const bundle = JSON.parse(fs.readFileSync(file, 'utf8'));
	assertEq(bundle.events, twEvs, 'the exported events are the run bundle');
	const live = await stageText(teacher);
	await teacher.click('#class-end');
	await student.waitForSelector('#class-join');
	await student.setInputFiles('#bundle-file', file);
	await student.waitForFunction((n) => document.querySelector('#pane-main .player')?.dataset.total === String(n), twEvs.length);
	await until(async () => (await playerPos(student)) === twEvs.length, WAIT, 'the imported run drawn');
	assertEq(await stageText(student), live, 'the imported run shows the same view');
	assertEq(await student.$eval('#pane-main .player', (el) => el.dataset.run), twRun, 'the same run');
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

runTap({
	tmpPrefix: 'socklab-e2e-flood-tw-class-',
	async setup(chromium, t) {
		tmp = t;
		srv = await startServer(tmp, { log: 'e2e-flood-tw-class-server.log', args: ['--instructor-secret', SECRET] });
		const browser = await launchBrowser(chromium);
		const opts = { viewport: { width: 1440, height: 1000 }, locale: 'en-US', acceptDownloads: true };
		teacher = await (await browser.newContext(opts)).newPage();
		student = await (await browser.newContext(opts)).newPage();
		watchPage(teacher, 'instructor', problems);
		watchPage(student, 'student', problems);
		return 'socklab serve with an instructor secret, two browser contexts';
	},
	failShots: (n) => [
		[teacher, `e2e-flood-tw-class-fail-${n}-instructor.png`],
		[student, `e2e-flood-tw-class-fail-${n}-student.png`],
	],
});
