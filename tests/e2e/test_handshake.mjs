// test_handshake.mjs: the handshake lab's view in a real Chromium against a real `socklab serve` (TAP output).
//
// A real run on the server; the page must draw one arrow per captured
// segment with the right label, select a packet and show its fields and
// bytes, highlight what happened inside connect(), offer the pcap, and replay
// that pcap when it is uploaded; beside another run, the ladder is drawn at
// its half of the page with nothing cut (measured). Every wait has a deadline; screenshots go to
// build/test-logs/e2e-handshake-*.png.

import fs from 'node:fs';
import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchPage, runTap, startServer, test,
} from './lib.mjs';

// Chromium's flags here are fewer than lib.mjs's default: this test has always
// run with just these.
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'];

// The label the lab's view must put on a segment's arrow (web/labs/handshake.js).
function label(s, absolute) {
	const seq = absolute ? s.seq_raw : s.rel_seq;
	const ack = absolute ? s.ack_raw : s.rel_ack;
	const parts = [`[${s.flags.join(', ')}]`, `seq ${seq}`];
	if (s.flags.includes('ACK')) parts.push(`ack ${ack}`);
	// The window the kernel offered: the field scaled by the sender's
	// window scale (win_bytes) once both SYNs carried the option.
	parts.push(`len ${s.len}`, `win ${s.win_bytes ?? s.win}`);
	return parts.join(' ');
}

let srv;
let page;
let tmp;
const problems = [];
let liveRun = null; // {id, events}
let rstRun = null; // the id of the RST run

async function shot(name) {
	await page.screenshot({ path: path.join(LOGS, `e2e-handshake-${name}.png`), fullPage: true });
}

