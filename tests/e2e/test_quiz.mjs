// test_quiz.mjs: "predict, then check" in a real Chromium against a real `socklab serve` (TAP output).
//
// A student answers the handshake lab's questions before Run; after the run
// each answer is graded by the server against the run's events, and the test
// checks every verdict against what the events themselves show (the close's
// segments, the socket sock_diag listed in TIME_WAIT, the segment that
// acknowledged the client's FIN), that the evidence is outlined on the
// ladder, that changing a knob asks again, and that a finished run opened
// from Recent runs (a replay) is graded the same. Screenshots at 1280x720 and
// 1440x900 in English and Chinese go to build/test-logs/e2e-quiz-*.png.

import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchPage, runTap, startServer, test,
} from './lib.mjs';

let srv;
let page;
const problems = [];
let run = null; // {id, events}

async function events(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// What the events show, computed here from the captured fields (not from
// the server's grader): FINs, pure ACKs of a FIN, and the first ACK of the
// client's FIN.
function truth(evs) {
	const segs = evs.filter((e) => e.type === 'segment');
	const fins = segs.filter((s) => s.flags.includes('FIN'));
	const end = (f) => (f.seq_raw + f.len + 1) >>> 0;
	const pureAcks = segs.filter((s) => !s.flags.includes('FIN') && !s.flags.includes('SYN') && s.len === 0
		&& fins.some((f) => f.from !== s.from && f.seq < s.seq && s.ack_raw === end(f)));
	const cfin = fins.find((f) => f.from === 'client');
	const acker = segs.find((s) => s.seq > cfin.seq && s.from === 'server' && s.flags.includes('ACK')
		&& ((s.ack_raw - end(cfin)) | 0) >= 0);
	const tw = new Set(evs.filter((e) => (e.type === 'observation' || e.type === 'timer') && e.state === 'TIME_WAIT').map((e) => e.who));
	return {
		close: fins.length + pureAcks.length,
		closeSeqs: [...fins, ...pureAcks].map((s) => s.seq).sort((a, b) => a - b),
		acker: acker.n,
		tw: tw.has('client') && tw.has('server') ? 'both' : tw.has('client') ? 'client' : tw.has('server') ? 'server' : 'neither',
	};
}

async function shots(name) {
	for (const [w, hgt] of [[1280, 720], [1440, 900]]) {
		await page.setViewportSize({ width: w, height: hgt });
		await page.locator('#quiz-card').scrollIntoViewIfNeeded();
		await page.screenshot({ path: path.join(LOGS, `e2e-quiz-${name}-${w}x${hgt}.png`) });
	}
	await page.setViewportSize({ width: 1440, height: 1000 });
}

test('the handshake lab asks its questions before Run', async () => {
	await page.goto(`${srv.base}/#/lab/handshake`);
	await page.locator('#conn[data-state="open"]').waitFor({ timeout: WAIT });
	await page.locator('#quiz-card .quiz-q').first().waitFor({ timeout: WAIT });
	assertEq(await page.locator('#quiz-card .quiz-q').evaluateAll((ls) => ls.map((l) => l.dataset.q)),
		['close_segments', 'time_wait_side', 'fin_acked_by'], 'questions for client-closes');
	assertEq(await page.locator('#quiz-card').getAttribute('data-state'), 'asking', 'state');
	// A scenario without a client FIN does not ask which segment ACKs it.
	await page.selectOption('#p-scenario', 'refused');
	assertEq(await page.locator('#quiz-card .quiz-q').evaluateAll((ls) => ls.map((l) => l.dataset.q)),
		['time_wait_side'], 'questions for refused');
	await page.selectOption('#p-scenario', 'client-closes');
});

test('answers are graded against the run: close segments, TIME_WAIT side, the ACK of the FIN', async () => {
	// A deliberately wrong close count (the run decides 3 or 4; 7 is neither).
	await page.fill('#quiz-close_segments', '7');
	await page.check('input[name="quiz-time_wait_side"][value="client"]');
	await page.fill('#quiz-fin_acked_by', '9');
	await shots('asking-en');
	await page.click('#run-btn');
	await page.locator('#quiz-card[data-state="graded"]').waitFor({ timeout: RUN_WAIT });
	const id = await page.getAttribute('.run-card', 'data-run');
	const evs = await events(id);
	run = { id, events: evs };
	const want = truth(evs);
	assert(want.close === 3 || want.close === 4, `the close took ${want.close} segments`);
	const item = (q) => page.locator(`#quiz-card .quiz-q[data-q="${q}"]`);
	assertEq(await item('close_segments').getAttribute('data-result'), 'wrong', 'close_segments verdict (answered 7)');
	assertEq((await item('close_segments').locator('.quiz-truth').textContent()), String(want.close), 'close_segments truth');
	assertEq(await item('close_segments').locator('.quiz-ev-chip').evaluateAll((cs) => cs.map((c) => Number(c.dataset.seq))),
		want.closeSeqs, 'close_segments evidence: the FINs and the ACKs of a FIN');
	assertEq(await item('time_wait_side').getAttribute('data-result'), want.tw === 'client' ? 'right' : 'wrong', 'time_wait_side verdict');
	assertEq(await item('fin_acked_by').getAttribute('data-result'), want.acker === 9 ? 'right' : 'wrong', 'fin_acked_by verdict');
	assertEq((await item('fin_acked_by').locator('.quiz-truth').textContent()), `#${want.acker}`, 'fin_acked_by truth');
	const why = await item('close_segments').locator('.quiz-why').textContent();
	assert(why.startsWith(`${want.close} segments`), `explanation: ${why}`);
	// The first graded answer's evidence is outlined on the ladder: the
	// arrows of the close's segments.
	const fins = evs.filter((e) => e.type === 'segment' && want.closeSeqs.includes(e.seq)).map((e) => String(e.n));
	const marked = await page.locator('.hs-seg.quiz-ev').evaluateAll((gs) => gs.map((g) => g.dataset.n));
	assertEq(marked, fins, 'arrows outlined as evidence');
	await shots('graded-en');
});

test('the evidence chip steps the replay to that event', async () => {
	const chip = page.locator('#quiz-card .quiz-q[data-q="fin_acked_by"] .quiz-ev-chip').last();
	const seq = Number(await chip.getAttribute('data-seq'));
	await chip.click();
	const idx = run.events.findIndex((e) => e.seq === seq);
	await page.waitForFunction((n) => document.querySelector('.player') && document.querySelector('.player').dataset.pos === String(n), idx + 1, { timeout: WAIT });
});

test('changing a knob asks again', async () => {
	await page.selectOption('#p-scenario', 'server-closes');
	await page.locator('#quiz-card[data-state="asking"]').waitFor({ timeout: WAIT });
	assertEq(await page.inputValue('#quiz-close_segments'), '', 'answers cleared');
	assertEq(await page.locator('#quiz-card .quiz-q').evaluateAll((ls) => ls.map((l) => l.dataset.q)),
		['close_segments', 'time_wait_side'], 'questions for server-closes');
	assertEq(await page.locator('.quiz-ev').count(), 0, 'no evidence outlined any more');
	await page.selectOption('#p-scenario', 'client-closes');
});

test('a finished run opened from Recent runs is graded the same (replay), in Chinese too', async () => {
	// A fresh page: the run is replayed from its stored events.
	await page.goto(`${srv.base}/#/run/${run.id}`);
	await page.reload();
	await page.locator('#quiz-check').waitFor({ timeout: WAIT });
	const want = truth(run.events);
	await page.fill('#quiz-close_segments', String(want.close));
	// Pick from the trace: clicking the segment on the ladder answers "which segment".
	await page.locator(`#pane-main .hs-seg[data-n="${want.acker}"] .hs-hit`).click();
	assertEq(await page.inputValue('#quiz-fin_acked_by'), String(want.acker), 'picked from the ladder');
	await page.click('#quiz-check');
	await page.locator('#quiz-card[data-state="graded"]').waitFor({ timeout: WAIT });
	assertEq(await page.locator('#quiz-card .quiz-q[data-q="close_segments"]').getAttribute('data-result'), 'right', 'the same run, the right count');
	assertEq(await page.locator('#quiz-card .quiz-q[data-q="time_wait_side"]').getAttribute('data-result'), 'unanswered', 'unanswered stays unanswered');
	assertEq(await page.locator('#quiz-card .quiz-q[data-q="fin_acked_by"]').getAttribute('data-result'), 'right', 'the picked segment');
	await page.selectOption('#lang-select', 'zh-CN');
	await page.locator('#quiz-title', { hasText: '先预测，再验证' }).waitFor({ timeout: WAIT });
	const why = await page.locator('#quiz-card .quiz-q[data-q="close_segments"] .quiz-why').textContent();
	assert(why.startsWith(`${want.close} 个报文段`), `Chinese explanation: ${why}`);
	await shots('graded-zh');
	await page.selectOption('#lang-select', 'en');
});

test('bad answers are refused by the server, naming the question and range', async () => {
	const r = await fetch(`${srv.base}/api/runs/${run.id}/grade?close_segments=99`);
	assertEq(r.status, 400, 'status');
	const j = await r.json();
	assertEq(j.error.param, 'close_segments', 'param');
	assertEq(j.error.message, "answer to 'close_segments' must be an integer 1..20", 'message');
	const u = await fetch(`${srv.base}/api/runs/${run.id}/grade?nope=1`);
	assertEq((await u.json()).error.message, "lab handshake has no question 'nope'", 'unknown question');
	assertEq(problems, [], 'console errors');
});

runTap({
	tmpPrefix: 'socklab-e2e-quiz-',
	setup: async (chromium, tmp) => {
		srv = await startServer(tmp, { log: 'e2e-quiz-server.log' });
		page = await launchPage(chromium, tmp, problems);
		return `server on ${srv.base}`;
	},
	failShots: (n) => [[page, `e2e-quiz-fail-${n}.png`]],
});
