// test_udp_ping.mjs: the udp-ping view in a real Chromium against a real `socklab serve` (TAP output).
//
// A run over two hosts with a lossy, duplicating, reordering wire: the RTT
// chart renders (uPlot, served from the binary), the statistics the page shows
// equal those computed here from the run's own event stream and the lab's
// run.end summary, lost probes say where the wire dropped them, "same path
// over TCP" runs tcp-echo over the same wire and it delivers everything, the
// two runs are paired message by message (the highlighted rows and the count
// equal what the events say differs), and a
// bring-your-own-client UDP server answers a real datagram from this process.
// Every wait has a deadline; screenshots go to build/test-logs/e2e-udp-*.png.

import dgram from 'node:dgram';
import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchPage, runTap, startServer, test, until,
} from './lib.mjs';

async function runEvents(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	assert(r.ok, `events of ${id}: HTTP ${r.status}`);
	return (await r.text()).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}

// The statistics as ping computes them, from the events alone.
function statsOf(events) {
	const s = { sent: 0, received: 0, lost: 0, late: 0, duplicates: 0, reordered: 0, rtts: [] };
	for (const e of events) {
		if (e.type === 'syscall' && e.who === 'client' && e.call === 'sendto' && e.ret >= 0) s.sent++;
		if (e.type !== 'probe') continue;
		if (e.status === 'reply') {
			s.received++;
			s.rtts.push(e.rtt_us);
			if (e.reordered) s.reordered++;
		}
		if (e.status === 'lost') s.lost++;
		if (e.status === 'late') {
			s.late++;
			s.lost--;
		}
		if (e.status === 'dup') s.duplicates++;
	}
	const n = s.rtts.length;
	const avg = s.rtts.reduce((a, b) => a + b, 0) / n;
	const v = s.rtts.reduce((a, b) => a + b * b, 0) / n - avg * avg;
	s.min = Math.min(...s.rtts);
	s.max = Math.max(...s.rtts);
	s.avg = Math.round(avg);
	s.mdev = Math.round(v > 0 ? Math.sqrt(v) : 0);
	return s;
}

let srv;
let page;
const problems = [];
let pingRun = null;

async function shot(name) {
	await page.screenshot({ path: path.join(LOGS, `e2e-udp-${name}.png`), fullPage: true });
}

async function waitVisible(selector, timeout = WAIT) {
	await page.locator(selector).first().waitFor({ state: 'visible', timeout });
}

async function openAdvanced() {
	const adv = page.locator('details.advanced');
	if (await adv.count() && !(await adv.getAttribute('open') !== null)) await adv.locator('summary').click();
}

async function tile(key) {
	return page.getAttribute(`.ping-stats .tile[data-key="${key}"] dd`, 'data-raw');
}

test('udp-ping is in the catalogue with the network parameters', async () => {
	await page.goto(`${srv.base}/#/lab/udp-ping`);
	await waitVisible('#conn[data-state="open"]');
	await page.click('.lab-item[data-lab="udp-ping"]');
	await waitVisible('#p-count');
	for (const p of ['network', 'c2s_loss_pct', 's2c_loss_pct', 'c2s_delay_ms', 'size', 'interval_ms', 'timeout_ms']) {
		assertEq(await page.locator(`#p-${p}`).count(), 1, `field ${p}`);
	}
	const opts = await page.locator('#p-network option').evaluateAll((os) => os.map((o) => o.value));
	assertEq(opts, ['loopback', 'two-hosts'], 'network choices');
});

test('a too large probe is refused naming size and the maximum', async () => {
	await openAdvanced();
	await page.selectOption('#p-network', 'two-hosts');
	await page.fill('#p-size', '1473');
	await page.click('#run-btn');
	await waitVisible('#p-size-error');
	const err = await page.textContent('#p-size-error');
	assert(err.includes('1472'), `error "${err}" lacks the maximum 1472`);
	assertEq(await page.locator('.run-card').count(), 0, 'a run view after the refusal');
	await page.click('#reset-btn');
});

