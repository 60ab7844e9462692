// test_views.mjs: how the main views read, measured from the DOM in a real Chromium (TAP output).
//
// Real runs of every lab (handshake, sticky, udp-ping, tcp-echo, syn-flood,
// time-wait, layers, own); each is reopened at
// 1280x720 and 1440x900 in English and Chinese and screenshotted
// (build/test-logs/e2e-views-*.png, kept as artifacts), and the geometry is
// asserted: the replay bar is one row and covers nothing, no two byte spans
// of a sticky lane overlap, no label is cut or crossed, no text overflows its
// box. Then the behaviour issue 15 fixed: the packet detail's texts, the
// scaled window and its explanation, the hex with its ASCII column and the
// byte -> field link, and stepping (badge, current event row, a ladder that
// does not move between steps, what lies ahead greyed). And what came after:
// summaries in words in both languages (syn-flood, time-wait, layers), roles
// in notes in the reader's language, a chart key without "--", two runs of
// one lab side by side with what differs
// highlighted, and each lab's first screen (a lesson, a short form, Run
// above the fold). The sticky lanes' animation (tied to the replay bar) is
// tested in test_sticky.mjs, UDP beside TCP in test_udp_ping.mjs.

import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchBrowser, rowsOf, runTap, startServer, test,
} from './lib.mjs';

let srv;
let browser;
let page;
const problems = [];
const runs = {}; // lab -> {id, events}
const SIZES = [[1280, 720], [1440, 900]];
const LANGS = ['en', 'zh-CN'];
const LABS = ['handshake', 'sticky', 'udp-ping', 'tcp-echo', 'syn-flood', 'time-wait', 'layers', 'own'];
// The form's main knobs per lab (formHints.main in web/labs/*.js).
const MAIN_KNOBS = 7;

