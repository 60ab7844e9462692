// test_echo_capture.mjs: the tcp-echo view with capture=on in a real Chromium against a real `socklab serve` (TAP output).
//
// A two-client run with the capture on: the trace shows one row per segment
// the run emitted (connection, direction, relative seq/ack, length, the TCP
// checksum's verdict), equal to the run's own events; a segment opens into
// its fields with each checksum's verdict; the kernel's states of both
// sockets sit in their side's column with their source; next to the RTTs the
// page says what capturing cost, from the run's own note; the pcap
// downloads. In English and Chinese, at 1280x720 and 1440x900 (screenshots in
// build/test-logs/e2e-echocap-*.png). Every wait has a deadline.

import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchPage, runTap, startServer, test,
} from './lib.mjs';

let srv;
let page;
const problems = [];
let runId = null;

async function runEvents(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	assert(r.ok, `events of ${id}: HTTP ${r.status}`);
	return (await r.text()).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}

async function waitVisible(selector, timeout = WAIT) {
	await page.locator(selector).first().waitFor({ state: 'visible', timeout });
}

async function openAdvanced() {
	const adv = page.locator('details.advanced');
	if (await adv.count() && (await adv.getAttribute('open')) === null) await adv.locator('summary').click();
}

test('capture=on: a segment row for every segment event, the kernel states, the cost next to the RTTs', async () => {
	await page.goto(`${srv.base}/#/lab/tcp-echo`);
	await waitVisible('#conn[data-state="open"]');
	await page.click('.lab-item[data-lab="tcp-echo"]');
	await waitVisible('#p-messages');
	await openAdvanced();
	assertEq(await page.locator('#p-capture').count(), 1, 'the capture field');
	await page.check('#p-capture');
	await page.fill('#p-messages', '3');
	await page.fill('#p-clients', '2');
	await page.click('#run-btn');
	await waitVisible('.run-card');
	await waitVisible('.run-summary .pill-ok', RUN_WAIT);
	runId = await page.getAttribute('.run-card', 'data-run');
	const events = await runEvents(runId);
	const segs = events.filter((e) => e.type === 'segment');
	assert(segs.length >= 20, `${segs.length} segments for two connections`);
	assertEq(await page.locator('.trace .r-seg').count(), segs.length, 'segment rows == segment events');
	const rows = await page.locator('.trace .r-seg .echo-seg-line').allTextContents();
	for (let i = 0; i < segs.length; i++) {
		const g = segs[i];
		const want = `#${g.conn} ${g.from} → ${g.to}  Flags [${g.flags_short}], seq ${g.rel_seq}`;
		assert(rows[i].startsWith(want), `row ${i} "${rows[i]}" does not start with "${want}"`);
		assert(rows[i].endsWith(`length ${g.len}`), `row ${i} "${rows[i]}" lacks length ${g.len}`);
	}
	// On loopback the kernel leaves the TCP checksum to offload: the badge says so.
	const badges = await page.locator('.trace .r-seg .csum-badge').evaluateAll((els) => els.map((e) => e.dataset.status));
	assertEq(badges.length, segs.length, 'a checksum badge per segment');
	assertEq(badges.join(','), segs.map((g) => g.checksums.tcp.status).join(','), 'badges == the events\' TCP checksum status');
	// The kernel's states in their side's column, naming the source.
	const kernel = events.filter((e) => ['state', 'observation', 'timer'].includes(e.type));
	assert(kernel.length >= 4, `${kernel.length} kernel state events`);
	assertEq(await page.locator('.trace .r-state').count(), kernel.length, 'state rows == kernel state events');
	assert(await page.locator('.trace .r-state .c-client .echo-state').count() > 0, 'client states in the client column');
	assert(await page.locator('.trace .r-state .c-server .echo-state').count() > 0, 'server states in the server column');
	const tw = await page.locator('.trace .r-state .c-client .echo-state').allTextContents();
	assert(tw.some((x) => x.includes('TIME_WAIT') && x.includes('sock_diag')), `the client's TIME_WAIT from sock_diag: ${tw.join(' | ')}`);
	// Next to the RTTs: what capturing cost, as the run measured it.
	const note = events.find((e) => e.type === 'note' && e.key === 'echo.capture_cost');
	assert(note, 'the run has its capture-cost note');
	const stats = await page.textContent('.echo-stats');
	assert(stats.includes(`${note.params.cpu_pct}%`) && stats.includes(note.params.frames_per_rtt),
		`stats "${stats}" lack the measured ${note.params.cpu_pct}% and ${note.params.frames_per_rtt}`);
	// A segment opens into its fields; the checksum fields carry their verdict.
	await page.locator('.trace .r-seg .echo-seg > summary').first().click();
	await waitVisible('.trace .r-seg .echo-tree');
	const tree = await page.textContent('.trace .r-seg .echo-tree');
	assert(tree.includes('ipv4') && tree.includes('tcp') && tree.includes('seq:'), `field tree "${tree.slice(0, 200)}"`);
	assert(await page.locator('.trace .r-seg .echo-tree .csum-why').count() >= 2, 'checksum verdicts in the tree');
	const pcap = await fetch(`${srv.base}/api/runs/${runId}/capture.pcap`);
	assertEq(pcap.status, 200, 'the pcap downloads');
	const buf = Buffer.from(await pcap.arrayBuffer());
	assert([0xa1b2c3d4, 0xa1b23c4d].includes(buf.readUInt32LE(0)), `pcap magic 0x${buf.readUInt32LE(0).toString(16)}`);
});