test('a lossy two-hosts run: chart, statistics equal to the events, wire drops per probe', async () => {
	await page.selectOption('#p-network', 'two-hosts');
	await page.fill('#p-count', '40');
	await page.fill('#p-interval_ms', '20');
	await openAdvanced();
	await page.fill('#p-timeout_ms', '500');
	await page.fill('#p-c2s_loss_pct', '15');
	await page.fill('#p-s2c_loss_pct', '10');
	await page.fill('#p-c2s_delay_ms', '2');
	await openAdvanced();
	await page.fill('#p-s2c_dup_pct', '10');
	await page.fill('#p-s2c_reorder_pct', '10');
	await page.fill('#p-seed', '4242');
	await page.click('#run-btn');
	await waitVisible('.run-card');
	await waitVisible('.ping-chart canvas');
	await waitVisible('.run-summary .pill-ok', RUN_WAIT);
	pingRun = await page.getAttribute('.run-card', 'data-run');
	await shot('run');

	const events = await runEvents(pingRun);
	const end = events[events.length - 1];
	assertEq(end.type, 'run.end', 'last event');
	const want = statsOf(events);
	const sum = end.summary;
	// The page, the event stream and the lab's own summary agree.
	for (const [k, v] of Object.entries({ sent: want.sent, received: want.received, lost: want.lost,
		late: want.late, duplicates: want.duplicates, reordered: want.reordered })) {
		assertEq(Number(await tile(k)), v, `shown ${k}`);
		assertEq(sum[k], v, `summary ${k}`);
	}
	assertEq(Number(await tile('rtt_min')), want.min, 'shown RTT min');
	assertEq(Number(await tile('rtt_max')), want.max, 'shown RTT max');
	assertEq(Number(await tile('rtt_avg')), want.avg, 'shown RTT avg');
	assertEq(Number(await tile('rtt_mdev')), want.mdev, 'shown RTT mdev');
	assertEq(sum.rtt_min_us, want.min, 'summary RTT min');
	assertEq(sum.rtt_avg_us, want.avg, 'summary RTT avg');
	assertEq(await tile('loss_pct'), (100 * want.lost / want.sent).toFixed(1), 'shown loss %');
	assertEq(want.sent, 40, 'probes sent');
	assert(want.lost > 0, 'a 15 %/10 % lossy wire lost nothing in 40 probes (seed 4242 loses some)');

	// Where probe 1 waited for ARP (the run's note says so), its row says so too.
	const arp = events.find((e) => e.type === 'note' && (e.key === 'ping.first_arp_wire' || e.key === 'ping.first_arp'));
	assertEq(await page.locator('.prow[data-arp="1"]').count(), arp ? 1 : 0, 'rows marked as waiting for ARP');
	if (arp) assertEq(await page.getAttribute('.prow[data-arp="1"]', 'data-probe'), '1', 'the ARP mark is on probe 1');

	// The chart has one point per probe, and a mark for each lost one.
	const pts = Number(await page.getAttribute('.ping-chart', 'data-points'));
	assertEq(pts, 40, 'probes in the chart');
	assertEq(Number(await page.getAttribute('.ping-chart', 'data-lost')), want.lost, 'lost marks in the chart');
	const canvas = await page.locator('.ping-chart canvas').boundingBox();
	assert(canvas && canvas.width > 200 && canvas.height > 100, `chart canvas ${JSON.stringify(canvas)}`);

	// Each lost probe's row says where the wire dropped it, as the wire reported.
	const drops = events.filter((e) => e.type === 'wire' && e.action === 'drop' && e.probe !== undefined);
	for (const e of events.filter((x) => x.type === 'probe' && x.status === 'lost')) {
		const row = page.locator(`.prow[data-probe="${e.probe}"]`);
		assertEq(await row.getAttribute('data-status'), 'lost', `row of lost probe ${e.probe}`);
		const dir = drops.find((d) => d.probe === e.probe).dir;
		assertEq(await row.locator(`.tcell[data-action="drop"]`).count(), 1, `drop cell of probe ${e.probe}`);
		assertEq(e.lost_by, dir, `probe ${e.probe} lost_by`);
	}
	// The wire's own events are listed with their probe.
	assert(await page.locator('.wire-row[data-probe]').count() >= drops.length, 'wire events per probe');
	// The network block states the two hosts and the wire.
	assertEq(await page.getAttribute('.net-block', 'data-wire'), 'relay', 'wire kind shown');
});