async function events(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function newPage(w, hgt, lang) {
	if (page) await page.context().close();
	const ctx = await browser.newContext({ viewport: { width: w, height: hgt } });
	await ctx.addInitScript((l) => localStorage.setItem('socklab.lang', l), lang);
	page = await ctx.newPage();
	page.setDefaultTimeout(WAIT);
	page.on('console', (m) => {
		if (m.type() === 'error' || /Content[- ]Security[- ]Policy/i.test(m.text())) problems.push(`console ${m.type()}: ${m.text()}`);
	});
	page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
	return page;
}

async function run(lab) {
	await newPage(1440, 900, 'en');
	await page.goto(`${srv.base}/#/lab/${lab}`);
	await page.locator('#conn[data-state="open"]').waitFor();
	await page.click('#run-btn');
	await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	const id = await page.getAttribute('.run-card', 'data-run');
	runs[lab] = { id, events: await events(id) };
}

async function open(lab, w = 1440, hgt = 900, lang = 'en', { lateCss = false } = {}) {
	await newPage(w, hgt, lang);
	// The lab's stylesheet arriving after the first render (as on a slow
	// link): held until the page has drawn the run once.
	if (lateCss) {
		let release;
		const held = new Promise((r) => { release = r; });
		await page.route('**/labs/*.css', async (route) => {
			await held;
			await route.continue();
		});
		page.once('load', () => page.locator('.hs-ladder').waitFor().then(release, release));
	}
	await page.goto(`${srv.base}/#/run/${runs[lab].id}`);
	await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	await page.waitForFunction((n) => document.querySelector('.player')?.dataset.pos === String(n), runs[lab].events.length);
	// The ladder's label boxes are measured once its stylesheet applies.
	if (lab === 'handshake') await page.locator('.hs-ladder[data-labelled="1"]').waitFor();
}

// Elements under sel whose text is wider or taller than their box (cut).
function clipped(sel) {
	return page.evaluate((s) => [...document.querySelectorAll(s)].filter((el) => el.offsetParent
		&& (el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 2))
		.map((el) => `${el.className}: "${el.textContent.slice(0, 40)}"`), sel);
}

function overlap(a, b) {
	const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
	const hgt = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
	return w > 1 && hgt > 1;
}

test('every main view at two sizes in two languages: one-row bar over nothing, no cut text (screenshots kept)', async () => {
	for (const lab of Object.keys(runs)) {
		for (const [w, hgt] of SIZES) {
			for (const lang of LANGS) {
				const where = `${lab} ${w}x${hgt} ${lang}`;
				await open(lab, w, hgt, lang);
				assertEq(await page.evaluate(() => document.documentElement.lang), lang, `${where}: language`);
				// Scroll the view's top under the sticky bar: the bar is one
				// row, opaque, and ends above the first thing of the stage.
				await page.evaluate(() => window.scrollTo(0, document.querySelector('.player').getBoundingClientRect().top + window.scrollY + 60));
				const g = await page.evaluate(() => {
					const bar = document.querySelector('.player-bar').getBoundingClientRect();
					const btns = [...document.querySelectorAll('.player-bar .btn, .player-bar select')].filter((b) => b.offsetParent)
						.map((b) => b.getBoundingClientRect());
					return {
						bar: { top: bar.top, bottom: bar.bottom, height: bar.height },
						rows: btns.map((r) => ({ top: r.top, bottom: r.bottom })),
						select: document.querySelector('.pl-speed').getBoundingClientRect().width,
						opacity: getComputedStyle(document.querySelector('.player-bar')).opacity,
						bg: getComputedStyle(document.querySelector('.player-bar')).backgroundColor,
					};
				});
				assert(g.bar.height < 56, `${where}: the bar is ${g.bar.height} px high`);
				assertEq(rowsOf(g.rows), 1, `${where}: rows of controls in the bar`);
				assert(g.select < 220, `${where}: the speed dropdown is ${g.select} px wide`);
				assertEq(g.opacity, '1', `${where}: bar opacity`);
				assert(!/rgba\(.*, 0\)/.test(g.bg) && g.bg !== 'transparent', `${where}: bar background ${g.bg}`);
				const cut = await clipped('.player-bar .btn, .player-bar .pl-pos, .tile dt, .tile dd, .hs-list th, .stk-lane-head, .stk-tab, .summary-group h4, .summary-group dt, .summary-group dd, .summary-table th, .run-head h2, .callout-note p, .echo-head .tcell');
				assertEq(cut, [], `${where}: text cut off`);
				// Nothing spills out of its card sideways (a table, a bar).
				const wide = await page.evaluate(() => [...document.querySelectorAll('#view .card')].filter((c) => c.offsetParent && c.scrollWidth > c.clientWidth + 1)
					.map((c) => `${c.className} (${c.scrollWidth} > ${c.clientWidth})`));
				assertEq(wide, [], `${where}: cards wider inside than out`);
				await page.evaluate(() => document.querySelector('#view').scrollIntoView());
				await page.screenshot({ path: path.join(LOGS, `e2e-views-${lab}-${w}x${hgt}-${lang}.png`) });
			}
		}
	}
});

test('handshake ladder: labels have room, a box under each (also when its stylesheet arrives late), no scroll box of its own', async () => {
	await open('handshake', 1280, 720, 'en', { lateCss: true });
	const g = await page.evaluate(() => {
		const svg = document.querySelector('.hs-ladder');
		const w = svg.viewBox.baseVal.width;
		const cols = [...document.querySelectorAll('.hs-timeline rect.hs-st')].map((r) => r.getBBox());
		const out = { w, outside: [], onColumns: [], unboxed: [], loose: [] };
		for (const el of svg.querySelectorAll('.hs-seg-label, .hs-seg-time, .hs-call-label')) {
			const b = el.getBBox();
			if (b.x < 0 || b.x + b.width > w) out.outside.push(el.textContent);
			if (el.classList.contains('hs-call-label') && cols.some((c) => b.x < c.x + c.width && b.x + b.width > c.x)) out.onColumns.push(el.textContent);
			if (!el.classList.contains('hs-call-label')) {
				const bg = el.previousElementSibling;
				const r = bg && bg.classList.contains('hs-label-bg') ? bg.getBBox() : null;
				if (!r || r.x > b.x || r.x + r.width < b.x + b.width) out.unboxed.push(el.textContent);
				// Measured from the text as styled: 3 px either side, its height.
				else if (Math.abs(r.x + 3 - b.x) > 0.5 || Math.abs(r.width - 6 - b.width) > 0.5 || Math.abs(r.y - b.y) > 0.5) out.loose.push(el.textContent);
			}
		}
		const box = document.querySelector('.hs-ladder-box');
		out.vscroll = box.scrollHeight > box.clientHeight + 1;
		out.hscroll = box.scrollWidth > box.clientWidth + 1;
		return out;
	});
	assertEq(g.outside, [], 'labels outside the ladder');
	assertEq(g.onColumns, [], 'call labels over the state columns');
	assertEq(g.unboxed, [], 'segment labels without a background box');
	assertEq(g.loose, [], 'background boxes not measured from the styled label (stylesheet arrived late)');
	assertEq(g.vscroll, false, 'the ladder scrolls in a box of its own');
	assertEq(g.hscroll, false, 'the ladder fits the card at 1280x720');
});

test('handshake: windows in bytes, the scale and the wire time explained from this run', async () => {
	await open('handshake');
	const segs = runs.handshake.events.filter((e) => e.type === 'segment');
	const labels = await page.locator('.hs-seg-label').allTextContents();
	const scaled = segs.filter((s) => typeof s.win_bytes === 'number' && s.win_bytes !== s.win);
	assert(scaled.length > 0, 'the run has scaled windows');
	for (const s of scaled) assert(labels[segs.indexOf(s)].endsWith(`win ${s.win_bytes}`), `#${s.n}: "${labels[segs.indexOf(s)]}"`);
	const s = scaled[0];
	const syn = segs.find((x) => x.dir === s.dir && x.flags.includes('SYN'));
	const shift = syn.options.find((o) => o.name === 'wscale').value;
	await page.click(`.hs-list tbody tr[data-n="${s.n}"]`);
	const why = await page.locator('.hs-layer-tcp .hs-field-why').textContent();
	assert(why.includes(`${s.win} × ${2 ** shift} = ${s.win_bytes}`) && why.includes(`#${syn.n}`), `window explained: "${why}"`);
	await page.check('#hs-rawwin');
	assert((await page.locator(`.hs-seg[data-n="${s.n}"] .hs-seg-label`).textContent()).endsWith(`win ${s.win}`), 'the raw field on request');
	await page.uncheck('#hs-rawwin');
	// Two hosts: the wire time between the captures, and the relay's delay.
	const arr = runs.handshake.events.find((e) => e.type === 'arrival' && e.n === s.n);
	if (arr) {
		const wire = await page.locator('.hs-wire-why').textContent();
		assert(wire.startsWith(`${(arr.wire_us / 1000).toFixed(3)} ms`), `wire time "${wire}"`);
		const w = runs.handshake.events.find((e) => e.type === 'wire' && e.dir === s.dir && e.proto === 'TCP'
			&& e.summary.includes(`seq ${s.seq_raw} ack ${s.ack_raw} `));
		assert(w && wire.includes(`${(w.delay_us / 1000).toFixed(3)} ms on purpose`), `the relay's delay named: "${wire}"`);
	}
});

test('packet detail: byte ranges, EtherType, options as words, ASCII beside hex, byte -> field', async () => {
	await open('handshake');
	const syn = runs.handshake.events.find((e) => e.type === 'segment' && e.n === 1);
	await page.click('.hs-seg[data-n="1"] .hs-hit');
	await page.locator('.hs-detail .hs-tree').waitFor();
	const ranges = await page.locator('.hs-layer-bytes').allTextContents();
	assertEq(ranges.map((x) => x.trim()), syn.layers.map((l) => `bytes ${l.off}–${l.off + l.len - 1} (${l.len} bytes)`), 'layer byte ranges');
	assertEq(await page.locator('.hs-layer-ethernet .hs-field[data-name="type"]').textContent(), 'type: 0x0800 (IPv4)', 'EtherType');
	const ts = syn.options.find((o) => o.name === 'timestamp');
	assertEq(await page.locator('.hs-field[data-name="timestamp"]').textContent(), `timestamp: TSval ${ts.value.val} TSecr ${ts.value.ecr}`, 'timestamp option');
	const bytes = Buffer.from(syn.bytes, 'hex');
	const ascii = await page.locator('.hs-ascii').allTextContents();
	const want = [];
	for (let i = 0; i < bytes.length; i += 16) want.push([...bytes.subarray(i, i + 16)].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join(''));
	assertEq(ascii, want, 'the ASCII column');
	// A byte of the TCP flags: the flags field lights up, and its bytes.
	const flags = syn.layers.find((l) => l.layer === 'tcp').fields.find((f) => f.name === 'flags');
	await page.click(`.hs-byte[data-off="${flags.off + 1}"]`);
	assertEq(await page.locator('.hs-field.hs-on').textContent(), 'flags: 2 (SYN)', 'the field of a clicked byte');
	const on = await page.locator('.hs-char.hs-on').evaluateAll((c) => c.map((x) => Number(x.dataset.off)));
	assertEq(on, Array.from({ length: flags.len }, (_, i) => flags.off + i), 'its ASCII characters');
	// Wireshark's panes: the fields beside the bytes, right under the list.
	const g = await page.evaluate(() => {
		const r = (s) => document.querySelector(s).getBoundingClientRect();
		return { tree: r('.hs-tree'), bytes: r('.hs-bytes-pane'), list: r('.hs-list-scroll'), ladder: r('.hs-ladder-box') };
	});
	assert(g.bytes.left >= g.tree.right - 1 && Math.abs(g.bytes.top - g.tree.top) < 40, 'the bytes beside the fields');
	assert(g.tree.top > g.list.bottom && g.list.top > g.ladder.bottom, 'ladder, then list, then fields and bytes');
	const info = await page.locator('.hs-list tbody tr[data-n="1"] .hs-info').textContent();
	assert(info.startsWith(`${syn.src.port} → ${syn.dst.port} [SYN] Seq=0 Win=${syn.win} Len=0 MSS=`), `Info column "${info}"`);
	assertEq(await page.getAttribute('.hs-list tbody tr[data-n="1"]', 'class'), 'hs-row-synfin hs-row-c2s hs-selected', 'row colour and selection');
});

test('stepping: replay badge, the current event marked, the ladder does not move, the future greyed', async () => {
	await open('handshake');
	const evs = runs.handshake.events;
	const end = await page.evaluate(() => [...document.querySelectorAll('.hs-seg')].map((g) => {
		const r = g.getBoundingClientRect();
		const o = document.querySelector('.hs-ladder').getBoundingClientRect();
		return `${g.dataset.n}@${Math.round(r.left - o.left)},${Math.round(r.top - o.top)}`;
	}));
	const listenAtEnd = await page.locator('.hs-timeline-server .hs-st[data-state="LISTEN"]').count();
	if (!(await page.locator('.pl-steps').isVisible())) await page.click('.pl-stepping');
	// Stop just after the SYN-ACK was captured.
	const k = evs.findIndex((e) => e.type === 'segment' && e.n === 2) + 1;
	await page.fill('.pl-jump', String(k));
	await page.click('.pl-jump-form button');
	await page.waitForFunction((n) => document.querySelector('.player').dataset.pos === String(n), k);
	assertEq(await page.getAttribute('.run-card .pill', 'data-status'), 'replay', 'badge status');
	assertEq(await page.textContent('.run-card .pill'), `replay: event ${k} of ${evs.length}`, 'badge text');
	assertEq(await page.getAttribute('.pl-step-current', 'data-seq'), String(evs[k - 1].seq), 'the current row');
	assertEq(await page.getAttribute('.pl-step-current', 'aria-current'), 'step', 'aria-current');
	const cap = await page.textContent('.pl-step-caption');
	assert(cap.startsWith('Segment #2 is captured, server → client: [SYN, ACK]'), `caption "${cap}"`);
	assertEq(await page.locator('.pl-step-ahead').first().getAttribute('data-seq'), String(evs[k].seq), 'the next row is ahead');
	assertEq(await page.getAttribute('.hs-seg[data-n="2"]', 'class').then((c) => c.includes('pl-current')), true, 'the SYN-ACK arrow is marked current');
	const now = await page.evaluate(() => [...document.querySelectorAll('.hs-seg')].map((g) => {
		const r = g.getBoundingClientRect();
		const o = document.querySelector('.hs-ladder').getBoundingClientRect();
		return `${g.dataset.n}@${Math.round(r.left - o.left)},${Math.round(r.top - o.top)}`;
	}));
	assertEq(now, end, 'every arrow where it is at the end of the run (in the ladder)');
	const future = await page.locator('.hs-seg.hs-future').evaluateAll((g) => g.map((x) => Number(x.dataset.n)));
	assertEq(future, evs.filter((e) => e.type === 'segment' && e.seq > evs[k - 1].seq).map((e) => e.n), 'greyed arrows');
	// The server's LISTEN block (when the run's reports draw one at its end:
	// the first kernel report of the server's socket must be a transition out
	// of LISTEN) stays, and is not greyed once the listener's report is passed.
	const listen = evs.find((e) => e.type === 'state' && e.who === 'listener' && e.to === 'LISTEN');
	const blocks = await page.locator('.hs-timeline-server .hs-st[data-state="LISTEN"]').count();
	assertEq(blocks, listenAtEnd, 'LISTEN blocks of the server, as at the end of the run');
	if (blocks && listen && listen.seq <= evs[k - 1].seq) {
		const cls = await page.getAttribute('.hs-timeline-server .hs-st[data-state="LISTEN"]', 'class');
		assert(!cls.includes('hs-future'), `the server's LISTEN, reported at seq ${listen.seq}, is not greyed: ${cls}`);
	}
	// Back to the end: the badge is the run's status again.
	await page.click('.pl-play');
	await page.waitForFunction((n) => document.querySelector('.player').dataset.pos === String(n), evs.length);
	assertEq(await page.getAttribute('.run-card .pill', 'data-status'), 'ok', 'badge at the end');
});

test('sticky on the byte ruler: every message visible, spans in stream order, none overlapping', async () => {
	await open('sticky', 1280, 720, 'en');
	const evs = runs.sticky.events;
	const g = await page.evaluate(() => {
		const out = {};
		for (const lane of ['send', 'segment', 'recv']) {
			out[lane] = [...document.querySelectorAll(`.stk-lane-${lane} .stk-span`)].map((b) => {
				const r = b.getBoundingClientRect();
				return { left: r.left, right: r.right, top: r.top, bottom: r.bottom, msgs: [...b.querySelectorAll('[data-msg]')].map((p) => Number(p.dataset.msg)) };
			});
		}
		return out;
	});
	const sends = evs.filter((e) => e.type === 'send');
	assertEq(g.send.length, sends.length, 'a span per send');
	assertEq(g.segment.length, evs.filter((e) => e.type === 'segment' && e.bytes > 0).length, 'a span per data segment');
	assertEq(g.recv.length, evs.filter((e) => e.type === 'recv').length, 'a span per recv');
	for (const lane of ['send', 'segment', 'recv']) {
		const bars = g[lane];
		for (let i = 0; i < bars.length; i++) {
			for (let j = i + 1; j < bars.length; j++) assert(!overlap(bars[i], bars[j]), `${lane} spans ${i} and ${j} overlap`);
		}
		const order = [...bars].sort((a, b) => a.left - b.left).flatMap((b) => b.msgs);
		assertEq(order, [...order].sort((a, b) => a - b), `${lane}: colours in stream order`);
	}
	assertEq(g.send.flatMap((b) => b.msgs), sends.map((s) => s.msgs[0].msg), 'every message has its send span');
	await page.click('.stk-tab[data-tab="time"]');
	const t = await page.evaluate(() => [...document.querySelectorAll('.stk-lane-send .stk-bar')].map((b) => b.getBoundingClientRect().toJSON()));
	for (let i = 0; i < t.length; i++) for (let j = i + 1; j < t.length; j++) assert(!overlap(t[i], t[j]), `time view: sends ${i} and ${j} overlap`);
});

test('Chinese: summary labels, the step caption and the sandbox line are Chinese', async () => {
	await open('sticky', 1280, 720, 'zh-CN');
	assertEq(await page.textContent('.tile[data-key="glued_recvs"] dt'), '包含多条消息的 recv（粘包）', 'glued recvs');
	assertEq(await page.textContent('.tile[data-key="boundaries_lost"] dt'), '边界在哪里丢失', 'boundaries lost');
	assertEq(await page.textContent('.sb-note'), '一个有自己回环接口的私有网络命名空间', 'the sandbox line');
	if (!(await page.locator('.pl-steps').isVisible())) await page.click('.pl-stepping');
	await page.click('.pl-back');
	const cap = await page.textContent('.pl-step-caption');
	assert(/[\u4e00-\u9fff]/.test(cap), `a Chinese caption "${cap}"`);
	const go = await page.locator('.pl-jump-form button').boundingBox();
	assert(go.height < 40 && go.width > go.height, `跳转 on one line: ${JSON.stringify(go)}`);
});

// A summary's keys of more than one word, and the same with spaces (what a
// label falls back to: "half open peak"). A one-word key ("source",
// "failed") may well be its own label.
function rawKeys(o, out = new Set()) {
	for (const [k, v] of Object.entries(o || {})) {
		if (/_/.test(k)) {
			out.add(k);
			out.add(k.replace(/_/g, ' '));
		}
		if (v && typeof v === 'object' && !Array.isArray(v)) rawKeys(v, out);
	}
	return out;
}

// A link's name (layers' capture drops per link) is a name, not a label.
const LINK = /^[a-z]+-eth\d+$/;

test('summaries in words: every figure of syn-flood, time-wait and layers has a label, in Chinese too', async () => {
	for (const lab of ['syn-flood', 'time-wait', 'layers']) {
		const raw = rawKeys(runs[lab].events.find((e) => e.type === 'run.end').summary);
		for (const lang of LANGS) {
			await open(lab, 1280, 720, lang);
			const names = (await page.locator('.run-summary dt, .run-summary h4, .run-summary th').allTextContents()).map((x) => x.trim()).filter(Boolean);
			assert(names.length >= 5, `${lab} ${lang}: ${names.length} labels`);
			assertEq(names.filter((x) => raw.has(x) && !LINK.test(x)), [], `${lab} ${lang}: labels that are the raw key`);
			if (lang === 'zh-CN') assertEq(names.filter((x) => !/[\u4e00-\u9fff]/.test(x) && !LINK.test(x)), [], `${lab}: labels without Chinese`);
			if (lang === 'zh-CN') assert(/[\u4e00-\u9fff]/.test(await page.textContent('.sb-note')), `${lab}: the sandbox line "${await page.textContent('.sb-note')}"`);
		}
	}
	// Durations carry their unit, whatever the key's spelling (ms_left).
	await open('time-wait', 1280, 720, 'en');
	const left = await page.locator('.run-summary [data-cmp="first_timer.ms_left"]');
	if (await left.count()) assert(/^\d+(\.\d+)? s$/.test(await left.textContent()), `first timer: "${await left.textContent()}"`);
});

test("notes say a role in the reader's language: handshake's and own's carry who_key, and own's read in Chinese", async () => {
	for (const lab of ['handshake', 'own']) {
		for (const n of runs[lab].events.filter((e) => e.type === 'note' && e.params)) {
			for (const name of ['who', 'program', 'socket', 'receiver', 'sender', 'active', 'passive']) {
				if (typeof n.params[name] !== 'string') continue;
				const id = n.params[`${name}_key`];
				assert(typeof id === 'string' && id.startsWith('role.'), `${lab} ${n.key}: ${name} "${n.params[name]}" without ${name}_key`);
			}
		}
	}
	const named = runs.own.events.filter((e) => e.type === 'note' && e.params && (e.params.who_key || e.params.program_key));
	assert(named.length > 0, 'the own run has notes naming a role');
	await open('own', 1280, 720, 'zh-CN');
	for (const n of named) {
		const text = await page.locator(`.callout-note[data-key="${n.key}"] p`).first().textContent();
		assert(/客户端|服务器/.test(text) && !/\b(client|server|listener)\b/.test(text.replace(/"server"|SERVER_HOST/g, '')), `${n.key}: "${text.slice(0, 80)}"`);
	}
});

test('udp-ping chart: its key names the series, no "--" values', async () => {
	await open('udp-ping', 1280, 720, 'en');
	const legend = await page.locator('.ping-chart .u-legend').textContent();
	assert(legend.includes('RTT') && !legend.includes('--'), `legend "${legend}"`);
});

test('two runs of one lab side by side: what differs is highlighted in both, the bars stay one row, nothing is cut', async () => {
	for (const [w, hgt, lang] of [[1280, 720, 'en'], [1440, 900, 'zh-CN']]) {
		await open('sticky', w, hgt, lang);
		await page.check('#p-nodelay');
		await page.click('#beside-btn');
		await page.locator('#pane-compare .run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
		await page.locator('#pane-compare .cmp-note').waitFor();
		const g = await page.evaluate(() => {
			const pair = (id) => new Map([...document.querySelectorAll(`#${id} [data-cmp]`)].map((e) => [e.dataset.cmp, e]));
			const a = pair('pane-main');
			const b = pair('pane-compare');
			const wrong = [];
			let differ = 0;
			for (const [k, x] of a) {
				const y = b.get(k);
				if (!y) continue;
				const d = x.textContent !== y.textContent;
				if (d && !k.startsWith('param.')) differ++;
				if (x.classList.contains('cmp-diff') !== d || y.classList.contains('cmp-diff') !== d) wrong.push(k);
			}
			const rows = (id) => [...document.querySelectorAll(`#${id} .player-bar > *`)].filter((c) => c.offsetParent)
				.map((c) => c.getBoundingClientRect()).map((r) => ({ top: r.top, bottom: r.bottom }));
			const over = [...document.querySelectorAll('.pane')].filter((p) => p.scrollWidth > p.clientWidth + 1).map((p) => p.id);
			return {
				wrong, differ, rows: [rows('pane-main'), rows('pane-compare')], over,
				nodelay: ['pane-main', 'pane-compare'].map((id) => document.querySelector(`#${id} [data-cmp="param.nodelay"]`)?.classList.contains('cmp-diff')),
				notes: [...document.querySelectorAll('.cmp-note')].map((n) => n.textContent),
				titles: [...document.querySelectorAll('.pane-title')].map((n) => n.textContent),
			};
		});
		const where = `${w}x${hgt} ${lang}`;
		assertEq(g.wrong, [], `${where}: values marked wrongly (a difference not marked, or a mark on equal values)`);
		assertEq(g.nodelay, [true, true], `${where}: TCP_NODELAY marked in both panes`);
		const note = lang === 'en' ? (g.differ ? `${g.differ} figures differ from the other run (highlighted).` : "Every figure here equals the other run's.")
			: (g.differ ? `有 ${g.differ} 项数值与另一次运行不同（已高亮）。` : '这里的每项数值都与另一次运行相同。');
		assertEq(g.notes, [note, note], `${where}: what each summary says`);
		assertEq(g.titles, lang === 'en' ? ['The run before', 'The new run (beside the one before)'] : ['上一次运行', '新的运行（在上一次运行旁边）'], `${where}: pane titles`);
		assertEq(g.rows.map(rowsOf), [1, 1], `${where}: rows of each replay bar`);
		assertEq(g.over, [], `${where}: panes wider than their column`);
		assertEq(await clipped('#view .callout-note p, #view .tile dt, #view .tile dd, #view .player-bar .btn, #view .stk-lane-head'), [], `${where}: text cut off`);
		await page.evaluate(() => document.querySelector('#view').scrollIntoView());
		await page.screenshot({ path: path.join(LOGS, `e2e-views-beside-${w}x${hgt}-${lang}.png`) });
	}
});

test('each lab opens as a lesson: what it teaches, a short form, Run above the fold at 1280x720', async () => {
	for (const lang of LANGS) {
		await newPage(1280, 720, lang);
		for (const lab of LABS) {
			await page.goto(`${srv.base}/#/lab/${lab}`);
			await page.reload();
			await page.locator('#conn[data-state="open"]').waitFor();
			await page.locator('#form-fields .fields').first().waitFor();
			const g = await page.evaluate(() => {
				const run = document.getElementById('run-btn').getBoundingClientRect();
				const lesson = document.getElementById('lab-lesson');
				const main = [...document.querySelectorAll('#form-fields .fields .field')].filter((f) => !f.closest('details') && !f.hidden);
				return { run: run.bottom, lesson: lesson.hidden ? null : lesson.getBoundingClientRect().top, main: main.length, more: document.querySelector('#form-fields details.advanced summary')?.textContent || '' };
			});
			const where = `${lab} ${lang}`;
			assert(g.run <= 720, `${where}: Run ends at ${g.run} px`);
			assert(g.lesson !== null && g.lesson < 720, `${where}: the lesson starts at ${g.lesson}`);
			assert(g.main <= MAIN_KNOBS, `${where}: ${g.main} knobs outside "more knobs"`);
			if (g.more) assert(lang === 'en' ? /^More knobs \(\d+\)$/.test(g.more) : /^更多参数（\d+ 个）$/.test(g.more), `${where}: "${g.more}"`);
			await page.screenshot({ path: path.join(LOGS, `e2e-views-first-${lab}-1280x720-${lang}.png`) });
		}
	}
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

runTap({
	tmpPrefix: 'socklab-e2e-views-',
	async setup(chromium, tmp) {
		srv = await startServer(tmp, { log: 'e2e-views-server.log' });
		browser = await launchBrowser(chromium);
		for (const lab of LABS) await run(lab);
		return `socklab serve, Chromium, ${LABS.length} runs (${Object.values(runs).map((r) => r.id).join(' ')})`;
	},
	failShots: (n) => (page ? [[page, `e2e-views-fail-${n}.png`]] : []),
});
