// player.js: one run's view with replay controls: play/pause, step forwards and backwards, speed, jump.
//
// A Player keeps every event of its run (in seq order, duplicates dropped,
// early arrivals held until the gap before them is filled, e.g. by the run's
// bundle after a resync) and shows the first `shown` of them through the lab's
// renderer. Renderers only ever append, so stepping backwards rebuilds the
// view from the first event: the view at position N is always exactly what
// the live view showed after N events. Updates are batched per animation
// frame.
//
// State: paused, pos (the position asked for; null follows the newest event),
// speed (events per second when playing; 0 shows events as fast as they
// come). A class student's player is driven by the instructor (setView); its
// controls are then read-only.

import { h, clear, fmtMs } from './dom.js';
import { t } from './i18n.js';
import { sentence } from './steps.js';

// Events handed to a renderer per frame at most; the rest wait for the next one.
const MAX_PER_FRAME = 3000;
// Rows of the step-through list drawn around the current event (the list is a
// window on the run, so a run of 5,000 events steps as fast as one of 50).
const STEP_ROWS = 7;
const STEP_KEY = 'socklab.stepping';
export const SPEEDS = [0, 0.5, 1, 2, 5, 10, 20, 50];

export class Player {
	// root: the element to draw into; make(stage) creates a renderer there.
	constructor(root, make, { runId, lab, onUser, readOnly, exportable } = {}) {
		this.make = make;
		this.runId = runId;
		this.lab = lab;
		this.onUser = onUser || null; // called after a control changed the state
		this.onDrawn = null; // called after the view drew events (or was rebuilt)
		this.events = [];
		this.future = new Map(); // seq -> event that arrived before its predecessors
		this.extras = []; // messages without seq (errors about the run), shown raw
		this.shown = 0;
		this.paused = false;
		this.pos = null;
		this.speed = 0;
		this.credit = 0; // fractional events earned while playing at a speed
		this.lastFrame = 0;
		this.scheduled = false;
		this.dead = false;

		// What a lab's view keeps across rebuilds (stepping back draws it
		// anew from the first event): a mode the reader chose, say.
		this.keep = {};
		this.el = h('section', { class: 'player', dataset: { run: runId || '' } });
		this.bar = this.buildBar(readOnly, exportable);
		this.steps = this.buildSteps();
		this.stage = h('div', { class: 'player-stage' });
		this.el.append(this.bar, this.steps, this.stage);
		root.appendChild(this.el);
		this.renderer = this.create();
		this.setStepping(loadStepping());
		this.updateBar();
	}

	// A renderer for the stage. Besides its own context it may read every
	// event the player holds (allEvents), to keep its layout fixed while the
	// run is stepped: what lies ahead is drawn greyed, never moved.
	// It may also drive the replay (replay: sticky's animation plays the run
	// from its first event and follows the bar), unless the bar is read-only.
	create() {
		return this.make(this.stage, { allEvents: () => this.events, keep: this.keep, replay: this.control() });
	}

	control() {
		return {
			readOnly: () => this.readOnly,
			total: () => this.events.length,
			pos: () => this.shown,
			seek: (n) => this.user(() => this.seek(n, true)),
			// Play from the first event at speed s (events a second).
			playFromStart: (s) => this.user(() => {
				this.speed = SPEEDS.includes(s) && s > 0 ? s : 5;
				this.pos = 0;
				this.play();
			}),
			speed: () => this.speed,
		};
	}

	// The step-through panel: the sentence for the current event in large
	// type, and the events around it (done, current, ahead) with their seq
	// and time. Clicking a row goes to that event.
	buildSteps() {
		this.stepCaption = h('p', { class: 'pl-step-caption', attrs: { 'aria-live': 'polite' } });
		this.stepList = h('ol', { class: 'pl-step-list' });
		const el = h('section', { class: 'pl-steps', attrs: { 'aria-label': t('player.steps') } }, this.stepCaption, this.stepList);
		el.hidden = true;
		return el;
	}

	setStepping(on) {
		this.stepping = !!on;
		this.steps.hidden = !this.stepping;
		this.el.classList.toggle('player-stepping', this.stepping);
		if (this.stepBtn) {
			this.stepBtn.setAttribute('aria-pressed', String(this.stepping));
			this.stepBtn.classList.toggle('btn-on', this.stepping);
		}
		this.stepsAt = -2;
		this.renderSteps();
	}

