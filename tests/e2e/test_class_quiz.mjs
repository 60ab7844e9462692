// test_class_quiz.mjs: a class question in two Chromium contexts: the instructor asks, the chart follows the student's answer live, the vote closes, the lab runs for the class, the student sees their own answer graded against that run (TAP).
//
// Screenshots at 1280x720 and 1440x900 in English and Chinese go to
// build/test-logs/e2e-class-quiz-*.png.

import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchBrowser, runTap, startServer, test,
} from './lib.mjs';

const SECRET = 'e2e-instructor-secret';

let srv;
let teacher;
let student;
const problems = [];
let classCode = '';

function watch(page, who) {
	page.setDefaultTimeout(WAIT);
	page.on('console', (m) => {
		if (/ERR_NETWORK_CHANGED/.test(m.text())) return;
		if (m.type() === 'error' || /Content[- ]Security[- ]Policy/i.test(m.text())) problems.push(`${who} console: ${m.text()}`);
	});
	page.on('pageerror', (e) => problems.push(`${who} page error: ${e.message}`));
}

async function shots(page, name) {
	for (const [w, hgt] of [[1280, 720], [1440, 900]]) {
		await page.setViewportSize({ width: w, height: hgt });
		await page.locator('#cq-card').scrollIntoViewIfNeeded();
		await page.screenshot({ path: path.join(LOGS, `e2e-class-quiz-${name}-${w}x${hgt}.png`) });
	}
	await page.setViewportSize({ width: 1440, height: 1000 });
}

