// test_quiz_layers.mjs: "predict, then check" for the layers and own labs in a real Chromium against a real `socklab serve` (TAP output).
//
// A student answers the layers questions before Run (which MAC A puts on its
// frame to C, who hears A's ARP broadcast, how many fragments leave A); the
// server grades them against the run's frames, and the test checks each
// verdict against what the frame events themselves show, that the deciding
// frames are outlined in the frame table, and the explanation in Chinese.
// A recorded run opened from a file (not on the server) is graded too (the
// page sends its events). The own lab asks its questions of the starter
// programs and grades them from the traced calls. Screenshots at 1280x720
// and 1440x900 in English and Chinese go to
// build/test-logs/e2e-quiz-layers-*.png and e2e-quiz-own-*.png.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchPage, runTap, startServer, test,
} from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
let srv;
let page;
let tmpDir;
const problems = [];

async function events(id) {
	const r = await fetch(`${srv.base}/api/runs/${id}/events`);
	return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// What the frames show, computed here (not by the server's grader).
function layersTruth(evs) {
	const topo = evs.find((e) => e.type === 'topology');
	const ifOf = (name) => topo.hosts.find((x) => x.name === name).ifs[0];
	const a = ifOf('A');
	const r = ifOf('R');
	const c = ifOf('C');
	const fromA = evs.filter((e) => e.type === 'frame' && e.port === a.port && e.dir === 'from_host');
	const toC = fromA.find((f) => f.ip && f.ip.dst === c.addr);
	const mac = toC.eth.dst === r.mac ? 'router' : toC.eth.dst === c.mac ? 'c' : 'broadcast';
	const req = fromA.find((f) => f.arp && f.arp.op === 1 && f.scenario === 1);
	const heard = new Set(evs.filter((e) => e.type === 'frame' && e.dir === 'to_host' && e.arp && e.arp.op === 1
		&& e.scenario === 1 && e.arp.tpa === req.arp.tpa).map((f) => f.host));
	const frag = fromA.filter((f) => f.scenario === 4 && f.ip && f.ip.dst === c.addr);
	return {
		mac, toC, heard: heard.has('C') ? 'all' : heard.has('R') ? 'b_r' : 'b', fragments: frag.length,
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

const item = (q) => page.locator(`#quiz-card .quiz-q[data-q="${q}"]`);

test('the layers lab asks the questions each scenario answers', async () => {
	await page.goto(`${srv.base}/#/lab/layers`);
	await page.locator('#conn[data-state="open"]').waitFor({ timeout: WAIT });
	await page.locator('#quiz-card .quiz-q').first().waitFor({ timeout: WAIT });
	const asked = () => page.locator('#quiz-card .quiz-q').evaluateAll((ls) => ls.map((l) => l.dataset.q));
	assertEq(await asked(), ['mac_to_c', 'mac_to_b', 'arp_heard', 'ttl_reaches_c', 'fragments', 'probe_dst'], 'all scenarios');
	await page.selectOption('#p-scenario', 'other-subnet');
	assertEq(await asked(), ['mac_to_c'], 'other-subnet');
	await page.selectOption('#p-scenario', 'all');
});

test('answers are graded against the frames, the deciding frames outlined', async () => {
	// C's own MAC: the usual wrong prediction.
	await page.check('input[name="quiz-mac_to_c"][value="c"]');
	await page.check('input[name="quiz-arp_heard"][value="b_r"]');
	await page.fill('#quiz-fragments', '3');
	await shots('layers-asking-en');
	await page.click('#run-btn');
	await page.locator('#quiz-card[data-state="graded"]').waitFor({ timeout: RUN_WAIT });
	const id = await page.getAttribute('.run-card', 'data-run');
	const evs = await events(id);
	const want = layersTruth(evs);
	assertEq(want.mac, 'router', "A's frame to C carries R's MAC (read here from the frame)");
	assertEq(await item('mac_to_c').getAttribute('data-result'), 'wrong', 'mac_to_c verdict (answered c)');
	assertEq(await item('arp_heard').getAttribute('data-result'), want.heard === 'b_r' ? 'right' : 'wrong', 'arp_heard verdict');
	assertEq(await item('fragments').getAttribute('data-result'), want.fragments === 3 ? 'right' : 'wrong', 'fragments verdict');
	assertEq(await item('fragments').locator('.quiz-truth').textContent(), String(want.fragments), 'fragments truth');
	const why = await item('mac_to_c').locator('.quiz-why').textContent();
	assert(why.startsWith(`Frame #${want.toC.n}, leaving A for C`) && why.includes(want.toC.eth.dst), `explanation: ${why}`);
	const chips = await item('mac_to_c').locator('.quiz-ev-chip').evaluateAll((cs) => cs.map((c) => Number(c.dataset.seq)));
	assert(chips.includes(want.toC.seq), `the frame is evidence: ${chips}`);
	// The first graded answer's evidence (mac_to_c) is outlined: the frame
	// to C and A's ARP exchange for the gateway, in the frame table.
	const evFrames = evs.filter((e) => chips.includes(e.seq)).map((e) => String(e.n)).sort();
	const marked = await page.locator('.ly-frame.quiz-ev').evaluateAll((bs) => bs.map((b) => b.dataset.n).sort());
	assertEq(marked, evFrames, 'frames outlined as evidence');
	await shots('layers-graded-en');
	await page.selectOption('#lang-select', 'zh-CN');
	await page.locator('#quiz-title', { hasText: '先预测，再验证' }).waitFor({ timeout: WAIT });
	const zh = await item('mac_to_c').locator('.quiz-why').textContent();
	assert(zh.startsWith(`帧 #${want.toC.n} 从 A 发往 C`) && zh.includes('路由器'), `Chinese explanation: ${zh}`);
	await shots('layers-graded-zh');
	await page.selectOption('#lang-select', 'en');
});

test('a run opened from a file is graded: the page sends its events', async () => {
	const lines = fs.readFileSync(path.join(here, '..', 'data', 'quiz', 'layers.jsonl'), 'utf8').split('\n').filter(Boolean);
	const evs = lines.map((l) => JSON.parse(l));
	const file = path.join(tmpDir, 'layers-run.json');
	fs.writeFileSync(file, JSON.stringify({
		format: 'socklab-run', version: 1,
		meta: { id: evs[0].run, lab: 'layers', status: 'ok', params: evs[0].params, events: evs.length },
		events: evs,
	}));
	await page.setInputFiles('#bundle-file', file);
	await page.locator('#quiz-check').waitFor({ timeout: WAIT });
	assertEq(await page.locator('#quiz-check').textContent(), `Check my answers against run ${evs[0].run}`, 'the file\'s run');
	await page.check('input[name="quiz-probe_dst"][value="unicast"]');
	await page.check('input[name="quiz-mac_to_b"][value="router"]');
	const posted = page.waitForRequest((r) => r.url().includes('/api/grade?') && r.method() === 'POST');
	await page.click('#quiz-check');
	await posted;
	await page.locator('#quiz-card[data-state="graded"]').waitFor({ timeout: WAIT });
	assertEq(await item('probe_dst').getAttribute('data-result'), 'right', 'the probe of a STALE entry is unicast (frame 50)');
	assertEq(await item('mac_to_b').getAttribute('data-result'), 'wrong', "B's own MAC, not the router's");
	// The answers given before the form's run stay and are checked against
	// this run too: mac_to_c (c, wrong), arp_heard (b_r), fragments (3),
	// probe_dst (unicast) right, mac_to_b (router) wrong.
	assertEq(await page.locator('#quiz-card .quiz-summary').textContent(), `Checked against run ${evs[0].run}: 3 of 5 right.`, 'summary');
});

test('the own lab asks of the starter programs and grades from their calls', async () => {
	await page.goto(`${srv.base}/#/lab/own`);
	await page.reload();
	await page.locator('#quiz-card .quiz-q').first().waitFor({ timeout: WAIT });
	assertEq(await page.locator('#quiz-card .quiz-q').evaluateAll((ls) => ls.map((l) => l.dataset.q)),
		['server_recvs', 'first_recv_bytes', 'time_wait_side', 'connect_result'], 'own questions');
	await page.fill('#quiz-server_recvs', '2');
	await page.check('input[name="quiz-time_wait_side"][value="client"]');
	await page.check('input[name="quiz-connect_result"][value="ok"]');
	await shots('own-asking-en');
	await page.click('#run-btn');
	await page.locator('#quiz-card[data-state="graded"]').waitFor({ timeout: RUN_WAIT });
	const id = await page.getAttribute('.run-card', 'data-run');
	const evs = await events(id);
	const recvs = evs.filter((e) => e.type === 'syscall' && e.who === 'server' && ['recv', 'recvfrom', 'recvmsg', 'read'].includes(e.call));
	const conn = evs.find((e) => e.type === 'syscall' && e.who === 'client' && e.call === 'connect');
	const tw = new Set(evs.filter((e) => (e.type === 'observation' || e.type === 'timer') && e.state === 'TIME_WAIT').map((e) => e.program));
	assertEq(await item('server_recvs').locator('.quiz-truth').textContent(), String(recvs.length), 'receive calls counted here');
	assertEq(await item('server_recvs').getAttribute('data-result'), recvs.length === 2 ? 'right' : 'wrong', 'server_recvs verdict');
	assertEq(await item('connect_result').getAttribute('data-result'), conn.ret === 0 ? 'right' : 'wrong', 'connect_result verdict');
	const twWant = tw.has('client') && tw.has('server') ? 'both' : tw.has('client') ? 'client' : tw.has('server') ? 'server' : 'neither';
	assertEq(await item('time_wait_side').getAttribute('data-result'), twWant === 'client' ? 'right' : 'wrong', 'time_wait_side verdict');
	await shots('own-graded-en');
	await page.selectOption('#lang-select', 'zh-CN');
	await page.locator('#quiz-title', { hasText: '先预测，再验证' }).waitFor({ timeout: WAIT });
	const zh = await item('server_recvs').locator('.quiz-why').textContent();
	assert(zh.startsWith('服务器程序的接收调用') && !/server/.test(zh), `Chinese explanation: ${zh}`);
	await shots('own-graded-zh');
	await page.selectOption('#lang-select', 'en');
	assertEq(problems, [], 'console errors');
});

runTap({
	tmpPrefix: 'socklab-e2e-quiz-layers-',
	setup: async (chromium, tmp) => {
		tmpDir = tmp;
		srv = await startServer(tmp, { log: 'e2e-quiz-layers-server.log' });
		page = await launchPage(chromium, tmp, problems);
		return `server on ${srv.base}`;
	},
	failShots: (n) => [[page, `e2e-quiz-layers-fail-${n}.png`]],
});