	renderSteps() {
		if (!this.stepping) return;
		const n = this.shown;
		if (this.stepsAt === n && this.stepsTotal === this.events.length) return;
		this.stepsAt = n;
		this.stepsTotal = this.events.length;
		const cur = n - 1; // index of the current event
		const from = Math.max(0, Math.min(cur - Math.floor(STEP_ROWS / 2), this.events.length - STEP_ROWS));
		const rows = [];
		for (let i = from; i < Math.min(this.events.length, from + STEP_ROWS); i++) {
			const ev = this.events[i];
			const state = i < cur ? 'done' : i === cur ? 'current' : 'ahead';
			rows.push(h('li', {
				class: `pl-step pl-step-${state}`,
				attrs: { 'aria-current': state === 'current' ? 'step' : null },
				dataset: { seq: String(ev.seq), state },
				on: { click: () => this.user(() => this.seek(i + 1, true)) },
			},
			h('span', { class: 'pl-step-seq', text: `#${ev.seq}` }),
			h('span', { class: 'pl-step-t', text: typeof ev.t_us === 'number' ? `${fmtMs(ev.t_us)} ms` : '' }),
			h('span', { class: 'pl-step-text', text: sentence(ev) })));
		}
		this.stepList.replaceChildren(...rows);
		this.stepCaption.textContent = cur >= 0 ? sentence(this.events[cur]) : t('player.step_start');
	}

	buildBar(readOnly, exportable) {
		const btn = (cls, key, fn, label) => h('button', {
			class: `btn btn-small ${cls}`, text: label,
			attrs: { type: 'button', title: t(key), 'aria-label': t(key) },
			on: { click: fn },
		});
		this.backBtn = btn('pl-back', 'player.back', () => this.user(() => this.step(-1)), '«');
		this.playBtn = btn('pl-play', 'player.pause', () => this.user(() => this.toggle()), '‖');
		this.fwdBtn = btn('pl-fwd', 'player.forward', () => this.user(() => this.step(1)), '»');
		this.speedSel = h('select', {
			class: 'pl-speed', attrs: { 'aria-label': t('player.speed') },
			on: { change: () => this.user(() => this.setSpeed(Number(this.speedSel.value))) },
		}, SPEEDS.map((s) => h('option', { attrs: { value: String(s) }, text: s === 0 ? t('player.speed_live') : t('player.speed_n', { n: s }) })));
		this.posEl = h('span', { class: 'pl-pos', attrs: { 'aria-live': 'off' } });
		// One line about the current event, shown in presenter mode: the text
		// the lab's view draws for it (or its type when it draws none).
		this.captionEl = h('span', { class: 'pl-caption' });
		this.currentSeq = -1;
		this.jumpIn = h('input', { class: 'pl-jump', attrs: { type: 'number', min: '0', step: '1', 'aria-label': t('player.jump'), placeholder: t('player.jump_ph') } });
		const jumpForm = h('form', { class: 'pl-jump-form', on: { submit: (e) => {
			e.preventDefault();
			const n = Number(this.jumpIn.value);
			if (Number.isInteger(n) && n >= 0) this.user(() => this.seek(n, true));
		} } }, this.jumpIn, h('button', { class: 'btn btn-small', attrs: { type: 'submit' }, text: t('player.go') }));
		this.followEl = h('span', { class: 'pl-follow muted', text: t('player.following') });
		this.followEl.hidden = !readOnly;
		this.exportBtn = exportable ? btn('pl-export', 'player.export', () => this.exportBundle(), t('player.export_short')) : null;
		this.presentBtn = btn('pl-present', 'player.present', () => this.onPresent && this.onPresent(), t('player.present_short'));
		// Step-through is a way of looking, not a control of the run: a
		// class student may turn it on while the instructor drives.
		this.stepBtn = btn('pl-stepping', 'player.stepping', () => {
			this.setStepping(!this.stepping);
			saveStepping(this.stepping);
		}, t('player.stepping_short'));
		this.stepBtn.setAttribute('aria-pressed', String(!!this.stepping));
		if (this.stepping) this.stepBtn.classList.add('btn-on');
		this.controls = [this.backBtn, this.playBtn, this.fwdBtn, this.speedSel, this.jumpIn, jumpForm.querySelector('button')];
		this.setReadOnly(!!readOnly);
		return h('div', { class: 'player-bar', attrs: { role: 'toolbar', 'aria-label': t('player.controls') } },
			this.backBtn, this.playBtn, this.fwdBtn, this.posEl, this.speedSel, this.captionEl, jumpForm, this.stepBtn, this.followEl, this.exportBtn,
			this.presentBtn);
	}