test('same path over TCP runs tcp-echo over the same wire, and TCP delivers every byte', async () => {
	await waitVisible('.tcp-same');
	assert(await page.isEnabled('.tcp-same'), 'the TCP button is disabled after the run ended');
	await page.click('.tcp-same');
	// The TCP run stands beside the UDP run, which stays.
	await until(async () => (await page.locator('#pane-compare .run-card').count()) === 1, WAIT, 'a run view beside');
	await waitVisible('#pane-compare .run-summary .pill-ok', RUN_WAIT);
	const id = await page.getAttribute('#pane-compare .run-card', 'data-run');
	assertEq(await page.getAttribute('#pane-main .run-card', 'data-run'), pingRun, 'the UDP run stays in its pane');
	const [a, b] = await page.evaluate(() => ['#pane-main', '#pane-compare'].map((s) => document.querySelector(s).getBoundingClientRect().toJSON()));
	assert(b.left >= a.right - 1 && Math.abs(a.top - b.top) < 2, `side by side: ${JSON.stringify([a, b])}`);
	const events = await runEvents(id);
	const start = events[0];
	assertEq(start.lab, 'tcp-echo', 'lab of the new run');
	assertEq(start.params.network, 'two-hosts', 'network');
	assertEq(start.params.c2s_loss_pct, 15, 'c2s loss');
	assertEq(start.params.s2c_dup_pct, 10, 's2c duplication');
	assertEq(start.network.seed, 4242, 'seed');
	const sum = events[events.length - 1].summary;
	assertEq(sum.replies_ok, 40, 'TCP replies');
	assertEq(sum.client_bytes_received, sum.client_bytes_sent, 'bytes delivered');
	assert(sum.wire.c2s.dropped + sum.wire.s2c.dropped > 0, 'the wire dropped nothing on the TCP run');
	await waitVisible('#pane-compare .r-wire');
	await shot('tcp-same');
});

// UDP beside TCP, message by message, from the two runs' events alone:
// probe n and message n differ when UDP lost it, its reply came late, came
// twice or out of order while TCP delivered it, when TCP's bytes of it were
// captured going out again (a retransmitted segment inside the message's
// bytes, either way) while UDP's reply came on time, or when UDP's reply
// came and TCP's did not.
function differing(udp, tcp) {
	const probes = new Map();
	for (const e of udp.filter((x) => x.type === 'probe' && Number.isInteger(x.probe))) {
		const p = probes.get(e.probe) || { state: null, dups: 0, reordered: false };
		if (e.status === 'reply') Object.assign(p, { state: 'ontime', reordered: e.reordered === true });
		if (e.status === 'lost' && p.state !== 'late') p.state = 'lost';
		if (e.status === 'late') p.state = 'late';
		if (e.status === 'dup') p.dups++;
		probes.set(e.probe, p);
	}
	const echoes = tcp.filter((e) => e.type === 'echo' && e.conn === 1);
	const again = tcp.filter((e) => e.type === 'segment' && e.conn === 1 && e.len > 0 && e.retransmit === true);
	const out = { differ: [], resent: new Map() };
	let from = 1;
	for (const ec of [...echoes].sort((a, b) => a.index - b.index)) {
		const to = from + ec.bytes;
		const resent = again.filter((s) => s.rel_seq < to && s.rel_seq + s.len > from).length;
		from = to;
		out.resent.set(ec.index, resent);
		const p = probes.get(ec.index);
		const got = ec.ok === true;
		if ((got && (p.state !== 'ontime' || p.dups > 0 || p.reordered || resent > 0)) || (!got && p.state === 'ontime')) out.differ.push(ec.index);
	}
	return out;
}

