// classroom.js: classroom mode in the page: instructor sign-in, open/end a class, join with a code, follow the class view.
//
// The server checks every role; this module only shows what each role may do.
// An instructor who has opened a class runs labs *in the class* (op
// class.run): every student sees the run live, read-only, and follows the
// instructor's player (pause, step, speed, jump), which is sent as class.view.
// A student sees the class's current run in the main pane; "Try it myself"
// runs the same lab with the same parameters as the student's own run, shown
// beside it. A student who falls behind is told to resync and re-reads the
// run from its bundle (GET /api/runs/ID/events); the player drops duplicates.

import { t } from './i18n.js';
import { h, replace } from './dom.js';
import { getRunEvents } from './api.js';

let app = null;
let tagSeq = 0;
let lockTimer = null;
let sayKey = null; // the message last said by its id (sayT), to say again in another language

// The instructor's page keeps its class's reclaim token for this tab only
// (sessionStorage survives a reload, not a closed tab): after a reload or a
// dropped connection the page takes the class back within --class-grace.
const RECLAIM_KEY = 'socklab.reclaim';
// The instructor's display name, remembered by this browser for the next class.
const TEACHER_KEY = 'socklab.teacherName';

function keptTeacherName() {
	try {
		return localStorage.getItem(TEACHER_KEY) || '';
	} catch (e) {
		return '';
	}
}

function keepTeacherName(name) {
	try {
		if (name) localStorage.setItem(TEACHER_KEY, name);
		else localStorage.removeItem(TEACHER_KEY);
	} catch (e) { /* storage disabled: typed again next time */ }
}

function keepReclaim(code, token) {
	try {
		if (code && token) sessionStorage.setItem(RECLAIM_KEY, JSON.stringify({ code, token }));
		else sessionStorage.removeItem(RECLAIM_KEY);
	} catch (e) { /* storage disabled: no reclaim */ }
}

function keptReclaim() {
	try {
		const v = JSON.parse(sessionStorage.getItem(RECLAIM_KEY) || 'null');
		return v && typeof v.code === 'string' && typeof v.token === 'string' ? v : null;
	} catch (e) {
		return null;
	}
}
// A student's identity in a class (class.joined "member"), kept for this
// tab per class code: joining again after a reload or a dropped connection
// sends it back, so the class's questions count the student once (their
// latest answer) instead of as a new member.
const MEMBER_KEY = 'socklab.member';

function codeKey(code) {
	return String(code || '').toUpperCase().replace(/[\s-]/g, '');
}

function keepMember(code, member) {
	try {
		const all = JSON.parse(sessionStorage.getItem(MEMBER_KEY) || '{}');
		all[codeKey(code)] = member;
		sessionStorage.setItem(MEMBER_KEY, JSON.stringify(all));
	} catch (e) { /* storage disabled: a rejoin is a new member */ }
}

function keptMember(code) {
	try {
		const v = JSON.parse(sessionStorage.getItem(MEMBER_KEY) || '{}')[codeKey(code)];
		return typeof v === 'string' ? v : undefined;
	} catch (e) {
		return undefined;
	}
}
const $ = (id) => document.getElementById(id);

export function init(a) {
	app = a;
	render();
}

function st() {
	return app.state;
}

function send(op) {
	const tag = `c${++tagSeq}`;
	if (!app.send({ ...op, tag })) {
		say(t('conn.not_open'), 'error');
		return null;
	}
	return tag;
}

function say(text, kind = '') {
	const el = $('class-msg');
	sayKey = null;
	if (!el) return;
	el.textContent = text;
	el.dataset.kind = kind;
}

// A message by its id, said again in the new language when it changes.
function sayT(key, params, kind = '') {
	say(t(key, params), kind);
	sayKey = { key, params };
}

// ---- what the rest of the page asks ----

// The op that the Run button sends.
export function runOp() {
	const c = st().cls;
	return c && c.role === 'teacher' ? 'class.run' : 'run';
}

