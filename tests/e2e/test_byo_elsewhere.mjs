// test_byo_elsewhere.mjs: a server that runs no bring-your-own-client labs (--max-byo 0, as the balanced replicas of docker/k8s) sends students to the one that does (--byo-url), in real Chromium (TAP).
//
// The "connect my own client" option of tcp-echo, udp-ping and sticky is
// there but cannot be ticked, and says where such runs are, as a link, in
// English and Chinese; the lab's own client still runs. Screenshots:
// build/test-logs/e2e-byo-elsewhere-*.png at 1280x720 and 1440x900.
// Run as `node tests/e2e/test_byo_elsewhere.mjs` (SOCKLAB=path/to/build/socklab).

import fs from 'node:fs';
import path from 'node:path';
import {
	LOGS, RUN_WAIT, assert, assertEq, launchBrowser, runTap, startServer, test, watchPage,
} from './lib.mjs';

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const dict = {
	en: JSON.parse(fs.readFileSync(path.join(repo, 'web/i18n/en.json'), 'utf8')),
	'zh-CN': JSON.parse(fs.readFileSync(path.join(repo, 'web/i18n/zh-CN.json'), 'utf8')),
};
const URL_ = 'https://byo.lab.example.org/';
let srv;
let browser;
let page = null;
const problems = [];

async function newPage(w, hgt, lang) {
	if (page) await page.context().close();
	const ctx = await browser.newContext({ viewport: { width: w, height: hgt } });
	await ctx.addInitScript((l) => localStorage.setItem('socklab.lang', l), lang);
	page = await ctx.newPage();
	watchPage(page, `${w}x${hgt} ${lang}`, problems);
	return page;
}

test('the own-client option is off and links the page that runs them, for every lab that has it, in both languages and sizes (screenshots kept)', async () => {
	for (const [w, hgt] of [[1280, 720], [1440, 900]]) {
		for (const lang of ['en', 'zh-CN']) {
			for (const lab of ['tcp-echo', 'udp-ping', 'sticky']) {
				const where = `${lab} ${w}x${hgt} ${lang}`;
				await newPage(w, hgt, lang);
				await page.goto(`${srv.base}/#/lab/${lab}`);
				await page.locator('#conn[data-state="open"]').waitFor();
				await page.locator('#byo').waitFor({ state: 'visible' });
				assert(await page.isDisabled('#byo'), `${where}: the option can be ticked`);
				assert(!(await page.isChecked('#byo')), `${where}: the option is ticked`);
				const link = page.locator('.byo-toggle a#byo-url');
				assertEq(await link.getAttribute('href'), URL_, `${where}: the link`);
				assertEq(await link.textContent(), URL_, `${where}: the link's text`);
				const help = await page.textContent('.byo-toggle .byo-elsewhere');
				assertEq(help, `${dict[lang]['form.byo_elsewhere']} ${URL_}`, `${where}: the help text`);
				if (lab === 'tcp-echo') await page.screenshot({ path: path.join(LOGS, `e2e-byo-elsewhere-${w}x${hgt}-${lang}.png`) });
			}
		}
	}
});

test('the lab\'s own client still runs on that server', async () => {
	await newPage(1280, 720, 'en');
	await page.goto(`${srv.base}/#/lab/tcp-echo`);
	await page.locator('#conn[data-state="open"]').waitFor();
	await page.click('#run-btn');
	await page.locator('.run-summary .pill').waitFor({ state: 'visible', timeout: RUN_WAIT });
	const id = await page.getAttribute('.run-card', 'data-run');
	const meta = await (await fetch(`${srv.base}/api/runs/${id}`)).json();
	assertEq(meta.status, 'ok', 'the run\'s status');
});

test('no page error, console error or CSP violation', async () => {
	assertEq(problems, [], 'problems');
});

runTap({
	tmpPrefix: 'socklab-e2e-byo-elsewhere-',
	setup: async (chromium, tmp) => {
		srv = await startServer(tmp, { log: 'e2e-byo-elsewhere.log', args: ['--max-byo', '0', '--byo-url', URL_] });
		browser = await launchBrowser(chromium);
		return `server ${srv.base} with --max-byo 0 --byo-url ${URL_}`;
	},
	failShots: (n) => (page && !page.isClosed() ? [[page, `e2e-byo-elsewhere-fail-${n}.png`]] : []),
});