test('UDP beside TCP: messages paired by number, the ones that differ highlighted in both runs, counted', async () => {
	const udp = await runEvents(pingRun);
	const tcpId = await page.getAttribute('#pane-compare .run-card', 'data-run');
	const tcp = await runEvents(tcpId);
	const end = tcp[tcp.length - 1];
	// The segments are the evidence of a retransmission: captured, whole.
	assertEq(tcp[0].params.capture, true, 'the TCP run captured its segments');
	assertEq(end.summary.capture.complete, true, 'its capture missed no frame');
	const want = differing(udp, tcp);
	assert(want.differ.length > 0, 'no message differs between a lossy UDP run and TCP');
	const lostUdp = udp.filter((e) => e.type === 'probe' && e.status === 'lost').map((e) => e.probe);
	for (const n of lostUdp) assert(want.differ.includes(n), `UDP lost probe ${n}, TCP delivered it: not a difference?`);
	await waitVisible('#pane-compare .cmp-pairs');
	const seen = () => page.evaluate(() => {
		const nums = (sel, key) => [...document.querySelectorAll(sel)].map((el) => Number(el.dataset[key])).sort((a, b) => a - b);
		return {
			notes: [...document.querySelectorAll('.cmp-note')].map((n) => [n.closest('.pane').id, Number(n.dataset.differ), n.textContent]),
			probes: nums('#pane-main .prow.cmp-diff', 'probe'),
			echoes: nums('#pane-compare .erow.cmp-diff', 'index'),
			tables: ['pane-main', 'pane-compare'].map((id) => nums(`#${id} .cmp-pairs-table tr.cmp-diff`, 'n')),
			cells: Object.fromEntries([...document.querySelectorAll('#pane-main .cmp-pairs-table tbody tr')].map((r) => [r.dataset.n, r.children[2].textContent])),
			lanes: [...document.querySelectorAll('.cmp-lane')].map((n) => n.textContent),
			wide: [...document.querySelectorAll('.pane')].filter((p) => p.scrollWidth > p.clientWidth + 1).map((p) => p.id),
		};
	});
	const g = await seen();
	const n = want.differ.length;
	const text = `${n} of 40 messages differ between UDP and TCP (highlighted in both runs).`;
	assertEq(g.notes, [['pane-main', n, text], ['pane-compare', n, text]], 'the count above each run');
	assertEq(g.probes, want.differ, "UDP's probe rows highlighted");
	assertEq(g.echoes, want.differ, "TCP's echo rows highlighted");
	assertEq(g.tables, [want.differ, want.differ], 'rows of the message tables highlighted');
	assertEq(g.lanes, [], 'a complete lane called incomplete');
	assertEq(g.wide, [], 'panes wider than their column');
	// What TCP did with each message, from the capture: sent again or not.
	for (const [i, k] of want.resent) {
		assertEq(/sent again/.test(g.cells[String(i)]), k > 0, `message ${i}: "${g.cells[String(i)]}" (${k} retransmitted segments)`);
	}
	// The UDP pane stepped back one event is drawn again from the first
	// event: its rows are highlighted again; forward, the same.
	await page.click('#pane-main .pl-back');
	await page.waitForFunction((k) => document.querySelector('#pane-main .player').dataset.pos === String(k), udp.length - 1);
	assertEq((await seen()).probes, want.differ, 'UDP rows highlighted after a step back');
	await page.click('#pane-main .pl-fwd');
	await page.waitForFunction((k) => document.querySelector('#pane-main .player').dataset.pos === String(k), udp.length);
	const again = await seen();
	assertEq([again.probes, again.notes.length], [want.differ, 2], 'after a step forward');
	for (const [w, hgt] of [[1280, 720], [1440, 900]]) {
		await page.setViewportSize({ width: w, height: hgt });
		await page.evaluate(() => document.querySelector('#view').scrollIntoView());
		await page.screenshot({ path: path.join(LOGS, `e2e-udp-beside-tcp-${w}x${hgt}.png`) });
	}
	await page.setViewportSize({ width: 1440, height: 1000 });
});

