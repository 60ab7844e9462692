// test_nats_banner.mjs: --nats in real Chromium: the banner when the link between the servers is down, and a run whose server died shown as incomplete (TAP).
//
// A real nats-server -js and two socklab replicas A and B (each --nats). The
// pages are on B. NATS stopped: B's pages show the banner (English and
// Chinese), and it goes once NATS is back. A run on A followed from B, A
// SIGKILLed: B's page marks the run incomplete, never finished.
// Screenshots: build/test-logs/e2e-nats-*.png at 1280x720 and 1440x900.
// Run as `node tests/e2e/test_nats_banner.mjs` (SOCKLAB=path/to/build/socklab).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
	LOGS, SOCKLAB, WAIT, assert, assertEq, launchBrowser, runTap, startServer, test, until,
} from './lib.mjs';

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const en = JSON.parse(fs.readFileSync(path.join(repo, 'web/i18n/en.json'), 'utf8'));
const zh = JSON.parse(fs.readFileSync(path.join(repo, 'web/i18n/zh-CN.json'), 'utf8'));
const SIZES = [[1280, 720], [1440, 900]];

let tmp;
let browser;
let nats = null; // {child, port}
let natsPort = 0;
let a = null; // replica A: {child, base}
let b; // replica B (lib's startServer)
const problems = [];
const pages = [];

function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.listen(0, '127.0.0.1', () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
		s.on('error', reject);
	});
}

function listening(port) {
	return new Promise((resolve) => {
		const c = net.connect(port, '127.0.0.1');
		c.on('connect', () => { c.destroy(); resolve(true); });
		c.on('error', () => resolve(false));
	});
}

async function startNats() {
	const fd = fs.openSync(path.join(LOGS, 'e2e-nats-server.log'), 'a');
	const child = spawn('nats-server', ['-js', '-sd', path.join(tmp, 'nats'), '-a', '127.0.0.1', '-p', String(natsPort)],
		{ stdio: ['ignore', fd, fd] });
	let exited = null;
	child.on('exit', (code, sig) => { exited = `exited with ${code ?? sig}`; });
	await until(async () => {
		if (exited) throw new Error(`nats-server ${exited} (build/test-logs/e2e-nats-server.log)`);
		return listening(natsPort);
	}, 20000, 'nats-server to listen');
	nats = { child };
}

async function stopChild(child, sig = 'SIGTERM') {
	if (!child || child.exitCode !== null || child.signalCode !== null) return;
	const gone = new Promise((r) => child.once('exit', r));
	child.kill(sig);
	const t = setTimeout(() => child.kill('SIGKILL'), 20000);
	await gone;
	clearTimeout(t);
}

async function startA() {
	const portFile = path.join(tmp, 'a-ports.json');
	const fd = fs.openSync(path.join(LOGS, 'e2e-nats-a.log'), 'w');
	const child = spawn(SOCKLAB, ['serve', '--http-port', '0', '--port-file', portFile, '--data', path.join(tmp, 'a-data'),
		'--nats', `nats://127.0.0.1:${natsPort}`, '--run-timeout', '3600'], { stdio: ['ignore', fd, fd] });
	const ports = await until(() => (fs.existsSync(portFile) ? JSON.parse(fs.readFileSync(portFile, 'utf8')) : null),
		15000, 'replica A to listen');
	return { child, base: `http://127.0.0.1:${ports.http_port}` };
}

async function health(base) {
	const r = await fetch(`${base}/api/health`);
	return (await r.json()).nats;
}

// quiet: a page on the replica this test kills on purpose (its reconnects
// fail, as they must).
async function newPage(w, hgt, lang, { quiet = false } = {}) {
	const ctx = await browser.newContext({ viewport: { width: w, height: hgt }, locale: 'en-US' });
	await ctx.addInitScript((l) => localStorage.setItem('socklab.lang', l), lang);
	const page = await ctx.newPage();
	page.setDefaultTimeout(WAIT);
	page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
	page.on('console', (m) => {
		if (quiet || (m.type() === 'error' && /ERR_NETWORK_CHANGED/.test(m.text()))) return;
		if (m.type() === 'error' || /Content[- ]Security[- ]Policy/i.test(m.text())) problems.push(`console: ${m.text()}`);
	});
	pages.push(page);
	return page;
}