// How the view of a run this page starts is shown.
export function viewOpts() {
	const c = st().cls;
	if (c && c.role === 'teacher') return { onUser: broadcast, title: () => t('class.run_title', { code: c.code }) };
	if (c && c.role === 'student' && c.run) return { pane: 'compare' };
	return {};
}

function broadcast(v) {
	const c = st().cls;
	if (!c || c.role !== 'teacher') return;
	app.send({ op: 'class.view', paused: v.paused, pos: v.pos, speed: v.speed });
}

// ---- messages ----

// A class run's event for a student: shown in the class pane.
export function onEvent(ev) {
	const c = st().cls;
	if (!c || c.role !== 'student' || ev.run !== c.run) return false;
	const v = app.viewOf(ev.run);
	if (v) v.player.add(ev);
	return true;
}

export function onError(m) {
	if (!(typeof m.tag === 'string' && m.tag.startsWith('c'))) return false;
	const c = st().cls;
	if (c && c.rejoining && m.tag === c.rejoinTag) {
		// The class could not be joined again (it ended meanwhile): the run
		// stays on the page, the student's own to replay.
		const v = c.run && app.viewOf(c.run);
		if (v) v.player.setReadOnly(false);
		st().cls = null;
		render();
	}
	if (m.param === 'reclaim') {
		// The class is gone (ended, or the grace period passed): forget it.
		keepReclaim(null);
		say(t('class.reclaim_failed'), 'error');
		render();
		return true;
	}
	if (m.code === 'limit' && m.param === 'secret' && m.retry_after_s > 0) {
		lockedOut(m.retry_after_s);
		return true;
	}
	// A code that cannot be a class code: said in the student's words (the
	// look-alike characters are the usual reason).
	if (m.param === 'class' && m.code === 'bad_request') say(t('class.code_bad'), 'error');
	else say(m.message || m.code || 'error', 'error');
	const field = m.param === 'class' ? $('class-code')
		: m.param === 'name' ? $('class-name') || $('class-teacher-name')
		: m.param === 'secret' ? $('class-secret') : null;
	if (field) field.focus();
	return true;
}

export function onMessage(m) {
	const s = st();
	switch (m.type) {
	case 'signin.accepted':
		s.instructor = true;
		say('');
		render();
		return true;
	case 'class.opened':
		s.cls = { role: 'teacher', code: m.class, instructor: m.instructor || null, members: 0, names: [], run: null };
		keepReclaim(m.class, m.reclaim);
		say('');
		render();
		return true;
	case 'class.reclaimed':
		s.instructor = true;
		s.cls = { role: 'teacher', code: m.class, instructor: m.instructor || null, members: 0, names: [], run: m.run || null };
		if (m.run_info) {
			s.cls.lab = m.run_info.lab;
			s.cls.params = m.run_info.params;
		}
		keepReclaim(m.class, m.reclaim);
		say(t('class.reclaimed', { code: m.class }), 'ok');
		render();
		return true;
	case 'class.instructor':
		if (s.cls && s.cls.role === 'student') {
			s.cls.away = m.state === 'reconnecting';
			render();
		}
		return true;
	case 'class.joined': {
		if (m.member) keepMember(m.class, m.member);
		const was = s.cls && s.cls.rejoining && m.tag === s.cls.rejoinTag ? s.cls : null;
		const v = was && m.run && m.run === was.run ? app.viewOf(m.run) : null;
		s.cls = { role: 'student', code: m.class, name: m.name, instructor: m.instructor || null, run: null, view: m.view };
		if (was) sayT('class.rejoined', { code: m.class }, 'ok');
		else say('');
		if (v && m.resumed) {
			// Joined again after a lost connection: the server sends what
			// follows the last event this page has, so the view goes on.
			Object.assign(s.cls, { run: was.run, lab: was.lab, params: was.params, files: was.files });
			if (m.view) v.player.setView(m.view);
			render();
			return true;
		}
		render();
		if (m.run && m.run_info) showClassRun(m.run_info, m.live, m.view, true);
		return true;
	}
	case 'class.run':
		if (!s.cls) return true;
		s.cls.run = m.run;
		s.cls.lab = m.lab;
		s.cls.params = m.params;
		if (s.cls.role === 'student') showClassRun(m, true, null, false);
		render();
		return true;
	case 'class.view':
		if (s.cls && s.cls.role === 'student') {
			s.cls.view = m;
			const v = m.run && app.viewOf(m.run);
			if (v) v.player.setView(m);
			renderBanner();
		}
		return true;
	case 'class.resync':
		if (m.run) refill(m.run);
		return true;
	case 'class.members':
		if (s.cls && s.cls.role === 'teacher') {
			s.cls.members = m.count;
			s.cls.names = m.names || [];
			render();
		}
		return true;
	case 'class.ended':
		if (s.cls && s.cls.role === 'teacher') keepReclaim(null);
		if (s.cls && s.cls.role === 'student' && m.reason) say(t('class.ended_by', { reason: m.reason }));
		if (s.cls) {
			const v = s.cls.run && app.viewOf(s.cls.run);
			if (v) v.player.setReadOnly(false);
		}
		s.cls = null;
		render();
		return true;
	case 'class.left':
		s.cls = null;
		render();
		return true;
	default:
		return false;
	}
}

