// test_presenter.mjs: presenter mode fits the projector: every lab's main picture on the first screen, nothing of it cut, its text large; the keys visibly act (TAP).
//
// Run as `node tests/e2e/test_presenter.mjs` with SOCKLAB=path/to/build/socklab.
// One real run of each lab, then each is shown in presenter mode at 1280x720
// and 1440x900, in English and Chinese; screenshots (kept as artifacts) go to
// build/test-logs/e2e-presenter-LAB-WxH-LANG.png.

import path from 'node:path';
import {
	LOGS, RUN_WAIT, WAIT, assert, assertEq, launchBrowser, runTap, startServer, test, until,
} from './lib.mjs';

// Each lab's main picture, and the text in it that must stay large: `label`
// is measured (its rendered box, CSS zoom and SVG scale included) outside
// presenter mode and in it; `min` is the least height in px it may have on
// the projector, `ratio` the least growth (the asserted sizes of the
// handshake test and the classroom test: ladder labels at least 16 px and
// 1.4x, call rows 1.4x).
const LABS = [
	{ lab: 'tcp-echo', pic: '#pane-main .trace-card', label: '#pane-main .trace-body .trow .tcell', min: 20, ratio: 1.4 },
	{ lab: 'handshake', pic: '.hs-ladder', label: '.hs-seg-label', min: 16, ratio: 1.4 },
	{ lab: 'sticky', pic: '.stk-lanes', label: '.stk-lane-head', min: 18, ratio: 1.4 },
	{ lab: 'udp-ping', pic: '.ping-chart', label: '.ping-stats dd', min: 18, ratio: 1.4 },
	{ lab: 'syn-flood', pic: '.sf-chart', label: '.sf-tick', min: 12, ratio: 1.2 },
	{ lab: 'time-wait', pic: '.tw-hosts', label: '.tw-table td', min: 18, ratio: 1.4 },
	{ lab: 'layers', pic: '.ly-svg', label: '.ly-name', min: 14, ratio: 1.2 },
];
const SIZES = [[1280, 720], [1440, 900]];

let srv;
let browser;
const runs = {};
const problems = [];

async function newPage(w, hgt, lang) {
	const ctx = await browser.newContext({ viewport: { width: w, height: hgt }, locale: 'en-US' });
	await ctx.addInitScript((l) => localStorage.setItem('socklab.lang', l), lang);
	const page = await ctx.newPage();
	page.setDefaultTimeout(WAIT);
	page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
	page.on('console', (m) => {
		if (m.type() === 'error' || /Content[- ]Security[- ]Policy/i.test(m.text())) problems.push(`console: ${m.text()}`);
	});
	return page;
}

