// test_layers.mjs: the layers view in a real Chromium against a real `socklab serve` (TAP output).
//
// One run of every scenario through the form; the view must show what the
// run's own events hold: the four hosts with their MACs, one cell per frame
// event in the column of its link, the router's four changed fields marked
// on the forwarded frame and in the comparison table, one filled mark per
// kernel neighbour report and one hollow mark per query sample, and a frame's
// layers (Ethernet 14 bytes) when it is clicked. Screenshots at 1280x720 and
// 1440x900 in English and Chinese go to build/test-logs/e2e-layers-*.png.

import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchPage, runTap, startServer, test, until,
} from './lib.mjs';

let srv;
let page;
let evs = [];
let selected = 1;
const problems = [];

async function events(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

test('a run of every scenario shows the topology, every frame in its link column and the kernel states', async () => {
	await page.goto(`${srv.base}/#/lab/layers`);
	await page.locator('#conn[data-state="open"]').waitFor({ timeout: WAIT });
	await page.locator('#p-scenario').waitFor({ timeout: WAIT });
	// A's link through socklab's relay (a delay drops nothing, so every
	// scenario's evidence is the same as on a plain link).
	await page.click('details.advanced summary');
	await page.fill('#p-a_delay_ms', '5');
	await page.click('#run-btn');
	await page.locator('.run-card').first().waitFor({ state: 'visible', timeout: WAIT });
	await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	assertEq(await page.getAttribute('.run-summary .pill', 'data-status'), 'ok', 'run status');
	const id = await page.getAttribute('.run-card', 'data-run');
	evs = await events(id);
	const topo = evs.find((e) => e.type === 'topology');
	assertEq(await page.getAttribute('.ly-topo', 'data-hosts'), '4', 'hosts drawn');
	const macs = await page.locator('.ly-macs td.mono').allTextContents();
	for (const hst of topo.hosts) for (const i of hst.ifs) assert(macs.includes(i.mac), `MAC ${i.mac} shown`);

	const frames = evs.filter((e) => e.type === 'frame');
	await until(async () => (await page.locator('.ly-frame').count()) === frames.length, WAIT, 'one cell per frame');
	// Each frame sits in the column of the port it was captured on.
	const placed = await page.locator('.ly-frames tbody tr').evaluateAll((rows) => rows.map((r) => {
		const th = [...r.closest('table').querySelectorAll('thead th')];
		const col = [...r.children].findIndex((td) => td.querySelector('.ly-frame'));
		return [Number(r.dataset.n), th[col].textContent.split(' ')[0]];
	}));
	assertEq(placed.sort((a, b) => a[0] - b[0]), frames.map((f) => [f.n, f.port]), 'frame columns');

	// The router's changes: marked on the forwarded frame, listed in the table.
	const hop = evs.find((e) => e.type === 'hop');
	assertEq(await page.getAttribute('.ly-scen[data-scenario="other-subnet"] .ly-hop', 'data-changes'), String(hop.changes.length), 'hop rows');
	assertEq(hop.changes.length, 4, 'four fields changed');
	const marked = await page.locator(`.ly-frame[data-n="${hop.out_frame}"] .ly-changed`).evaluateAll((x) => x.map((e) => e.dataset.field).sort());
	assertEq(marked, ['eth.dst', 'eth.src', 'ip.checksum', 'ip.ttl'], 'changed fields on the forwarded frame');
	assertEq(await page.locator(`.ly-frame[data-n="${hop.in_frame}"] .ly-changed`).count(), 0, 'nothing marked on the frame A sent');

	// The timeline: filled marks for kernel reports, hollow for samples.
	assertEq(await page.locator('.ly-track .ly-kernel').count(), evs.filter((e) => e.type === 'neigh').length, 'kernel marks');
	assertEq(await page.locator('.ly-track .ly-sample').count(), evs.filter((e) => e.type === 'neigh.sample').length, 'sample marks');

	// A frame's layers.
	const arp = frames.find((f) => f.arp);
	selected = arp.n;
	await page.click(`.ly-frame[data-n="${arp.n}"]`);
	await page.locator(`.ly-detail[data-n="${arp.n}"]`).waitFor({ timeout: WAIT });
	const bands = await page.locator('.ly-band-head').allTextContents();
	assert(bands[0].includes('ethernet') && bands[0].includes('14'), `Ethernet band: ${bands}`);
	assertEq(await page.locator('.ly-band-ethernet .ly-band-arp').count(), 1, 'ARP nested in Ethernet');
	assertEq(await page.locator('.ly-byte').count(), arp.caplen, 'bytes shown');
	// Both ways: byte 12 (the EtherType) marks the type field and its two bytes.
	await page.click('.ly-byte[data-i="12"]');
	assertEq(await page.locator('.ly-field.ly-on').getAttribute('data-off'), '12', 'the field of byte 12');
	assertEq(await page.locator('.ly-byte.ly-mark').count(), 2, 'the EtherType is 2 bytes');
	assert(await page.locator(`.ly-link.ly-link-on[data-port="${arp.port}"]`).count() === 1, 'the link lit up');
});

test('each frame hop: the highlighted link follows the player step forwards and back', async () => {
	const topo = evs.find((e) => e.type === 'topology');
	const a = topo.hosts.find((x) => x.name === 'A').ifs[0];
	assertEq(a.wire.sent.delay_ms, 5, 'A\'s link is relayed');
	assert(await page.locator('.ly-link.ly-link-relay[data-port="a-eth0"]').count() === 1, 'the relayed link drawn dashed');
	// Two frame events in a row on different links (A's broadcast, then its
	// delivery to another port of the segment).
	const i = evs.findIndex((e, k) => e.type === 'frame' && evs[k + 1] && evs[k + 1].type === 'frame' && evs[k + 1].port !== e.port);
	assert(i > 0, 'two consecutive frames on different links');
	const [f1, f2] = [evs[i], evs[i + 1]];
	const hop = async () => [await page.getAttribute('.ly-topo', 'data-hop-port'), await page.getAttribute('.ly-topo', 'data-hop-n'),
		await page.locator('.ly-link.ly-link-hop').evaluateAll((x) => x.map((e) => e.dataset.port)),
		await page.locator('.ly-svg .ly-dot').count()];
	// Position N shows the first N events: f1 is event i, so position i + 1.
	await page.fill('#pane-main .pl-jump', String(i + 1));
	await page.click('#pane-main .pl-jump-form button');
	await until(async () => (await page.getAttribute('#pane-main .player', 'data-pos')) === String(i + 1), WAIT, 'the jump');
	assertEq(await hop(), [f1.port, String(f1.n), [f1.port], 1], 'the hop after the jump');
	await page.click('#pane-main .pl-fwd');
	await until(async () => (await page.getAttribute('#pane-main .player', 'data-pos')) === String(i + 2), WAIT, 'the step');
	assertEq(await hop(), [f2.port, String(f2.n), [f2.port], 1], 'the hop after a step forwards');
	await page.click('#pane-main .pl-back');
	await until(async () => (await page.getAttribute('#pane-main .player', 'data-pos')) === String(i + 1), WAIT, 'the step back');
	assertEq(await hop(), [f1.port, String(f1.n), [f1.port], 1], 'the hop after a step back');
	// The dot runs the way the frame went: from the host to the bus when the host sent it.
	const [fromY, toY] = await page.locator('.ly-svg .ly-dot animate[attributeName="cy"]').evaluate((e) => [Number(e.getAttribute('from')), Number(e.getAttribute('to'))]);
	assert(f1.dir === 'from_host' ? fromY < toY : fromY > toY, `dot from ${fromY} to ${toY} for ${f1.dir}`);
	// Back to the whole run.
	await page.fill('#pane-main .pl-jump', String(evs.length));
	await page.click('#pane-main .pl-jump-form button');
	await until(async () => (await page.getAttribute('#pane-main .player', 'data-pos')) === String(evs.length), WAIT, 'the end');
});

test('screenshots at 1280x720 and 1440x900 in English and Chinese', async () => {
	for (const lang of ['en', 'zh-CN']) {
		await page.selectOption('#lang-select', lang);
		await until(async () => (await page.getAttribute('html', 'lang')) === lang, WAIT, `language ${lang}`);
		for (const [w, hgt] of [[1280, 720], [1440, 900]]) {
			await page.setViewportSize({ width: w, height: hgt });
			await page.locator('.ly-topo-card').scrollIntoViewIfNeeded();
			await page.screenshot({ path: path.join(LOGS, `e2e-layers-${lang}-${w}x${hgt}.png`) });
			await page.locator('.ly-scen[data-scenario="other-subnet"] .ly-hop').evaluate((e) => {
				e.scrollIntoView({ block: 'start' });
				window.scrollBy(0, -170); // below the sticky player bar
			});
			await page.screenshot({ path: path.join(LOGS, `e2e-layers-${lang}-${w}x${hgt}-hop.png`) });
			await page.locator('.ly-timeline-card').evaluate((e) => {
				e.scrollIntoView({ block: 'start' });
				window.scrollBy(0, -150);
			});
			await page.screenshot({ path: path.join(LOGS, `e2e-layers-${lang}-${w}x${hgt}-timeline.png`) });
			// A language change draws the view again: select the frame again.
			await page.click(`.ly-frame[data-n="${selected}"]`);
			await page.locator('.ly-detail-card').evaluate((e) => {
				e.scrollIntoView({ block: 'start' });
				window.scrollBy(0, -150);
			});
			await page.screenshot({ path: path.join(LOGS, `e2e-layers-${lang}-${w}x${hgt}-detail.png`) });
		}
	}
	const title = await page.locator('.ly-scen[data-scenario="ageing"] h3').textContent();
	assert(title.includes('ARP') && /[\u4e00-\u9fff]/.test(title), `the scenario title in Chinese: ${title}`);
	await page.selectOption('#lang-select', 'en');
	await page.setViewportSize({ width: 1440, height: 1000 });
});

test('a datagram the relay drops: its hop stops half-way on its link, and the drop is listed', async () => {
	await page.selectOption('#p-scenario', 'same-subnet');
	await page.locator('details.advanced').evaluate((d) => { d.open = true; });
	await page.fill('#p-a_delay_ms', '0');
	await page.fill('#p-a_loss_pct', '100');
	const before = await page.getAttribute('#pane-main .player', 'data-run');
	await page.click('#run-btn');
	await until(async () => (await page.getAttribute('#pane-main .player', 'data-run')) !== before, WAIT, 'the new run');
	await page.locator('#pane-main .run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	const id = await page.getAttribute('#pane-main .player', 'data-run');
	const ev = await events(id);
	const drops = ev.filter((e) => e.type === 'wire' && e.action === 'drop');
	assertEq(drops.map((e) => [e.port, e.dir, e.proto]), [['a-eth0', 'c2s', 'UDP']], 'the relay dropped A\'s datagram');
	assertEq(ev.filter((e) => e.type === 'frame' && e.udp && e.port !== 'a-eth0').length, 0, 'the datagram reached no other link');
	assertEq(await page.locator('#pane-main .ly-k-wire.ly-wire-drop').count(), 1, 'the drop listed');
	const k = ev.indexOf(drops[0]);
	await page.fill('#pane-main .pl-jump', String(k + 1));
	await page.click('#pane-main .pl-jump-form button');
	await until(async () => (await page.getAttribute('#pane-main .player', 'data-pos')) === String(k + 1), WAIT, 'the jump to the drop');
	assertEq([await page.getAttribute('.ly-topo', 'data-hop-port'), await page.getAttribute('.ly-topo', 'data-hop-kind')], ['a-eth0', 'drop'], 'the hop is a drop on A\'s link');
	const [y1, y2, cy] = await page.evaluate(() => {
		const l = document.querySelector('.ly-link[data-port="a-eth0"]');
		return [Number(l.getAttribute('y1')), Number(l.getAttribute('y2')), Number(document.querySelector('.ly-dot-drop').getAttribute('cy'))];
	});
	assertEq(cy, (y1 + y2) / 2, 'the dot stops half-way');
	await page.setViewportSize({ width: 1280, height: 720 });
	await page.locator('.ly-topo-card').scrollIntoViewIfNeeded();
	await page.screenshot({ path: path.join(LOGS, 'e2e-layers-en-1280x720-drop.png') });
	await page.setViewportSize({ width: 1440, height: 1000 });
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

runTap({
	tmpPrefix: 'socklab-e2e-layers-',
	async setup(chromium, tmp) {
		srv = await startServer(tmp, { log: 'e2e-layers-server.log' });
		page = await launchPage(chromium, tmp, problems);
		return 'socklab serve and Chromium';
	},
	failShots: (n) => [[page, `e2e-layers-fail-${n}.png`]],
});