// page.waitForFunction, its timeout saying what was waited for.
async function waitFn(page, fn, arg, ms, what) {
	try {
		await page.waitForFunction(fn, arg, { timeout: ms });
	} catch (e) {
		throw new Error(`${what}: not within ${ms / 1000} s (${e.message.split('\n')[0]})`);
	}
}

async function live(page, what) {
	await waitFn(page, () => document.getElementById('conn')?.dataset.state === 'open', null, 60000, `${what}: the page connected`);
}

// Where the banner is: shown on the first screen, its text in the page's language.
async function banner(page) {
	return page.evaluate(() => {
		const el = document.getElementById('cluster-banner');
		const r = el.getBoundingClientRect();
		return { hidden: el.hidden, top: r.top, bottom: r.bottom, vh: window.innerHeight, vw: window.innerWidth,
			right: r.right, title: el.querySelector('strong').textContent, text: el.querySelector('p').textContent,
			doc: document.documentElement.scrollWidth };
	});
}

test('the link to NATS goes down: B\'s pages show the banner in English and Chinese, and it goes when NATS is back', async () => {
	const shown = [];
	for (const [w, hgt] of SIZES) {
		for (const lang of ['en', 'zh-CN']) {
			const page = await newPage(w, hgt, lang);
			await page.goto(b.base, { waitUntil: 'domcontentloaded', timeout: 60000 });
			await live(page, `${w}x${hgt} ${lang} on B`);
			shown.push({ page, w, hgt, lang });
		}
	}
	for (const s of shown) assertEq((await banner(s.page)).hidden, true, `${s.w}x${s.hgt} ${s.lang}: no banner while NATS is up`);
	await stopChild(nats.child);
	nats = null;
	for (const s of shown) {
		await waitFn(s.page, () => !document.getElementById('cluster-banner').hidden, null, 60000, `${s.w}x${s.hgt} ${s.lang}: the banner shown`);
		const m = await banner(s.page);
		const dict = s.lang === 'en' ? en : zh;
		assertEq([m.title, m.text], [dict['cluster.title'], dict['cluster.degraded']], `${s.w}x${s.hgt} ${s.lang}: the banner's words`);
		assert(m.top >= 0 && m.bottom <= m.vh, `${s.w}x${s.hgt} ${s.lang}: the banner on the first screen (y ${m.top}..${m.bottom} of ${m.vh})`);
		assert(m.doc <= m.vw && m.right <= m.vw, `${s.w}x${s.hgt} ${s.lang}: nothing wider than the window (${m.doc} px)`);
		await s.page.screenshot({ path: path.join(LOGS, `e2e-nats-banner-${s.w}x${s.hgt}-${s.lang}.png`) });
	}
	const h = await health(b.base);
	assertEq(h.classes.state, 'degraded', 'B\'s health says so too');
	await startNats();
	for (const s of shown) {
		await waitFn(s.page, () => document.getElementById('cluster-banner').hidden, null, 90000, `${s.w}x${s.hgt} ${s.lang}: the banner gone`);
	}
	assertEq((await health(b.base)).classes.state, 'ok', 'B\'s health once NATS is back');
	// A page that connects now is not shown the banner.
	const fresh = await newPage(1280, 720, 'en');
	await fresh.goto(b.base, { waitUntil: 'domcontentloaded', timeout: 60000 });
	await live(fresh, 'a new page after NATS came back');
	assertEq((await banner(fresh)).hidden, true, 'a new page after NATS came back');
	for (const s of shown) await s.page.context().close();
	await fresh.context().close();
});