	setReadOnly(ro) {
		this.readOnly = ro;
		for (const c of this.controls) c.disabled = ro;
		if (this.followEl) this.followEl.hidden = !ro;
		this.el.classList.toggle('player-readonly', ro);
	}

	// A user action: apply it, then tell the owner (an instructor broadcasts it).
	user(fn) {
		if (this.readOnly) return;
		fn();
		if (this.onUser) this.onUser(this.state());
	}

	state() {
		return { paused: this.paused, pos: this.pos, speed: this.speed };
	}

	// ---- events ----

	get expected() {
		return this.events.length ? this.events[this.events.length - 1].seq + 1 : 0;
	}

	add(ev) {
		if (typeof ev.seq !== 'number') {
			this.extras.push(ev);
			this.renderer.push([ev]);
			return;
		}
		const want = this.expected;
		if (ev.seq < want) return; // already have it
		if (ev.seq > want) {
			this.future.set(ev.seq, ev);
			return;
		}
		this.events.push(ev);
		for (let next = this.future.get(ev.seq + 1); next; next = this.future.get(next.seq + 1)) {
			this.future.delete(next.seq);
			this.events.push(next);
		}
		this.schedule();
	}

	addAll(evs) {
		for (const ev of evs) this.add(ev);
		this.schedule();
	}

	// ---- state changes ----

	target() {
		const n = this.events.length;
		if (this.pos === null) return n;
		return Math.min(this.pos, n);
	}

	toggle() {
		if (this.paused) this.play();
		else this.pause();
	}

	pause() {
		this.paused = true;
		this.pos = this.shown;
		this.schedule();
	}

	play() {
		this.paused = false;
		// Playing from the end of a finished run starts again from the top.
		if (this.pos !== null && this.pos >= this.events.length && this.speed > 0) this.pos = 0;
		if (this.speed === 0) this.pos = null;
		this.lastFrame = 0;
		this.credit = 0;
		this.schedule();
	}

	step(d) {
		this.paused = true;
		const from = this.pos === null ? this.shown : this.pos;
		this.pos = Math.max(0, Math.min(this.events.length, from + d));
		this.schedule();
	}

	seek(n, pause) {
		if (pause) this.paused = true;
		this.pos = Math.max(0, Math.min(n, 1e9));
		this.schedule();
	}

	// One step up or down the list of speeds (presenter keys + and -).
	speedStep(d) {
		const i = Math.max(0, SPEEDS.indexOf(this.speed));
		this.setSpeed(SPEEDS[Math.max(0, Math.min(SPEEDS.length - 1, i + d))]);
	}

	setSpeed(s) {
		this.speed = SPEEDS.includes(s) ? s : 0;
		if (!this.paused) {
			if (this.speed === 0) this.pos = null;
			else if (this.pos === null) this.pos = this.shown;
		}
		this.lastFrame = 0;
		this.schedule();
	}

	// The instructor's view, for a follower: {paused, pos, speed}.
	setView(v) {
		this.paused = !!v.paused;
		this.speed = SPEEDS.includes(v.speed) ? v.speed : Number(v.speed) || 0;
		this.pos = v.pos === null || v.pos === undefined ? (this.paused ? this.shown : null) : v.pos;
		this.lastFrame = 0;
		this.credit = 0;
		this.schedule();
	}

	// ---- drawing ----

	schedule() {
		if (this.scheduled || this.dead) return;
		this.scheduled = true;
		requestAnimationFrame((ts) => this.frame(ts));
	}

	rebuild() {
		if (this.renderer.destroy) this.renderer.destroy();
		clear(this.stage);
		this.renderer = this.create();
		this.shown = 0;
		this.currentSeq = -1;
		this.currentEl = null;
		if (this.extras.length) this.renderer.push(this.extras.slice());
	}