async function openRun(page, id) {
	await page.goto(`${srv.base}/#/run/${id}`);
	await page.reload();
	await page.locator('#pane-main .run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
}

// The rendered height of the first `sel`, and where the picture is.
function measure(page, pic, label) {
	return page.evaluate(([p, l]) => {
		const el = document.querySelector(p);
		const lab = l ? document.querySelector(l) : null;
		if (!el) return null;
		const r = el.getBoundingClientRect();
		// Everything between the picture and the view: nothing scrolls
		// sideways (a scrolled box is a cut picture).
		const scrolled = [];
		for (let a = el; a && a.id !== 'view'; a = a.parentElement) {
			if (a.scrollWidth > a.clientWidth + 1 && getComputedStyle(a).overflowX !== 'visible') {
				scrolled.push(`${a.tagName}.${a.getAttribute('class')} ${a.scrollWidth}>${a.clientWidth}`);
			}
		}
		// Nothing inside it reaches past the card it is drawn in (or, in
		// an SVG, past the SVG, which clips it).
		const out = [];
		for (const e of el.querySelectorAll('*')) {
			const b = e.getBoundingClientRect();
			if (!b.width && !b.height) continue;
			const box = (e.ownerSVGElement || e.closest('.card') || el).getBoundingClientRect();
			if (b.right > box.right + 1 || b.left < box.left - 1) {
				out.push(`${e.tagName}.${e.getAttribute('class')} x ${b.left.toFixed(0)}..${b.right.toFixed(0)} in ${box.left.toFixed(0)}..${box.right.toFixed(0)} "${(e.textContent || '').slice(0, 30)}"`);
			}
		}
		return {
			out: out.slice(0, 4),
			left: r.left, right: r.right, top: r.top, width: r.width,
			label: lab ? lab.getBoundingClientRect().height : null,
			doc: document.documentElement.scrollWidth, vw: window.innerWidth, vh: window.innerHeight,
			scrolled,
		};
	}, [pic, label]);
}

for (const l of LABS) {
	test(`${l.lab}: a run for the presenter`, async () => {
		const page = await newPage(1440, 900, 'en');
		try {
			await page.goto(`${srv.base}/#/lab/${l.lab}`);
			await page.locator('#conn[data-state="open"]').waitFor();
			await page.click('#run-btn');
			await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
			runs[l.lab] = await page.getAttribute('.run-card', 'data-run');
			assert(/^[0-9a-f]{16}$/.test(runs[l.lab]), `run id ${runs[l.lab]}`);
		} finally {
			await page.context().close();
		}
	});
}

for (const [w, hgt] of SIZES) {
	for (const lang of ['en', 'zh-CN']) {
		test(`presenter at ${w}x${hgt} (${lang}): each lab's picture fits, on the first screen, its text large`, async () => {
			const page = await newPage(w, hgt, lang);
			try {
				for (const l of LABS) {
					await openRun(page, runs[l.lab]);
					await page.locator(l.pic).first().waitFor({ state: 'visible' });
					const before = await measure(page, l.pic, l.label);
					await page.click('#pane-main .pl-present');
					await page.waitForFunction(() => document.body.classList.contains('presenter'));
					await page.evaluate(() => window.scrollTo(0, 0));
					const m = await measure(page, l.pic, l.label);
					await page.screenshot({ path: path.join(LOGS, `e2e-presenter-${l.lab}-${w}x${hgt}-${lang}.png`) });
					const where = `${l.lab} at ${w}x${hgt} ${lang}`;
					assert(m.doc <= m.vw, `${where}: the page is ${m.doc} px wide in a ${m.vw} px window`);
					assert(m.left >= 0 && m.right <= m.vw, `${where}: the picture spans x ${m.left.toFixed(0)}..${m.right.toFixed(0)} of ${m.vw}`);
					assertEq(m.scrolled, [], `${where}: boxes that cut the picture`);
					assertEq(m.out, [], `${where}: parts of the picture outside its card`);
					assert(m.top < m.vh * 0.6, `${where}: the picture starts at y=${m.top.toFixed(0)}, not in the top 60% of the first screen`);
					if (l.label) {
						assert(m.label >= l.min && m.label >= l.ratio * before.label,
							`${where}: ${l.label} ${before.label.toFixed(1)} -> ${m.label.toFixed(1)} px (at least ${l.min} px and ${l.ratio}x)`);
					}
					// The counter and a caption of the current event stay.
					assert(await page.isVisible('#pane-main .pl-pos'), `${where}: the event counter`);
					await page.keyboard.press('Escape');
					await page.waitForFunction(() => !document.body.classList.contains('presenter'));
				}
			} finally {
				await page.context().close();
			}
		});
	}
}

test('presenter keys visibly act: arrows move the counter and the caption, +/- the speed shown, space plays, f, Esc', async () => {
	const page = await newPage(1280, 720, 'en');
	try {
		await openRun(page, runs.handshake);
		await page.click('#pane-main .pl-present');
		await page.waitForFunction(() => document.body.classList.contains('presenter'));
		const bar = () => page.evaluate(() => ({
			pos: document.querySelector('#pane-main .pl-pos').textContent,
			caption: document.querySelector('#pane-main .pl-caption').textContent,
			speed: document.querySelector('#pane-main .pl-speed').selectedOptions[0].textContent,
			play: document.querySelector('#pane-main .pl-play').textContent,
			paused: document.querySelector('#pane-main .player').dataset.paused,
		}));
		const total = Number(await page.$eval('#pane-main .player', (el) => el.dataset.total));
		const start = await bar();
		assertEq(start.pos, `event ${total} / ${total}`, 'the counter at the end');
		await page.keyboard.press('ArrowLeft');
		await page.keyboard.press('ArrowLeft');
		const back = await until(async () => {
			const b = await bar();
			return b.pos === `event ${total - 2} / ${total}` && b;
		}, WAIT, '← twice: the counter two events back');
		assert(back.caption && back.caption !== start.caption, `the caption follows: "${start.caption}" -> "${back.caption}"`);
		// The current event is outlined where the ladder draws it, on screen.
		const cur = await page.$eval('#pane-main .pl-current', (el) => {
			const r = el.getBoundingClientRect();
			return { top: r.top, bottom: r.bottom, vh: window.innerHeight };
		});
		assert(cur.bottom > 0 && cur.top < cur.vh, `the current event is in view: ${JSON.stringify(cur)}`);
		await page.keyboard.press('ArrowRight');
		await until(async () => (await bar()).pos === `event ${total - 1} / ${total}`, WAIT, '→: one forward');
		assert(await page.isVisible('#pane-main .pl-speed'), 'the speed is shown in presenter mode');
		const s0 = (await bar()).speed;
		await page.keyboard.press('+');
		const s1 = await until(async () => {
			const b = await bar();
			return b.speed !== s0 && b.speed;
		}, WAIT, '+ changes the speed shown');
		await page.keyboard.press('-');
		await until(async () => (await bar()).speed === s0, WAIT, '- brings it back');
		assert(s1 !== s0, `${s0} -> ${s1}`);
		await page.keyboard.press('ArrowLeft');
		await page.keyboard.press('ArrowLeft');
		const paused = await bar();
		await page.keyboard.press(' ');
		await until(async () => (await bar()).play !== paused.play, WAIT, 'space: the play button changes');
		await until(async () => (await bar()).pos === `event ${total} / ${total}`, WAIT, 'space: it plays to the end');
		await page.keyboard.press('f');
		await until(() => page.evaluate(() => !!document.fullscreenElement), WAIT, 'f enters full screen');
		await page.keyboard.press('f');
		await until(() => page.evaluate(() => !document.fullscreenElement), WAIT, 'f leaves full screen');
		await page.screenshot({ path: path.join(LOGS, 'e2e-presenter-keys-1280x720-en.png') });
		await page.keyboard.press('Escape');
		await page.waitForFunction(() => !document.body.classList.contains('presenter'));
		assert(await page.isVisible('.sidebar'), 'Esc: the dashboard is back');
	} finally {
		await page.context().close();
	}
});

test('no console errors, page errors or CSP violations', async () => {
	assert(problems.length === 0, problems.join(' | '));
});

runTap({
	tmpPrefix: 'socklab-e2e-presenter-',
	async setup(chromium, tmp) {
		srv = await startServer(tmp, { log: 'e2e-presenter-server.log' });
		browser = await launchBrowser(chromium);
		return 'socklab serve, Chromium';
	},
	failShots: () => [],
});