async function events(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

test('the instructor opens a class on the handshake lab; a student joins', async () => {
	await teacher.goto(`${srv.base}/#/lab/handshake`);
	await teacher.waitForSelector('body.ready');
	await teacher.click('#class-panel summary');
	await teacher.fill('#class-secret', SECRET);
	await teacher.click('#class-signin');
	await teacher.click('#class-open');
	const big = await teacher.waitForSelector('#class-code-big');
	classCode = (await big.textContent()).replace(' ', '');
	await student.goto(`${srv.base}/`);
	await student.waitForSelector('body.ready');
	await student.fill('#class-code', classCode);
	await student.fill('#class-name', 'Ada');
	await student.click('#class-join');
	await teacher.waitForFunction(() => document.getElementById('class-count').textContent === '1 student(s)');
	await student.locator('#cq-card').waitFor({ timeout: WAIT });
	assertEq(await student.locator('#cq-card').getAttribute('data-state'), 'none', 'no question yet');
});

test('a free question with a too long text is refused, naming the field and the range', async () => {
	await teacher.selectOption('#cq-source', 'free:choice');
	await teacher.fill('#cq-text', 'x'.repeat(300));
	await teacher.fill('#cq-choices', 'a\nb');
	// The input stops at 300 bytes; the server refuses more than 300 (sent directly).
	await teacher.fill('#cq-choices', 'only one');
	await teacher.click('#cq-open');
	await teacher.waitForFunction(() => document.querySelector('#cq-card .cq-msg').textContent
		=== "choices: 'choices' must be a list of 2..6 choices");
});

test('the instructor asks a bank question; the chart updates as the student answers', async () => {
	await teacher.selectOption('#cq-source', 'bank:close_segments');
	await teacher.click('#cq-open');
	await teacher.locator('#cq-card[data-state="open"]').waitFor({ timeout: WAIT });
	await student.locator('#cq-card[data-state="open"]').waitFor({ timeout: WAIT });
	assertEq(await student.textContent('#cq-card .cq-qtext'),
		'How many segments will the close take (every FIN, and every segment that only acknowledges a FIN)?', 'the student sees the question');
	assertEq(await teacher.textContent('#cq-count'), '0 of 1 students answered · the vote is open', 'count before');
	await student.fill('#cq-answer', '4');
	await student.click('#cq-send');
	await student.locator('#cq-mine').waitFor({ timeout: WAIT });
	await teacher.waitForFunction(() => document.getElementById('cq-count').textContent.startsWith('1 of 1'));
	assertEq(await teacher.locator('.cq-bar-row').evaluateAll((rs) => rs.map((r) => [r.dataset.key, r.dataset.count])), [['4', '1']], 'bars');
	// Names are hidden until asked for.
	assertEq(await teacher.locator('.cq-who').count(), 0, 'names hidden');
	await teacher.check('#cq-show-names');
	assertEq(await teacher.textContent('.cq-who li'), 'Ada: 4', 'names shown');
	// The student changes the answer: the chart follows.
	await student.fill('#cq-answer', '3');
	await student.click('#cq-send');
	await teacher.waitForFunction(() => [...document.querySelectorAll('.cq-bar-row')].map((r) => r.dataset.key).join() === '3');
	await shots(teacher, 'teacher-open-en');
	await shots(student, 'student-open-en');
});

test('close, run for the class, reveal: the student sees their answer graded against the class run', async () => {
	await teacher.click('#cq-close');
	await student.locator('#cq-card[data-state="closed"]').waitFor({ timeout: WAIT });
	assertEq(await student.locator('#cq-send').count(), 0, 'no more answers');
	await teacher.click('details.advanced summary');
	await teacher.fill('#p-observe_ms', '200');
	await teacher.click('#run-btn');
	await teacher.waitForSelector('#pane-main .pill[data-status="ok"]', { timeout: RUN_WAIT });
	const run = await teacher.$eval('#pane-main .player', (el) => el.dataset.run);
	await student.waitForSelector('#pane-main .pill[data-status="ok"]', { timeout: RUN_WAIT });
	const evs = await events(run);
	const segs = evs.filter((e) => e.type === 'segment');
	const fins = segs.filter((s) => s.flags.includes('FIN'));
	const end = (f) => (f.seq_raw + f.len + 1) >>> 0;
	const acks = segs.filter((s) => !s.flags.includes('FIN') && !s.flags.includes('SYN') && s.len === 0
		&& fins.some((f) => f.from !== s.from && f.seq < s.seq && s.ack_raw === end(f)));
	const truth = fins.length + acks.length;
	await teacher.click('#cq-reveal');
	await student.locator('#cq-result').waitFor({ timeout: WAIT });
	assertEq(await student.getAttribute('#cq-result', 'data-result'), truth === 3 ? 'right' : 'wrong', 'the student answered 3');
	assert((await student.textContent('#cq-result')).includes(`The answer: ${truth}`), 'the run\'s answer');
	assert((await student.textContent('#cq-result')).includes(`Graded against the class run ${run}`), 'names the run');
	// The evidence is outlined on the class run's ladder in the student's view.
	const marked = await student.locator('#pane-main .hs-seg.quiz-ev').evaluateAll((gs) => gs.map((g) => Number(g.dataset.n)));
	assertEq(marked.sort((a, b) => a - b), [...fins, ...acks].map((s) => s.n).sort((a, b) => a - b), 'evidence arrows');
	await teacher.locator('#cq-revealed').waitFor({ timeout: WAIT });
	assert((await teacher.textContent('#cq-revealed')).includes(truth === 3 ? '1 right, 0 wrong, of 1 answers.' : '0 right, 1 wrong, of 1 answers.'), 'summary');
	await shots(student, 'student-result-en');
	await shots(teacher, 'teacher-revealed-en');
});

test('CSV export: name, answer, correct', async () => {
	const [dl] = await Promise.all([teacher.waitForEvent('download'), teacher.click('#cq-csv')]);
	const file = await dl.path();
	const text = (await import('node:fs')).readFileSync(file, 'utf8');
	const lines = text.trim().split(/\r?\n/);
	assertEq(lines[0], 'name,answer,correct', 'header');
	assert(/^Ada,3,(yes|no)$/.test(lines[1]), `row ${lines[1]}`);
});

test('in Chinese', async () => {
	await student.selectOption('#lang-select', 'zh-CN');
	await teacher.selectOption('#lang-select', 'zh-CN');
	await student.locator('#cq-title', { hasText: '教师的问题' }).waitFor({ timeout: WAIT });
	await teacher.locator('#cq-title', { hasText: '向全班提问' }).waitFor({ timeout: WAIT });
	await shots(student, 'student-result-zh');
	await shots(teacher, 'teacher-revealed-zh');
	assertEq(problems, [], 'console errors');
});

runTap({
	tmpPrefix: 'socklab-e2e-class-quiz-',
	async setup(chromium, tmp) {
		srv = await startServer(tmp, { log: 'e2e-class-quiz-server.log', args: ['--instructor-secret', SECRET] });
		const browser = await launchBrowser(chromium);
		const opts = { viewport: { width: 1440, height: 1000 }, locale: 'en-US', acceptDownloads: true };
		teacher = await (await browser.newContext(opts)).newPage();
		student = await (await browser.newContext(opts)).newPage();
		watch(teacher, 'instructor');
		watch(student, 'student');
		return 'socklab serve with an instructor secret, two browser contexts';
	},
	failShots: (n) => [[teacher, `e2e-class-quiz-fail-${n}-teacher.png`], [student, `e2e-class-quiz-fail-${n}-student.png`]],
});