test('two hosts over a 30 ms wire: the ARP round trip is said at client 1\'s connect()', async () => {
	await page.goto(`${srv.base}/#/lab/tcp-echo`);
	await waitVisible('#p-messages');
	await page.click('#reset-btn');
	await openAdvanced();
	await page.check('#p-capture');
	await page.fill('#p-messages', '2');
	await page.selectOption('#p-network', 'two-hosts');
	await page.fill('#p-c2s_delay_ms', '30');
	await page.fill('#p-s2c_delay_ms', '30');
	await page.click('#run-btn');
	await waitVisible('.run-card');
	await waitVisible('.run-summary .pill-ok', RUN_WAIT);
	const id = await page.getAttribute('.run-card', 'data-run');
	const events = await runEvents(id);
	const note = events.find((e) => e.type === 'note' && e.key === 'echo.connect_arp');
	assert(note, 'the run has the connect_arp note');
	const mark = page.locator('.trace .r-sc .sc-connect .echo-arp');
	assertEq(await mark.count(), 1, 'one ARP mark, on a connect() row');
	assert((await mark.textContent()).includes(`${note.params.connect_ms} ms`), 'the mark says how long connect() was blocked');
	const segs = events.filter((e) => e.type === 'segment');
	assertEq(await page.locator('.trace .r-seg').count(), segs.length, 'segment rows == segment events (two hosts)');
	assert(segs.every((g) => g.host === g.from), 'each segment once, from the host that sent it');
});

test('screenshots in English and Chinese at 1280x720 and 1440x900', async () => {
	for (const lang of ['en', 'zh-CN']) {
		for (const [w, h] of [[1280, 720], [1440, 900]]) {
			await page.setViewportSize({ width: w, height: h });
			await page.evaluate((l) => { localStorage.setItem('socklab.lang', l); }, lang);
			await page.goto(`${srv.base}/#/run/${runId}`);
			await page.reload(); // the language is read when the page loads
			await waitVisible('.run-summary .pill-ok', RUN_WAIT);
			assertEq(await page.getAttribute('html', 'lang'), lang, 'the page\'s language');
			await waitVisible('.trace .r-seg');
			await page.locator('.trace .r-seg').nth(4).scrollIntoViewIfNeeded();
			await page.screenshot({ path: path.join(LOGS, `e2e-echocap-${lang}-${w}x${h}.png`) });
		}
	}
	await page.evaluate(() => { localStorage.setItem('socklab.lang', 'en'); });
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

runTap({
	tmpPrefix: 'socklab-e2e-echocap-',
	async setup(chromium, tmp) {
		srv = await startServer(tmp, { log: 'e2e-echocap-server.log' });
		page = await launchPage(chromium, tmp, problems);
		return `socklab serve on port ${srv.ports.http_port}, Chromium`;
	},
	failShots: (n) => [[page, `e2e-echocap-fail-${n}.png`]],
});