async function events(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function runAndWait() {
	// The previous run's card and summary may still be on the page: wait for
	// a card of another run, then for its summary.
	const before = await page.locator('.run-card').count() ? await page.getAttribute('.run-card', 'data-run') : null;
	await page.click('#run-btn');
	await page.waitForFunction((prev) => {
		const card = document.querySelector('.run-card');
		return card && card.dataset.run && card.dataset.run !== prev;
	}, before, { timeout: WAIT });
	await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	const id = await page.getAttribute('.run-card', 'data-run');
	return { id, status: await page.getAttribute('.run-summary .pill', 'data-status') };
}

test('the handshake form: scenarios, no replay path field, an upload field', async () => {
	await page.goto(`${srv.base}/#/lab/handshake`);
	await page.locator('#conn[data-state="open"]').waitFor({ timeout: WAIT });
	await page.locator('#p-scenario').waitFor({ timeout: WAIT });
	const opts = await page.locator('#p-scenario option').evaluateAll((os) => os.map((o) => o.value));
	assertEq(opts, ['client-closes', 'server-closes', 'simultaneous', 'half-close', 'refused', 'abort', 'data-close'], 'scenarios');
	assertEq(await page.locator('#p-replay').count(), 0, 'the server-assigned replay path is not in the form');
	assertEq(await page.locator('#upload-file').count(), 1, 'a capture can be uploaded');
});

test('a run draws one arrow per segment with flags, seq/ack, len and win', async () => {
	await page.click('details.advanced summary');
	await page.fill('#p-observe_ms', '1200');
	const run = await runAndWait();
	assertEq(run.status, 'ok', 'run status');
	const ev = await events(run.id);
	const segs = ev.filter((e) => e.type === 'segment');
	liveRun = { id: run.id, segs };
	assert(segs.length >= 9, `segments in the run: ${segs.length}`);
	assertEq(await page.locator('.hs-seg').count(), segs.length, 'arrows');
	assertEq(await page.locator('.hs-seg-label').allTextContents(), segs.map((s) => label(s, false)), 'relative labels');
	assertEq((await page.locator('.hs-seg-label').first().textContent()), `[SYN] seq 0 len 0 win ${segs[0].win}`, 'the SYN');
	assertEq(await page.locator('.hs-list tbody tr').count(), segs.length, 'packet list rows');
	await page.check('#hs-absolute');
	assertEq(await page.locator('.hs-seg-label').allTextContents(), segs.map((s) => label(s, true)), 'absolute labels');
	await page.uncheck('#hs-absolute');
	// Each side's states, each with its source: the tracepoint's transitions
	// (FIN_WAIT_2 -> CLOSED: the full socket freed), then TIME_WAIT as
	// sock_diag saw it (a sample, not a transition), with the kernel's timer.
	const client = await page.locator('.hs-timeline-client .hs-st').evaluateAll((r) => r.map((x) =>
		`${x.dataset.state}/${x.dataset.kind}/${x.dataset.source}`));
	assertEq(client[client.length - 1], 'TIME_WAIT/sample/sock_diag', 'client timeline ends in TIME_WAIT, seen by sock_diag');
	assert(client.indexOf('CLOSED/transition/tracepoint') >= 0 && client.indexOf('CLOSED/transition/tracepoint') < client.length - 1,
		`the tracepoint's FIN_WAIT_2 -> CLOSED (the full socket freed) before it: ${client}`);
	assert(client.every((x) => /\/(transition\/tracepoint|sample\/(sock_diag|tcp_info)|initial\/tracepoint)$/.test(x)), `every block names its source: ${client}`);
	const tw = await page.locator('.hs-timeline-client .hs-tw').textContent();
	assert(/^seen: TIME_WAIT \d+(\.\d)? s$/.test(tw), `TIME_WAIT countdown "${tw}"`);
	assertEq(await page.locator('.hs-legend .hs-key').count(), 3, 'a legend says what solid, dashed and dots are');
	const server = await page.locator('.hs-timeline-server .hs-st').evaluateAll((r) => r.map((x) => x.dataset.state));
	for (const st of ['LISTEN', 'ESTABLISHED', 'CLOSE_WAIT', 'LAST_ACK', 'CLOSED']) {
		assert(server.includes(st), `server timeline lacks ${st}: ${server}`);
	}
	await shot('run');
});

test('presenter mode at 1280x720: the ladder labels and the packet list are large, the counter stays', async () => {
	const vp = page.viewportSize();
	await page.setViewportSize({ width: 1280, height: 720 });
	// Rendered sizes (CSS zoom and the SVG's scale included).
	const measure = () => page.evaluate(() => ({
		label: document.querySelector('.hs-seg-label').getBoundingClientRect().height,
		row: document.querySelector('.hs-list tbody tr').getBoundingClientRect().height,
	}));
	const before = await measure();
	await page.click('.pl-present');
	await page.waitForFunction(() => document.body.classList.contains('presenter'));
	try {
		const after = await measure();
		assert(after.label >= 1.4 * before.label && after.label >= 16,
			`ladder label ${before.label.toFixed(1)} -> ${after.label.toFixed(1)} px (at least 16 px, 1.4x)`);
		assert(after.row >= 1.4 * before.row && after.row >= 24,
			`packet list row ${before.row.toFixed(1)} -> ${after.row.toFixed(1)} px (at least 24 px, 1.4x)`);
		assert(await page.isVisible('.pl-pos'), 'the event counter is shown');
		// The first screen is the lab's main picture: the ladder starts on it
		// (not below the lab's questions, which presenter mode leaves out).
		await page.evaluate(() => window.scrollTo(0, 0));
		assert(await page.isHidden('#quiz-card'), 'the questions are left out');
		await page.screenshot({ path: path.join(LOGS, 'e2e-handshake-presenter-1280x720.png') });
		const top = await page.$eval('.hs-ladder', (el) => el.getBoundingClientRect().top);
		assert(top < 720 * 0.55, `the ladder starts at y=${top} px, in the top 55% of the screen`);
		await page.screenshot({ path: path.join(LOGS, 'e2e-handshake-presenter-1280x720.png') });
	} finally {
		await page.keyboard.press('Escape');
		await page.waitForFunction(() => !document.body.classList.contains('presenter'), null, { timeout: WAIT });
		await page.setViewportSize(vp);
	}
});

test('selecting a packet shows its layers and fields; a field highlights its bytes', async () => {
	await page.click('.hs-seg[data-n="1"] .hs-hit');
	await page.locator('.hs-detail .hs-tree').waitFor({ timeout: WAIT });
	const layers = await page.locator('.hs-layer-name').allTextContents();
	assertEq(layers, ['ethernet', 'ipv4', 'tcp'], 'layers of the SYN');
	const flags = page.locator('.hs-field[data-name="flags"]').last();
	assertEq(await flags.textContent(), 'flags: 2 (SYN)', 'the TCP flags field');
	await flags.click();
	const on = await page.locator('.hs-byte.hs-on').evaluateAll((b) => b.map((x) => Number(x.dataset.off)));
	assertEq(on, [46, 47], 'the bytes of the flags field');
	const opts = await page.locator('.hs-field[data-name="options"] + ul .hs-field').allTextContents();
	assert(opts.some((o) => o.startsWith('mss: ')) && opts.some((o) => o.startsWith('wscale: ')), `options ${opts}`);
	const mss = page.locator('.hs-field[data-name="mss"]');
	await mss.click();
	assertEq(await page.locator('.hs-byte.hs-on').count(), 4, 'the MSS option is 4 bytes');
	assertEq(await page.getAttribute('.hs-list tbody tr.hs-selected', 'data-n'), '1', 'the list follows');
	// Each checksum field carries the decoder's verdict and one line of why.
	const syn = liveRun.segs[0].checksums;
	const verdicts = await page.locator('.hs-tree .csum-badge').evaluateAll((b) => b.map((x) => x.dataset.status));
	assertEq(verdicts, [syn.ipv4.status, syn.tcp.status], 'checksum verdicts of the SYN');
	assertEq(await page.locator('.hs-layer-ipv4 .csum-badge').textContent(), 'good', 'the IPv4 header checksum');
	const why = await page.locator('.hs-layer-tcp .csum-why').textContent();
	assert(why.length > 20 && !why.includes('csum.'), `the TCP checksum's explanation "${why}"`);
	await shot('detail');
});

test('clicking connect() highlights SYN, SYN-ACK, ACK and SYN_SENT -> ESTABLISHED', async () => {
	await page.click('.hs-call[data-call="connect"] .hs-hit');
	const segs = await page.locator('.hs-seg.hs-hl').evaluateAll((g) => g.map((x) => Number(x.dataset.n)));
	assertEq(segs, [1, 2, 3], 'segments inside connect()');
	const states = await page.locator('.hs-timeline-client .hs-st.hs-hl').evaluateAll((r) => r.map((x) => x.dataset.state));
	assertEq(states, ['SYN_SENT', 'ESTABLISHED'], 'the client states connect() went through');
	const text = await page.textContent('.hs-detail');
	assert(text.includes('#1 [SYN]') && text.includes('#2 [SYN,ACK]') && text.includes('#3 [ACK]'), `detail "${text}"`);
});

test('the comparison explains where the kernel and RFC 9293 differ', async () => {
	const client = await page.locator('.hs-compare-side[data-who="client"] tbody tr').evaluateAll((r) => r.map((x) => x.className));
	assert(client.includes('hs-match-kernel_only'), `client rows ${client}`);
	assert(client.includes('hs-match-consistent hs-row-sample'), `a sample compared with the model: ${client}`);
	const samples = await page.locator('.hs-compare-side[data-who="client"] tr.hs-row-sample').evaluateAll((rows) =>
		rows.map((tr) => [...tr.querySelectorAll('td')].slice(0, 3).map((td) => td.textContent).join('|')));
	assert(samples.includes('seen: TIME_WAIT|sock_diag|model then: TIME_WAIT'), `the sample row names its source: ${samples}`);
	const keys = await page.locator('.hs-notes .callout-note').evaluateAll((n) => n.map((x) => x.dataset.key));
	for (const k of ['handshake.diff.time_wait', 'handshake.diff.syn_recv']) assert(keys.includes(k), `note ${k} in ${keys}`);
});

test('the pcap is offered and served', async () => {
	const href = await page.getAttribute('.hs-pcap-link', 'href');
	assertEq(href, `/api/runs/${liveRun.id}/capture.pcap`, 'download link');
	const r = await fetch(srv.base + href);
	assertEq(r.status, 200, 'capture.pcap status');
	const buf = Buffer.from(await r.arrayBuffer());
	assertEq(buf.readUInt32LE(0).toString(16), 'a1b23c4d', 'a nanosecond pcap');
	fs.writeFileSync(path.join(tmp, 'run.pcap'), buf);
});

test('uploading that pcap replays it with the same arrows', async () => {
	await page.setInputFiles('#upload-file', path.join(tmp, 'run.pcap'));
	const run = await runAndWait();
	assertEq(run.status, 'ok', 'replay status');
	assert(run.id !== liveRun.id, 'a new run');
	assertEq(await page.locator('.hs-seg-label').allTextContents(), liveRun.segs.map((s) => label(s, false)), 'the same segments');
	assertEq(await page.locator('.hs-pcap-link').count(), 0, 'a replay offers no capture of its own');
	await shot('replay');
	await page.setInputFiles('#upload-file', []);
});

test('a duplicate whose RST kills TIME_WAIT: the countdown stops and the timeline says why', async () => {
	await page.goto(`${srv.base}/#/lab/handshake`);
	await page.locator('#p-scenario').waitFor({ timeout: WAIT });
	await page.evaluate(() => { for (const d of document.querySelectorAll('details')) d.open = true; });
	// Every client frame duplicated: a copy of its last ACK finds the server's
	// socket gone, and the server's RST kills the client's TIME_WAIT.
	for (const [k, v] of [['c2s_dup_pct', '100'], ['c2s_delay_ms', '100'], ['s2c_delay_ms', '100'], ['observe_ms', '800']]) {
		await page.fill(`#p-${k}`, v);
	}
	const run = await runAndWait();
	assertEq(run.status, 'ok', 'run status');
	rstRun = run.id;
	const ev = await events(run.id);
	const gone = ev.filter((e) => e.type === 'observation' && e.who === 'client' && e.listed === false);
	assertEq(gone.length, 1, 'sock_diag stops listing the client once');
	assertEq(gone[0].reason, 'rst', 'because of an RST');
	const last = await page.locator('.hs-timeline-client .hs-st').evaluateAll((r) => r.map((x) => `${x.dataset.kind}/${x.dataset.source}`).pop());
	assertEq(last, 'gone/sock_diag', 'the client timeline ends where sock_diag no longer lists it');
	const why = await page.locator('.hs-timeline-client .hs-st-why').textContent();
	assertEq(why, `RST #${gone[0].evidence_seg}, seq ${gone[0].evidence.seq_raw}`, 'the RST is named');
	assertEq(await page.locator('.hs-timeline-client .hs-tw').count(), 0, 'no TIME_WAIT countdown runs on');
	const keys = await page.locator('.hs-notes .callout-note').evaluateAll((n) => n.map((x) => x.dataset.key));
	assert(keys.includes('handshake.time_wait_ended.rst'), `the note says the RST ended it: ${keys}`);
	assert(!keys.includes('handshake.time_wait_left'), 'no "still in TIME_WAIT" note');
	// The changed view at two sizes, in both languages (looked at by a person).
	for (const lang of ['en', 'zh-CN']) {
		await page.evaluate((l) => localStorage.setItem('socklab.lang', l), lang);
		for (const [w, hgt] of [[1280, 720], [1440, 900]]) {
			await page.setViewportSize({ width: w, height: hgt });
			await page.goto(`${srv.base}/#/run/${run.id}`);
			await page.reload(); // the language is chosen when the page loads
			await page.locator('.hs-timeline-client .hs-st-why').waitFor({ timeout: WAIT });
			assertEq(await page.locator('.hs-legend').evaluate((el) => el.textContent.includes('tracepoint')), true, 'legend');
			// The ladder's card at the top (below the sticky run toolbar), its
			// end in view: TIME_WAIT seen, then gone with the RST.
			await page.evaluate(() => {
				const card = document.querySelector('.hs-card');
				const bar = document.querySelector('.player-bar');
				const top = bar ? bar.getBoundingClientRect().height + 8 : 8;
				const box = document.querySelector('.hs-ladder-box');
				box.scrollTop = box.scrollHeight;
				const r = box.getBoundingClientRect();
				// The box's end at the bottom of the window (the card's top
				// below the toolbar when the whole box fits).
				const y = Math.max(card.getBoundingClientRect().top + window.scrollY - top,
					r.bottom + window.scrollY - window.innerHeight + 8);
				window.scrollTo(0, Math.max(0, y));
			});
			await page.screenshot({ path: path.join(LOGS, `e2e-handshake-rst-${lang}-${w}x${hgt}.png`) });
			await page.locator('.hs-compare-card').scrollIntoViewIfNeeded();
			await page.screenshot({ path: path.join(LOGS, `e2e-handshake-rst-compare-${lang}-${w}x${hgt}.png`) });
		}
	}
	await page.evaluate(() => localStorage.setItem('socklab.lang', 'en'));
	await page.reload();
	await page.setViewportSize({ width: 1280, height: 800 });
});

// Both ladders of two runs side by side, measured: the box does not scroll
// sideways, no text lies outside the drawing, no two texts overlap, a state's
// name stays inside its block, and the labels say what the wide ladder says.
function ladderGeometry() {
	return page.evaluate(() => ['pane-main', 'pane-compare'].map((id) => {
		const box = document.querySelector(`#${id} .hs-ladder-box`);
		const svgEl = box.querySelector('svg.hs-ladder');
		const sr = svgEl.getBoundingClientRect();
		// A wrapped text is measured line by line (each tspan), without its tooltip.
		const texts = [...svgEl.querySelectorAll('text')].flatMap((el) => (el.querySelector('tspan') ? [...el.querySelectorAll('tspan')] : [el]))
			.map((el) => ({ el, r: el.getBoundingClientRect(), text: [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.data).join('') }))
			.filter((x) => x.text.trim() && x.r.width > 0);
		const out = { id, box: [box.scrollWidth, box.clientWidth], svg: sr.width, compact: svgEl.classList.contains('hs-compact'), outside: [], overlap: [], spill: [] };
		for (const x of texts) if (x.r.left < sr.left - 0.5 || x.r.right > sr.right + 0.5) out.outside.push(x.text);
		for (let i = 0; i < texts.length; i++) {
			for (let j = i + 1; j < texts.length; j++) {
				const a = texts[i].r;
				const b = texts[j].r;
				const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
				const hgt = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
				if (w > 1 && hgt > 2) out.overlap.push(`"${texts[i].text}" / "${texts[j].text}"`);
			}
		}
		// A state column's texts inside their block (the rect before them).
		for (const x of texts.filter((t) => t.el.closest('.hs-timeline') && !t.el.closest('.hs-diff-mark'))) {
			let blk = x.el.closest('text').previousElementSibling;
			while (blk && !(blk.tagName === 'rect' && blk.classList.contains('hs-st'))) blk = blk.previousElementSibling;
			const r = blk && blk.getBoundingClientRect();
			if (!r || x.r.left < r.left - 0.5 || x.r.right > r.right + 0.5) out.spill.push(x.text);
		}
		out.labels = [...svgEl.querySelectorAll('.hs-seg-label')].map((el) => el.textContent);
		return out;
	}));
}

test('beside another run, the ladder fits its half of the page: no sideways scroll, nothing cut or overlapping (measured)', async () => {
	await page.setViewportSize({ width: 1280, height: 720 });
	await page.goto(`${srv.base}/#/run/${rstRun}`);
	await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	await page.click('#beside-btn');
	await page.locator('#pane-compare .run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	const ids = [rstRun, await page.getAttribute('#pane-compare .run-card', 'data-run')];
	const segs = await Promise.all(ids.map(async (id) => (await events(id)).filter((e) => e.type === 'segment')));
	for (const [w, hgt] of [[1280, 720], [1440, 900]]) {
		for (const lang of ['en', 'zh-CN']) {
			await page.setViewportSize({ width: w, height: hgt });
			await page.selectOption('#lang-select', lang);
			await page.waitForFunction((l) => document.documentElement.lang === l, lang);
			// Drawn again at the box's width, its label boxes measured.
			await page.waitForFunction(() => [...document.querySelectorAll('.hs-ladder-box')].every((b) => {
				const s = b.querySelector('svg.hs-ladder[data-labelled="1"]');
				return s && Math.abs(s.getBoundingClientRect().width - Math.floor(b.clientWidth)) <= 1;
			}));
			const where = `${w}x${hgt} ${lang}`;
			for (const [i, g] of (await ladderGeometry()).entries()) {
				const at = `${where} ${g.id}`;
				assert(g.compact, `${at}: the compact ladder (box ${g.box[1]} px)`);
				assert(g.box[0] <= g.box[1], `${at}: the ladder box scrolls sideways (${g.box[0]} > ${g.box[1]})`);
				assertEq(g.outside, [], `${at}: texts outside the ladder`);
				assertEq(g.overlap, [], `${at}: texts overlapping`);
				assertEq(g.spill, [], `${at}: state texts outside their block`);
				assertEq(g.labels, segs[i].map((s) => label(s, false)), `${at}: segment labels (wrapped, the same words)`);
			}
			await page.evaluate(() => document.querySelector('#pane-main .hs-card').scrollIntoView());
			await page.screenshot({ path: path.join(LOGS, `e2e-handshake-beside-${lang}-${w}x${hgt}.png`) });
			await page.locator('#pane-main .hs-ladder-box').screenshot({ path: path.join(LOGS, `e2e-handshake-beside-ladder-${lang}-${w}x${hgt}.png`) });
		}
	}
	await page.selectOption('#lang-select', 'en');
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

runTap({
	tmpPrefix: 'socklab-e2e-hs-',
	async setup(chromium, t) {
		tmp = t;
		srv = await startServer(tmp, { log: 'e2e-handshake-server.log' });
		page = await launchPage(chromium, tmp, problems, { args: ARGS });
		return 'socklab serve and Chromium';
	},
	failShots: (n) => [[page, `e2e-handshake-fail-${n}.png`]],
});
