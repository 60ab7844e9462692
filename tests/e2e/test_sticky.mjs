// test_sticky.mjs: the sticky view in a real Chromium against a real `socklab serve` (TAP output).
//
// Two runs through the form: a stream run whose three lanes must show as many
// bars as the run's own events have sends, data segments and recvs (each bar
// coloured by its messages), and a framed run whose header bytes are shown in
// hex next to the value they encode; the lanes' animation tied to the replay
// bar (its frame is the position, bars appear as their events are reached).
// Every wait has a deadline; screenshots
// go to build/test-logs/e2e-sticky-*.png.

import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchPage, runTap, startServer, test, until,
} from './lib.mjs';

// Chromium's flags here are fewer than lib.mjs's default: this test has always
// run with just these.
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'];

let srv;
let page;
const problems = [];
let streamRun = null; // {id, evs} of the first test's run

async function shot(name) {
	await page.screenshot({ path: path.join(LOGS, `e2e-sticky-${name}.png`), fullPage: true });
}

async function events(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function runAndWait() {
	await page.click('#run-btn');
	await page.locator('.run-card').first().waitFor({ state: 'visible', timeout: WAIT });
	await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	const id = await page.getAttribute('.run-card', 'data-run');
	return { id, status: await page.getAttribute('.run-summary .pill', 'data-status') };
}


function lanes(evs) {
	return {
		send: evs.filter((e) => e.type === 'send').length,
		segment: evs.filter((e) => e.type === 'segment' && e.bytes > 0 && !e.retransmit).length,
		recv: evs.filter((e) => e.type === 'recv').length,
	};
}

async function shown() {
	const out = {};
	for (const lane of ['send', 'segment', 'recv']) {
		out[lane] = Number(await page.getAttribute(`.stk-lane-${lane}`, 'data-count'));
	}
	return out;
}

test('a stream run draws three lanes with one bar per send, data segment and recv', async () => {
	await page.goto(`${srv.base}/#/lab/sticky`);
	await page.locator('#conn[data-state="open"]').waitFor({ timeout: WAIT });
	await page.locator('#p-count').waitFor({ timeout: WAIT });
	await page.fill('#p-count', '6');
	await page.evaluate(() => { for (const d of document.querySelectorAll('#run-form details')) d.open = true; });
	await page.fill('#p-gap_ms', '5');
	await page.fill('#p-recv_delay_ms', '200');
	await page.check('#p-nodelay');
	const { id, status } = await runAndWait();
	assertEq(status, 'ok', 'run status');
	const evs = await events(id);
	const want = lanes(evs);
	assertEq(want.send, 6, 'sends in the events');
	await until(async () => JSON.stringify(await shown()) === JSON.stringify(want), WAIT, 'the lane counts');
	assertEq(await shown(), want, 'lane counts');
	// One coloured part per message in each lane (the lanes carry all 6 messages).
	for (const lane of ['send', 'segment', 'recv']) {
		const msgs = await page.locator(`.stk-lane-${lane} .stk-part`).evaluateAll((ps) => [...new Set(ps.map((p) => p.dataset.msg))].sort());
		assertEq(msgs, ['0', '1', '2', '3', '4', '5'], `messages in the ${lane} lane`);
	}
	const glued = evs.filter((e) => e.type === 'recv' && e.msgs.length > 1).length;
	assertEq(await page.locator('.stk-lane-recv .stk-bar.stk-glued').count(), glued, 'glued recv bars');
	assert(await page.locator('.callout-note[data-key="sticky.verdict.receiver"]').count() === 1, 'the receiver verdict');
	await page.screenshot({ path: path.join(LOGS, 'e2e-sticky-stream.png'), fullPage: true });
	streamRun = { id, evs };
});

// The animation's frame, the replay position and the bars drawn, read together.
function animState() {
	return page.evaluate(() => {
		const pl = document.querySelector('#pane-main .player');
		const card = document.querySelector('.stk-card');
		const bars = [...document.querySelectorAll('.stk-lanes .stk-bar')];
		return {
			pos: Number(pl.dataset.pos), paused: pl.dataset.paused, frame: Number(card.dataset.frame), animating: card.dataset.animating,
			drawn: bars.filter((b) => getComputedStyle(b).visibility !== 'hidden').map((b) => Number(b.dataset.seq)).sort((a, b) => a - b),
			coming: bars.filter((b) => b.classList.contains('stk-anim')).map((b) => Number(b.dataset.seq)).sort((a, b) => a - b),
			scrub: Number(document.querySelector('.stk-scrub').value),
		};
	});
}

test('the animation follows the replay bar: its frame is the position (play, pause, step, jump, slider), bars appear as their events are reached', async () => {
	const { id, evs } = streamRun;
	// The seqs of the events that draw a bar (every lane event).
	const laneSeqs = evs.filter((e) => e.type === 'send' || e.type === 'recv' || e.type === 'segment').map((e) => e.seq);
	const upTo = (pos) => laneSeqs.filter((q) => q < pos);
	const check = async (what) => {
		const g = await animState();
		assertEq(g.frame, g.pos, `${what}: animation frame = replay position`);
		assertEq(g.scrub, g.pos, `${what}: the slider at the replay position`);
		assertEq(g.drawn, upTo(g.pos), `${what}: bars drawn at position ${g.pos}`);
		return g;
	};
	await page.goto(`${srv.base}/#/run/${id}`);
	await page.waitForFunction((n) => document.querySelector('.player')?.dataset.pos === String(n), evs.length);
	await page.click('.stk-animate');
	await page.locator('.stk-card[data-animating="1"]').waitFor();
	// Started, it plays the run from its first event: pause it on the way.
	await page.waitForFunction(() => { const pl = document.querySelector('.player'); return pl.dataset.paused === 'false' && Number(pl.dataset.pos) > 0; });
	await page.click('.pl-play');
	await page.waitForFunction(() => document.querySelector('.player').dataset.paused === 'true');
	const paused = await check('paused');
	assert(paused.pos < evs.length, `paused at ${paused.pos} of ${evs.length}: the animation did not play from the start`);
	// Stepping forwards to the next event that draws a bar: that bar comes in.
	const next = laneSeqs.find((q) => q >= paused.pos);
	for (let pos = paused.pos; pos <= next; pos++) {
		await page.click('.pl-fwd');
		await page.waitForFunction((n) => document.querySelector('.player').dataset.pos === String(n), pos + 1);
		const g = await check(`step to ${pos + 1}`);
		assertEq(g.coming, pos === next ? [next] : [], `step to ${pos + 1}: the bar coming in`);
	}
	await page.click('.pl-back');
	await page.waitForFunction((n) => document.querySelector('.player').dataset.pos === String(n), next);
	assertEq((await check('a step back')).coming, [], 'a step back: nothing comes in');
	// The slider moves the replay.
	const mid = laneSeqs[Math.floor(laneSeqs.length / 2)] + 1;
	await page.locator('.stk-scrub').evaluate((el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', { bubbles: true })); }, mid);
	await page.waitForFunction((n) => document.querySelector('.player').dataset.pos === String(n), mid);
	await check('the slider');
	// The bar's jump field too.
	await page.fill('.pl-jump', '3');
	await page.click('.pl-jump-form button');
	await page.waitForFunction(() => document.querySelector('.player').dataset.pos === '3');
	await check('a jump');
	await page.screenshot({ path: path.join(LOGS, 'e2e-sticky-animating.png'), fullPage: true });
	// Played to the end: every bar drawn, the frame the last event.
	await page.click('.pl-play');
	await page.waitForFunction((n) => document.querySelector('.player').dataset.pos === String(n), evs.length, { timeout: RUN_WAIT });
	await check('the end');
	// Stopped: the lanes as before, every bar, no slider.
	await page.click('.stk-animate');
	assertEq(await page.locator('.stk-card[data-animating="0"] .stk-scrub-box[hidden]').count(), 1, 'the slider hidden');
	assertEq(await page.locator('.stk-lanes .stk-bar').count(), laneSeqs.length, 'every bar drawn after the animation');
});

test('a framed run shows each header in hex with the length it encodes', async () => {
	await page.goto(`${srv.base}/#/lab/sticky`);
	await page.locator('#p-mode').waitFor({ timeout: WAIT });
	await page.selectOption('#p-mode', 'framed');
	await page.fill('#p-count', '3');
	const { id, status } = await runAndWait();
	assertEq(status, 'ok', 'run status');
	const msgs = (await events(id)).filter((e) => e.type === 'message');
	assertEq(msgs.length, 3, 'message events');
	await until(async () => (await page.locator('.stk-frame').count()) === 3, WAIT, 'three framed messages');
	const hex = await page.locator('.stk-frame .stk-hex').allTextContents();
	assertEq(hex, msgs.map((m) => m.header_hex), 'header bytes');
	const first = await page.locator('.stk-frame').first().textContent();
	assert(first.includes(`= ${msgs[0].header_len}`) && first.includes('!I'), `decoded value shown: ${first}`);
	await page.screenshot({ path: path.join(LOGS, 'e2e-sticky-framed.png'), fullPage: true });
});

test('the README example shows the congestion window as the cause, with the held segment and the ACK that released it', async () => {
	await page.goto(`${srv.base}/#/lab/sticky`);
	await page.locator('#p-network').waitFor({ timeout: WAIT });
	await page.selectOption('#p-mode', 'stream');
	await page.uncheck('#p-nodelay');
	await page.evaluate(() => { for (const d of document.querySelectorAll('#run-form details')) d.open = true; });
	await page.fill('#p-gap_ms', '0');
	await page.selectOption('#p-network', 'two-hosts');
	await page.fill('#p-c2s_delay_ms', '5');
	await page.fill('#p-count', '2');
	await page.fill('#p-size', '5000');
	await page.fill('#p-mss', '500');
	await page.fill('#p-bufsize', '2048');
	await page.fill('#p-recv_delay_ms', '0');
	const { id, status } = await runAndWait();
	assertEq(status, 'ok', 'run status');
	const evs = await events(id);
	const cause = evs.find((e) => e.type === 'note' && e.key === 'sticky.cause.cwnd');
	assert(cause, 'the run names the congestion window');
	const p = cause.params;
	await page.locator('.stk-evidence .stk-cause').waitFor({ timeout: WAIT });
	assertEq(await page.getAttribute('.stk-evidence .stk-cause', 'data-cause'), 'cwnd', 'the cause shown');
	const info = await page.locator('.stk-tcpinfo').textContent();
	assert(info.includes(`cwnd ${p.cwnd}`) && info.includes(`${p.held}`), `the TCP_INFO sample shown: ${info}`);
	// The marks sit on the very bars the evidence names.
	assertEq(await page.locator('.stk-lane-segment .stk-bar.stk-ev-held').getAttribute('data-i'), String(p.seg), 'the held segment');
	// The releasing ACK, when the run saw one (see test_sticky.py: a starved
	// relay can let the tail loss probe go first).
	if (Number.isInteger(p.ack_seg)) assertEq(await page.locator('.stk-lane-ack .stk-bar.stk-ev-release').getAttribute('data-i'), String(p.ack_seg), 'the releasing ACK');
	else assertEq(await page.locator('.stk-bar.stk-ev-release').count(), 0, 'no ACK marked when none released it');
	const holds = evs.filter((e) => e.type === 'hold').length;
	assertEq(await page.locator('.stk-lane-segment .stk-bar.stk-held').count(), holds, 'every held segment outlined');
	const acks = evs.filter((e) => e.type === 'segment' && e.dir === 's2c').length;
	assertEq(await page.locator('.stk-lane-ack .stk-bar').count(), acks, 'one tick per captured ACK');
	await page.screenshot({ path: path.join(LOGS, 'e2e-sticky-evidence.png'), fullPage: true });
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

runTap({
	tmpPrefix: 'socklab-e2e-sticky-',
	async setup(chromium, tmp) {
		srv = await startServer(tmp, { log: 'e2e-sticky-server.log' });
		page = await launchPage(chromium, tmp, problems, { args: ARGS });
		return 'socklab serve and Chromium';
	},
	failShots: (n) => [[page, `e2e-sticky-fail-${n}.png`]],
});