// The connection closed: the server has ended the class or removed the student.
export function onSocketState(state) {
	const s = st();
	if (state === 'open') {
		// A reload, or the connection came back: take the class back.
		const r = keptReclaim();
		if (r && !s.cls) {
			say(t('class.reclaiming', { code: r.code }));
			send({ op: 'class.reclaim', class: r.code, reclaim: r.token });
		}
		// A student joins again as the same member, after the last event
		// of the class run it has (the server continues from there; on
		// another replica behind a balancer too).
		const c = s.cls;
		if (c && c.role === 'student' && c.rejoining) {
			const v = c.run && app.viewOf(c.run);
			const have = v ? v.player.expected : 0;
			const op = { op: 'class.join', class: c.code, name: c.name, member: keptMember(c.code) };
			if (have > 0) op.after = { run: c.run, seq: have - 1 };
			c.rejoinTag = send(op);
		}
		return;
	}
	if (state !== 'closed') return;
	if (!s.cls && !s.instructor) return;
	if (s.cls && s.cls.role === 'student') {
		// The class stays on the page, read-only, until it is joined again.
		s.cls.rejoining = true;
		sayT('class.rejoin_wait', {}, 'error');
		renderBanner();
		return;
	}
	if (s.cls && s.cls.role === 'teacher' && keptReclaim()) say(t('class.instructor_lost'), 'error');
	else if (s.cls) say(t('class.lost'), 'error');
	if (s.cls && s.cls.run) {
		const v = app.viewOf(s.cls.run);
		if (v) v.player.setReadOnly(false);
	}
	s.cls = null;
	s.instructor = false;
	render();
}

// A student: show the class run `info` ({run, lab, params, files?}) in the main pane,
// read-only, following the instructor. Events so far come from the bundle.
function showClassRun(info, live, view, fromBundle) {
	const c = st().cls;
	c.run = info.run;
	c.lab = info.lab;
	c.params = info.params;
	c.files = info.files || null; // a program run for the class, to try
	// The class view follows the class: the instructor's lab, the form
	// collapsed (body.class-following), the class run scrolled into view.
	if (app.selectLab && (!app.state.lab || app.state.lab.name !== info.lab)) app.selectLab(info.lab, false);
	document.body.classList.add('class-following');
	const v = app.openView(info.run, info.lab, !!live, {
		readOnly: true, title: () => t('class.run_title', { code: c.code }),
	});
	if (view) v.player.setView(view);
	if (fromBundle) refill(info.run);
	const banner = $('class-banner');
	if (banner && banner.getBoundingClientRect().top < 0) banner.scrollIntoView({ block: 'start' });
	const pane = $('pane-main');
	if (pane && pane.getBoundingClientRect().top > window.innerHeight * 0.6) pane.scrollIntoView({ block: 'start' });
	// "Try it myself" needs a class run: a student who joins after it
	// started gets one here, not when the panel was drawn.
	const tryBtn = $('class-try');
	if (tryBtn) tryBtn.disabled = false;
}