	frame(ts) {
		this.scheduled = false;
		if (this.dead) return;
		// Playing at a speed: the position moves on by speed events a second.
		if (!this.paused && this.speed > 0 && this.pos !== null) {
			if (this.lastFrame) this.credit += ((ts - this.lastFrame) / 1000) * this.speed;
			this.lastFrame = ts;
			const whole = Math.floor(this.credit);
			if (whole > 0 && this.pos < this.events.length) {
				this.credit -= whole;
				this.pos = Math.min(this.events.length, this.pos + whole);
			} else if (this.pos >= this.events.length) {
				this.credit = 0;
			}
		}
		const want = this.target();
		let drawn = false;
		if (want < this.shown) {
			this.rebuild();
			drawn = true;
		}
		const end = Math.min(want, this.shown + MAX_PER_FRAME);
		if (end > this.shown) {
			this.renderer.push(this.events.slice(this.shown, end));
			this.shown = end;
			drawn = true;
		}
		// The page marks things in the view (UDP beside TCP): drawn anew.
		if (drawn && this.onDrawn) this.onDrawn(this);
		this.updateBar();
		this.markCurrent();
		this.renderSteps();
		this.showPlace();
		const playing = !this.paused && this.speed > 0 && this.pos !== null && this.pos < this.events.length;
		if (this.shown < this.target() || playing) this.schedule();
	}

	// The current event (the last one shown) is highlighted where the lab's
	// view draws it (an element with its data-seq); a follower whose view is
	// stepped or paused by the instructor has it scrolled into view.
	markCurrent() {
		const last = this.shown > 0 ? this.events[this.shown - 1] : null;
		const seq = last && typeof last.seq === 'number' ? last.seq : -1;
		if (seq === this.currentSeq) return;
		this.currentSeq = seq;
		if (this.currentEl) this.currentEl.classList.remove('pl-current');
		this.currentEl = null;
		for (let s = seq; s >= 0 && s > seq - 50; s--) {
			const el = this.stage.querySelector(`[data-seq="${s}"]`);
			if (el) {
				this.currentEl = el;
				break;
			}
		}
		const text = sentence(last);
		this.captionEl.textContent = text.length > 160 ? `${text.slice(0, 159)}…` : text;
		if (!this.currentEl) return;
		this.currentEl.classList.add('pl-current');
		// Auto-scroll to what changed: a follower stepped by the instructor,
		// anyone stepping through, and the projector in presenter mode (the
		// arrow keys) see the current event.
		const presenting = document.body.classList.contains('presenter');
		if ((this.readOnly || this.stepping || presenting) && this.paused) {
			const r = this.currentEl.getBoundingClientRect();
			const top = this.bar.getBoundingClientRect().bottom;
			if (r.top < top || r.bottom > window.innerHeight) this.currentEl.scrollIntoView({ block: 'center' });
		}
	}

	// The run's status badge says where the view is: a finished run shown
	// up to an earlier event is a replay at that event, not a run going on.
	showPlace() {
		const fr = this.renderer && this.renderer.frame;
		if (!fr || typeof fr.showPlace !== 'function') return;
		const last = this.events.length ? this.events[this.events.length - 1] : null;
		const ended = !!(last && last.type === 'run.end');
		fr.showPlace(this.shown, this.events.length, ended);
	}

	updateBar() {
		this.posEl.textContent = t('player.pos', { n: this.shown, total: this.events.length });
		this.el.dataset.pos = String(this.shown);
		this.el.dataset.total = String(this.events.length);
		this.el.dataset.paused = String(this.paused);
		this.playBtn.textContent = this.paused ? '▶' : '‖';
		const key = this.paused ? 'player.play' : 'player.pause';
		this.playBtn.title = t(key);
		this.playBtn.setAttribute('aria-label', t(key));
		if (Number(this.speedSel.value) !== this.speed) this.speedSel.value = String(this.speed);
	}

	// ---- export ----

	// The run as one JSON file: {format, meta, events}; see bundle.js.
	exportBundle() {
		if (this.onExport) this.onExport(this);
	}

	// The language changed: new labels, and the view drawn again in it.
	relabel() {
		const bar = this.buildBar(this.readOnly, !!this.exportBtn);
		this.bar.replaceWith(bar);
		this.bar = bar;
		const steps = this.buildSteps();
		this.steps.replaceWith(steps);
		this.steps = steps;
		this.setStepping(this.stepping);
		this.rebuild();
		this.updateBar();
		this.schedule();
	}

	stop() {
		this.dead = true;
		if (this.renderer.destroy) this.renderer.destroy();
	}
}

function loadStepping() {
	try {
		return localStorage.getItem(STEP_KEY) === '1';
	} catch {
		return false;
	}
}

function saveStepping(on) {
	try {
		localStorage.setItem(STEP_KEY, on ? '1' : '0');
	} catch {
		/* private mode: the choice lasts for this page only */
	}
}