test('a run followed from B whose replica A is killed is shown incomplete, never finished', async () => {
	await until(async () => (await health(b.base)).replicas.state === 'ok', 60000, 'B\'s run index in sync');
	const pa = await newPage(1280, 720, 'en', { quiet: true });
	await pa.goto(a.base, { waitUntil: 'domcontentloaded', timeout: 60000 });
	await live(pa, 'the page on A');
	// A run on A that lasts far longer than this test (500 s, A's
	// --run-timeout 3600), started from a page on A over its own WebSocket.
	const rid = await pa.evaluate(() => new Promise((resolve, reject) => {
		const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/ws`, 'socklab.v1');
		ws.onopen = () => ws.send(JSON.stringify({ op: 'run', lab: 'tcp-echo', params: { messages: 1000, interval_ms: 500 }, tag: 'long' }));
		ws.onmessage = (e) => {
			const m = JSON.parse(e.data);
			if (m.type === 'run.accepted') {
				window.keepRun = ws;
				resolve(m.run);
			} else if (m.type === 'error') reject(new Error(m.message));
		};
	}));
	await until(async () => {
		const r = await fetch(`${b.base}/api/runs/${rid}`);
		return r.status === 200 && (await r.json()).status === 'running';
	}, 30000, 'B to list A\'s run as running');
	const shots = [];
	for (const [w, hgt] of SIZES) {
		for (const lang of ['en', 'zh-CN']) {
			const page = await newPage(w, hgt, lang);
			await page.goto(`${b.base}/#/run/${rid}`, { waitUntil: 'domcontentloaded', timeout: 60000 });
			await live(page, `${w}x${hgt} ${lang} following A's run`);
			await waitFn(page, () => Number(document.querySelector('#pane-main .player')?.dataset.total) >= 4, null, 60000,
				`${w}x${hgt} ${lang}: A's run shown on B`);
			shots.push({ page, w, hgt, lang });
		}
	}
	await stopChild(a.child, 'SIGKILL');
	a = null;
	for (const s of shots) {
		const where = `${s.w}x${s.hgt} ${s.lang}`;
		const dict = s.lang === 'en' ? en : zh;
		// The stream's events, then the server's word that there is no end
		// (after A's heartbeat expires, about 10 s).
		await waitFn(s.page, () => document.querySelector('#pane-main .run-card .pill')?.dataset.status === 'incomplete',
			null, 60000, `${where}: the badge incomplete`);
		const seen = await s.page.evaluate(() => ({
			pill: document.querySelector('#pane-main .run-card .pill').textContent,
			note: document.querySelector('#pane-main .run-incomplete')?.textContent || '',
			summary: !document.querySelector('#pane-main .run-summary')?.hidden,
			status: document.getElementById('run-status').textContent,
			total: Number(document.querySelector('#pane-main .player').dataset.total),
		}));
		assertEq(seen.pill, dict['run.status.incomplete'], `${where}: the badge`);
		assertEq(seen.summary, false, `${where}: no summary of a run that has no end`);
		assertEq(seen.note, dict['run.incomplete_note'].replace('{events}', String(seen.total)), `${where}: the note`);
		assertEq(seen.status, dict['status.replica_incomplete'].replace('{events}', String(seen.total)), `${where}: the status line`);
		// The list of recent runs no longer says "running".
		await waitFn(s.page, ([id, want]) => document.querySelector(`.run-item[data-run="${id}"] .pill`)?.textContent === want,
			[rid, dict['run.status.incomplete']], 30000, `${where}: the run list says incomplete`);
		// The run's card with its badge, below the sticky replay bar.
		await s.page.evaluate(() => {
			const card = document.querySelector('#pane-main .run-card');
			const bar = document.querySelector('#pane-main .player-bar');
			window.scrollTo(0, card.getBoundingClientRect().top + window.scrollY - (bar ? bar.offsetHeight + 8 : 0));
		});
		await s.page.screenshot({ path: path.join(LOGS, `e2e-nats-incomplete-${s.w}x${s.hgt}-${s.lang}.png`) });
	}
	for (const s of shots) await s.page.context().close();
	await pa.context().close().catch(() => {});
});

test('no page error, console error or CSP violation', async () => {
	assertEq(problems, [], 'problems');
});

// Whatever this test started dies with it, however it ends.
process.on('exit', () => {
	for (const c of [a && a.child, nats && nats.child]) {
		if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
	}
});

runTap({
	tmpPrefix: 'socklab-e2e-nats-',
	setup: async (chromium, dir) => {
		tmp = dir;
		if (spawnSync('nats-server', ['--version']).status !== 0) throw new Error('nats-server is missing: apt-get install nats-server');
		natsPort = await freePort();
		await startNats();
		a = await startA();
		b = await startServer(tmp, { log: 'e2e-nats-b.log', args: ['--nats', `nats://127.0.0.1:${natsPort}`] });
		browser = await launchBrowser(chromium);
		await until(async () => (await health(b.base)).classes.state === 'ok', 30000, 'B connected to NATS');
		return `nats on ${natsPort}, replicas ${a.base} and ${b.base}`;
	},
	failShots: (n) => pages.filter((p) => !p.isClosed()).map((p, i) => [p, `e2e-nats-fail-${n}-${i}.png`]),
	after: async () => {
		if (a) await stopChild(a.child);
		if (nats) await stopChild(nats.child);
	},
});