test('UDP beside TCP: an incomplete lane says so and draws no conclusion (capture off, capture missing frames, a cancelled run)', async () => {
	const udp = await runEvents(pingRun);
	const tcp = await runEvents(await page.getAttribute('#pane-compare .run-card', 'data-run'));
	// The page's own pairing (web/pairs.js) on this run's events, with one
	// lane made incomplete the way a real run can be.
	const got = await page.evaluate(async ([u, tc]) => {
		const { pairUdpTcp } = await import('/pairs.js');
		const clone = (x) => JSON.parse(JSON.stringify(x));
		const brief = (res) => res && { lanes: res.lanes.map((l) => `${l.side} ${l.key}`), rows: res.rows.map((r) => `${r.n} ${r.verdict} ${r.reasons.join(',')}${r.unknown || ''}`) };
		const off = clone(tc).filter((e) => e.type !== 'segment');
		off[0].params.capture = false;
		delete off[off.length - 1].summary.capture;
		const missed = clone(tc);
		Object.assign(missed[missed.length - 1].summary.capture, { drops: 3, complete: false });
		const cancelled = clone(u).filter((e) => !(e.type === 'probe' && e.probe > 30));
		cancelled[cancelled.length - 1].status = 'cancelled';
		return {
			off: brief(pairUdpTcp(u, off)), missed: brief(pairUdpTcp(u, missed)),
			cancelled: brief(pairUdpTcp(cancelled, tc)), running: pairUdpTcp(u, tc.slice(0, -1)),
		};
	}, [udp, tcp]);
	const probes = new Map();
	for (const e of udp.filter((x) => x.type === 'probe')) {
		const p = probes.get(e.probe) || { lost: false, odd: false };
		if (e.status === 'lost' || e.status === 'late') p.lost = true;
		if (e.status === 'dup' || e.reordered === true) p.odd = true;
		probes.set(e.probe, p);
	}
	// Without the segments, two deliveries are "not compared", never "same";
	// a UDP loss against a TCP delivery still differs (the echoes say so).
	for (const [what, lane] of [['off', 'tcp pairs.lane.capture_off'], ['missed', 'tcp pairs.lane.capture_incomplete']]) {
		assertEq(got[what].lanes, [lane], `capture ${what}: the lane says so`);
		for (const row of got[what].rows) {
			const p = probes.get(Number(row.split(' ')[0]));
			if (p.lost || p.odd) assert(/ differ /.test(row), `capture ${what}: "${row}" (UDP lost it or got it twice/out of order)`);
			else assert(/ unknown tcp_retrans_unknown$/.test(row), `capture ${what}: "${row}" (both delivered, retransmissions unknown)`);
		}
	}
	assertEq(got.cancelled.lanes, ['udp pairs.lane.ended'], 'a cancelled UDP run: the lane says so');
	assertEq(got.cancelled.rows.slice(30).filter((r) => !/ unknown udp_no_outcome$/.test(r)), [], 'probes without an outcome are not compared');
	assertEq(got.running, null, 'nothing is paired before both runs ended');
});

test('bring your own client: nc -u command shown, a real datagram is echoed and listed', async () => {
	await page.click('.lab-item[data-lab="udp-ping"]');
	await waitVisible('#p-count');
	await page.click('#reset-btn');
	await page.check('#byo');
	await page.click('#run-btn');
	await waitVisible('.byo .cmd-nc', RUN_WAIT);
	const nc = await page.textContent('.byo .cmd-nc');
	const m = /^nc -u (\S+) (\d+)$/.exec(nc);
	assert(m, `nc command "${nc}"`);
	assert(/^127\./.test(m[1]), `host ${m[1]} is not loopback`);
	assert((await page.textContent('.byo .cmd-python')).includes('SOCK_DGRAM'), 'python command is not UDP');
	const reply = await new Promise((resolve, reject) => {
		const s = dgram.createSocket('udp4');
		const timer = setTimeout(() => { s.close(); reject(new Error('no UDP reply within 10 s')); }, 10000);
		s.on('message', (msg) => { clearTimeout(timer); s.close(); resolve(msg.toString()); });
		s.send(Buffer.from('hello udp'), Number(m[2]), m[1]);
	});
	assertEq(reply, 'HELLO UDP', 'echoed datagram');
	await waitVisible('.dgram-row.dgram-recvfrom');
	const row = await page.textContent('.dgram-row.dgram-recvfrom');
	assert(row.includes('127.0.0.1:') && row.includes('9 B'), `datagram row "${row}"`);
	await shot('byo');
	await page.click('#cancel-btn');
	await waitVisible('.run-summary .pill-cancelled', RUN_WAIT);
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

runTap({
	tmpPrefix: 'socklab-e2e-udp-',
	async setup(chromium, tmp) {
		srv = await startServer(tmp, { log: 'e2e-udp-server.log', args: ['--byo-ports', '9040-9049'] });
		page = await launchPage(chromium, tmp, problems);
		return `socklab serve on port ${srv.ports.http_port} (WebSocket at /ws), Chromium`;
	},
	failShots: (n) => [[page, `e2e-udp-fail-${n}.png`]],
});