// The class code, large, and the instructor's name when one was given (text
// only: a name is whatever the instructor typed).
function bannerHead(c, small) {
	return [
		h('span', { class: 'class-code-label', text: t('class.code_label') }),
		h('strong', { class: small ? 'class-code class-code-small' : 'class-code', attrs: { id: 'class-code-big' }, text: `${c.code.slice(0, 3)} ${c.code.slice(3)}` }),
		c.instructor ? h('span', { class: 'class-teacher', attrs: { id: 'class-teacher' }, text: t('class.by', { name: c.instructor }) }) : null,
	];
}

// A student's banner: the class code, the instructor, and what the class view is doing.
function renderBanner() {
	const c = st().cls;
	const banner = $('class-banner');
	if (!banner || !c || c.role !== 'student') return;
	let state;
	if (c.rejoining) state = t('class.reconnecting');
	else if (c.away) state = t('class.instructor_away');
	else if (c.view && c.view.paused) {
		const v = c.run && app.viewOf(c.run);
		const n = c.view.pos !== null && c.view.pos !== undefined ? c.view.pos : v ? v.player.shown : 0;
		state = t('class.paused_at', { n });
	} else state = c.run ? t('class.following') : t('class.waiting_run');
	replace(banner, ...bannerHead(c, true),
		h('span', { class: c.away || c.rejoining ? 'class-state class-state-away' : 'class-state', attrs: { id: 'class-state' }, text: state }));
	banner.hidden = false;
}

// Read a run's bundle into its player (after joining late or a resync).
async function refill(id) {
	try {
		const events = await getRunEvents(id);
		const v = app.viewOf(id);
		if (v) v.player.addAll(events);
	} catch (e) {
		say(t('app.load_failed', { what: id, reason: e.message }), 'error');
	}
}

// Sign-in refused for a while: count the seconds down, then invite a retry.
function lockedOut(seconds) {
	let left = seconds;
	clearInterval(lockTimer);
	const tick = () => {
		const btn = $('class-signin');
		if (left <= 0) {
			clearInterval(lockTimer);
			lockTimer = null;
			if (btn) btn.disabled = false;
			say(t('class.signin_again'));
			return;
		}
		if (btn) btn.disabled = true;
		say(t('class.signin_locked', { s: left }), 'error');
		left -= 1;
	};
	tick();
	lockTimer = setInterval(tick, 1000);
}

// ---- the panel ----

// Draw the panel again (the language changed).
export function rerender() {
	render();
	const el = $('class-msg');
	if (el && sayKey) el.textContent = t(sayKey.key, sayKey.params);
}

