// test_layers_class.mjs: a layers run in a class and from an exported file, in real Chromium: an instructor and a student in two browser contexts (TAP).
//
// The instructor runs layers for the class; the student's view follows it
// live (one cell per frame event, the same topology), then follows the
// instructor's steps: the highlighted hop in the topology picture is the
// instructor's. The exported run, opened from the file by the student, shows
// the same view. Screenshots go to build/test-logs/e2e-layers-class-*.png.

import fs from 'node:fs';
import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchBrowser, playerPos, runTap, stageText, startServer, test, until,
	watchPage,
} from './lib.mjs';

const SECRET = 'e2e-layers-class-secret';

let srv;
let teacher;
let student;
let tmp;
let classRun = '';
let evs = [];
const problems = [];

async function hop(page) {
	return page.$eval('#pane-main .ly-topo', (el) => [el.dataset.hopPort || '', el.dataset.hopN || '',
		[...el.querySelectorAll('.ly-link.ly-link-hop')].map((l) => l.dataset.port)]);
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
	await student.fill('#class-name', 'Lin');
	await student.click('#class-join');
	await teacher.waitForFunction(() => document.getElementById('class-count').textContent === '1 student(s)');
});

test('a layers class run: the student sees it live, frame for frame', async () => {
	await teacher.click('.lab-item[data-lab="layers"]');
	await teacher.locator('#p-scenario').waitFor({ timeout: WAIT });
	await teacher.selectOption('#p-scenario', 'other-subnet');
	await teacher.click('details.advanced summary');
	await teacher.fill('#p-a_delay_ms', '5');
	await teacher.click('#run-btn');
	await teacher.waitForSelector('#pane-main .pill[data-status="ok"]', { timeout: RUN_WAIT });
	classRun = await teacher.$eval('#pane-main .player', (el) => el.dataset.run);
	await student.waitForSelector('#pane-main .pill[data-status="ok"]', { timeout: RUN_WAIT });
	assertEq(await student.$eval('#pane-main .player', (el) => el.dataset.run), classRun, 'the student shows the class run');
	evs = (await (await fetch(`${srv.base}/api/runs/${classRun}/events`)).text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
	const frames = evs.filter((e) => e.type === 'frame');
	assert(frames.length > 10, `frames ${frames.length}`);
	await until(async () => (await playerPos(student)) === evs.length, WAIT, 'the student at the last event');
	assertEq(await student.locator('#pane-main .ly-frame').count(), frames.length, 'one cell per frame (student)');
	assertEq(await student.getAttribute('#pane-main .ly-topo', 'data-hosts'), '4', 'hosts drawn (student)');
	assertEq(await student.locator('#pane-main .ly-link-relay[data-port="a-eth0"]').count(), 1, 'the relayed link (student)');
	assertEq(await stageText(student), await stageText(teacher), 'the same view');
});

test('the student follows the instructor stepping the hops', async () => {
	// The last frame event and the one before it on another link.
	const k2 = evs.map((e) => e.type).lastIndexOf('frame');
	let k1 = k2 - 1;
	while (k1 >= 0 && !(evs[k1].type === 'frame' && evs[k1].port !== evs[k2].port)) k1--;
	assert(k1 >= 0, 'two frames on different links');
	await teacher.fill('#pane-main .pl-jump', String(k1 + 1));
	await teacher.click('#pane-main .pl-jump-form button');
	await until(async () => (await playerPos(student)) === k1 + 1, WAIT, 'the student at the jump');
	assertEq(await hop(student), [evs[k1].port, String(evs[k1].n), [evs[k1].port]], 'the student\'s hop after the jump');
	assertEq(await hop(teacher), await hop(student), 'the same hop');
	await teacher.fill('#pane-main .pl-jump', String(k2 + 1));
	await teacher.click('#pane-main .pl-jump-form button');
	await until(async () => (await playerPos(student)) === k2 + 1, WAIT, 'the student at the later frame');
	assertEq(await hop(student), [evs[k2].port, String(evs[k2].n), [evs[k2].port]], 'the student\'s hop after the step');
	await teacher.click('#pane-main .pl-back');
	await until(async () => (await playerPos(student)) === k2, WAIT, 'the student one step back');
	const before = evs.slice(0, k2).filter((e) => e.type === 'frame').pop();
	assertEq((await hop(student))[1], String(before.n), 'one step back: the frame before');
	await student.screenshot({ path: path.join(LOGS, 'e2e-layers-class-student.png') });
	await teacher.fill('#pane-main .pl-jump', String(evs.length));
	await teacher.click('#pane-main .pl-jump-form button');
	await until(async () => (await playerPos(student)) === evs.length, WAIT, 'the student at the end');
});

test('the exported layers run opened from its file shows the same view', async () => {
	const [dl] = await Promise.all([teacher.waitForEvent('download'), teacher.click('#pane-main .pl-export')]);
	const file = path.join(tmp, 'layers.json');
	await dl.saveAs(file);
	const bundle = JSON.parse(fs.readFileSync(file, 'utf8'));
	assertEq(bundle.events, evs, 'the exported events are the run bundle');
	const live = await stageText(teacher);
	await teacher.click('#class-end');
	await student.waitForSelector('#class-join');
	await student.setInputFiles('#bundle-file', file);
	await student.waitForFunction((n) => document.querySelector('#pane-main .player')?.dataset.total === String(n), evs.length);
	await until(async () => (await playerPos(student)) === evs.length, WAIT, 'the imported run drawn');
	assertEq(await stageText(student), live, 'the imported run shows the same view');
	assertEq(await student.locator('#pane-main .ly-frame').count(), evs.filter((e) => e.type === 'frame').length, 'frames from the file');
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

runTap({
	tmpPrefix: 'socklab-e2e-layers-class-',
	async setup(chromium, t) {
		tmp = t;
		srv = await startServer(tmp, { log: 'e2e-layers-class-server.log', args: ['--instructor-secret', SECRET] });
		const browser = await launchBrowser(chromium);
		const opts = { viewport: { width: 1440, height: 1000 }, locale: 'en-US', acceptDownloads: true };
		teacher = await (await browser.newContext(opts)).newPage();
		student = await (await browser.newContext(opts)).newPage();
		watchPage(teacher, 'instructor', problems);
		watchPage(student, 'student', problems);
		return 'socklab serve with an instructor secret, two browser contexts';
	},
	failShots: (n) => [
		[teacher, `e2e-layers-class-fail-${n}-instructor.png`],
		[student, `e2e-layers-class-fail-${n}-student.png`],
	],
});
