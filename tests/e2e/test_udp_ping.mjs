// test_udp_ping.mjs: the udp-ping view in a real Chromium against a real `socklab serve` (TAP output).
//
// A run over two hosts with a lossy, duplicating, reordering wire: the RTT
// chart renders (uPlot, served from the binary), the statistics the page shows
// equal those computed here from the run's own event stream and the lab's
// run.end summary, lost probes say where the wire dropped them, "same path
// over TCP" runs tcp-echo over the same wire and it delivers everything, and a
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