function render() {
	const panel = $('class-panel');
	if (!panel) return;
	const s = st();
	const c = s.cls;
	const banner = $('class-banner');
	document.body.dataset.classRole = c ? c.role : s.instructor ? 'instructor' : '';
	if (c && c.role === 'teacher') {
		replace(banner, ...bannerHead(c, false),
			h('span', { class: 'class-members', attrs: { id: 'class-count' }, text: t('class.members', { n: c.members }) }));
		banner.hidden = false;
		replace(panel,
			h('p', { text: t('class.teaching', { code: c.code }) }),
			c.names.length ? h('p', { class: 'muted class-names', text: c.names.join(', ') }) : null,
			h('p', { class: 'muted', text: t('class.teaching_help') }),
			h('button', { class: 'btn btn-danger btn-small', attrs: { type: 'button', id: 'class-end' }, text: t('class.end'),
				on: { click: () => send({ op: 'class.end' }) } }));
	} else if (c && c.role === 'student') {
		renderBanner();
		replace(panel,
			h('p', { text: t('class.attending', { code: c.code, name: c.name }) }),
			c.away ? h('p', { class: 'class-away', attrs: { id: 'class-away', role: 'status' }, text: t('class.instructor_away') }) : null,
			h('div', { class: 'actions' },
				h('button', { class: 'btn btn-primary btn-small', attrs: { type: 'button', id: 'class-try' }, text: t('class.try'),
					on: { click: tryIt } }),
				h('button', { class: 'btn btn-ghost btn-small', attrs: { type: 'button', id: 'class-leave' }, text: t('class.leave'),
					on: { click: () => send({ op: 'class.leave' }) } })),
			h('p', { class: 'muted', text: t('class.try_help') }));
		$('class-try').disabled = !c.run;
	} else if (s.instructor) {
		banner.hidden = true;
		// An optional display name for the students' banner (1..32
		// characters, checked by the server like a student's name).
		const tname = h('input', { attrs: { id: 'class-teacher-name', autocomplete: 'name', maxlength: '32', placeholder: t('class.teacher_name_hint'), 'aria-label': t('class.teacher_name') } });
		tname.value = keptTeacherName();
		replace(panel,
			h('p', { text: t('class.signed_in') }),
			h('form', { class: 'class-form', attrs: { id: 'class-open-form' }, on: { submit: (e) => {
				e.preventDefault();
				const name = tname.value.trim();
				keepTeacherName(name);
				send(name ? { op: 'class.open', name } : { op: 'class.open' });
			} } },
			h('label', { attrs: { for: 'class-teacher-name' }, text: t('class.teacher_name') }), tname,
			h('button', { class: 'btn btn-primary btn-small', attrs: { type: 'submit', id: 'class-open' }, text: t('class.open') })));
	} else {
		banner.hidden = true;
		const needSecret = !(app.state.config && app.state.config.classroom && app.state.config.classroom.secret_required === false);
		const code = h('input', { attrs: { id: 'class-code', autocomplete: 'off', maxlength: '8', placeholder: 'ABC DEF', 'aria-label': t('class.code') } });
		const name = h('input', { attrs: { id: 'class-name', autocomplete: 'nickname', maxlength: '32', 'aria-label': t('class.name'), placeholder: t('class.name') } });
		const secret = h('input', { attrs: { id: 'class-secret', type: 'password', autocomplete: 'current-password', 'aria-label': t('class.secret'), placeholder: t('class.secret') } });
		secret.hidden = !needSecret;
		replace(panel,
			h('form', { class: 'class-form', attrs: { id: 'class-join-form' }, on: { submit: (e) => {
				e.preventDefault();
				send({ op: 'class.join', class: code.value, name: name.value, member: keptMember(code.value) });
			} } },
			h('label', { attrs: { for: 'class-code' }, text: t('class.code') }), code,
			h('label', { attrs: { for: 'class-name' }, text: t('class.name') }), name,
			h('button', { class: 'btn btn-primary btn-small', attrs: { type: 'submit', id: 'class-join' }, text: t('class.join') })),
			h('details', { class: 'class-instructor' },
				h('summary', { text: t('class.instructor') }),
				h('form', { class: 'class-form', attrs: { id: 'class-signin-form' }, on: { submit: (e) => {
					e.preventDefault();
					send({ op: 'signin', secret: secret.value });
					secret.value = '';
				} } }, secret,
				h('button', { class: 'btn btn-small', attrs: { type: 'submit', id: 'class-signin' }, text: t('class.signin') }))));
	}
	if (!c || c.role !== 'student' || !c.run) document.body.classList.remove('class-following');
	if (app.onClassChange) app.onClassChange();
}

// "Try it myself": the class run's lab and parameters in the form, run as
// the student's own run; it is shown beside the class run.
function tryIt() {
	const c = st().cls;
	if (!c || !c.run) return;
	app.tryRun(c.lab, c.params || {}, c.files || null);
}
